/**
 * Walks the management seed (CLIProxyAPI's management API, copied to
 * `fixtures/cliproxyapi-management-seed.md`) from top to bottom: every curl example, in seed
 * order, is sent to a real server (the real gateway behind `toNodeHandler`, on port 0) and gets
 * the documented response. The curl lines are written below as they appear in the seed (line
 * continuations joined); a first test checks that the table holds exactly the seed's examples,
 * in order, so that the walk cannot drift from the contract.
 */
import { mkdtempSync, openAsBlob, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { createMockOAuth, type MockOAuthServer } from "@tokenpool/testing";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SEED = readFileSync(
  new URL("./fixtures/cliproxyapi-management-seed.md", import.meta.url),
  "utf8",
);

/** The curl examples of the seed, in order, continuation lines joined, whitespace collapsed. */
function seedCurls(text: string): string[] {
  const out: string[] = [];
  const re = /```bash\n([\s\S]*?)```/g;
  for (let m = re.exec(text); m; m = re.exec(text))
    out.push((m[1] ?? "").replace(/\\\n/g, " ").replace(/\s+/g, " ").trim());
  return out;
}

/** Splits a shell command line (single and double quotes, no escapes: all the seed needs). */
function shellWords(line: string): string[] {
  const words: string[] = [];
  const re = /'([^']*)'|"([^"]*)"|(\S+)/g;
  for (let m = re.exec(line); m; m = re.exec(line)) words.push(m[1] ?? m[2] ?? m[3] ?? "");
  return words;
}

interface Sent {
  status: number;
  headers: Headers;
  text: string;
  body: unknown;
}

/** Runs a curl command line as curl would send it: -X, -H, -d (@file), -F (file=@path), -OJ. */
async function curl(line: string): Promise<Sent> {
  const words = shellWords(line);
  expect(words[0]).toBe("curl");
  let method: string | undefined;
  let url = "";
  const headers: Record<string, string> = {};
  let body: string | FormData | undefined;
  for (let i = 1; i < words.length; i++) {
    const w = words[i] as string;
    const next = () => words[++i] as string;
    if (w === "-X") method = next();
    else if (w === "-H") {
      const h = next();
      const at = h.indexOf(":");
      headers[h.slice(0, at).trim().toLowerCase()] = h.slice(at + 1).trim();
    } else if (w === "-d") {
      const d = next();
      body = d.startsWith("@") ? readFileSync(d.slice(1), "utf8") : d;
      headers["content-type"] ??= "application/x-www-form-urlencoded";
    } else if (w === "-F") {
      const [field, value] = next().split("=", 2) as [string, string];
      const form = body instanceof FormData ? body : new FormData();
      const path = value.slice(1);
      form.append(field, await openAsBlob(path), basename(path));
      body = form;
    } else if (w === "-OJ") {
      // saves the body under the server's file name: the test reads it from the reply
    } else if (w.startsWith("-")) throw new Error(`unsupported curl flag ${w}`);
    else url = w;
  }
  const res = await fetch(url, {
    method: method ?? (body === undefined ? "GET" : "POST"),
    headers,
    ...(body === undefined ? {} : { body }),
  });
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  return { status: res.status, headers: res.headers, text, body: parsed };
}

let oauth: MockOAuthServer;
let gateway: Gateway;
let server: Server;
let origin: string;
let key: string;
let dir: string;
let acc1: string;
/** The state of the last login started (for `<STATE_FROM_AUTH_URL>`). */
let lastState = "";
let lastUserCode = "";

const authFile = (email: string) =>
  JSON.stringify({ type: "claude", access_token: "at", refresh_token: "rt", email });

beforeAll(async () => {
  oauth = await createMockOAuth({ email: "qwen@example.com", deviceInterval: 0.02 });
  dir = mkdtempSync(join(tmpdir(), "seed-walk-"));
  acc1 = join(dir, "acc1.json");
  writeFileSync(acc1, authFile("acc1@example.com"));
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, res) => res.end();
  server = createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  gateway = createGateway({
    store: memoryStore(),
    secret: "seed-walk-secret-0123456789-0123456789-abcdef",
    logger: false,
    oauth: {
      scanIntervalMs: 0,
      providers: { qwen: { deviceCodeUrl: oauth.deviceCodeUrl, tokenUrl: oauth.url } },
    },
  });
  await gateway.ready;
  key = await gateway.management.generateKey();
  handler = toNodeHandler(gateway);
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r));
  await gateway?.close();
  await oauth?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Substitutes the seed's placeholders. */
const fill = (line: string) =>
  line
    .replaceAll("<MANAGEMENT_KEY>", key)
    .replaceAll("http://localhost:8317", origin)
    .replaceAll("/path/to/acc1.json", acc1)
    .replaceAll("<PROJECT_ID>", "my-project")
    .replaceAll("<STATE_FROM_AUTH_URL>", lastState);

const mgmt = (path: string, init: RequestInit = {}) =>
  fetch(`${origin}/v0/management${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${key}`,
      "content-type": "application/json",
      ...(init.headers as Record<string, string>),
    },
  });

const ok = { status: "ok" };
const listed = (name: string, items: unknown) => async () =>
  expect(await (await mgmt(`/${name}`)).json()).toEqual({ [name]: items });
const upload = (name: string, email: string) => async () => {
  const res = await mgmt(`/auth-files?name=${name}`, { method: "POST", body: authFile(email) });
  expect(res.status).toBe(200);
};

/** One curl example of the seed: the command (as in the seed) and its documented response. */
interface Example {
  curl: string;
  /** Puts the server in the state the example assumes (the seed's examples are independent). */
  before?: () => Promise<void>;
  /** The documented body (`toEqual`, asymmetric matchers allowed). @default { status: "ok" } */
  body?: unknown;
  /** @default 200 */
  status?: number;
  /** Further checks of the reply. */
  check?: (res: Sent) => void | Promise<void>;
  /** Checks after the example (e.g. the list after a PUT). */
  after?: () => Promise<void>;
}

const EXAMPLES: Example[] = [
  // ### Config
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/config",
    body: expect.objectContaining({
      debug: expect.any(Boolean),
      "proxy-url": expect.any(String),
      "api-keys": expect.any(Array),
      "quota-exceeded": { "switch-project": true, "switch-preview-model": true },
      "generative-language-api-key": expect.any(Array),
      "request-log": expect.any(Boolean),
      "request-retry": 3,
      "claude-api-key": expect.any(Array),
      "codex-api-key": expect.any(Array),
      "openai-compatibility": expect.any(Array),
      "allow-localhost-unauthenticated": expect.any(Boolean),
    }),
  },
  // ### Debug
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/debug",
    body: { debug: false },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"value":true}' http://localhost:8317/v0/management/debug`,
    after: async () => expect(await (await mgmt("/debug")).json()).toEqual({ debug: true }),
  },
  // ### 强制 GPT-5 Codex
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/force-gpt-5-codex",
    body: { "gpt-5-codex": false },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"value":true}' http://localhost:8317/v0/management/force-gpt-5-codex`,
  },
  // ### 代理服务器 URL
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/proxy-url",
    body: { "proxy-url": expect.any(String) },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"value":"socks5://user:pass@127.0.0.1:1080/"}' http://localhost:8317/v0/management/proxy-url`,
    after: async () =>
      expect(await (await mgmt("/proxy-url")).json()).toEqual({
        "proxy-url": "socks5://user:pass@127.0.0.1:1080/",
      }),
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"value":"http://127.0.0.1:8080"}' http://localhost:8317/v0/management/proxy-url`,
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE http://localhost:8317/v0/management/proxy-url",
    after: async () => expect(await (await mgmt("/proxy-url")).json()).toEqual({ "proxy-url": "" }),
  },
  // ### 超出配额行为
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/quota-exceeded/switch-project",
    body: { "switch-project": true },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"value":false}' http://localhost:8317/v0/management/quota-exceeded/switch-project`,
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/quota-exceeded/switch-preview-model",
    body: { "switch-preview-model": true },
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"value":true}' http://localhost:8317/v0/management/quota-exceeded/switch-preview-model`,
  },
  // ### API Keys(代理服务认证)
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/api-keys",
    body: { "api-keys": expect.any(Array) },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '["k1","k2","k3"]' http://localhost:8317/v0/management/api-keys`,
    after: listed("api-keys", ["k1", "k2", "k3"]),
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"old":"k2","new":"k2b"}' http://localhost:8317/v0/management/api-keys`,
    after: listed("api-keys", ["k1", "k2b", "k3"]),
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"index":0,"value":"k1b"}' http://localhost:8317/v0/management/api-keys`,
    after: listed("api-keys", ["k1b", "k2b", "k3"]),
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/api-keys?value=k1'",
    before: async () => {
      await mgmt("/api-keys", { method: "PUT", body: '["k1","k2","k3"]' });
    },
    after: listed("api-keys", ["k2", "k3"]),
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/api-keys?index=0'",
    after: listed("api-keys", ["k3"]),
  },
  // ### Gemini API Key(生成式语言)
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/generative-language-api-key",
    body: { "generative-language-api-key": expect.any(Array) },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '["AIzaSy-1","AIzaSy-2"]' http://localhost:8317/v0/management/generative-language-api-key`,
    after: listed("generative-language-api-key", ["AIzaSy-1", "AIzaSy-2"]),
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"old":"AIzaSy-1","new":"AIzaSy-1b"}' http://localhost:8317/v0/management/generative-language-api-key`,
    after: listed("generative-language-api-key", ["AIzaSy-1b", "AIzaSy-2"]),
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/generative-language-api-key?value=AIzaSy-2'",
    after: listed("generative-language-api-key", ["AIzaSy-1b"]),
  },
  // ### Codex API KEY(对象数组)
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/codex-api-key",
    body: { "codex-api-key": expect.any(Array) },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '[{"api-key":"sk-a"},{"api-key":"sk-b","base-url":"https://c.example.com"}]' http://localhost:8317/v0/management/codex-api-key`,
    after: listed("codex-api-key", [
      { "api-key": "sk-a", "base-url": "" },
      { "api-key": "sk-b", "base-url": "https://c.example.com" },
    ]),
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"index":1,"value":{"api-key":"sk-b2","base-url":"https://c.example.com"}}' http://localhost:8317/v0/management/codex-api-key`,
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"match":"sk-a","value":{"api-key":"sk-a","base-url":""}}' http://localhost:8317/v0/management/codex-api-key`,
    after: listed("codex-api-key", [
      { "api-key": "sk-a", "base-url": "" },
      { "api-key": "sk-b2", "base-url": "https://c.example.com" },
    ]),
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/codex-api-key?api-key=sk-b2'",
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/codex-api-key?index=0'",
    after: listed("codex-api-key", []),
  },
  // ### 请求重试次数
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/request-retry",
    body: { "request-retry": 3 },
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"value":5}' http://localhost:8317/v0/management/request-retry`,
    after: async () =>
      expect(await (await mgmt("/request-retry")).json()).toEqual({ "request-retry": 5 }),
  },
  // ### 请求日志开关
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/request-log",
    body: { "request-log": false },
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"value":true}' http://localhost:8317/v0/management/request-log`,
  },
  // ### 允许本地未认证访问
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/allow-localhost-unauthenticated",
    body: { "allow-localhost-unauthenticated": false },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"value":true}' http://localhost:8317/v0/management/allow-localhost-unauthenticated`,
  },
  // ### Claude API KEY(对象数组)
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/claude-api-key",
    body: { "claude-api-key": expect.any(Array) },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '[{"api-key":"sk-a"},{"api-key":"sk-b","base-url":"https://c.example.com"}]' http://localhost:8317/v0/management/claude-api-key`,
    after: listed("claude-api-key", [
      { "api-key": "sk-a", "base-url": "" },
      { "api-key": "sk-b", "base-url": "https://c.example.com" },
    ]),
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"index":1,"value":{"api-key":"sk-b2","base-url":"https://c.example.com"}}' http://localhost:8317/v0/management/claude-api-key`,
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"match":"sk-a","value":{"api-key":"sk-a","base-url":""}}' http://localhost:8317/v0/management/claude-api-key`,
    after: listed("claude-api-key", [
      { "api-key": "sk-a", "base-url": "" },
      { "api-key": "sk-b2", "base-url": "https://c.example.com" },
    ]),
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/claude-api-key?api-key=sk-b2'",
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/claude-api-key?index=0'",
    after: listed("claude-api-key", []),
  },
  // ### OpenAI 兼容提供商(对象数组)
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/openai-compatibility",
    body: { "openai-compatibility": expect.any(Array) },
  },
  {
    curl: `curl -X PUT -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '[{"name":"openrouter","base-url":"https://openrouter.ai/api/v1","api-keys":["sk"],"models":[{"name":"m","alias":"a"}]}]' http://localhost:8317/v0/management/openai-compatibility`,
    after: async () =>
      expect(await (await mgmt("/openai-compatibility")).json()).toEqual({
        "openai-compatibility": [
          expect.objectContaining({
            name: "openrouter",
            "base-url": "https://openrouter.ai/api/v1",
            "api-keys": ["sk"],
            models: [{ name: "m", alias: "a" }],
          }),
        ],
      }),
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"name":"openrouter","value":{"name":"openrouter","base-url":"https://openrouter.ai/api/v1","api-keys":[],"models":[]}}' http://localhost:8317/v0/management/openai-compatibility`,
  },
  {
    curl: `curl -X PATCH -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d '{"index":0,"value":{"name":"openrouter","base-url":"https://openrouter.ai/api/v1","api-keys":[],"models":[]}}' http://localhost:8317/v0/management/openai-compatibility`,
    after: async () =>
      expect(await (await mgmt("/openai-compatibility")).json()).toEqual({
        "openai-compatibility": [
          expect.objectContaining({
            name: "openrouter",
            "base-url": "https://openrouter.ai/api/v1",
            "api-keys": [],
            models: [],
          }),
        ],
      }),
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/openai-compatibility?name=openrouter'",
    after: listed("openai-compatibility", []),
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/openai-compatibility?index=0'",
    before: async () => {
      await mgmt("/openai-compatibility", {
        method: "PUT",
        body: '[{"name":"openrouter","base-url":"https://openrouter.ai/api/v1","api-keys":[],"models":[]}]',
      });
    },
    after: listed("openai-compatibility", []),
  },
  // ### 认证文件管理
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/auth-files",
    before: upload("acc1.json", "acc1@example.com"),
    body: {
      files: [
        // The seed's fields (CLIProxyAPI's newer UI reads more: status, disabled, auth_index ...).
        expect.objectContaining({
          name: "acc1.json",
          size: expect.any(Number),
          modtime: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/),
          type: "claude",
        }),
      ],
    },
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -OJ 'http://localhost:8317/v0/management/auth-files/download?name=acc1.json'",
    body: expect.objectContaining({ type: "claude", email: "acc1@example.com" }),
    check: (res) => {
      expect(res.headers.get("content-disposition")).toBe('attachment; filename="acc1.json"');
    },
  },
  {
    curl: "curl -X POST -F 'file=@/path/to/acc1.json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/auth-files",
    before: async () => {
      await mgmt("/auth-files?name=acc1.json", { method: "DELETE" });
    },
    after: async () =>
      expect(gateway.credentials.pool.get("acc1.json")).toMatchObject({
        provider: "anthropic",
        kind: "oauth",
      }),
  },
  {
    curl: `curl -X POST -H 'Content-Type: application/json' -H 'Authorization: Bearer <MANAGEMENT_KEY>' -d @/path/to/acc1.json 'http://localhost:8317/v0/management/auth-files?name=acc1.json'`,
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/auth-files?name=acc1.json'",
    after: async () => expect(await (await mgmt("/auth-files")).json()).toEqual({ files: [] }),
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -X DELETE 'http://localhost:8317/v0/management/auth-files?all=true'",
    before: async () => {
      await upload("acc1.json", "a1@example.com")();
      await upload("acc2.json", "a2@example.com")();
      await upload("acc3.json", "a3@example.com")();
    },
    body: { status: "ok", deleted: 3 },
  },
  // ### 登录/授权 URL
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/anthropic-auth-url",
    body: {
      status: "ok",
      url: expect.stringMatching(/^https:\/\/claude\.ai\/oauth\/authorize\?/),
      state: expect.any(String),
    },
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/codex-auth-url",
    body: {
      status: "ok",
      url: expect.stringMatching(/^https:\/\/auth\.openai\.com\/oauth\/authorize\?/),
      state: expect.any(String),
    },
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' 'http://localhost:8317/v0/management/gemini-cli-auth-url?project_id=<PROJECT_ID>'",
    body: {
      status: "ok",
      url: expect.stringMatching(/^https:\/\/accounts\.google\.com\//),
      state: expect.any(String),
    },
  },
  {
    curl: `curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' -H 'Content-Type: application/json' -d '{"secure_1psid": "<__Secure-1PSID>", "secure_1psidts": "<__Secure-1PSIDTS>"}' http://localhost:8317/v0/management/gemini-web-token`,
    body: { status: "ok", file: expect.stringMatching(/^gemini-web-[0-9a-f]+\.json$/) },
    after: async () =>
      expect(await (await mgmt("/auth-files")).json()).toEqual({
        files: [expect.objectContaining({ type: "gemini-web" })],
      }),
  },
  {
    // The device flow runs against the mock OAuth server (`oauth.providers.qwen`), so its
    // verification URL is the mock's http one.
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' http://localhost:8317/v0/management/qwen-auth-url",
    body: { status: "ok", url: expect.stringMatching(/^https?:\/\//), state: expect.any(String) },
    check: (res) => {
      const b = res.body as { url: string; state: string };
      lastState = b.state;
      lastUserCode = new URL(b.url).searchParams.get("user_code") ?? "";
    },
  },
  {
    curl: "curl -H 'Authorization: Bearer <MANAGEMENT_KEY>' 'http://localhost:8317/v0/management/get-auth-status?state=<STATE_FROM_AUTH_URL>'",
    body: { status: "wait" },
    after: async () => {
      // The seed's other two answers: `ok` once the user approved, `error` for a denied login.
      oauth.approve(lastUserCode);
      await vi.waitFor(async () =>
        expect((await curl(fill(EXAMPLES.at(-1)?.curl ?? ""))).body).toEqual({ status: "ok" }),
      );
      const denied = (await (await mgmt("/qwen-auth-url")).json()) as {
        url: string;
        state: string;
      };
      oauth.deny(new URL(denied.url).searchParams.get("user_code") ?? "");
      await vi.waitFor(async () =>
        expect(await (await mgmt(`/get-auth-status?state=${denied.state}`)).json()).toEqual({
          status: "error",
          error: expect.any(String),
        }),
      );
    },
  },
];

describe("the management seed, walked from top to bottom against a real server", () => {
  it("the table holds every curl example of the seed, in seed order", () => {
    expect(EXAMPLES.map((e) => e.curl)).toEqual(seedCurls(SEED));
  });

  it("GET /usage (documented without a curl example) answers the seed's shape", async () => {
    const res = await mgmt("/usage");
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({
      usage: {
        total_requests: expect.any(Number),
        success_count: expect.any(Number),
        failure_count: expect.any(Number),
        total_tokens: expect.any(Number),
        requests_by_day: expect.any(Object),
        requests_by_hour: expect.any(Object),
        tokens_by_day: expect.any(Object),
        tokens_by_hour: expect.any(Object),
        apis: expect.any(Object),
      },
    });
  });

  it("every curl example gets the documented response", async () => {
    for (const [i, example] of EXAMPLES.entries()) {
      await example.before?.();
      const res = await curl(fill(example.curl));
      const where = `example ${i + 1}: ${example.curl}`;
      expect(res.status, `${where} → ${res.text}`).toBe(example.status ?? 200);
      expect(res.body, where).toEqual(example.body ?? ok);
      await example.check?.(res);
      await example.after?.();
    }
  });

  // ## 错误响应
  it("answers the seed's error formats", async () => {
    const bad = await mgmt("/debug", { method: "PUT", body: '{"value":"yes"}' });
    expect([bad.status, await bad.json()]).toEqual([400, { error: "invalid body" }]);
    const broken = await mgmt("/api-keys", { method: "PUT", body: "{not json" });
    expect([broken.status, await broken.json()]).toEqual([400, { error: "invalid body" }]);

    const missing = await fetch(`${origin}/v0/management/debug`);
    expect([missing.status, await missing.json()]).toEqual([
      401,
      { error: "missing management key" },
    ]);
    const wrong = await mgmt("/debug", { headers: { authorization: "Bearer not-the-key-000" } });
    expect([wrong.status, await wrong.json()]).toEqual([401, { error: "invalid management key" }]);

    const remote = await gateway.handler(
      new Request("http://gateway/v0/management/debug", {
        headers: { authorization: `Bearer ${key}` },
      }),
      { remoteAddress: "203.0.113.7" },
    );
    expect([remote.status, await remote.json()]).toEqual([
      403,
      {
        error: expect.stringMatching(
          /^remote management disabled: the management key is accepted from loopback clients only/,
        ),
      },
    ]);

    // Deleting an unknown value is a 200 no-op (CLIProxyAPI); a PATCH of an unknown item is the 404.
    const item = await mgmt("/codex-api-key", {
      method: "PATCH",
      body: JSON.stringify({ match: "no-such-key", value: { "api-key": "sk-x" } }),
    });
    expect([item.status, await item.json()]).toEqual([404, { error: "item not found" }]);
    const file = await mgmt("/auth-files?name=no-such-file.json", { method: "DELETE" });
    expect([file.status, await file.json()]).toEqual([404, { error: "file not found" }]);
  });
});
