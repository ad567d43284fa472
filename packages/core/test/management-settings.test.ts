import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { consoleLogger, createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "management-settings-secret-0123456789-abc";
const KEY = "tp-mgmt-settings-key-0123456789";

let gateway: Gateway;
let server: Server;
let base: string;
const logger = consoleLogger("warn");

beforeEach(async () => {
  logger.level = "warn";
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger,
    usage: { flushIntervalMs: 10 },
  });
  await gateway.ready;
  await gateway.management.setKey(KEY);
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  await new Promise((r) => server.close(r));
  await gateway.close();
});

async function call(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${base}/v0/management${path}`, {
    method,
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  return { status: res.status, body: await res.json() };
}

const OK = { status: 200, body: { status: "ok" } };
const INVALID = { status: 400, body: { error: "invalid body" } };
const MISSING_FIELDS = { status: 400, body: { error: "missing fields" } };
const MISSING_INDEX = { status: 400, body: { error: "missing index or value" } };

describe("scalar settings", () => {
  const cases: {
    path: string;
    field: string;
    initial: unknown;
    next: unknown;
    wrong: unknown[];
  }[] = [
    { path: "/debug", field: "debug", initial: false, next: true, wrong: ["true", 1, null] },
    {
      path: "/force-gpt-5-codex",
      field: "gpt-5-codex",
      initial: false,
      next: true,
      wrong: ["yes", 0],
    },
    {
      path: "/proxy-url",
      field: "proxy-url",
      initial: "",
      next: "socks5://user:pass@127.0.0.1:1080/",
      wrong: [5, true, "not a url"],
    },
    {
      path: "/quota-exceeded/switch-project",
      field: "switch-project",
      initial: true,
      next: false,
      wrong: ["false", 0],
    },
    {
      path: "/quota-exceeded/switch-preview-model",
      field: "switch-preview-model",
      initial: true,
      next: false,
      wrong: [1],
    },
    {
      path: "/request-retry",
      field: "request-retry",
      initial: 3,
      next: 5,
      wrong: ["5", 1.5, -1, true],
    },
    { path: "/request-log", field: "request-log", initial: false, next: true, wrong: ["on"] },
    {
      path: "/allow-localhost-unauthenticated",
      field: "allow-localhost-unauthenticated",
      initial: false,
      next: true,
      wrong: [{}],
    },
    {
      path: "/usage-retention-days",
      field: "usage-retention-days",
      initial: 30,
      next: 7,
      wrong: [-1, "7"],
    },
  ];

  for (const c of cases) {
    it(`GET/PUT/PATCH ${c.path} with type checks`, async () => {
      expect(await call("GET", c.path)).toEqual({ status: 200, body: { [c.field]: c.initial } });
      for (const w of c.wrong) expect(await call("PUT", c.path, { value: w })).toEqual(INVALID);
      expect(await call("PATCH", c.path, {})).toEqual(INVALID);
      expect(await call("PUT", c.path, "{not json")).toEqual(INVALID);
      expect(await call("PUT", c.path, [c.next])).toEqual(INVALID);
      // Nothing changed by the refused writes.
      expect(await call("GET", c.path)).toEqual({ status: 200, body: { [c.field]: c.initial } });
      expect(await call("PUT", c.path, { value: c.next })).toEqual(OK);
      expect(await call("GET", c.path)).toEqual({ status: 200, body: { [c.field]: c.next } });
      expect(await call("PATCH", c.path, { value: c.initial })).toEqual(OK);
      expect(await call("GET", c.path)).toEqual({ status: 200, body: { [c.field]: c.initial } });
    });
  }

  it("keeps the other quota-exceeded flag when one changes", async () => {
    expect(await call("PUT", "/quota-exceeded/switch-project", { value: false })).toEqual(OK);
    expect(gateway.settings.get("quota-exceeded")).toEqual({
      "switch-project": false,
      "switch-preview-model": true,
    });
  });

  it("DELETE /proxy-url clears the proxy", async () => {
    expect(await call("PUT", "/proxy-url", { value: "http://127.0.0.1:8080" })).toEqual(OK);
    expect(await call("DELETE", "/proxy-url")).toEqual(OK);
    expect(await call("GET", "/proxy-url")).toEqual({ status: 200, body: { "proxy-url": "" } });
  });

  it("debug raises the logger's level at once and restores it", async () => {
    expect(logger.level).toBe("warn");
    expect(await call("PUT", "/debug", { value: true })).toEqual(OK);
    expect(logger.level).toBe("debug");
    expect(await call("PATCH", "/debug", { value: false })).toEqual(OK);
    expect(logger.level).toBe("warn");
  });

  it("request-retry applies to the next proxied request", async () => {
    const mock: MockUpstream = await createMockUpstream();
    try {
      // Retries go to other credentials: four of them, one per attempt at most.
      for (let i = 0; i < 4; i++)
        await gateway.credentials.add({
          provider: "openai",
          baseUrl: mock.url,
          secret: { apiKey: `u${i}` },
        });

      const { key } = await gateway.keys.create({ name: "t", unlimitedQuota: true });
      const chat = () =>
        fetch(`${base}/v1/chat/completions`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify({
            model: "gpt-4o-mini",
            messages: [{ role: "user", content: "hi" }],
          }),
        });
      expect(await call("PUT", "/request-retry", { value: 0 })).toEqual(OK);
      mock.fail({ status: 500 });
      expect((await chat()).status).toBe(500);
      expect(mock.requests.length).toBe(1);
      mock.reset();
      expect(await call("PUT", "/request-retry", { value: 2 })).toEqual(OK);
      mock.fail({ status: 500 });
      mock.fail({ status: 500 });
      expect((await chat()).status).toBe(200);
      expect(mock.requests.length).toBe(3);
    } finally {
      await mock.close();
    }
  });
});

describe("GET /config", () => {
  it("returns the seed's fields, never the management key hash", async () => {
    await call("PUT", "/api-keys", ["k1", "k2"]);
    await call("PUT", "/generative-language-api-key", ["AIzaSy-1"]);
    await call("PUT", "/request-retry", { value: 4 });
    const res = await call("GET", "/config");
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      debug: false,
      "proxy-url": "",
      "api-keys": ["k1", "k2"],
      "quota-exceeded": { "switch-project": true, "switch-preview-model": true },
      "generative-language-api-key": ["AIzaSy-1"],
      "request-log": false,
      "request-retry": 4,
      "claude-api-key": [],
      "codex-api-key": [],
      "openai-compatibility": [],
      "gemini-api-key": [{ "api-key": "AIzaSy-1", "base-url": "" }],
      "interactions-api-key": [],
      "vertex-api-key": [],
      "xai-api-key": [],
      "allow-localhost-unauthenticated": false,
      "usage-statistics-enabled": true,
      "logging-to-file": false,
      "oauth-excluded-models": {},
      "oauth-model-alias": {},
    });
    expect(JSON.stringify(res.body)).not.toContain("$2");
  });
});

describe("string lists", () => {
  for (const name of ["api-keys", "generative-language-api-key"]) {
    it(`${name}: GET, PUT (array and items), PATCH (old/new, index/value), DELETE (value, index)`, async () => {
      const list = async () => (await call("GET", `/${name}`)).body;
      expect(await list()).toEqual({ [name]: [] });
      expect(await call("PUT", `/${name}`, ["k1", "k2", "k3"])).toEqual(OK);
      expect(await list()).toEqual({ [name]: ["k1", "k2", "k3"] });
      expect(await call("PUT", `/${name}`, { items: ["k3", "k1", "k4"] })).toEqual(OK);
      expect(await list()).toEqual({ [name]: ["k3", "k1", "k4"] });
      expect(await call("PATCH", `/${name}`, { old: "k1", new: "k1b" })).toEqual(OK);
      expect(await list()).toEqual({ [name]: ["k3", "k1b", "k4"] });
      expect(await call("PATCH", `/${name}`, { index: 0, value: "k3b" })).toEqual(OK);
      expect(await list()).toEqual({ [name]: ["k3b", "k1b", "k4"] });
      // CLIProxyAPI's answers: an unknown `old` appends `new`; no usable selector is a 400.
      expect(await call("PATCH", `/${name}`, { old: "nope", new: "x" })).toEqual(OK);
      expect(await list()).toEqual({ [name]: ["k3b", "k1b", "k4", "x"] });
      expect(await call("DELETE", `/${name}?value=x`)).toEqual(OK);
      expect(await call("PATCH", `/${name}`, { index: 9, value: "x" })).toEqual(MISSING_FIELDS);
      expect(await call("PATCH", `/${name}`, { index: "0", value: "x" })).toEqual(INVALID);
      expect(await call("PATCH", `/${name}`, { old: "k4" })).toEqual(MISSING_FIELDS);
      expect(await call("PATCH", `/${name}`, { foo: 1 })).toEqual(MISSING_FIELDS);
      expect(await call("PUT", `/${name}`, { items: "k1" })).toEqual(INVALID);
      expect(await call("PUT", `/${name}`, [1, 2])).toEqual(INVALID);
      expect(await call("PUT", `/${name}`, "{")).toEqual(INVALID);
      expect(await list()).toEqual({ [name]: ["k3b", "k1b", "k4"] });
      expect(await call("DELETE", `/${name}?value=k1b`)).toEqual(OK);
      expect(await list()).toEqual({ [name]: ["k3b", "k4"] });
      expect(await call("DELETE", `/${name}?index=0`)).toEqual(OK);
      expect(await list()).toEqual({ [name]: ["k4"] });
      // Deleting a value that is not there is a 200 no-op (CLIProxyAPI); a bad index a 400.
      expect(await call("DELETE", `/${name}?value=zzz`)).toEqual(OK);
      expect(await call("DELETE", `/${name}?index=5`)).toEqual({
        status: 400,
        body: { error: "missing index or value" },
      });
      expect(await call("DELETE", `/${name}?index=x`)).toEqual(MISSING_INDEX);
      expect(await call("DELETE", `/${name}`)).toEqual(MISSING_INDEX);
      expect(await list()).toEqual({ [name]: ["k4"] });
    });
  }

  it("api-keys are unlimited downstream keys that authorise proxy requests; other keys are not listed", async () => {
    const other = await gateway.keys.create({ name: "made elsewhere", remainQuota: 10 });
    expect(await call("PUT", "/api-keys", ["sk-listed-key-1"])).toEqual(OK);
    expect((await call("GET", "/api-keys")).body).toEqual({ "api-keys": ["sk-listed-key-1"] });
    const rec = await gateway.keys.findByPlain("sk-listed-key-1");
    expect(rec).toMatchObject({ unlimitedQuota: true, userId: null });
    const models = await fetch(`${base}/v1/models`, {
      headers: { authorization: "Bearer sk-listed-key-1" },
    });
    expect(models.status).toBe(200);
    // A key of another dialect cannot be taken over by the list.
    expect(await call("PUT", "/api-keys", ["sk-listed-key-1", other.key])).toEqual({
      status: 409,
      body: { error: "key already in use" },
    });
    expect((await call("GET", "/api-keys")).body).toEqual({ "api-keys": ["sk-listed-key-1"] });
    expect(await call("DELETE", "/api-keys?value=sk-listed-key-1")).toEqual(OK);
    expect(await gateway.keys.findByPlain("sk-listed-key-1")).toBeNull();
    expect(await gateway.keys.get(other.record.id)).not.toBeNull();
  });

  it("generative-language-api-key entries are gemini credentials of the pool", async () => {
    expect(await call("PUT", "/generative-language-api-key", ["AIzaSy-1", "AIzaSy-2"])).toEqual(OK);
    const creds = gateway.credentials.list().filter((c) => c.provider === "gemini");
    expect(creds).toHaveLength(2);
    expect(creds[0]).toMatchObject({
      kind: "api-key",
      baseUrl: "https://generativelanguage.googleapis.com",
      label: "generative-language-api-key",
    });
  });
});
