/**
 * Where credential limits are set besides the library API: the management dialect's provider
 * lists (`rpm-limit`, `tpm-limit`, `max-concurrency`, `spend-limit-day`, `spend-limit-month`)
 * and the pool dialect's `/v1/tokens` (the same in snake_case). Writes from a client that does
 * not know the fields keep the stored limits; bad values are a 400 in the dialect's format. One
 * real gateway on port 0 behind its management key, against a mock upstream.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const MANAGEMENT_KEY = "tp-mgmt-credential-limits-0123456789abcdef";

let upstream: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;

beforeEach(async () => {
  upstream = await createMockUpstream();
  gateway = createGateway({
    store: memoryStore(),
    secret: "credential-limits-dialects-secret-0123456789",
    logger: false,
    usage: { flushIntervalMs: 10 },
    poolDialect: { provider: "openai", baseUrl: upstream.url },
  });
  await gateway.management.setKey(MANAGEMENT_KEY);
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
  await upstream.close();
});

async function call(method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      authorization: `Bearer ${MANAGEMENT_KEY}`,
      ...(body === undefined ? {} : { "content-type": "application/json" }),
    },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const mgmt = (method: string, path: string, body?: unknown) =>
  call(method, `/v0/management${path}`, body);

/** The stored limits of the credential holding `apiKey`. */
function limitsOf(apiKey: string) {
  return gateway.credentials.pool.list().find((c) => c.secret.apiKey === apiKey)?.limits;
}

const OK = { status: 200, body: { status: "ok" } };

describe("management dialect: provider key lists", () => {
  it("PUT sets the limits, GET shows them, and they land on the credentials", async () => {
    expect(
      await mgmt("PUT", "/claude-api-key", [
        { "api-key": "sk-a", "rpm-limit": 30, "max-concurrency": 1 },
        { "api-key": "sk-b" },
      ]),
    ).toEqual(OK);
    expect(await mgmt("GET", "/claude-api-key")).toEqual({
      status: 200,
      body: {
        "claude-api-key": [
          { "api-key": "sk-a", "base-url": "", "rpm-limit": 30, "max-concurrency": 1 },
          { "api-key": "sk-b", "base-url": "" },
        ],
      },
    });
    expect(limitsOf("sk-a")).toEqual({ rpm: 30, maxConcurrency: 1 });
    expect(limitsOf("sk-b")).toBeUndefined();
    // GET /config shows them too.
    const config = await mgmt("GET", "/config");
    expect(config.body["claude-api-key"]).toEqual([
      { "api-key": "sk-a", "base-url": "", "rpm-limit": 30, "max-concurrency": 1 },
      { "api-key": "sk-b", "base-url": "" },
    ]);
  });

  it("an older client's PUT and PATCH without the fields keep the stored limits, even when items move", async () => {
    await mgmt("PUT", "/codex-api-key", [
      { "api-key": "sk-a", "tpm-limit": 1000 },
      { "api-key": "sk-b", "spend-limit-day": 500, "spend-limit-month": 9000 },
    ]);
    // It knows only api-key and base-url: it drops the first item and edits the second.
    expect(
      await mgmt("PUT", "/codex-api-key", [
        { "api-key": "sk-b", "base-url": "https://b.example.com" },
      ]),
    ).toEqual(OK);
    expect(limitsOf("sk-a")).toBeUndefined();
    expect(limitsOf("sk-b")).toEqual({ spendPerDay: 500, spendPerMonth: 9000 });
    expect(
      await mgmt("PATCH", "/codex-api-key", { index: 0, value: { "api-key": "sk-b" } }),
    ).toEqual(OK);
    expect(limitsOf("sk-b")).toEqual({ spendPerDay: 500, spendPerMonth: 9000 });
    // A PATCH is a merge patch (CLIProxyAPI's): rotating the key keeps the item's limits.
    await mgmt("PATCH", "/codex-api-key", { index: 0, value: { "api-key": "sk-r" } });
    expect(limitsOf("sk-r")).toEqual({ spendPerDay: 500, spendPerMonth: 9000 });
    // A new key in a PUT starts without limits, even at a reused position.
    await mgmt("PUT", "/codex-api-key", [{ "api-key": "sk-c" }]);
    expect(limitsOf("sk-c")).toEqual({});
    // A field sent wins; 0 removes that limit only.
    await mgmt("PUT", "/codex-api-key", [{ "api-key": "sk-c", "rpm-limit": 5, "tpm-limit": 50 }]);
    await mgmt("PATCH", "/codex-api-key", {
      match: "sk-c",
      value: { "api-key": "sk-c", "tpm-limit": 0 },
    });
    expect(limitsOf("sk-c")).toEqual({ rpm: 5 });
    expect((await mgmt("GET", "/codex-api-key")).body).toEqual({
      "codex-api-key": [{ "api-key": "sk-c", "base-url": "", "rpm-limit": 5 }],
    });
  });

  it("bad values are a 400 with what is wrong, and nothing is written", async () => {
    await mgmt("PUT", "/claude-api-key", [{ "api-key": "sk-a", "rpm-limit": 3 }]);
    for (const bad of [-1, 1.5, "10", true]) {
      const put = await mgmt("PUT", "/claude-api-key", [{ "api-key": "sk-z", "rpm-limit": bad }]);
      expect(put).toEqual({
        status: 400,
        body: {
          error: `invalid body: \`rpm-limit\` must be a non-negative integer (0 = none), got ${JSON.stringify(bad)}`,
        },
      });
      const patch = await mgmt("PATCH", "/claude-api-key", {
        index: 0,
        value: { "api-key": "sk-a", "max-concurrency": bad },
      });
      expect(patch.status).toBe(400);
      expect(patch.body.error).toContain("`max-concurrency` must be a non-negative integer");
    }
    expect((await mgmt("GET", "/claude-api-key")).body).toEqual({
      "claude-api-key": [{ "api-key": "sk-a", "base-url": "", "rpm-limit": 3 }],
    });
  });

  it("openai-compatibility: an entry's limits apply to each of its keys, and are enforced", async () => {
    expect(
      await mgmt("PUT", "/openai-compatibility", [
        {
          name: "up",
          "base-url": upstream.url,
          "api-keys": ["sk-1", "sk-2"],
          models: [{ name: "gpt-4o-mini", alias: "" }],
          "rpm-limit": 1,
        },
      ]),
    ).toEqual(OK);
    expect(limitsOf("sk-1")).toEqual({ rpm: 1 });
    expect(limitsOf("sk-2")).toEqual({ rpm: 1 });
    expect((await mgmt("GET", "/openai-compatibility")).body["openai-compatibility"]).toEqual([
      {
        name: "up",
        "base-url": upstream.url,
        "api-keys": ["sk-1", "sk-2"],
        "api-key-entries": [
          { "api-key": "sk-1", "proxy-url": "" },
          { "api-key": "sk-2", "proxy-url": "" },
        ],
        models: [{ name: "gpt-4o-mini", alias: "" }],
        "rpm-limit": 1,
      },
    ]);
    // An older client's PUT (no limit fields) keeps them.
    await mgmt("PUT", "/openai-compatibility", [
      {
        name: "up",
        "base-url": upstream.url,
        "api-keys": ["sk-1", "sk-2"],
        models: [{ name: "gpt-4o-mini", alias: "" }],
      },
    ]);
    expect(limitsOf("sk-2")).toEqual({ rpm: 1 });

    await gateway.settings.set({ "request-retry": 0 });
    const key = (await gateway.keys.create({ name: "k", unlimitedQuota: true })).key;
    const chat = () =>
      fetch(`${base}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] }),
      });
    expect((await chat()).status).toBe(200);
    expect((await chat()).status).toBe(200);
    const third = await chat();
    expect(third.status).toBe(429);
    expect(((await third.json()) as { error: { code: string } }).error.code).toBe(
      "rate_limit_exceeded",
    );
    expect(upstream.requests.map((r) => r.headers.authorization)).toEqual([
      "Bearer sk-1",
      "Bearer sk-2",
    ]);
  });
});

describe("pool dialect: /v1/tokens", () => {
  const RT = "1//0GWI4-refresh-token-limits-AAAAAAAAAAAAAAAA";

  it("POST sets the limits, GET shows them, PUT merges them, bad values are a 400", async () => {
    const added = await call("POST", "/v1/tokens", {
      access_token: "ya29.limits-access-token-abc12345",
      refresh_token: RT,
      expires_in: 3599,
      rpm_limit: 30,
      max_concurrency: 1,
    });
    expect(added.status).toBe(200);
    const id = (added.body.data as { id: string }).id;
    const list = async () => ((await call("GET", "/v1/tokens")).body.data as unknown[])[0];
    expect(await list()).toMatchObject({ id, rpm_limit: 30, max_concurrency: 1 });
    expect(gateway.credentials.get(id)!.limits).toEqual({ rpm: 30, maxConcurrency: 1 });

    // The seed's own update (no limit fields) keeps them.
    expect((await call("PUT", `/v1/tokens/${id}`, { enable: false })).status).toBe(200);
    expect(gateway.credentials.get(id)!.limits).toEqual({ rpm: 30, maxConcurrency: 1 });
    expect(
      (
        await call("PUT", `/v1/tokens/${id}`, {
          max_concurrency: 0,
          spend_limit_day: 100,
          spend_limit_month: 2000,
          tpm_limit: 5000,
        })
      ).status,
    ).toBe(200);
    expect(gateway.credentials.get(id)!.limits).toEqual({
      rpm: 30,
      tpm: 5000,
      spendPerDay: 100,
      spendPerMonth: 2000,
    });
    const shown = (await list()) as Record<string, unknown>;
    expect(shown).toMatchObject({
      rpm_limit: 30,
      tpm_limit: 5000,
      spend_limit_day: 100,
      spend_limit_month: 2000,
    });
    expect(shown).not.toHaveProperty("max_concurrency");

    for (const bad of [-1, 2.5, "5", null]) {
      const r = await call("PUT", `/v1/tokens/${id}`, { rpm_limit: bad });
      expect(r).toEqual({
        status: 400,
        body: {
          success: false,
          message: "请求参数错误: rpm_limit must be a non-negative integer (0 = none)",
        },
      });
    }
    const r = await call("POST", "/v1/tokens", { refresh_token: `${RT}-2`, tpm_limit: -5 });
    expect(r.status).toBe(400);
    expect(r.body).toEqual({
      success: false,
      message: "请求参数错误: tpm_limit must be a non-negative integer (0 = none)",
    });
    expect(gateway.credentials.list().length).toBe(1);
    expect(gateway.credentials.get(id)!.limits).toMatchObject({ rpm: 30 });
  });

  it("a token without limits lists exactly the seed's fields", async () => {
    await call("POST", "/v1/tokens", { refresh_token: RT });
    const [view] = (await call("GET", "/v1/tokens")).body.data as Record<string, unknown>[];
    expect(Object.keys(view!).sort()).toEqual(
      [
        "access_token_suffix",
        "enable",
        "expires_in",
        "id",
        "projectId",
        "refresh_token",
        "timestamp",
      ].sort(),
    );
  });
});
