import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { configLists } from "../src/config-model/list-writer.js";
import { listRoutes } from "../src/dialects/cliproxy/lists.js";
import { GatewayError } from "../src/errors.js";
import { json } from "../src/exchange.js";
import { Router } from "../src/http/router.js";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { silentLogger } from "../src/logger.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "lists-secret-0123456789-0123456789-abcdef";
const MGMT = "/v0/management";

let gateway: Gateway;
let upstream: MockUpstream;
let servers: Server[] = [];
let base: string;
let proxyBase: string;

async function listen(handler: Parameters<typeof createServer>[1]): Promise<string> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeEach(async () => {
  upstream = await createMockUpstream({ apiKeys: ["sk-up-1"] });
  gateway = createGateway({ store: memoryStore(), secret: SECRET, logger: false });
  await gateway.ready;
  // The routes on their own router (the guard is the auth engineer's; here it lets all through).
  const router = new Router(silentLogger, (_ex, err: GatewayError) =>
    json(err.status, { error: err.message }),
  );
  router.add(
    listRoutes({ guard: async () => {}, pool: gateway.credentials.pool, maxBodyBytes: 1 << 20 }),
  );
  base = await listen(toNodeHandler({ serve: (ex) => router.handle(ex) }));
  proxyBase = await listen(toNodeHandler(gateway));
});

afterEach(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  servers = [];
  await gateway.close();
  await upstream.close();
});

async function call(method: string, path: string, body?: unknown, raw?: string) {
  const res = await fetch(`${base}${MGMT}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    ...(body !== undefined || raw !== undefined ? { body: raw ?? JSON.stringify(body) } : {}),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const OK = { status: 200, body: { status: "ok" } };
const INVALID = { status: 400, body: { error: expect.stringMatching(/^invalid body/) } };

/** An `openai-compatibility` entry as answered: both key shapes. */
const shown = <T extends { "api-keys": string[] }>(e: T) => ({
  ...e,
  "api-key-entries": e["api-keys"].map((k) => ({ "api-key": k, "proxy-url": "" })),
});

describe.each([
  ["claude-api-key", "anthropic"],
  ["codex-api-key", "codex"],
] as const)("%s", (list, provider) => {
  it("GET lists an empty list, PUT replaces it (raw array), GET shows it in order", async () => {
    expect(await call("GET", `/${list}`)).toEqual({ status: 200, body: { [list]: [] } });
    expect(
      await call("PUT", `/${list}`, [
        { "api-key": "sk-a" },
        { "api-key": "sk-b", "base-url": "https://c.example.com" },
      ]),
    ).toEqual(OK);
    expect(await call("GET", `/${list}`)).toEqual({
      status: 200,
      body: {
        [list]: [
          { "api-key": "sk-a", "base-url": "" },
          { "api-key": "sk-b", "base-url": "https://c.example.com" },
        ],
      },
    });
    const creds = gateway.credentials.pool.list();
    expect(creds.map((c) => [c.id, c.provider, c.kind, c.secret.apiKey])).toEqual([
      [`${list}:1`, provider, "api-key", "sk-a"],
      [`${list}:2`, provider, "api-key", "sk-b"],
    ]);
  });

  it("PUT accepts { items } with optional fields and keeps reused credentials' ids", async () => {
    await call("PUT", `/${list}`, [{ "api-key": "sk-a" }]);
    const item = {
      "api-key": "sk-z",
      "base-url": "https://z.example.com/api",
      "proxy-url": "socks5://127.0.0.1:1080",
      models: [{ name: "claude-3-5-sonnet", alias: "sonnet" }],
      "excluded-models": ["claude-3-opus"],
      headers: { "X-Custom": "v" },
    };
    expect(await call("PUT", `/${list}`, { items: [{ "api-key": "sk-a" }, item] })).toEqual(OK);
    expect((await call("GET", `/${list}`)).body[list]).toEqual([
      { "api-key": "sk-a", "base-url": "" },
      item,
    ]);
    expect(gateway.credentials.pool.list().map((c) => c.id)).toEqual([`${list}:1`, `${list}:2`]);
    // Shrinking removes the surplus.
    expect(await call("PUT", `/${list}`, [])).toEqual(OK);
    expect(gateway.credentials.pool.list()).toEqual([]);
  });

  it("PATCH by index and by match; 404 when neither finds an item", async () => {
    await call("PUT", `/${list}`, [
      { "api-key": "sk-a" },
      { "api-key": "sk-b", "base-url": "https://c.example.com" },
    ]);
    expect(
      await call("PATCH", `/${list}`, {
        index: 1,
        value: { "api-key": "sk-b2", "base-url": "https://c.example.com" },
      }),
    ).toEqual(OK);
    expect(
      await call("PATCH", `/${list}`, {
        match: "sk-a",
        value: { "api-key": "sk-a", "base-url": "https://a.example.com" },
      }),
    ).toEqual(OK);
    expect((await call("GET", `/${list}`)).body[list]).toEqual([
      { "api-key": "sk-a", "base-url": "https://a.example.com" },
      { "api-key": "sk-b2", "base-url": "https://c.example.com" },
    ]);
    expect(await call("PATCH", `/${list}`, { index: 5, value: { "api-key": "x" } })).toEqual({
      status: 404,
      body: { error: "item not found" },
    });
    expect(await call("PATCH", `/${list}`, { match: "nope", value: { "api-key": "x" } })).toEqual({
      status: 404,
      body: { error: "item not found" },
    });
  });

  it("DELETE by api-key and by index; an unknown key is a 200 no-op, a bad index a 400", async () => {
    await call("PUT", `/${list}`, [
      { "api-key": "sk-a" },
      { "api-key": "sk-b2" },
      { "api-key": "sk-c" },
    ]);
    expect(await call("DELETE", `/${list}?api-key=sk-b2`)).toEqual(OK);
    expect(await call("DELETE", `/${list}?index=0`)).toEqual(OK);
    expect((await call("GET", `/${list}`)).body[list]).toEqual([
      { "api-key": "sk-c", "base-url": "" },
    ]);
    expect(await call("DELETE", `/${list}?api-key=sk-none`)).toEqual(OK);
    expect(await call("DELETE", `/${list}?index=3`)).toEqual({
      status: 400,
      body: { error: "missing api-key or index" },
    });
    expect((await call("DELETE", `/${list}?index=-1`)).status).toBe(400);
    expect((await call("DELETE", `/${list}`)).status).toBe(400);
  });

  it("rejects bad shapes with 400 invalid body and leaves the list as it was", async () => {
    await call("PUT", `/${list}`, [{ "api-key": "sk-a" }]);
    const bad = [
      [{ "api-key": "sk-ok" }, { "api-key": 42 }],
      [{ "base-url": "https://x.example.com" }],
      [{ "api-key": "sk-b", "base-url": "not a url" }],
      [{ "api-key": "sk-b", "proxy-url": "ftp://x" }],
      [{ "api-key": "sk-b", models: [{ alias: "x" }] }],
      [{ "api-key": "sk-b", headers: { "bad header": "v" } }],
      { items: "nope" },
      "sk-a",
    ];
    for (const body of bad) expect(await call("PUT", `/${list}`, body)).toEqual(INVALID);
    expect((await call("PUT", `/${list}`, undefined, "{not json")).status).toBe(400);
    expect(await call("PATCH", `/${list}`, { index: "zero", value: { "api-key": "x" } })).toEqual({
      status: 400,
      body: { error: "invalid body" },
    });
    expect(await call("PATCH", `/${list}`, { index: 0 })).toEqual({
      status: 400,
      body: { error: "invalid body" },
    });
    expect(await call("PATCH", `/${list}`, { value: { "api-key": "x" } })).toEqual({
      status: 400,
      body: { error: "invalid body" },
    });
    expect((await call("GET", `/${list}`)).body[list]).toEqual([
      { "api-key": "sk-a", "base-url": "" },
    ]);
  });
});

describe("openai-compatibility", () => {
  const entry = {
    name: "openrouter",
    "base-url": "https://openrouter.ai/api/v1",
    "api-keys": ["sk"],
    models: [{ name: "m", alias: "a" }],
  };

  it("follows the seed: GET, PUT, PATCH by name and by index, DELETE by name and by index", async () => {
    expect(await call("GET", "/openai-compatibility")).toEqual({
      status: 200,
      body: { "openai-compatibility": [] },
    });
    expect(await call("PUT", "/openai-compatibility", [entry])).toEqual(OK);
    expect((await call("GET", "/openai-compatibility")).body).toEqual({
      "openai-compatibility": [shown(entry)],
    });
    const empty = {
      name: "openrouter",
      "base-url": "https://openrouter.ai/api/v1",
      "api-keys": [],
      models: [],
    };
    expect(
      await call("PATCH", "/openai-compatibility", { name: "openrouter", value: empty }),
    ).toEqual(OK);
    // An entry without keys stays listed (as in the seed's GET example) and serves nothing.
    expect((await call("GET", "/openai-compatibility")).body).toEqual({
      "openai-compatibility": [shown(empty)],
    });
    expect(gateway.credentials.pool.list().map((c) => [c.id, c.enabled])).toEqual([
      ["openai-compatibility:openrouter:0", false],
    ]);
    expect(await call("PATCH", "/openai-compatibility", { index: 0, value: entry })).toEqual(OK);
    expect(gateway.credentials.pool.list().map((c) => [c.id, c.enabled])).toEqual([
      ["openai-compatibility:openrouter:0", true],
    ]);
    expect(await call("DELETE", "/openai-compatibility?name=openrouter")).toEqual(OK);
    expect((await call("GET", "/openai-compatibility")).body).toEqual({
      "openai-compatibility": [],
    });
    await call("PUT", "/openai-compatibility", [entry]);
    expect(await call("DELETE", "/openai-compatibility?index=0")).toEqual(OK);
    expect(gateway.credentials.pool.list()).toEqual([]);
  });

  it("keeps one credential per API key and the entry order across edits", async () => {
    const a = {
      name: "a",
      "base-url": "https://a.example.com/v1",
      "api-keys": ["k1", "k2"],
      models: [],
    };
    const b = { name: "b", "base-url": "https://b.example.com/v1", "api-keys": ["k3"], models: [] };
    expect(await call("PUT", "/openai-compatibility", { items: [a, b] })).toEqual(OK);
    // Growing the first entry appends a credential but keeps the entry first.
    const a3 = { ...a, "api-keys": ["k1", "k2", "k4"] };
    expect(await call("PATCH", "/openai-compatibility", { name: "a", value: a3 })).toEqual(OK);
    expect((await call("GET", "/openai-compatibility")).body["openai-compatibility"]).toEqual([
      shown(a3),
      shown(b),
    ]);
    expect(gateway.credentials.pool.list().map((c) => c.id)).toEqual([
      "openai-compatibility:a:0",
      "openai-compatibility:a:1",
      "openai-compatibility:b:0",
      "openai-compatibility:a:2",
    ]);
    // Renaming keeps the position; duplicate names are refused.
    const renamed = { ...b, name: "c" };
    expect(await call("PATCH", "/openai-compatibility", { index: 1, value: renamed })).toEqual(OK);
    expect(await call("PATCH", "/openai-compatibility", { index: 1, value: a })).toEqual(INVALID);
    expect(await call("PUT", "/openai-compatibility", [a, a])).toEqual(INVALID);
    expect((await configLists({ pool: gateway.credentials.pool }))["openai-compatibility"]).toEqual(
      [shown(a3), shown(renamed)],
    );
  });

  it("answers 404 and 400 in the seed's format", async () => {
    await call("PUT", "/openai-compatibility", [entry]);
    expect(await call("PATCH", "/openai-compatibility", { name: "x", value: entry })).toEqual({
      status: 404,
      body: { error: "item not found" },
    });
    // Deleting an unknown name is a 200 no-op (CLIProxyAPI); a bad index a 400.
    expect(await call("DELETE", "/openai-compatibility?name=x")).toEqual(OK);
    expect(await call("DELETE", "/openai-compatibility?index=9")).toEqual({
      status: 400,
      body: { error: "missing name or index" },
    });
    for (const bad of [
      [{ ...entry, name: "" }],
      [{ ...entry, "base-url": "" }],
      [{ ...entry, "api-keys": "sk" }],
      [{ ...entry, models: [{ name: 1 }] }],
    ])
      expect(await call("PUT", "/openai-compatibility", bad)).toEqual(INVALID);
  });

  it("an entry added by PUT serves the next proxied request through the mock upstream", async () => {
    const { key } = await gateway.keys.create({ name: "client", unlimitedQuota: true });
    const ask = () =>
      fetch(`${proxyBase}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "mock-alias", messages: [{ role: "user", content: "hi" }] }),
      });
    expect((await ask()).status).not.toBe(200);
    expect(
      await call("PUT", "/openai-compatibility", [
        {
          name: "mock",
          "base-url": upstream.url,
          "api-keys": ["sk-up-1"],
          models: [{ name: "gpt-4o-mini", alias: "mock-alias" }],
        },
      ]),
    ).toEqual(OK);
    const res = await ask();
    expect(res.status).toBe(200);
    const last = upstream.requests.at(-1)!;
    expect(last.headers.authorization).toBe("Bearer sk-up-1");
    expect((last.body as { model: string }).model).toBe("gpt-4o-mini");
    // Deleting it takes effect on the next request too.
    expect(await call("DELETE", "/openai-compatibility?name=mock")).toEqual(OK);
    expect((await ask()).status).not.toBe(200);
  });
});

describe("configLists", () => {
  it("shows the object lists for GET /config", async () => {
    await call("PUT", "/claude-api-key", [{ "api-key": "sk-c" }]);
    await call("PUT", "/codex-api-key", [
      { "api-key": "sk-x", "base-url": "https://c.example/v1" },
    ]);
    await gateway.credentials.add({
      provider: "anthropic",
      kind: "oauth",
      baseUrl: "https://api.anthropic.com",
      secret: { accessToken: "at" },
    });
    expect(await configLists({ pool: gateway.credentials.pool })).toEqual({
      "claude-api-key": [{ "api-key": "sk-c", "base-url": "" }],
      "codex-api-key": [{ "api-key": "sk-x", "base-url": "https://c.example/v1" }],
      "openai-compatibility": [],
      "gemini-api-key": [],
      "interactions-api-key": [],
      "vertex-api-key": [],
      "xai-api-key": [],
    });
  });
});

it("a store failure half-way through a PUT leaves the previous list", async () => {
  await call("PUT", "/claude-api-key", [{ "api-key": "sk-a" }]);
  const pool = gateway.credentials.pool;
  const realAdd = pool.add.bind(pool);
  let calls = 0;
  pool.add = async (input) => {
    if (++calls === 2) throw new GatewayError("STORE_ERROR", "disk full");
    return realAdd(input);
  };
  try {
    const res = await call("PUT", "/claude-api-key", [
      { "api-key": "sk-new" },
      { "api-key": "sk-b" },
      { "api-key": "sk-c" },
    ]);
    expect(res.status).toBe(500);
    expect(String(res.body.error)).toMatch(/^failed to save config: /);
  } finally {
    pool.add = realAdd;
  }
  expect((await call("GET", "/claude-api-key")).body["claude-api-key"]).toEqual([
    { "api-key": "sk-a", "base-url": "" },
  ]);
});
