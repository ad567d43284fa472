import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  type CreateKeyInput,
  createGateway,
  type Gateway,
  type GatewayOptions,
  KeyStatus,
  memoryStore,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "enforcement-secret-0123456789-0123456789";

interface Running {
  gateway: Gateway;
  server: Server;
  base: string;
}

let mock: MockUpstream;
const running: Running[] = [];

beforeEach(async () => {
  mock = await createMockUpstream();
});

afterEach(async () => {
  for (const r of running.splice(0)) {
    r.server.closeAllConnections();
    await new Promise((done) => r.server.close(done));
    await r.gateway.close();
  }
  await mock.close();
});

/** A gateway on a real node:http server; `host` is the interface it listens on. */
async function start(options: Partial<GatewayOptions> = {}, host = "127.0.0.1"): Promise<Running> {
  const gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
    ...options,
  });
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    secret: { apiKey: "upstream" },
    models: [{ name: "gpt-4o-mini" }, { name: "gpt-4o" }],
  });
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, host, r));
  const port = (server.address() as AddressInfo).port;
  const base = host.includes(":")
    ? `http://[${host === "::" ? "::1" : host}]:${port}`
    : `http://${host}:${port}`;
  const r = { gateway, server, base };
  running.push(r);
  return r;
}

async function makeKey(g: Gateway, input: Partial<CreateKeyInput> = {}): Promise<string> {
  return (await g.keys.create({ name: "k", remainQuota: 100_000, ...input })).key;
}

interface OpenAIError {
  error: { message: string; type: string; param: null; code: string };
}

async function chat(
  base: string,
  key: string | null,
  opts: { model?: string; headers?: Record<string, string>; origin?: string } = {},
): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${opts.origin ?? base}/v1/chat/completions`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(key === null ? {} : { authorization: `Bearer ${key}` }),
      ...opts.headers,
    },
    body: JSON.stringify({
      model: opts.model ?? "gpt-4o-mini",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 16,
    }),
  });
  return { status: res.status, body: await res.json() };
}

/** Asserts an OpenAI-style rejection with this status and code, and that nothing went upstream. */
async function expectRejected(
  p: Promise<{ status: number; body: unknown }>,
  status: number,
  code: string,
): Promise<OpenAIError> {
  const before = mock.requests.length;
  const res = await p;
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  const body = res.body as OpenAIError;
  expect(Object.keys(body)).toEqual(["error"]);
  expect(body.error.code).toBe(code);
  expect(body.error.param).toBeNull();
  expect(typeof body.error.type).toBe("string");
  expect(body.error.message.length).toBeGreaterThan(0);
  expect(mock.requests.length).toBe(before);
  return body;
}

describe("every proxy request is checked", () => {
  it("401 missing_api_key without a key, 401 invalid_api_key for an unknown one", async () => {
    const { base } = await start();
    await expectRejected(chat(base, null), 401, "missing_api_key");
    const body = await expectRejected(
      chat(base, "sk-not-a-real-key-0000000000000"),
      401,
      "invalid_api_key",
    );
    // The presented key is never echoed back in full.
    expect(body.error.message).not.toContain("sk-not-a-real-key-0000000000000");
  });

  it("401 key_disabled for a disabled key, and the change applies at once", async () => {
    const { gateway, base } = await start();
    const created = await gateway.keys.create({ name: "d", remainQuota: 100_000 });
    expect((await chat(base, created.key)).status).toBe(200);
    await gateway.keys.update(created.record.id, { status: KeyStatus.Disabled });
    await expectRejected(chat(base, created.key), 401, "key_disabled");
  });

  it("401 key_expired for a key past its expired_time or marked expired", async () => {
    const { gateway, base } = await start();
    const past = Math.floor(Date.now() / 1000) - 1;
    await expectRejected(
      chat(base, await makeKey(gateway, { expiredTime: past })),
      401,
      "key_expired",
    );
    await expectRejected(
      chat(base, await makeKey(gateway, { status: KeyStatus.Expired })),
      401,
      "key_expired",
    );
    const future = Math.floor(Date.now() / 1000) + 3600;
    expect((await chat(base, await makeKey(gateway, { expiredTime: future }))).status).toBe(200);
  });

  it("429 key_exhausted for a key marked exhausted, 429 quota_exhausted when its quota cannot cover the request", async () => {
    const { gateway, base } = await start();
    await expectRejected(
      chat(base, await makeKey(gateway, { status: KeyStatus.Exhausted })),
      429,
      "key_exhausted",
    );
    await expectRejected(
      chat(base, await makeKey(gateway, { remainQuota: 1 })),
      429,
      "quota_exhausted",
    );
    // An unlimited key is not limited by its own balance.
    expect(
      (await chat(base, await makeKey(gateway, { remainQuota: 0, unlimitedQuota: true }))).status,
    ).toBe(200);
  });

  it("429 user_quota_exhausted when the owner's quota cannot cover the request", async () => {
    const { gateway, base } = await start();
    const { record } = await gateway.users.create({ username: "poor", quota: 1 });
    await expectRejected(
      chat(base, await makeKey(gateway, { userId: record.id })),
      429,
      "user_quota_exhausted",
    );
  });

  it("403 model_not_allowed outside the key's model limits; /v1/models lists only allowed models", async () => {
    const { gateway, base } = await start();
    const key = await makeKey(gateway, { modelLimitsEnabled: true, modelLimits: ["gpt-4o"] });
    await expectRejected(chat(base, key, { model: "gpt-4o-mini" }), 403, "model_not_allowed");
    expect((await chat(base, key, { model: "gpt-4o" })).status).toBe(200);
    const models = (await (
      await fetch(`${base}/v1/models`, { headers: { authorization: `Bearer ${key}` } })
    ).json()) as { data: { id: string }[] };
    expect(models.data.map((m) => m.id)).toEqual(["gpt-4o"]);
    // Limits that are switched off do not apply.
    const off = await makeKey(gateway, { modelLimitsEnabled: false, modelLimits: ["gpt-4o"] });
    expect((await chat(base, off, { model: "gpt-4o-mini" })).status).toBe(200);
  });

  it("403 user_disabled when the owner is disabled, 403 key_owner_missing when the owner is gone", async () => {
    const { gateway, base } = await start();
    const { record } = await gateway.users.create({ username: "owner", quota: 1_000_000 });
    const key = await makeKey(gateway, { userId: record.id });
    expect((await chat(base, key)).status).toBe(200);
    await gateway.users.update(record.id, { status: 2 });
    await expectRejected(chat(base, key), 403, "user_disabled");
    await gateway.users.update(record.id, { status: 1 });
    expect((await chat(base, key)).status).toBe(200);
    // Deleted behind the gateway's back (another instance, a script): the key has no owner left.
    await gateway.store.users.delete(record.id);
    await new Promise((r) => setTimeout(r, 0));
    await expectRejected(chat(base, key), 403, "key_owner_missing");
  });

  it("a user deleted through gateway.users takes their keys along: 401 invalid_api_key", async () => {
    const { gateway, base } = await start();
    const { record } = await gateway.users.create({ username: "gone", quota: 1_000_000 });
    const key = await makeKey(gateway, { userId: record.id });
    expect((await chat(base, key)).status).toBe(200);
    await gateway.users.delete(record.id);
    await expectRejected(chat(base, key), 401, "invalid_api_key");
  });
});

describe("IP allowlists", () => {
  it("check the direct peer: 403 ip_not_allowed outside the list, 200 inside (IPv4, CIDR)", async () => {
    const { gateway, base } = await start();
    await expectRejected(
      chat(base, await makeKey(gateway, { allowIps: ["10.0.0.0/8"] })),
      403,
      "ip_not_allowed",
    );
    expect((await chat(base, await makeKey(gateway, { allowIps: ["127.0.0.1"] }))).status).toBe(
      200,
    );
    expect(
      (await chat(base, await makeKey(gateway, { allowIps: ["10.1.2.3", "127.0.0.0/8"] }))).status,
    ).toBe(200);
  });

  it("ignore X-Forwarded-For unless the peer is a trusted proxy", async () => {
    const { gateway, base } = await start();
    const key = await makeKey(gateway, { allowIps: ["203.0.113.0/24"] });
    await expectRejected(
      chat(base, key, { headers: { "x-forwarded-for": "203.0.113.7" } }),
      403,
      "ip_not_allowed",
    );
    // Trusting some other proxy does not make this peer trusted.
    const other = await start({ trustedProxies: ["10.9.9.9"] });
    const key2 = await makeKey(other.gateway, { allowIps: ["203.0.113.0/24"] });
    await expectRejected(
      chat(other.base, key2, { headers: { "x-forwarded-for": "203.0.113.7" } }),
      403,
      "ip_not_allowed",
    );
  });

  it("read the client from X-Forwarded-For behind a trusted proxy, walking from the right", async () => {
    const { gateway, base } = await start({ trustedProxies: ["127.0.0.1", "10.0.0.0/8"] });
    const key = await makeKey(gateway, { allowIps: ["203.0.113.0/24"] });
    const via = (xff: string) => chat(base, key, { headers: { "x-forwarded-for": xff } });
    expect((await via("203.0.113.7")).status).toBe(200);
    expect((await via("203.0.113.7:51234")).status).toBe(200);
    // Hops appended by trusted proxies (10.x) are skipped.
    expect((await via("203.0.113.7, 10.1.1.1")).status).toBe(200);
    await expectRejected(via("198.51.100.1"), 403, "ip_not_allowed");
    // A client cannot spoof its way in by prepending an allowed address: the rightmost
    // untrusted hop is the one the trusted proxy saw.
    await expectRejected(via("203.0.113.7, 198.51.100.1"), 403, "ip_not_allowed");
    // Without the header the peer (the proxy itself) is the client.
    await expectRejected(chat(base, key), 403, "ip_not_allowed");
  });

  it("handle IPv6 peers, IPv6 CIDR ranges and IPv6 hops behind a trusted proxy", async () => {
    const direct = await start({}, "::1");
    expect(
      (await chat(direct.base, await makeKey(direct.gateway, { allowIps: ["::1"] }))).status,
    ).toBe(200);
    expect(
      (await chat(direct.base, await makeKey(direct.gateway, { allowIps: ["::/64", "10.0.0.1"] })))
        .status,
    ).toBe(200);
    await expectRejected(
      chat(direct.base, await makeKey(direct.gateway, { allowIps: ["2001:db8::/32"] })),
      403,
      "ip_not_allowed",
    );

    const proxied = await start({ trustedProxies: ["::1"] }, "::1");
    const key = await makeKey(proxied.gateway, { allowIps: ["2001:db8::/32"] });
    const via = (xff: string) => chat(proxied.base, key, { headers: { "x-forwarded-for": xff } });
    expect((await via("2001:db8::42")).status).toBe(200);
    expect((await via("[2001:db8:1::7]:443")).status).toBe(200);
    await expectRejected(via("2001:db9::1"), 403, "ip_not_allowed");
  });

  it("treat an IPv4-mapped IPv6 peer as its IPv4 address", async () => {
    const dual = await start({}, "::");
    const port = new URL(dual.base).port;
    const origin = `http://127.0.0.1:${port}`;
    expect(
      (
        await chat(dual.base, await makeKey(dual.gateway, { allowIps: ["127.0.0.0/8"] }), {
          origin,
        })
      ).status,
    ).toBe(200);
    await expectRejected(
      chat(dual.base, await makeKey(dual.gateway, { allowIps: ["10.0.0.0/8"] }), { origin }),
      403,
      "ip_not_allowed",
    );
  });
});

describe("keys managed through the token dialect are enforced on the proxy", () => {
  it("limits, allowlists and status changes made over /api/token/ apply to the next request", async () => {
    const { gateway, base } = await start();
    const mgmtKey = "management-key-0123456789-abcdef";
    await gateway.management.setKey(mgmtKey);
    const call = async (method: string, path: string, body: unknown) =>
      (await (
        await fetch(`${base}${path}`, {
          method,
          headers: { authorization: `Bearer ${mgmtKey}`, "content-type": "application/json" },
          body: JSON.stringify(body),
        })
      ).json()) as { success: boolean; data: { id: number; key: string } };
    const made = await call("POST", "/api/token/", {
      name: "dialect",
      remain_quota: 100_000,
      model_limits_enabled: true,
      model_limits: "gpt-4o",
      allow_ips: "127.0.0.1\n::1",
    });
    expect(made.success).toBe(true);
    const key = made.data.key;
    expect((await chat(base, key, { model: "gpt-4o" })).status).toBe(200);
    await expectRejected(chat(base, key, { model: "gpt-4o-mini" }), 403, "model_not_allowed");

    await call("PUT", "/api/token/", { id: made.data.id, allow_ips: "192.0.2.0/24" });
    await expectRejected(chat(base, key, { model: "gpt-4o" }), 403, "ip_not_allowed");

    await call("PUT", "/api/token/", { id: made.data.id, allow_ips: "" });
    expect((await chat(base, key, { model: "gpt-4o" })).status).toBe(200);

    await call("PUT", "/api/token/?status_only=true", { id: made.data.id, status: 2 });
    await expectRejected(chat(base, key, { model: "gpt-4o" }), 401, "key_disabled");

    await call("POST", "/api/token/batch", { ids: [made.data.id] });
    await expectRejected(chat(base, key, { model: "gpt-4o" }), 401, "invalid_api_key");
  });
});
