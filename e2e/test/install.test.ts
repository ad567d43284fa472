/**
 * The packages as a user gets them: every public package is built and packed (`pnpm pack`, the
 * tarball `changeset publish` uploads), the tarballs are installed with npm into fresh folders
 * outside the workspace, and there
 *
 * - the README's "As a library" example runs twice against a mock upstream (nothing added twice,
 *   the same key printed and still working, the database intact);
 * - a strict TypeScript consumer of core, store-sqlite, express and client type-checks without
 *   `skipLibCheck` and without `@types/better-sqlite3` / `@types/express` (store-postgres'
 *   consumers add `@types/pg`, as its README says);
 * - the CLIs run through npx: `tokenpool serve --demo --demo-port` serves the official client (and
 *   answers a model nobody serves with a 404 `model_not_found`), `tokenpool-mock-upstream` serves;
 * - `@tokenpool/client` installed alone brings none of the engine (`@tokenpool/core`,
 *   `gpt-tokenizer`, `undici`) and its types stand alone.
 *
 * npm compiles better-sqlite3 from source where no prebuilt binary can be fetched (about 2 minutes
 * on 2 cores): the installs run once, in `beforeAll`, and use npm's cache.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { promisify } from "node:util";
import {
  createMockUpstream,
  DEFAULT_MOCK_REPLY,
  freePort,
  type MockUpstream,
} from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  buildPackages,
  builtIsFresh,
  packPackage,
  publicPackages,
} from "../../scripts/pack-packages.mjs";

const run = promisify(execFile);
const repoRoot = resolve(import.meta.dirname, "../..");
const rootPkg = JSON.parse(readFileSync(join(repoRoot, "package.json"), "utf8"));
/** The dev tools a user adds, at the workspace's own ranges (so that npm's cache serves them). */
const devTools = ["tsx", "typescript", "@types/node"].map(
  (name) => `${name}@${rootPkg.devDependencies[name]}`,
);
/** The types a strict consumer of @tokenpool/store-postgres adds (its README says so), at its range. */
const pgTypes = `@types/pg@${
  JSON.parse(readFileSync(join(repoRoot, "packages/store-postgres/package.json"), "utf8"))
    .devDependencies["@types/pg"]
}`;

const SECRET = "install-test-secret-0123456789abcdef0123456789";
const UPSTREAM_KEY = "sk-upstream-install-test";

/**
 * The environment of npm and of the programs run in the install folders: the test's own minus
 * what pnpm, Vitest and the workspace put there (npm_config_* of the pnpm run, NODE_OPTIONS with
 * the `source` condition), so that nothing of the workspace leaks in.
 */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(npm_|pnpm_|PNPM_|NODE_OPTIONS$|NODE_PATH$|INIT_CWD$|VITEST|TOKENPOOL_)/i.test(k))
      continue;
    env[k] = v;
  }
  // node-gyp compiles better-sqlite3 with every core.
  return { ...env, JOBS: "max", ...extra };
}

/** Runs a command in `cwd`; rejects with its output when it fails. */
async function sh(cwd: string, cmd: string, args: string[], env = cleanEnv()): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { cwd, env, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(" ")} failed in ${cwd}:\n${e.stdout}\n${e.stderr}`);
  }
}

/** A fresh npm project: `package.json` with `"type": "module"`, nothing else. */
function npmProject(dir: string): string {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, "package.json"),
    `${JSON.stringify({ name: "tokenpool-install-check", private: true, type: "module" }, null, 2)}\n`,
  );
  return dir;
}

const npmInstall = (dir: string, specs: string[]) =>
  sh(dir, "npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", ...specs]);

/** Every package name in `npm ls --all --json`'s tree. */
async function installedNames(dir: string): Promise<Set<string>> {
  const tree = JSON.parse(await sh(dir, "npm", ["ls", "--all", "--json"]));
  const names = new Set<string>();
  const walk = (deps: Record<string, { dependencies?: Record<string, unknown> }> = {}) => {
    for (const [name, node] of Object.entries(deps)) {
      names.add(name);
      walk(node.dependencies as never);
    }
  };
  walk(tree.dependencies);
  return names;
}

/** The single ```ts block of README.md's `## As a library` section. */
function readmeLibraryExample(): string {
  const readme = readFileSync(join(repoRoot, "README.md"), "utf8");
  const section = readme.split(/^## /m).find((s) => s.startsWith("As a library\n"));
  if (!section) throw new Error('README.md has no "## As a library" section');
  const blocks = [...section.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => m[1] ?? "");
  if (blocks.length !== 1) {
    throw new Error(`README.md's "As a library" has ${blocks.length} ts code blocks, not one`);
  }
  return blocks[0] as string;
}

/** A running `npx tsx example.ts`: its output lines as they come. */
interface ExampleRun {
  child: ChildProcess;
  lines: string[];
  /** Resolves with the first line starting with `prefix` (rejects when the process ends first). */
  line(prefix: string, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then the exit code and signal. */
  stop(): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Waits until no process of the group `pgid` is left (SIGKILLs it and throws after 20 s). */
async function groupGone(pgid: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(-pgid, 0);
      return true;
    } catch {
      return false;
    }
  };
  for (const deadline = Date.now() + 20_000; alive(); ) {
    if (Date.now() > deadline) {
      process.kill(-pgid, "SIGKILL");
      throw new Error(`example.ts still running 20 s after SIGTERM (process group ${pgid})`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The runs of this file, stopped in afterAll if a failed test left one running. */
const runs: ExampleRun[] = [];

function startExample(
  cwd: string,
  env: Record<string, string>,
  args: string[] = ["tsx", "example.ts"],
): ExampleRun {
  const child = spawn("npx", args, {
    cwd,
    env: cleanEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group (npx → sh → tsx → node): stop() signals it and waits until none is left.
    detached: true,
  });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (l) => {
      lines.push(l);
      for (const w of waiters) w();
    });
  }
  const exampleRun: ExampleRun = {
    child,
    lines,
    line: (prefix, timeoutMs = 90_000) =>
      new Promise((resolveLine, reject) => {
        const check = () => {
          const found = lines.find((l) => l.startsWith(prefix));
          if (found === undefined) return;
          cleanup();
          resolveLine(found);
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`no "${prefix}" line within ${timeoutMs} ms:\n${lines.join("\n")}`));
        }, timeoutMs);
        const onExit = () => {
          check();
          cleanup();
          reject(new Error(`example.ts ended before a "${prefix}" line:\n${lines.join("\n")}`));
        };
        const cleanup = () => {
          clearTimeout(timer);
          waiters.delete(check);
          child.off("exit", onExit);
        };
        waiters.add(check);
        child.once("exit", onExit);
        check();
      }),
    stop: async () => {
      // SIGTERM to the whole group, as a terminal or a service manager sends it: npx does not
      // pass a signal on to the program it runs (it runs it through `sh -c`).
      if (child.exitCode === null && child.signalCode === null) {
        process.kill(-(child.pid as number), "SIGTERM");
      }
      const [code, signal] = await exited;
      await groupGone(child.pid as number);
      return { code, signal };
    },
  };
  runs.push(exampleRun);
  return exampleRun;
}

let base: string;
let app: string;
let clientOnly: string;
let upstream: MockUpstream;

beforeAll(async () => {
  base = mkdtempSync(join(tmpdir(), "tokenpool-install-"));
  // Nothing above the install folders may be a Node project or workspace: npm and TypeScript
  // would otherwise find packages or configuration there.
  expect(resolve(base).startsWith(`${repoRoot}/`)).toBe(false);
  for (let dir = base; ; dir = dirname(dir)) {
    for (const name of ["node_modules", "package.json", "pnpm-workspace.yaml", "tsconfig.json"]) {
      if (dir !== base) expect(existsSync(join(dir, name)), join(dir, name)).toBe(false);
    }
    if (dirname(dir) === dir) break;
  }

  if (!builtIsFresh()) buildPackages({ quiet: true });
  const tarballs = join(base, "tarballs");
  mkdirSync(tarballs);
  const packed = new Map<string, string>(
    publicPackages().map((p) => [p.name, packPackage(p.dir, tarballs)]),
  );

  // One folder for the example and the strict consumer: every tarball (peers such as express,
  // better-sqlite3 and pg come along, as npm installs peer dependencies), plus tsx, typescript,
  // @types/node and @types/pg (store-postgres' options name pg's types): no
  // @types/better-sqlite3, no @types/express.
  app = npmProject(join(base, "app"));
  await npmInstall(app, [...packed.values(), ...devTools, pgTypes]);

  // The client alone, in a folder of its own.
  clientOnly = npmProject(join(base, "client-only"));
  await npmInstall(clientOnly, [packed.get("@tokenpool/client") as string]);

  upstream = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
}, 40 * 60_000);

afterAll(async () => {
  await Promise.all(runs.map((r) => r.stop()));
  await upstream?.close();
  if (base) rmSync(base, { recursive: true, force: true });
});

describe("the packed packages installed with npm", () => {
  it("run the README's library example twice: nothing added twice, the same key keeps working", async () => {
    writeFileSync(join(app, "example.ts"), readmeLibraryExample());
    const port = await freePort();
    const env = {
      TOKENPOOL_SECRET: SECRET,
      OPENAI_API_KEY: UPSTREAM_KEY,
      OPENAI_BASE_URL: upstream.url,
      PORT: String(port),
    };
    const chats = () => upstream.requests.filter((r) => r.path === "/v1/chat/completions").length;

    const first = startExample(app, env);
    const firstKey = await first.line("key: ");
    await first.line("usage: ");
    expect(chats()).toBe(1);
    const firstExit = await first.stop();
    expect([0, null], first.lines.join("\n")).toContain(firstExit.code);
    if (firstExit.code === null) expect(firstExit.signal).toBe("SIGTERM");

    const second = startExample(app, env);
    try {
      expect(await second.line("key: ")).toBe(firstKey);
      await second.line("usage: ");
      expect(chats()).toBe(2);
      // The key of the first run, through the official client, on the second run's server.
      const key = firstKey.slice("key: ".length).trim();
      const openai = new OpenAI({
        apiKey: key,
        baseURL: `http://127.0.0.1:${port}/v1`,
        maxRetries: 0,
      });
      const reply = await openai.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "Hello again" }],
      });
      expect(reply.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    } finally {
      const exit = await second.stop();
      expect([0, null], second.lines.join("\n")).toContain(exit.code);
    }

    // The database, read back with the installed packages: intact, one credential, one key.
    writeFileSync(
      join(app, "inspect.mjs"),
      `import Database from "better-sqlite3";
import { createGateway } from "@tokenpool/core";
import { sqliteStore } from "@tokenpool/store-sqlite";
const db = new Database("./data/tokenpool.db", { readonly: true });
const integrity = db.pragma("integrity_check", { simple: true });
db.close();
const gateway = createGateway({ store: sqliteStore({ filename: "./data/tokenpool.db" }), secret: process.env.TOKENPOOL_SECRET });
await gateway.ready;
const credentials = gateway.credentials.list().map((c) => c.provider);
const keys = (await gateway.keys.list({ size: 100 })).items.map((k) => k.name);
await gateway.close();
console.log(JSON.stringify({ integrity, credentials, keys }));
`,
    );
    const state = JSON.parse(await sh(app, "node", ["inspect.mjs"], cleanEnv(env)));
    expect(state).toEqual({ integrity: "ok", credentials: ["openai"], keys: [expect.any(String)] });
  });

  it("run the CLIs as a user does: npx tokenpool serve --demo --demo-port, npx tokenpool-mock-upstream", async () => {
    const [port, demoPort] = [await freePort(), await freePort()];
    const server = startExample(app, { TOKENPOOL_SECRET: SECRET }, [
      "tokenpool",
      "serve",
      "--demo",
      "--port",
      String(port),
      "--demo-port",
      String(demoPort),
      "--store",
      "sqlite:./cli-data/tokenpool.db",
    ]);
    try {
      expect(await server.line("Demo upstream: ")).toContain(`http://127.0.0.1:${demoPort}/`);
      const demoKey = (await server.line("Demo key: ")).slice("Demo key: ".length).trim();
      await server.line("tokenpool listening on ");
      const openai = new OpenAI({
        apiKey: demoKey,
        baseURL: `http://127.0.0.1:${port}/v1`,
        maxRetries: 0,
      });
      const reply = await openai.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "Hello" }],
      });
      expect(reply.choices[0]?.message.content).toBeTruthy();
      // A model nobody serves: a 404 the client does not retry, not a 503.
      await expect(
        openai.chat.completions.create({ model: "no-such-model", messages: [] }),
      ).rejects.toMatchObject({ status: 404, code: "model_not_found" });
      // The console ships built in @tokenpool/dashboard's tarball and is on by default.
      const page = await fetch(`http://127.0.0.1:${port}/dashboard/`);
      expect(page.status).toBe(200);
      const script = (await page.text()).match(/src="\.\/(assets\/[^"]+\.js)"/)?.[1];
      expect(script).toBeDefined();
      expect((await fetch(`http://127.0.0.1:${port}/dashboard/${script}`)).status).toBe(200);
    } finally {
      const exit = await server.stop();
      expect([0, null], server.lines.join("\n")).toContain(exit.code);
    }

    const mock = startExample(app, {}, ["tokenpool-mock-upstream", "--port", "0"]);
    try {
      const { url } = JSON.parse(await mock.line("{")) as { url: string };
      const res = await fetch(`${url}/models`);
      expect(res.status).toBe(200);
    } finally {
      await mock.stop();
    }
  });

  it("type-check a strict TypeScript consumer of every package but testing without skipLibCheck, @types/better-sqlite3 or @types/express", async () => {
    expect(existsSync(join(app, "node_modules/@types/better-sqlite3"))).toBe(false);
    expect(existsSync(join(app, "node_modules/@types/express"))).toBe(false);
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          lib: ["ES2023"],
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          types: ["node"],
        },
        files: ["consumer.ts"],
      }),
    );
    writeFileSync(
      join(app, "consumer.ts"),
      `import { createServer } from "node:http";
import { createClient, isTokenpoolError, type ManagementConfigView, type TokenView } from "@tokenpool/client";
import { createGateway, type Gateway } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { dashboard } from "@tokenpool/dashboard";
import { tokenpoolErrorHandler, tokenpoolRouter } from "@tokenpool/express";
import { tokenpoolPlugin } from "@tokenpool/fastify";
import { getGateway, toNextRouteHandlers } from "@tokenpool/next";
import * as server from "@tokenpool/server";
import { fileStore } from "@tokenpool/store-file";
import { postgresStore } from "@tokenpool/store-postgres";
import { redisStore } from "@tokenpool/store-redis";
import { sqliteStore } from "@tokenpool/store-sqlite";

// The other packages' declarations are checked too (skipLibCheck is off).
const others: unknown[] = [tokenpoolPlugin, getGateway, toNextRouteHandlers, server, fileStore, redisStore, postgresStore];

const gateway: Gateway = createGateway({
  store: sqliteStore({ filename: "./data/consumer.db" }),
  secret: process.env.TOKENPOOL_SECRET,
  dialects: [dashboard({ path: "/console" })],
});
await gateway.ready;
const { key } = await gateway.keys.create({ name: "consumer", remainQuota: 500_000 });
createServer(toNodeHandler(gateway));

const router = tokenpoolRouter(gateway, { clientIp: (req) => req.ip ?? req.socket.remoteAddress });
const onError = tokenpoolErrorHandler(gateway);
const handlers: Function[] = [router, onError];

const client = createClient({ baseUrl: "http://127.0.0.1:8317", managementKey: "mgmt" });
const token: TokenView = await client.tokens.create({ name: "app", model_limits: "gpt-4o-mini" });
await client.tokens.update({ id: token.id, model_limits: token.model_limits });
const config: ManagementConfigView = await client.management.config();
const baseUrls: string[] = config["claude-api-key"].map((item) => item["base-url"]);
try {
  await client.proxy(key).chat({ model: "gpt-4o-mini", messages: [] });
} catch (e) {
  if (isTokenpoolError(e)) console.log(e.status);
}
console.log(handlers.length, baseUrls, others.length);
`,
    );
    await sh(app, "npx", ["tsc", "-p", "tsconfig.json"]);
  });

  it("@tokenpool/client alone brings neither the engine nor its dependencies, and its types stand alone", async () => {
    const names = await installedNames(clientOnly);
    expect(names).toContain("@tokenpool/client");
    for (const engine of ["@tokenpool/core", "gpt-tokenizer", "undici"]) {
      expect(names, engine).not.toContain(engine);
      expect(existsSync(join(clientOnly, "node_modules", engine)), engine).toBe(false);
    }

    // Its .d.ts for a strict consumer, with no @tokenpool/core anywhere to resolve.
    await npmInstall(
      clientOnly,
      devTools.filter((t) => !t.startsWith("tsx@")),
    );
    expect(existsSync(join(clientOnly, "node_modules/@tokenpool/core"))).toBe(false);
    writeFileSync(
      join(clientOnly, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          lib: ["ES2023"],
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          types: ["node"],
        },
        files: ["consumer.ts"],
      }),
    );
    writeFileSync(
      join(clientOnly, "consumer.ts"),
      `import { createClient, type ConfigLists, type TokenView } from "@tokenpool/client";

const client = createClient({ baseUrl: "http://127.0.0.1:8317", managementKey: "mgmt" });
const token: TokenView = await client.tokens.get(1);
const limits: string = token.model_limits;
await client.tokens.update({ id: token.id, model_limits: limits });
const items: ConfigLists["openai-compatibility"] = await client.management.openaiCompatibility.get();
console.log(items.map((i) => i.name));
`,
    );
    await sh(clientOnly, "npx", ["tsc", "-p", "tsconfig.json"]);
  });
});
