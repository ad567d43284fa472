import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "@tokenpool/core";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing/mock-upstream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { type RunningServer, startServer } from "../src/serve.js";

const SECRET = "config-sync-secret-0123456789-0123456789";
const MGMT_KEY = "config-sync-management-key-0123";
const BCRYPT = /^\$2[aby]\$10\$/;

let dir: string;
let mock: MockUpstream;
const running: RunningServer[] = [];
let errors: string[] = [];
const logger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error: (m) => void errors.push(m),
};

beforeAll(async () => {
  process.env.TOKENPOOL_SECRET = SECRET;
  mock = await createMockUpstream({ apiKeys: ["upstream-key"] });
});
afterAll(async () => {
  delete process.env.TOKENPOOL_SECRET;
  await mock.close();
});
afterEach(async () => {
  for (const s of running.splice(0)) await s.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
  errors = [];
});

function setup(yaml: string): { configFile: string; store: string } {
  dir = mkdtempSync(join(tmpdir(), "tokenpool-config-sync-"));
  const configFile = join(dir, "config.yaml");
  writeFileSync(configFile, yaml);
  return { configFile, store: `sqlite:${join(dir, "data", "tokenpool.db")}` };
}

async function start(configFile: string, store: string): Promise<RunningServer> {
  const s = await startServer({ port: 0, store, config: configFile, logger, print: () => {} });
  running.push(s);
  return s;
}

async function stop(s: RunningServer): Promise<void> {
  running.splice(running.indexOf(s), 1);
  await s.close();
}

async function mgmt(s: RunningServer, method: string, path: string, body?: unknown) {
  const res = await fetch(`${s.url}/v0/management${path}`, {
    method,
    headers: { authorization: `Bearer ${MGMT_KEY}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function waitFor<T>(fn: () => T | Promise<T>, ok: (v: T) => boolean, ms = 5_000) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

const readYaml = (file: string) => parse(readFileSync(file, "utf8")) as Record<string, unknown>;

const BASE = `# tokenpool test configuration
port: 8317 # the CLI flag wins in tests
remote-management:
  allow-remote: false
  # plaintext here; the server replaces it with its bcrypt hash
  secret-key: "${MGMT_KEY}"
# retries of a failed upstream request
request-retry: 1
debug: false
`;

describe("configuration file sync", () => {
  it("hashes a plaintext secret-key at start-up and writes it back, keeping comments", async () => {
    const { configFile, store } = setup(BASE);
    const s = await start(configFile, store);
    const text = readFileSync(configFile, "utf8");
    const file = readYaml(configFile);
    const hash = (file["remote-management"] as Record<string, string>)["secret-key"]!;
    expect(hash).toMatch(BCRYPT);
    expect(text).not.toContain(MGMT_KEY);
    expect(text).toContain("# tokenpool test configuration");
    expect(text).toContain("# the CLI flag wins in tests");
    expect(text).toContain("# plaintext here; the server replaces it with its bcrypt hash");
    expect(file.port).toBe(8317);
    expect((await mgmt(s, "GET", "/request-retry")).body).toEqual({ "request-retry": 1 });

    // A restart with the hashed file keeps the same key working.
    await stop(s);
    const again = await start(configFile, store);
    expect((await mgmt(again, "GET", "/debug")).status).toBe(200);
    expect(readFileSync(configFile, "utf8")).toBe(text);
  });

  it("writes changes made through the management API back to the file", async () => {
    const { configFile, store } = setup(BASE);
    const s = await start(configFile, store);
    expect((await mgmt(s, "PUT", "/request-retry", { value: 5 })).status).toBe(200);
    expect((await mgmt(s, "PUT", "/api-keys", ["k1", "k2"])).status).toBe(200);
    const claude = { "api-key": "sk-ant-1", "base-url": "" };
    expect((await mgmt(s, "PUT", "/claude-api-key", [claude])).status).toBe(200);
    const file = await waitFor(
      () => readYaml(configFile),
      (f) => Array.isArray(f["claude-api-key"]) && (f["claude-api-key"] as unknown[]).length === 1,
    );
    expect(file["request-retry"]).toBe(5);
    expect(file["api-keys"]).toEqual(["k1", "k2"]);
    expect(file["claude-api-key"]).toEqual([claude]);
    expect(file.port).toBe(8317);
    expect((file["remote-management"] as Record<string, unknown>)["allow-remote"]).toBe(false);
    expect(readFileSync(configFile, "utf8")).toContain("# retries of a failed upstream request");
    // The file now mirrors GET /config.
    const view = (await mgmt(s, "GET", "/config")).body;
    for (const [k, v] of Object.entries(view)) expect(file[k], k).toEqual(v);
    expect(errors).toEqual([]);
  });

  it("picks up a hand edit without a restart", async () => {
    const { configFile, store } = setup(BASE);
    const s = await start(configFile, store);
    await mgmt(s, "PUT", "/api-keys", ["client-key-1"]);
    await waitFor(
      () => readYaml(configFile)["api-keys"],
      (v) => Array.isArray(v),
    );
    const text = readFileSync(configFile, "utf8").replace("request-retry: 1", "request-retry: 7");
    writeFileSync(
      configFile,
      `${text.replace(/^openai-compatibility:.*$/m, "")}
openai-compatibility:
  - name: local-mock # added by hand
    base-url: ${mock.url}
    api-keys: [upstream-key]
    models:
      - name: gpt-4o-mini
        alias: hand-model
`,
    );
    const view = await waitFor(
      async () => (await mgmt(s, "GET", "/config")).body,
      (b) => b["request-retry"] === 7 && (b["openai-compatibility"] as unknown[]).length === 1,
    );
    expect(view["request-retry"]).toBe(7);
    expect(view["openai-compatibility"]).toEqual([
      {
        name: "local-mock",
        "base-url": mock.url,
        "api-keys": ["upstream-key"],
        "api-key-entries": [{ "api-key": "upstream-key", "proxy-url": "" }],
        models: [{ name: "gpt-4o-mini", alias: "hand-model" }],
      },
    ]);
    const res = await fetch(`${s.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer client-key-1", "content-type": "application/json" },
      body: JSON.stringify({ model: "hand-model", messages: [{ role: "user", content: "hi" }] }),
    });
    expect(res.status).toBe(200);
    // The hand-edited file is applied, not rewritten.
    await new Promise((r) => setTimeout(r, 400));
    expect(readFileSync(configFile, "utf8")).toContain("# added by hand");
    expect(errors).toEqual([]);
  });

  it("keeps serving the last good state when the file is broken, and never overwrites it", async () => {
    const { configFile, store } = setup(BASE);
    const s = await start(configFile, store);
    const broken = `${readFileSync(configFile, "utf8").replace("request-retry: 1", "request-retry: 9")}\napi-keys: [unclosed\n`;
    writeFileSync(configFile, broken);
    await waitFor(
      () => errors,
      (e) => e.length > 0,
    );
    expect(errors[0]).toMatch(/not valid YAML.*keeping the last good configuration/s);
    expect((await mgmt(s, "GET", "/request-retry")).body).toEqual({ "request-retry": 1 });
    // A change through the API while the file is broken is kept in the store only.
    expect((await mgmt(s, "PUT", "/request-log", { value: true })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 400));
    expect(readFileSync(configFile, "utf8")).toBe(broken);
    expect((await mgmt(s, "GET", "/request-log")).body).toEqual({ "request-log": true });

    // An invalid value is refused the same way.
    writeFileSync(configFile, BASE.replace("request-retry: 1", 'request-retry: "many"'));
    await waitFor(
      () => errors,
      (e) => e.length > 1,
    );
    expect(errors[1]).toMatch(/`request-retry` must be an integer/);
    expect((await mgmt(s, "GET", "/request-retry")).body).toEqual({ "request-retry": 1 });

    // Fixed: applied, and the API change made meanwhile reaches the file.
    writeFileSync(configFile, BASE.replace("request-retry: 1", "request-retry: 4"));
    await waitFor(
      async () => (await mgmt(s, "GET", "/request-retry")).body,
      (b) => b["request-retry"] === 4,
    );
    const file = await waitFor(
      () => readYaml(configFile),
      (f) => f["request-log"] === true,
    );
    expect(file["request-log"]).toBe(true);
    expect(file["request-retry"]).toBe(4);
  });

  it("keeps every change made through the API across a restart", async () => {
    const { configFile, store } = setup(BASE);
    const s = await start(configFile, store);
    await mgmt(s, "PUT", "/request-retry", { value: 3 });
    await mgmt(s, "PUT", "/debug", { value: true });
    await mgmt(s, "PUT", "/proxy-url", { value: "socks5://127.0.0.1:1080" });
    await mgmt(s, "PUT", "/quota-exceeded/switch-project", { value: true });
    await mgmt(s, "PUT", "/allow-localhost-unauthenticated", { value: true });
    await mgmt(s, "PUT", "/api-keys", ["a1", "a2"]);
    await mgmt(s, "PUT", "/generative-language-api-key", ["AIza-1"]);
    await mgmt(s, "PUT", "/codex-api-key", [{ "api-key": "sk-codex", "base-url": "" }]);
    await mgmt(s, "PUT", "/openai-compatibility", [
      { name: "or", "base-url": mock.url, "api-keys": ["upstream-key"], models: [] },
    ]);
    await mgmt(s, "PATCH", "/api-keys", { old: "a2", new: "a3" });
    const before = (await mgmt(s, "GET", "/config")).body;
    // Closing right after the last change still writes it (the pending write is flushed).
    await stop(s);
    expect(readYaml(configFile)["api-keys"]).toEqual(["a1", "a3"]);

    const again = await start(configFile, store);
    expect((await mgmt(again, "GET", "/config")).body).toEqual(before);
    await stop(again);

    // The file alone carries everything: a fresh store reproduces the same configuration.
    const fresh = await start(configFile, "memory");
    expect((await mgmt(fresh, "GET", "/config")).body).toEqual(before);
    expect(errors).toEqual([]);
  });
});
