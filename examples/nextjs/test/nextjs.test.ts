import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { runEndToEndSuite } from "@tokenpool/e2e";
import { DEFAULT_MOCK_REPLY } from "@tokenpool/testing/mock-upstream";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const appDir = join(dirname(fileURLToPath(import.meta.url)), "..");
const nextBin = join(
  dirname(createRequire(join(appDir, "package.json")).resolve("next/package.json")),
  "dist/bin/next",
);

let child: ChildProcess;
let log = "";
let dataDir: string;
let baseURL: string;
let apiKey: string;
let root: string;
let managementKey: string;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** Polls until the route answers; the first request creates the gateway (and sets up the demo). */
async function waitUntilReady(url: string, deadline: number): Promise<void> {
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`next start exited early:\n${log}`);
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
      if (res.status === 200) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`next start did not answer in time:\n${log}`);
}

/** Runs `next <args>` in the app; the output goes to `log`. */
function next(args: string[], env: Record<string, string>): ChildProcess {
  const proc = spawn(process.execPath, [nextBin, ...args], {
    cwd: appDir,
    env: {
      ...process.env,
      NODE_ENV: "production",
      NEXT_TELEMETRY_DISABLED: "1",
      // Its own output directory, so that a `pnpm dev` running beside it is not disturbed.
      NEXT_DIST_DIR: ".next/test",
      ...env,
    },
    // Its own process group, so that the server and any worker stop together.
    detached: true,
    stdio: ["ignore", "pipe", "pipe"],
  });
  proc.stdout!.on("data", (d: Buffer) => {
    log += d.toString();
  });
  proc.stderr!.on("data", (d: Buffer) => {
    log += d.toString();
  });
  return proc;
}

beforeAll(async () => {
  // The production build, as `pnpm start` does it (about a minute on two busy cores).
  child = next(["build", "--webpack"], {});
  const code = await new Promise((r) => child.once("exit", r));
  if (code !== 0) throw new Error(`next build failed:\n${log}`);

  const port = await freePort();
  dataDir = mkdtempSync(join(tmpdir(), "tokenpool-nextjs-"));
  child = next(["start", "-p", String(port)], {
    TOKENPOOL_DEMO: "1",
    TOKENPOOL_DATA_DIR: dataDir,
    // The shared suite uses the management key on /api/token/, which (like /api/v0/management)
    // only loopback clients may do. A route handler sees no peer address; `next start` puts the
    // peer (127.0.0.1 here) in X-Forwarded-For, which this makes the app believe.
    TOKENPOOL_TRUST_PROXY: "1",
  });
  const origin = `http://127.0.0.1:${port}`;
  await waitUntilReady(`${origin}/api/healthz`, Date.now() + 60_000);
  const key = /\[tokenpool demo\] API key: (\S+)/.exec(log)?.[1];
  if (!key) throw new Error(`no demo key in the server log:\n${log}`);
  apiKey = key;
  baseURL = `${origin}/api/v1`;
  root = `${origin}/api`;
  const mgmt = /Management key \(shown once, keep it\): (\S+)/.exec(log)?.[1];
  if (!mgmt) throw new Error(`no management key in the server log:\n${log}`);
  managementKey = mgmt;
});

afterAll(async () => {
  if (child?.pid && child.exitCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(-child.pid, "SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
    if (child.exitCode === null) process.kill(-child.pid, "SIGKILL");
  }
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

// The shared end-to-end suite first: the last test below shuts the server down.
runEndToEndSuite("examples/nextjs", () => ({ root, managementKey }));

describe("examples/nextjs", () => {
  it("answers a chat completion through /api/v1 with the openai client", async () => {
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "Hello from Next.js" }],
    });
    expect(completion.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);
  });

  it("streams a chat completion chunk by chunk through Next", async () => {
    const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "Stream please" }],
      stream: true,
    });
    const arrivals: number[] = [];
    let text = "";
    for await (const chunk of stream) {
      const delta = chunk.choices[0]?.delta?.content;
      if (delta) {
        arrivals.push(Date.now());
        text += delta;
      }
    }
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    // The demo upstream sends a chunk every 20 ms: a buffered answer would arrive at once.
    expect(arrivals.length).toBeGreaterThan(5);
    expect(arrivals.at(-1)! - arrivals[0]!).toBeGreaterThan(100);
  });

  it("rejects a request without a valid key", async () => {
    const client = new OpenAI({ baseURL, apiKey: "sk-not-a-key", maxRetries: 0 });
    await expect(
      client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "hi" }],
      }),
    ).rejects.toMatchObject({ status: 401 });
  });

  it("closes the gateway when Next shuts down on SIGTERM", async () => {
    const exited = new Promise((r) => child.once("exit", r));
    process.kill(-child.pid!, "SIGTERM");
    await exited;
    // A closed better-sqlite3 database checkpoints and removes its write-ahead log.
    expect(existsSync(join(dataDir, "tokenpool.db"))).toBe(true);
    expect(existsSync(join(dataDir, "tokenpool.db-wal"))).toBe(false);
  });
});
