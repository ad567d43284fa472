/**
 * The gateway's fuzz test: thousands of hostile requests over every HTTP surface (the proxy
 * dialects, CLIProxyAPI's management API, new-api's token and user routes, the pool dialect),
 * against a real node:http server on port 0 (and a share through `gateway.handler`, the fetch
 * entry). Deterministic: a seeded PRNG picks routes and
 * mutations (`FUZZ_SEED` to try another seed, `FUZZ_REQUESTS` to scale it).
 *
 * Every answer must be < 500, every error must parse as JSON in its dialect's own shape, no
 * failed request may change stored state, nothing may pollute `Object.prototype`, no answer may
 * carry the upstream secret, and the server must still serve at the end.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { Pool } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore, type Store } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SEED = Number(process.env.FUZZ_SEED ?? 0x7e57_f022);
/** Requests of the concurrent phase (proxy routes and reads) and of the serial phase (writes). */
const TOTAL = Number(process.env.FUZZ_REQUESTS ?? 5600);
const READS = Math.round(TOTAL * 0.62);
const WRITES = TOTAL - READS;
/** Requests sent through `gateway.handler` instead of node:http (on top of TOTAL). */
const WEB = Math.round(TOTAL * 0.1);
const CONCURRENCY = 24;
const MAX_BODY = 256 * 1024;
const UPSTREAM_SECRET = "sk-upstream-fuzz-secret-9f8e7d6c5b4a";
/** The access token of the pool dialect's accounts, which the mock accepts. */
const POOL_ACCESS_TOKEN = "ya29.fuzz-access-token";
const MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4", "gemini-2.5-flash"];

// ---------------------------------------------------------------------------------------------
// Seeded randomness

/** mulberry32: small, fast and good enough to pick mutations reproducibly. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
let rand = prng(SEED);
const int = (n: number) => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const chance = (p: number) => rand() < p;

// ---------------------------------------------------------------------------------------------
// Hostile values

/** Marks raw JSON text to splice in after JSON.stringify (numbers JSON.stringify cannot write). */
const RAW = (text: string) => `\u0000RAW${text}\u0000`;
const RAW_RE = /"\\u0000RAW(.*?)\\u0000"/g;

const NUMBERS = [
  RAW("NaN"),
  RAW("Infinity"),
  RAW("-Infinity"),
  RAW("1e999"),
  RAW("-1e999"),
  RAW("1e-400"),
  RAW("-0"),
  RAW("0x10"),
  RAW("01"),
  1e308,
  -1e308,
  -1,
  0,
  0.5,
  -0.000001,
  RAW("9007199254740993"),
  RAW("-9007199254740993"),
  2 ** 31,
  4294967296,
];

const PATH_TRICKS = [
  "../../etc/passwd",
  "..%2f..%2fetc%2fpasswd",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "%252e%252e%252f",
  "..\\..\\windows\\win.ini",
  "/etc/passwd",
  "C:\\Windows\\win.ini",
  "a\u0000b.json",
  "a%00b.json",
  "....//....//x.json",
  "a/../../b.json",
  ".",
  "..",
  "",
  " ",
  "%ff%fe",
  "\uffff\ud800",
  "x".repeat(3000),
  "con.json",
  "$" + "{jndi:ldap://x}",
  "<script>alert(1)</script>.json",
  "__proto__",
  "constructor",
];

const STRINGS = [
  "",
  " ",
  "\u0000",
  "\ud800",
  "\u202e",
  "x".repeat(20_000),
  "null",
  "true",
  "[]",
  "{}",
  "__proto__",
  ...PATH_TRICKS.slice(0, 8),
];

/** A random hostile JSON value (wrong types of every kind). */
function hostileValue(depth = 0): unknown {
  switch (int(depth > 2 ? 4 : 8)) {
    case 0:
      return pick(NUMBERS);
    case 1:
      return pick(STRINGS);
    case 2:
      return pick([null, true, false]);
    case 3:
      return pick([[], {}, [null], { "": "" }]);
    case 4:
      return Array.from({ length: int(4) }, () => hostileValue(depth + 1));
    case 5:
      return JSON.parse(`{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}`);
    case 6:
      return { type: pick(["object", "array", "function", null]), value: hostileValue(depth + 1) };
    default:
      return -int(1000);
  }
}

/** A value nested `levels` deep, as raw JSON text (too deep for JSON.stringify to write). */
function nested(levels: number): unknown {
  const open = '{"a":['.repeat(Math.floor(levels / 2));
  const close = "]}".repeat(Math.floor(levels / 2));
  return RAW(levels % 2 ? `${open}[1]${close}` : `${open}1${close}`);
}

/** Percent-encodes any string, lone surrogates included (encodeURIComponent throws on them). */
function pct(s: string): string {
  try {
    return encodeURIComponent(s);
  } catch {
    return [...Buffer.from(s)].map((b) => `%${b.toString(16).padStart(2, "0")}`).join("");
  }
}

// ---------------------------------------------------------------------------------------------
// Surfaces

type Dialect = "openai" | "anthropic" | "gemini" | "management" | "console" | "none";
type Auth = "proxy" | "management" | "console" | "pool" | "none";

interface Surface {
  method: string;
  /** The path and query; `param()` inserts a path-trick-able value. */
  path(param: (valid: string) => string): string;
  body?(): unknown;
  auth: Auth;
  /** Writes stored state (serial phase, state compared around each request). */
  write?: boolean;
  /** Send a multipart body instead of JSON. */
  multipart?: boolean;
}

const user = () => [{ role: "user", content: "hi" }];
const schema = () => ({ type: "object", properties: { q: { type: "string" } }, required: ["q"] });
const model = () => pick(MODELS);
const stream = () => (chance(0.3) ? { stream: true } : {});

const PROXY: Surface[] = [
  {
    method: "POST",
    path: () => "/v1/chat/completions",
    auth: "proxy",
    body: () => ({
      model: model(),
      messages: user(),
      max_tokens: 16,
      ...stream(),
      ...(chance(0.5)
        ? { tools: [{ type: "function", function: { name: "f", parameters: schema() } }] }
        : {}),
    }),
  },
  {
    method: "POST",
    path: () => "/v1/completions",
    auth: "proxy",
    body: () => ({ model: model(), prompt: "hi", max_tokens: 16, ...stream() }),
  },
  {
    method: "POST",
    path: () => "/v1/embeddings",
    auth: "proxy",
    body: () => ({ model: "text-embedding-3-small", input: chance(0.5) ? "hi" : ["a", "b"] }),
  },
  {
    method: "POST",
    path: () => "/v1/responses",
    auth: "proxy",
    body: () => ({
      model: model(),
      input: chance(0.5) ? "hi" : [{ role: "user", content: [{ type: "input_text", text: "hi" }] }],
      ...stream(),
      ...(chance(0.5) ? { tools: [{ type: "function", name: "f", parameters: schema() }] } : {}),
      ...(chance(0.3)
        ? { text: { format: { type: "json_schema", name: "x", schema: schema() } } }
        : {}),
    }),
  },
  {
    method: "POST",
    path: () => "/v1/messages",
    auth: "proxy",
    body: () => ({
      model: model(),
      max_tokens: 16,
      system: "be brief",
      messages: user(),
      ...stream(),
      ...(chance(0.5) ? { tools: [{ name: "f", input_schema: schema() }] } : {}),
    }),
  },
  {
    method: "POST",
    path: () => "/v1/messages/count_tokens",
    auth: "proxy",
    body: () => ({
      model: model(),
      messages: user(),
      ...(chance(0.5) ? { tools: [{ name: "f", input_schema: schema() }] } : {}),
    }),
  },
  ...["generateContent", "streamGenerateContent", "countTokens"].flatMap((method) =>
    ["/v1beta", "/v1"].map(
      (root): Surface => ({
        method: "POST",
        path: (param) =>
          `${root}/models/${param(model())}:${method}${method === "streamGenerateContent" && chance(0.5) ? "?alt=sse" : ""}`,
        auth: "proxy",
        body: () => ({
          contents: [{ role: "user", parts: [{ text: "hi" }] }],
          systemInstruction: { parts: [{ text: "be brief" }] },
          generationConfig: {
            maxOutputTokens: 16,
            ...(chance(0.3)
              ? { responseMimeType: "application/json", responseSchema: schema() }
              : {}),
          },
          ...(chance(0.5)
            ? { tools: [{ functionDeclarations: [{ name: "f", parameters: schema() }] }] }
            : {}),
        }),
      }),
    ),
  ),
  { method: "GET", path: () => "/v1/models", auth: "proxy" },
  { method: "GET", path: () => "/v1beta/models", auth: "proxy" },
  { method: "GET", path: (param) => `/v1beta/models/${param(model())}`, auth: "proxy" },
];

const LISTS = [
  "api-keys",
  "generative-language-api-key",
  "claude-api-key",
  "codex-api-key",
  "openai-compatibility",
];
const SETTINGS: [string, () => unknown][] = [
  ["debug", () => chance(0.5)],
  ["proxy-url", () => "http://127.0.0.1:9"],
  ["request-retry", () => int(5)],
  ["request-log", () => chance(0.5)],
  ["force-gpt-5-codex", () => chance(0.5)],
  ["quota-exceeded/switch-project", () => chance(0.5)],
  ["quota-exceeded/switch-preview-model", () => chance(0.5)],
  ["allow-localhost-unauthenticated", () => false],
];
const listItem = (name: string): unknown =>
  name === "api-keys" || name === "generative-language-api-key"
    ? `k-${int(1e6)}`
    : name === "openai-compatibility"
      ? {
          name: `c${int(100)}`,
          "base-url": "http://127.0.0.1:9/v1",
          "api-key-entries": [{ "api-key": `k-${int(1e6)}` }],
          models: [{ name: "m", alias: "a" }],
        }
      : { "api-key": `k-${int(1e6)}`, "base-url": "http://127.0.0.1:9" };

/** Ids in paths and bodies of writes; never 1, the admin user the test authenticates as. */
const writeId = () => String(pick([2, 3, 4, 5, 6, 7, 99]));
/** Pool tokens made at the start (`1//fuzz-<n>`), for the pool writes to find. */
const POOL_TOKENS = 10;
const poolToken = () => `1//fuzz-${int(POOL_TOKENS * 2)}`;
const authFile = () => ({
  type: pick(["codex", "claude", "gemini", "qwen", "antigravity"]),
  access_token: `at-${int(1e6)}`,
  refresh_token: `rt-${int(1e6)}`,
  email: "a@b.c",
  expired: "2030-01-01T00:00:00Z",
});

const READ_ONLY: Surface[] = [
  ...[
    "/config",
    "/usage",
    "/auth-files",
    ...LISTS.map((l) => `/${l}`),
    ...SETTINGS.map(([s]) => `/${s}`),
  ].map((p): Surface => ({ method: "GET", path: () => `/v0/management${p}`, auth: "management" })),
  {
    method: "GET",
    path: (param) => `/v0/management/auth-files/download?name=${param("codex-a.json")}`,
    auth: "management",
  },
  {
    method: "GET",
    path: (param) => `/v0/management/get-auth-status?state=${param("abc")}`,
    auth: "management",
  },
  {
    method: "GET",
    path: (param) => `/v0/management/oauth/callback?state=${param("abc")}&code=${param("c")}`,
    auth: "none",
  },
  {
    method: "GET",
    path: (param) => `/api/token/?p=${param("1")}&size=${param("10")}`,
    auth: "console",
  },
  {
    method: "GET",
    path: (param) => `/api/token/search?keyword=${param("fuzz")}`,
    auth: "console",
  },
  { method: "GET", path: (param) => `/api/token/${param("1")}`, auth: "console" },
  { method: "GET", path: (param) => `/api/user/?p=${param("1")}`, auth: "console" },
  { method: "GET", path: (param) => `/api/user/search?keyword=${param("a")}`, auth: "console" },
  { method: "GET", path: (param) => `/api/user/${param("1")}`, auth: "console" },
  { method: "GET", path: () => "/v1/tokens", auth: "pool" },
  { method: "GET", path: () => "/healthz", auth: "none" },
];

const WRITES_SURFACES: Surface[] = [
  ...LISTS.flatMap((l): Surface[] => [
    {
      method: "PUT",
      path: () => `/v0/management/${l}`,
      auth: "management",
      write: true,
      body: () => (chance(0.5) ? [listItem(l)] : { items: [listItem(l)] }),
    },
    {
      method: "PATCH",
      path: () => `/v0/management/${l}`,
      auth: "management",
      write: true,
      body: () =>
        chance(0.5)
          ? { index: int(3), value: listItem(l) }
          : { old: "k-1", new: "k-2", match: "k-1", name: "c1", value: listItem(l) },
    },
    {
      method: "DELETE",
      path: (param) =>
        `/v0/management/${l}?${pick(["index", "value", "api-key", "name"])}=${param(String(int(3)))}`,
      auth: "management",
      write: true,
    },
  ]),
  ...SETTINGS.flatMap(([s, value]): Surface[] =>
    ["PUT", "PATCH"].map((method) => ({
      method,
      path: () => `/v0/management/${s}`,
      auth: "management",
      write: true,
      body: () => ({ value: value() }),
    })),
  ),
  { method: "DELETE", path: () => "/v0/management/proxy-url", auth: "management", write: true },
  {
    method: "POST",
    path: (param) => `/v0/management/auth-files?name=${param(`fuzz-${int(50)}.json`)}`,
    auth: "management",
    write: true,
    body: authFile,
  },
  {
    method: "POST",
    path: () => "/v0/management/auth-files",
    auth: "management",
    write: true,
    multipart: true,
    body: authFile,
  },
  {
    method: "DELETE",
    path: (param) => `/v0/management/auth-files?name=${param(`fuzz-${int(50)}.json`)}`,
    auth: "management",
    write: true,
  },
  {
    method: "POST",
    path: () => "/v0/management/gemini-web-token",
    auth: "management",
    write: true,
    body: () => ({ secure_1psid: `psid-${int(1e6)}`, secure_1psidts: "ts" }),
  },
  {
    method: "POST",
    path: () => "/api/token/",
    auth: "console",
    write: true,
    body: () => ({
      name: `t${int(1e4)}`,
      remain_quota: int(1e6),
      expired_time: pick([-1, 4102444800]),
      unlimited_quota: chance(0.5),
      model_limits_enabled: chance(0.5),
      model_limits: "gpt-4o-mini,gpt-4o",
      allow_ips: "127.0.0.1\n10.0.0.0/8",
      group: "",
    }),
  },
  {
    method: "PUT",
    path: () => (chance(0.3) ? "/api/token/?status_only=true" : "/api/token/"),
    auth: "console",
    write: true,
    body: () => ({ id: Number(writeId()), name: "renamed", status: pick([1, 2]), remain_quota: 5 }),
  },
  {
    method: "DELETE",
    path: (param) => `/api/token/${param(writeId())}`,
    auth: "console",
    write: true,
  },
  {
    method: "POST",
    path: () => "/api/token/batch",
    auth: "console",
    write: true,
    body: () => ({ ids: [Number(writeId()), Number(writeId())] }),
  },
  {
    method: "POST",
    path: (param) => `/api/token/${param(writeId())}/key`,
    auth: "console",
    write: true,
  },
  {
    method: "POST",
    path: () => "/api/user/",
    auth: "console",
    write: true,
    body: () => ({
      username: `u${int(1e4)}`,
      display_name: "Fuzz",
      role: pick(["user", "admin"]),
      quota: int(1e6),
      group: "",
    }),
  },
  {
    method: "PUT",
    path: () => "/api/user/",
    auth: "console",
    write: true,
    body: () => ({ id: Number(writeId()), display_name: "Renamed", quota: int(100), status: 1 }),
  },
  {
    method: "DELETE",
    path: (param) => `/api/user/${param(writeId())}`,
    auth: "console",
    write: true,
  },
  {
    method: "POST",
    path: (param) => `/api/user/${param(writeId())}/token`,
    auth: "console",
    write: true,
  },
  {
    method: "POST",
    path: () => "/v1/tokens",
    auth: "pool",
    write: true,
    body: () => ({
      refresh_token: poolToken(),
      access_token: POOL_ACCESS_TOKEN,
      expires_in: 3599,
      timestamp: Date.now(),
      project: "p",
      enable: chance(0.5),
    }),
  },
  {
    method: "PUT",
    path: (param) => `/v1/tokens/${param(poolToken())}`,
    auth: "pool",
    write: true,
    body: () => ({ enable: chance(0.5), access_token: POOL_ACCESS_TOKEN, expires_in: 600 }),
  },
  {
    method: "DELETE",
    path: (param) => `/v1/tokens/${param(poolToken())}`,
    auth: "pool",
    write: true,
  },
  { method: "POST", path: () => "/v1/tokens/reload", auth: "pool", write: true },
];

// ---------------------------------------------------------------------------------------------
// The gateway under test

let mock: MockUpstream;
let gateway: Gateway;
let store: Store;
let server: Server;
let client: Pool;
let base: string;
const creds = { proxy: "", management: "", console: "", consoleUser: "" };

beforeAll(async () => {
  mock = await createMockUpstream({
    apiKeys: [UPSTREAM_SECRET],
    authorize: (token) => token === POOL_ACCESS_TOKEN,
    maxRecordedRequests: 0,
  });
  store = memoryStore();
  // Every OAuth and pool endpoint points at the mock: nothing here may reach the network.
  const local = { tokenUrl: `${mock.origin}/oauth/token`, deviceCodeUrl: `${mock.origin}/device` };
  gateway = createGateway({
    store,
    secret: "fuzz-secret-0123456789-0123456789-0123456789",
    logger: false,
    maxBodyBytes: MAX_BODY,
    usage: { flushIntervalMs: 50 },
    poolDialect: { baseUrl: mock.origin },
    oauth: {
      scanIntervalMs: 0,
      providers: Object.fromEntries(
        ["antigravity", "gemini", "gemini-cli", "anthropic", "claude", "codex", "qwen"].map((p) => [
          p,
          local,
        ]),
      ),
    },
  });
  await gateway.ready;
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    secret: { apiKey: UPSTREAM_SECRET },
  });
  creds.proxy = (await gateway.keys.create({ name: "fuzz", unlimitedQuota: true })).key;
  creds.management = await gateway.management.generateKey();
  const admin = await gateway.users.create({ username: "root", role: "admin" });
  creds.console = admin.accessToken;
  creds.consoleUser = String(admin.record.id);
  // Something for the writes to hit: users, keys of the admin, pool tokens, an auth file, and a
  // credential that lists models (for the model listings).
  for (let i = 0; i < 5; i++) {
    await gateway.users.create({ username: `victim${i}` });
    await gateway.keys.create({
      name: `victim-key${i}`,
      remainQuota: 1000,
      userId: admin.record.id,
    });
  }
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    secret: { apiKey: UPSTREAM_SECRET },
    models: MODELS.map((name) => ({ name })),
  });
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  client = new Pool(base, { connections: CONCURRENCY });
  const setup = async (method: string, path: string, body: unknown) => {
    const res = await client.request({
      method,
      path,
      headers: { authorization: `Bearer ${creds.management}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(res.statusCode, `${method} ${path}: ${await res.body.text()}`).toBe(200);
  };
  for (let i = 0; i < POOL_TOKENS; i++)
    await setup("POST", "/v1/tokens", {
      refresh_token: `1//fuzz-${i}`,
      access_token: POOL_ACCESS_TOKEN,
      expires_in: 86_400,
      timestamp: Date.now(),
    });
  await setup("POST", "/v0/management/auth-files?name=codex-a.json", {
    type: "codex",
    access_token: "at",
    refresh_token: "rt",
    email: "a@b.c",
  });
  // Listed and downloadable, never picked for traffic (its upstream would be chatgpt.com).
  await gateway.credentials.update("codex-a.json", { enabled: false, baseUrl: mock.origin });
});

afterAll(async () => {
  await client.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
  await mock.close();
});

/** Stored configuration: what a failed request must not change (counters and health excluded). */
async function snapshot(): Promise<string> {
  const keys = (await store.keys.list({ limit: 10_000 })).items.map(
    ({ remainQuota: _r, usedQuota: _u, accessedTime: _a, ...k }) => k,
  );
  const users = (await store.users.list({ limit: 10_000 })).items.map(
    ({ usedQuota: _u, ...u }) => u,
  );
  const credentials = (await store.credentials.list()).map(
    ({ state: _s, updatedAt: _u, ...c }) => c,
  );
  return JSON.stringify({ keys, users, credentials, settings: await store.settings.all() });
}

// ---------------------------------------------------------------------------------------------
// Building one hostile request

interface Built {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: Buffer | undefined;
  mutation: string;
}

function authHeaders(auth: Auth): Record<string, string> {
  switch (auth) {
    case "proxy":
      return pick<Record<string, string>>([
        { authorization: `Bearer ${creds.proxy}` },
        { "x-api-key": creds.proxy },
        { "x-goog-api-key": creds.proxy },
      ]);
    case "management":
      return { authorization: `Bearer ${creds.management}` };
    case "console":
      return { authorization: `Bearer ${creds.console}`, "new-api-user": creds.consoleUser };
    case "pool":
      return { authorization: `Bearer ${creds.management}` };
    default:
      return {};
  }
}

/** All paths to an object/array member of `v` (to pick one to mutate). */
function slots(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []) {
  if (typeof v === "object" && v !== null) {
    for (const [k, child] of Object.entries(v)) {
      const p = [...at, Array.isArray(v) ? Number(k) : k];
      out.push(p);
      slots(child, p, out);
    }
  }
  return out;
}

function setAt(root: unknown, path: (string | number)[], value: unknown, remove = false): unknown {
  if (path.length === 0) return value;
  let parent = root as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) {
    parent = parent[k] as Record<string | number, unknown>;
    // An earlier mutation replaced an ancestor: nothing left to change.
    if (typeof parent !== "object" || parent === null) return root;
  }
  const last = path.at(-1)!;
  if (remove) {
    if (Array.isArray(parent)) parent.splice(Number(last), 1);
    else delete parent[last];
  } else parent[last] = value;
  return root;
}

const encode = (v: unknown) => JSON.stringify(v).replace(RAW_RE, "$1");

function multipart(json: Buffer, filename: string): { body: Buffer; type: string } {
  const boundary = `fuzz${int(1e9)}`;
  return {
    type: `multipart/form-data; boundary=${boundary}`,
    body: Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\n` +
          "Content-Type: application/json\r\n\r\n",
      ),
      json,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]),
  };
}

function build(surface: Surface): Built {
  let mutation = "none";
  const roll = rand();
  const trick = roll < 0.1;
  const param = (valid: string) => {
    if (!trick) return pct(valid);
    mutation = "path-trick";
    const t = pick(PATH_TRICKS);
    // Sent as is when it is already a valid request target, else percent-encoded.
    return chance(0.5) && /^[\x21-\x7e]*$/.test(t) ? t : pct(t);
  };
  let method = surface.method;
  let path = surface.path(param);
  const headers: Record<string, string> = authHeaders(surface.auth);
  let value = surface.body?.();
  let text: Buffer | undefined;

  if (roll >= 0.1) {
    const m = rand();
    if (m < 0.08) mutation = "none";
    else if (m < 0.26 && value !== undefined) {
      mutation = "wrong-type";
      const all = slots(value);
      value = all.length ? setAt(value, pick(all), hostileValue()) : hostileValue();
      if (chance(0.2)) value = hostileValue();
    } else if (m < 0.36 && value !== undefined) {
      mutation = "missing-field";
      const all = slots(value);
      if (all.length) value = setAt(value, pick(all), undefined, true);
    } else if (m < 0.46) {
      mutation = "malformed-json";
      const good = encode(value ?? { a: 1 });
      text = Buffer.from(
        pick([
          () => good.slice(0, int(good.length)),
          () =>
            `${good.slice(0, int(good.length))}${pick(["}", "]", ",", ":", '"', "\\"])}${good.slice(int(good.length))}`,
          () => `${good},`,
          () => `\ufeff${good}`,
          () => good.replaceAll('"', "'"),
          () => "",
          () => "null",
          () => "[]",
          () => "123",
          () => '"string"',
          () => "{",
          () => '{"a":}',
          () => `${good}${good}`,
          () => "NaN",
          () => "\u0000",
        ])(),
      );
    } else if (m < 0.53) {
      mutation = "invalid-utf8";
      const good = Buffer.from(encode(value ?? { a: "x" }));
      const at = Math.max(1, good.indexOf('"', int(good.length)) + 1 || 1);
      const bad = pick([
        [0xff],
        [0xc3],
        [0xed, 0xa0, 0x80],
        [0xf4, 0x90, 0x80, 0x80],
        [0xc0, 0xaf],
      ]);
      text = Buffer.concat([good.subarray(0, at), Buffer.from(bad), good.subarray(at)]);
    } else if (m < 0.58) {
      mutation = "huge";
      const size = pick([MAX_BODY - 2048, MAX_BODY + 1, MAX_BODY * 4, 3 * 1024 * 1024]);
      const filler = "x".repeat(Math.max(0, size));
      const v = (value ?? {}) as Record<string, unknown>;
      text = Buffer.from(
        typeof v === "object" && v !== null && !Array.isArray(v)
          ? encode({ ...v, filler })
          : encode([v, filler]),
      );
    } else if (m < 0.66) {
      mutation = "deep";
      const levels = pick([100, 129, 500, 5000, 60_000]);
      const all = value === undefined ? [] : slots(value);
      value = all.length ? setAt(value, pick(all), nested(levels)) : nested(levels);
    } else if (m < 0.74) {
      mutation = "proto-keys";
      const good = encode(value ?? {});
      const inject = pick([
        '"__proto__":{"polluted":true,"admin":true,"role":"admin"}',
        '"constructor":{"prototype":{"polluted":true}}',
        '"prototype":{"polluted":true}',
        '"__proto__":null',
        '"hasOwnProperty":1,"toString":"x","valueOf":[]',
      ]);
      text = Buffer.from(
        good.startsWith("{") && good !== "{}"
          ? `{${inject},${good.slice(1)}`
          : good === "{}"
            ? `{${inject}}`
            : good.replace("{", `{${inject},`),
      );
    } else if (m < 0.84 && value !== undefined) {
      mutation = "numbers";
      const all = slots(value);
      for (let i = 0; i < 1 + int(3) && all.length; i++) setAt(value, pick(all), pick(NUMBERS));
    } else if (m < 0.91) {
      mutation = "headers";
      const h = int(6);
      if (h === 0) for (const k of Object.keys(headers)) delete headers[k];
      else if (h === 1) headers.authorization = `Bearer ${pick(["", "x", "sk-wrong", "\u00ff"])}`;
      else if (h === 2) headers["content-type"] = pick(["text/plain", "application/xml", "x/y"]);
      else if (h === 3) headers["content-encoding"] = "gzip";
      else if (h === 4) headers["new-api-user"] = pick(["0", "-1", "abc", "999999"]);
      else headers.authorization = `Basic ${Buffer.from("a:b").toString("base64")}`;
    } else {
      mutation = "method";
      // A read of the management or console APIs stays a read (the concurrent phase checks that
      // nothing changes); proxy paths and writes take any method.
      method =
        surface.auth === "proxy" || surface.write
          ? pick(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
          : pick(["GET", "OPTIONS"]);
      if (chance(0.3)) path = `${path.split("?")[0]}${pick(["/", "//", "/x", "/..", "%2f.."])}`;
    }
  }

  let body: Buffer | undefined =
    text ?? (value === undefined ? undefined : Buffer.from(encode(value)));
  if (surface.multipart && body) {
    const mp = multipart(body, mutation === "path-trick" ? pick(PATH_TRICKS) : "codex-fuzz.json");
    body = mp.body;
    headers["content-type"] = mp.type;
  } else if (body && !headers["content-type"]) headers["content-type"] = "application/json";
  if (method === "GET" || method === "OPTIONS") body = undefined;
  return { method, path, headers, body, mutation };
}

// ---------------------------------------------------------------------------------------------
// Checking one answer

/** The error dialect of a request, as the gateway's router picks it. */
function dialectOf(method: string, path: string): Dialect {
  const p = path.split("?")[0]!;
  if (p === "/healthz") return "none";
  if (p === "/api" || p.startsWith("/api/")) return "console";
  if (p === "/v1/tokens" || p.startsWith("/v1/tokens/")) return "console";
  if (p === "/v0/management" || p.startsWith("/v0/management/")) return "management";
  if (p.startsWith("/v1beta/")) return "gemini";
  if (method === "POST" && /^\/v1\/models\/[^/]+$/.test(p)) return "gemini";
  if (p.startsWith("/v1/messages")) return "anthropic";
  return "openai";
}

/** Why an error body is not in its dialect's shape, or null when it is. */
function shapeProblem(dialect: Dialect, status: number, b: unknown): string | null {
  const o = b as Record<string, unknown> | null;
  if (typeof o !== "object" || o === null || Array.isArray(o)) return "not a JSON object";
  const e = o.error as Record<string, unknown> | undefined;
  switch (dialect) {
    case "openai":
      return typeof e?.message === "string" && typeof e.type === "string"
        ? null
        : "not { error: { message, type } }";
    case "anthropic":
      return o.type === "error" && typeof e?.type === "string" && typeof e.message === "string"
        ? null
        : 'not { type: "error", error: { type, message } }';
    case "gemini":
      return e?.code === status && typeof e.message === "string" && typeof e.status === "string"
        ? null
        : "not { error: { code, message, status } }";
    case "management":
      return typeof o.error === "string" ? null : "not { error: string }";
    case "console":
      return o.success === false && typeof o.message === "string"
        ? null
        : "not { success: false, message }";
    default:
      return null;
  }
}

interface Outcome {
  status: number;
  problem: string | null;
}

/** Sends a request over node:http, or through `gateway.handler` (the fetch entry) with `web`. */
async function send(b: Built, web = false): Promise<Outcome> {
  let status = 0;
  let text = "";
  // A Request resolves `..` segments itself: the router sees the resolved path.
  const path = web ? new URL(`http://gateway.test${b.path}`).pathname : b.path;
  try {
    if (web) {
      const res = await gateway.handler(
        new Request(`http://gateway.test${b.path}`, {
          method: b.method,
          headers: b.headers,
          ...(b.body ? { body: new Uint8Array(b.body) } : {}),
        }),
        { remoteAddress: "127.0.0.1" },
      );
      status = res.status;
      text = await res.text();
    } else {
      const res = await client.request({
        method: b.method,
        path: b.path,
        headers: b.headers,
        body: b.body,
      });
      status = res.statusCode;
      text = await res.body.text();
    }
  } catch (error) {
    return { status: 0, problem: `client error: ${String(error)}` };
  }
  if (status >= 500) return { status, problem: `${status}: ${text.slice(0, 300)}` };
  // The management API shows provider keys to the management key holder (as CLIProxyAPI does).
  if (dialectOf(b.method, path) !== "management" && text.includes(UPSTREAM_SECRET))
    return { status, problem: "the upstream secret leaked" };
  if (status >= 400) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return { status, problem: `a ${status} that is not JSON: ${text.slice(0, 200)}` };
    }
    const problem = shapeProblem(dialectOf(b.method, path), status, parsed);
    if (problem) return { status, problem: `${status} ${problem}: ${text.slice(0, 200)}` };
  }
  return { status, problem: null };
}

const describeReq = (b: Built) =>
  `${b.method} ${b.path.slice(0, 120)} [${b.mutation}] ${b.body ? b.body.subarray(0, 160).toString("latin1") : ""}`;

// ---------------------------------------------------------------------------------------------

describe("fuzz: hostile requests over every surface", () => {
  const statuses = new Map<number, number>();
  const count = (s: number) => statuses.set(s, (statuses.get(s) ?? 0) + 1);
  /** Successes per surface: proof that the run got past authentication and validation. */
  const served = new Map<Surface, number>();
  const tally = (surface: Surface, status: number) => {
    count(status);
    if (status >= 200 && status < 300) served.set(surface, (served.get(surface) ?? 0) + 1);
  };

  it(`answers ${READS} hostile proxy and read requests (${CONCURRENCY} at a time) without a 5xx`, async () => {
    rand = prng(SEED);
    const failures: string[] = [];
    const before = await snapshot();
    const surfaces = [...PROXY, ...PROXY, ...READ_ONLY];
    let next = 0;
    const worker = async () => {
      while (next < READS) {
        next++;
        const surface = pick(surfaces);
        const b = build(surface);
        const out = await send(b);
        tally(surface, out.status);
        if (out.problem) failures.push(`${out.problem}\n    ${describeReq(b)}`);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    expect(failures.slice(0, 20)).toEqual([]);
    expect(Object.keys(Object.prototype)).toEqual([]);
    // Proxy traffic and reads never change stored configuration.
    await gateway.usage.flush();
    expect(JSON.parse(await snapshot())).toEqual(JSON.parse(before));
  }, 120_000);

  it(`answers ${WEB} hostile requests through gateway.handler (the fetch entry) without a 5xx`, async () => {
    rand = prng(SEED ^ 0x0f0f0f0f);
    const failures: string[] = [];
    const surfaces = [...PROXY, ...READ_ONLY];
    let next = 0;
    const worker = async () => {
      while (next < WEB) {
        next++;
        const b = build(pick(surfaces));
        const out = await send(b, true);
        if (out.status >= 200 && out.status < 300) ok++;
        if (out.problem) failures.push(`${out.problem}\n    ${describeReq(b)}`);
      }
    };
    let ok = 0;
    await Promise.all(Array.from({ length: 8 }, worker));
    expect(failures.slice(0, 20)).toEqual([]);
    expect(ok).toBeGreaterThan(WEB / 10);
  }, 120_000);

  it(`answers ${WRITES} hostile writes without a 5xx, and a failed write changes nothing`, async () => {
    rand = prng(SEED ^ 0x5a5a5a5a);
    const failures: string[] = [];
    for (let i = 0; i < WRITES; i++) {
      const surface = pick(WRITES_SURFACES);
      const b = build(surface);
      const before = await snapshot();
      const out = await send(b);
      tally(surface, out.status);
      if (out.problem) failures.push(`${out.problem}\n    ${describeReq(b)}`);
      else if (out.status >= 400 && (await snapshot()) !== before)
        failures.push(`a failed write (${out.status}) changed state\n    ${describeReq(b)}`);
    }
    expect(failures.slice(0, 20)).toEqual([]);
  }, 120_000);

  it("leaves Object.prototype clean and keeps serving", async () => {
    expect(Object.keys(Object.prototype)).toEqual([]);
    // No path trick became a credential (an auth file name a file store would write).
    for (const c of await store.credentials.list())
      expect(c.id).not.toMatch(/[/\\\u0000]|^\.|\.\.|%/);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    const res = await client.request({ method: "GET", path: "/healthz" });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ status: "ok" });
    // The run reached past authentication: successes and every kind of client error occurred.
    const total = [...statuses.values()].reduce((a, b) => a + b, 0);
    expect(total).toBe(READS + WRITES);
    expect(total).toBeGreaterThanOrEqual(5000);
    expect(statuses.get(200) ?? 0).toBeGreaterThan(total / 10);
    for (const s of [400, 401, 404, 405, 413]) expect(statuses.get(s) ?? 0).toBeGreaterThan(0);
    const neverServed = [...PROXY, ...READ_ONLY]
      .filter((s) => !served.has(s))
      .map((s) => `${s.method} ${s.path((v) => v)}`)
      // The OAuth callback of an unknown state is an error by design.
      .filter((s) => !s.includes("/oauth/callback"));
    expect(neverServed).toEqual([]);
  });
});
