#!/usr/bin/env node
// `pnpm test:docs`: runs the code blocks of README.md and docs/*.md as written, so that none of
// them rots. Each block runs in a fresh temporary folder (outside the workspace, with
// `"type": "module"` and a node_modules that links the workspace packages and their peers), and
// TypeScript runs with tsx and the `source` export condition, so no build is needed.
//
// Which blocks run, and how:
// - ```ts blocks are programs: `node --import tsx block.ts`. A program that prints a line
//   starting `usage: ` is a server: it is stopped with SIGTERM after that line (it must then exit
//   0 or by the signal), then run a second time in the same folder, which must print the same
//   `key: ` line (nothing created twice, the key revealed again). Any other program must exit 0
//   by itself within the time limit; one that only sets up a gateway (`const gateway =
//   createGateway(...)` and no server) is run with `await gateway.ready; await gateway.close()`
//   appended, then ended: its gateway must open its store and close cleanly.
// - ```ts blocks whose first line is `// <path>` with a `/` in the path, or `// next.config.ts`,
//   are files of one Next.js app per document: they are written to their paths, and the route
//   module `app/api/[...path]/route.ts` is driven directly (no `next` server): a health check, a
//   chat completion with the printed key, the `usage: ` line awaited; twice, like a server.
// - ```sh blocks run with bash (`set -eo pipefail`, `curl` failing on HTTP errors, `tokenpool`
//   the server's CLI from source).
// - A block that talks to `http://127.0.0.1:8317` (or uses `$GW`, `$KEY`, `$MGMT`) gets its own
//   `tokenpool serve --demo` on a free port: the URL is rewritten to it, and `GW`, `KEY` (the
//   demo key) and `MGMT` (the management key) are in its environment. A line that assigns a
//   placeholder (`KEY=sk-...`: a value containing `...`) to one of those is left out.
// - Every block gets TOKENPOOL_SECRET, TOKENPOOL_NEW_SECRET, OPENAI_API_KEY, OPENAI_BASE_URL (the
//   mock upstream of @tokenpool/testing, which answers any model) and PORT=0. A block that uses
//   Redis (`redis://127.0.0.1:6379`, `REDIS_URL`) gets a redis-server on a free port instead; one
//   that uses a Redis Cluster (`redis://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002`,
//   `REDIS_CLUSTER_URL`) gets three masters of @tokenpool/testing's startRedisCluster; one that
//   uses PostgreSQL (`DATABASE_URL`) gets a throwaway PostgreSQL of its startPostgresServer, and
//   DATABASE_URL names its database.
// - A block preceded by `<!-- not-run: reason -->` is not run (listed with its reason). Blocks of
//   other languages (yaml, json, plain output) are data, not run.
//
// Usage: node scripts/run-doc-blocks.mjs [README.md docs/x.md ...]   (default: all of them)
import { spawn } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(import.meta.dirname, "..");
const tsx = import.meta.resolve("tsx");
const node = [process.execPath, "--conditions=source", "--import", tsx];
const TIMEOUT_MS = 90_000;
const SECRET = "doc-blocks-secret-0123456789abcdef0123456789";
const NEW_SECRET = "doc-blocks-new-secret-0123456789abcdef012345";

// --- the blocks -------------------------------------------------------------------------------

/** Fenced blocks of a Markdown file, with the reason of a `<!-- not-run: ... -->` before one. */
function blocksOf(file) {
  const lines = readFileSync(file, "utf8").split("\n");
  const out = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*$/.exec(lines[i]);
    if (!open) continue;
    let end = i + 1;
    while (end < lines.length && lines[end] !== "```") end++;
    let before = i - 1;
    while (before >= 0 && lines[before].trim() === "") before--;
    const marker = /^<!--\s*not-run:\s*(.*?)\s*-->$/.exec(lines[before] ?? "");
    out.push({
      where: `${relative(root, file)}:${i + 1}`,
      lang: open[1],
      code: `${lines.slice(i + 1, end).join("\n")}\n`,
      notRun: marker?.[1],
    });
    i = end;
  }
  return out;
}

/** The path of a Next.js app file block (`// app/api/[...path]/route.ts`), else null. */
function appFilePath(code) {
  const m = /^\/\/ (\S+\.tsx?)\b/.exec(code);
  return m && (m[1].includes("/") || m[1] === "next.config.ts") ? m[1] : null;
}

// --- the environment --------------------------------------------------------------------------

/** Where each package a block may import lives: the workspace packages and their peers. */
function packageLinks() {
  const links = new Map();
  const dirs = ["packages", "examples"].flatMap((d) =>
    readdirSync(join(root, d)).map((n) => join(root, d, n)),
  );
  dirs.push(join(root, "e2e"));
  for (const dir of dirs) {
    if (!existsSync(join(dir, "package.json"))) continue;
    const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
    if (dir.includes("/packages/")) links.set(pkg.name, dir);
  }
  for (const name of [
    "express",
    "fastify",
    "next",
    "openai",
    "@anthropic-ai/sdk",
    "ioredis",
    "pg",
    "@opentelemetry/api",
    "@opentelemetry/sdk-trace-base",
    "prom-client",
  ]) {
    for (const dir of dirs) {
      const candidate = join(dir, "node_modules", name);
      if (!links.has(name) && existsSync(candidate)) links.set(name, realpathSync(candidate));
    }
  }
  return links;
}
const links = packageLinks();

/** A fresh folder outside the workspace, as a user's project: ESM, packages installed. */
function project() {
  const dir = mkdtempSync(join(tmpdir(), "tokenpool-doc-"));
  writeFileSync(join(dir, "package.json"), '{ "private": true, "type": "module" }\n');
  for (const [name, target] of links) {
    const link = join(dir, "node_modules", name);
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(target, link, "dir");
  }
  return dir;
}

/** Signals a child's whole process group. */
function kill(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

// Whatever happens to this script, its children do not outlive it.
const children = new Set();
process.on("exit", () => {
  for (const child of children) kill(child, "SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"]) process.once(signal, () => process.exit(130));

/** Spawns a process; resolves when it ends, with its output. `onLine` sees each stdout line. */
function run(cmd, args, { cwd, env, onLine = () => {}, timeoutMs = TIMEOUT_MS }) {
  // Its own process group, so that a timeout also ends what a shell block started.
  const child = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, detached: true });
  children.add(child);
  child.on("exit", () => children.delete(child));
  let out = "";
  let partial = "";
  child.stdout.on("data", (chunk) => {
    out += chunk;
    partial += chunk;
    const lines = partial.split("\n");
    partial = lines.pop();
    for (const line of lines) onLine(line, child);
  });
  child.stderr.on("data", (chunk) => {
    out += chunk;
  });
  const timer = setTimeout(() => {
    out += `\n[timed out after ${timeoutMs / 1000} s]`;
    kill(child, "SIGKILL");
  }, timeoutMs);
  const done = new Promise((resolve) =>
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, out });
    }),
  );
  return Object.assign(done, { child });
}

/** Starts a process and resolves with the first stdout line matching `re` (and the process). */
function startUntil(args, re, options) {
  return new Promise((resolve, reject) => {
    const lines = [];
    const proc = run(args[0], args.slice(1), {
      ...options,
      timeoutMs: 24 * 3600_000,
      onLine(line) {
        lines.push(line);
        const m = re.exec(line);
        if (m) resolve({ match: m, lines, proc });
      },
    });
    proc.then((r) => reject(new Error(`exited before ${re}: ${r.out}`)));
  });
}

async function stop(proc) {
  proc.child.kill("SIGTERM");
  await proc;
}

/** The mock upstream of @tokenpool/testing, for every block. */
async function mockUpstream() {
  const cli = join(root, "packages/testing/src/mock-upstream-cli.ts");
  const { match, proc } = await startUntil([...node, cli, "--port", "0"], /^\{.*"url".*\}$/, {
    cwd: root,
  });
  return { url: JSON.parse(match.input).url, proc };
}

/** `tokenpool serve --demo` on a free port in `dir`: its URL, demo key and management key. */
async function demoGateway(env) {
  const dir = project();
  const cli = join(root, "packages/server/src/cli.ts");
  const { lines, proc } = await startUntil(
    [...node, cli, "serve", "--demo", "--port", "0"],
    /^tokenpool listening on (\S+)/,
    { cwd: dir, env },
  );
  const find = (re) => lines.map((l) => re.exec(l)?.[1]).find(Boolean);
  return {
    proc,
    dir,
    env: {
      GW: find(/^tokenpool listening on (\S+)/),
      KEY: find(/^Demo key: (\S+)/),
      MGMT: find(/^Management key.*: (tp-mgmt-\S+)/),
    },
  };
}

/** A redis-server on a free port (for the blocks that use Redis), started at the first need. */
let redis = null;
async function redisUrl() {
  if (!redis) {
    const port = await new Promise((resolve) => {
      const probe = createServer().listen(0, "127.0.0.1", () => {
        const { port } = probe.address();
        probe.close(() => resolve(port));
      });
    });
    const args = ["redis-server", "--port", String(port), "--save", "", "--appendonly", "no"];
    const { proc } = await startUntil(args, /Ready to accept connections/, { cwd: tmpdir() });
    redis = { proc, url: `redis://127.0.0.1:${port}` };
  }
  return redis.url;
}

/**
 * A server of @tokenpool/testing (`startPostgresServer`, `startRedisCluster`) in a process of its
 * own, started at the first need: its URL, and the process to stop.
 */
const services = new Map();
function testingService(name, module, start) {
  if (!services.has(name)) {
    const dir = project();
    writeFileSync(
      join(dir, `${name}.ts`),
      `import { ${start} } from "@tokenpool/testing/${module}";
const server = await ${start}();
console.log(\`url \${server.url}\`);
process.once("SIGTERM", () => void server.stop().then(() => process.exit(0)));
`,
    );
    services.set(
      name,
      startUntil([...node, `${name}.ts`], /^url (\S+)$/, { cwd: dir }).then(({ match, proc }) => ({
        url: match[1],
        proc,
        dir,
      })),
    );
  }
  return services.get(name).then((s) => s.url);
}
const postgresUrl = () => testingService("postgres", "postgres-server", "startPostgresServer");
const redisClusterUrl = () => testingService("redis-cluster", "redis-server", "startRedisCluster");
const REDIS_CLUSTER_PLACEHOLDER = "redis://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002";

const usesGateway = (code) => /127\.0\.0\.1:8317|localhost:8317|\$(GW|KEY|MGMT)\b/.test(code);

/** The block as it runs against `gw`: its URL rewritten, placeholder assignments left out. */
function againstGateway(code, gw) {
  return code
    .replaceAll(/http:\/\/(127\.0\.0\.1|localhost):8317/g, gw.GW)
    .split("\n")
    .filter((line) => !/^\s*(export\s+)?(GW|KEY|MGMT)=\S*\.\.\.\S*\s*(#.*)?$/.test(line))
    .join("\n");
}

// --- running ----------------------------------------------------------------------------------

const SH_PRELUDE = `set -eo pipefail
curl() { command curl -sS --fail-with-body --max-time 30 "$@"; echo; }
tokenpool() { ${node.map((a) => `'${a}'`).join(" ")} '${join(root, "packages/server/src/cli.ts")}' "$@"; }
`;

/** Runs a ts program once; a server (a `usage: ` line) is stopped by SIGTERM after that line. */
async function runProgram(dir, file, env) {
  let server = false;
  const result = await run(node[0], [...node.slice(1), file], {
    cwd: dir,
    env,
    onLine(line, child) {
      if (line.startsWith("usage: ") && !server) {
        server = true;
        child.kill("SIGTERM");
      }
    },
  });
  const clean = result.code === 0 || (server && result.signal === "SIGTERM");
  const key = /^key: (.*)$/m.exec(result.out)?.[1];
  return { ...result, server, clean, key };
}

/** Checks a server's two runs: both clean, both printed the same real key. */
function twoRuns(first, second) {
  if (!first.clean) return `first run failed:\n${first.out}`;
  if (!second.clean) return `second run failed:\n${second.out}`;
  if (!first.key || /null|undefined/.test(first.key)) return `no key: line:\n${first.out}`;
  if (first.key !== second.key)
    return `the second run printed another key (${first.key} then ${second.key}):\n${second.out}`;
  if (/usage: .*(undefined|NaN)/.test(first.out + second.out)) return `no usage read back`;
  return null;
}

/** Drives the route module of a Next.js app written from a document's file blocks. */
const NEXT_DRIVER = `
const lines: string[] = [];
const log = console.log;
console.log = (...args: unknown[]) => { lines.push(args.join(" ")); log(...args); };
const route = await import("./app/api/[...path]/route.ts");
const call = (method: "GET" | "POST", path: string, init: RequestInit = {}) =>
  route[method](new Request(\`http://localhost:3000\${path}\`, { method, ...init }));
const health = await call("GET", "/api/healthz");
if (health.status !== 200) throw new Error(\`healthz: \${health.status}\`);
const key = lines.find((l) => l.startsWith("key: "))?.slice(5);
const answer = await call("POST", "/api/v1/chat/completions", {
  headers: { authorization: \`Bearer \${key}\`, "content-type": "application/json" },
  body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello" }] }),
});
const body = await answer.text();
if (answer.status !== 200) throw new Error(\`chat completion: \${answer.status} \${body}\`);
for (let i = 0; i < 100 && !lines.some((l) => l.startsWith("usage: ")); i++)
  await new Promise((r) => setTimeout(r, 100));
`;

async function main() {
  const args = process.argv.slice(2);
  const files = args.length
    ? args.map((f) => resolve(f))
    : [
        join(root, "README.md"),
        ...readdirSync(join(root, "docs"))
          .filter((f) => f.endsWith(".md"))
          .map((f) => join(root, "docs", f)),
      ];
  const mock = await mockUpstream();
  const baseEnv = {
    TOKENPOOL_SECRET: SECRET,
    TOKENPOOL_NEW_SECRET: NEW_SECRET,
    OPENAI_API_KEY: "sk-mock",
    OPENAI_BASE_URL: mock.url,
    PORT: "0",
  };
  const report = { ran: [], notRun: [], failed: [] };
  const started = Date.now();
  try {
    for (const file of files) {
      const blocks = blocksOf(file);
      const appFiles = [];
      for (const block of blocks) {
        const kind = /^(ts|typescript)$/.test(block.lang)
          ? "ts"
          : /^(sh|bash|shell)$/.test(block.lang)
            ? "sh"
            : null;
        if (!kind) continue;
        if (block.notRun !== undefined) {
          report.notRun.push(`${block.where}  ${block.notRun}`);
          continue;
        }
        if (kind === "ts" && appFilePath(block.code)) {
          appFiles.push(block);
          continue;
        }
        process.stdout.write(`${block.where} (${kind}) ... `);
        const t0 = Date.now();
        const failure = await runBlock(kind, block, baseEnv);
        const took = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
        if (failure) {
          console.log(`FAILED (${took})`);
          report.failed.push(`${block.where}\n${failure}`);
        } else {
          console.log(`ok (${took})`);
          report.ran.push(block.where);
        }
      }
      if (appFiles.length) {
        const where = `${appFiles[0].where} (+${appFiles.length - 1} files)`;
        process.stdout.write(`${where} (Next.js route module) ... `);
        const failure = await runApp(appFiles, baseEnv);
        console.log(failure ? "FAILED" : "ok");
        if (failure) report.failed.push(`${where}\n${failure}`);
        else report.ran.push(...appFiles.map((b) => b.where));
      }
    }
  } finally {
    await stop(mock.proc);
    if (redis) await stop(redis.proc);
    for (const service of services.values()) {
      const { proc, dir } = await service.catch(() => ({}));
      if (proc) await stop(proc);
      if (dir) rmSync(dir, { recursive: true, force: true });
    }
  }
  console.log(`\nnot run (${report.notRun.length}):\n  ${report.notRun.join("\n  ")}`);
  console.log(
    `\n${report.ran.length} blocks ran, ${report.failed.length} failed, ${report.notRun.length} not run (${Math.round((Date.now() - started) / 1000)} s)`,
  );
  for (const f of report.failed) console.log(`\nFAILED ${f}`);
  process.exitCode = report.failed.length ? 1 : 0;
}

async function runBlock(kind, block, baseEnv) {
  const dir = project();
  let gateway = null;
  try {
    let code = block.code;
    let env = baseEnv;
    if (/redis:\/\/127\.0\.0\.1:6379|REDIS_URL/.test(code)) {
      const url = await redisUrl();
      code = code.replaceAll("redis://127.0.0.1:6379", url);
      env = { ...env, REDIS_URL: `${url}/0` };
    }
    if (code.includes(REDIS_CLUSTER_PLACEHOLDER) || /REDIS_CLUSTER_URL/.test(code)) {
      const url = await redisClusterUrl();
      code = code.replaceAll(REDIS_CLUSTER_PLACEHOLDER, url);
      env = { ...env, REDIS_CLUSTER_URL: url };
    }
    if (/DATABASE_URL/.test(code)) env = { ...env, DATABASE_URL: await postgresUrl() };
    if (usesGateway(code)) {
      gateway = await demoGateway(baseEnv);
      env = { ...env, ...gateway.env };
      code = againstGateway(code, gateway.env);
    }
    if (kind === "sh") {
      const r = await run("bash", ["-c", SH_PRELUDE + code], { cwd: dir, env });
      return r.code === 0 ? null : `exit ${r.code ?? r.signal}:\n${r.out}`;
    }
    const name = /^\/\/ ([\w.-]+\.ts)\b/.exec(code)?.[1] ?? "block.ts";
    if (/^const gateway = createGateway\(/m.test(code) && !/listen\(|usage: /.test(code))
      code += "\nawait gateway.ready;\nawait gateway.close();\nprocess.exit(0);\n";
    writeFileSync(join(dir, name), code);
    const first = await runProgram(dir, name, env);
    if (!first.server)
      return first.clean ? null : `exit ${first.code ?? first.signal}:\n${first.out}`;
    return twoRuns(first, await runProgram(dir, name, env));
  } finally {
    if (gateway) {
      await stop(gateway.proc);
      rmSync(gateway.dir, { recursive: true, force: true });
    }
    rmSync(dir, { recursive: true, force: true });
  }
}

async function runApp(appFiles, baseEnv) {
  const dir = project();
  try {
    for (const block of appFiles) {
      const path = join(dir, appFilePath(block.code));
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, block.code);
    }
    writeFileSync(join(dir, "driver.ts"), NEXT_DRIVER);
    const driver = { ...baseEnv, NODE_ENV: "production" };
    const once = async () => {
      const r = await runProgram(dir, "driver.ts", driver);
      return { ...r, clean: r.clean && /^usage: /m.test(r.out) };
    };
    return twoRuns(await once(), await once());
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
