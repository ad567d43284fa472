/**
 * Balances a key holder reads with the key itself: new-api's `GET /api/usage/token`, the
 * OpenAI-style `GET /v1/dashboard/billing/{subscription,usage}` of one-api/new-api, and
 * OpenRouter's `GET /v1/key`. One gateway on the memory store behind a real node:http server on
 * port 0, the official `openai` client and raw fetch, against a mock upstream; quota is used by
 * real proxied requests.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type CreateKeyInput,
  createGateway,
  type Gateway,
  KeyStatus,
  memoryStore,
  QUOTA_PER_USD,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const UPSTREAM_KEY = "sk-upstream-balance-0a1b2c3d4e5f60718293";
const DAY_MS = 86_400_000;

let mock: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  gateway = createGateway({
    store: memoryStore(),
    secret: "balance-test-secret-0123456789-abcdefghij",
    logger: "silent",
    usage: { flushIntervalMs: 10 },
  });
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    kind: "api-key",
    secret: { apiKey: UPSTREAM_KEY },
    models: [{ name: "gpt-4o-mini" }],
  });
  await gateway.settings.set({ "request-retry": 0 });
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await gateway.close();
  await mock.close();
});

async function newKey(input: Partial<CreateKeyInput> = {}) {
  const { key, record } = await gateway.keys.create({ name: "bal", ...input });
  return { key, id: record.id };
}

const openai = (apiKey: string) =>
  new OpenAI({ apiKey, baseURL: `${base}/v1`, maxRetries: 0, timeout: 5_000 });

async function get(path: string, headers: Record<string, string> = {}, method = "GET") {
  const res = await fetch(`${base}${path}`, { method, headers });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) as Record<string, any> };
}
const bearer = (key: string) => ({ authorization: `Bearer ${key}` });

/** Sends `n` chat completions with `key` (granted 1000000 units), then waits until they are settled. */
async function useQuota(key: string, id: number, n: number): Promise<number> {
  const client = openai(key);
  for (let i = 0; i < n; i++)
    await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: `Hi ${i}` }],
    });
  for (let i = 0; i < 200; i++) {
    const k = (await gateway.keys.get(id))!;
    // Settled: nothing is reserved any more, so remain + used is the grant again.
    if (k.usedQuota > 0 && k.remainQuota + k.usedQuota === 1_000_000) return k.usedQuota;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("the requests' quota was not settled");
}

describe("the official openai client's raw GETs", () => {
  it("reads /v1/dashboard/billing/subscription, /usage and /v1/key for a key without a refill", async () => {
    const expiry = Math.floor(Date.now() / 1000) + 3600;
    const { key } = await newKey({ name: "no-refill", remainQuota: 750_000, expiredTime: expiry });
    const client = openai(key);
    const sub = await client.get<Record<string, unknown>>("/dashboard/billing/subscription");
    expect(sub).toEqual({
      object: "billing_subscription",
      has_payment_method: true,
      soft_limit_usd: 1.5,
      hard_limit_usd: 1.5,
      system_hard_limit_usd: 1.5,
      access_until: expiry,
    });
    expect(await client.get("/dashboard/billing/usage")).toEqual({
      object: "list",
      total_usage: 0,
    });
    const info = (await client.get("/key")) as { data: Record<string, unknown> };
    expect(info.data).toMatchObject({
      label: "no-refill",
      limit: 1.5,
      limit_remaining: 1.5,
      limit_reset: null,
      usage: 0,
      is_free_tier: false,
      expires_at: new Date(expiry * 1000).toISOString(),
      quota_refill_interval: "",
      quota_refill_amount: 0,
      next_refill_time: 0,
    });
  });

  it("reads the same routes for a key with a daily refill: limit, reset and next refill", async () => {
    const { key } = await newKey({
      name: "daily",
      remainQuota: 100_000,
      quotaRefill: { interval: "1d", amount: 250_000 },
      limits: { rpm: 30, tpm: 9_000, rpd: 500, maxConcurrency: 2 },
    });
    const client = openai(key);
    const next = Date.UTC(
      new Date().getUTCFullYear(),
      new Date().getUTCMonth(),
      new Date().getUTCDate() + 1,
    );
    expect(await client.get("/dashboard/billing/subscription")).toMatchObject({
      object: "billing_subscription",
      hard_limit_usd: 0.2,
      access_until: 0,
    });
    const info = (await client.get("/key")) as { data: Record<string, unknown> };
    expect(info.data).toMatchObject({
      label: "daily",
      limit: 0.5,
      limit_remaining: 0.2,
      limit_reset: "daily",
      usage: 0,
      expires_at: null,
      rate_limit: { requests: 30, interval: "1m" },
      rpm_limit: 30,
      tpm_limit: 9_000,
      rpd_limit: 500,
      max_concurrency: 2,
      quota_refill_interval: "1d",
      quota_refill_amount: 0.5,
      next_refill_time: next / 1000,
    });
  });

  it("an unknown key is a 401 the openai client raises as an AuthenticationError", async () => {
    const client = openai("sk-not-a-key-of-this-gateway-000000000000");
    await expect(client.get("/dashboard/billing/subscription")).rejects.toMatchObject({
      status: 401,
      error: { code: "invalid_api_key" },
    });
    await expect(client.get("/key")).rejects.toMatchObject({
      status: 401,
      error: { code: 401 },
    });
  });
});

describe("new-api's GET /api/usage/token", () => {
  it("answers the key's exact numbers after proxied requests used quota", async () => {
    const expiry = Math.floor(Date.now() / 1000) + 86_400;
    const { key, id } = await newKey({
      name: "worker",
      remainQuota: 1_000_000,
      expiredTime: expiry,
      modelLimitsEnabled: true,
      modelLimits: ["gpt-4o-mini", "gpt-4o"],
    });
    const used = await useQuota(key, id, 2);
    expect(used).toBeGreaterThan(0);
    const res = await get("/api/usage/token", bearer(key));
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      code: true,
      message: "ok",
      data: {
        object: "token_usage",
        name: "worker",
        total_granted: 1_000_000,
        total_used: used,
        total_available: 1_000_000 - used,
        unlimited_quota: false,
        model_limits: { "gpt-4o-mini": true, "gpt-4o": true },
        model_limits_enabled: true,
        expires_at: expiry,
        rpm_limit: 0,
        tpm_limit: 0,
        rpd_limit: 0,
        max_concurrency: 0,
        queue_timeout_ms: 0,
        quota_refill_interval: "",
        quota_refill_amount: 0,
        next_refill_time: 0,
      },
    });
    // The trailing slash is new-api's own spelling.
    expect((await get("/api/usage/token/", bearer(key))).body).toEqual(res.body);
    // The same numbers in USD and cents on the OpenAI-style routes and OpenRouter's.
    expect((await get("/v1/dashboard/billing/usage", bearer(key))).body).toEqual({
      object: "list",
      total_usage: (used / QUOTA_PER_USD) * 100,
    });
    expect((await get("/dashboard/billing/subscription", bearer(key))).body).toMatchObject({
      hard_limit_usd: 2,
      access_until: expiry,
    });
    expect((await get("/api/v1/key", bearer(key))).body.data).toMatchObject({
      limit: 2,
      limit_remaining: (1_000_000 - used) / QUOTA_PER_USD,
      usage: used / QUOTA_PER_USD,
    });
  });

  it("accepts the key in x-api-key and x-goog-api-key as the proxy routes do", async () => {
    const { key } = await newKey({ name: "headers", remainQuota: 5 });
    for (const h of ["x-api-key", "x-goog-api-key"]) {
      const res = await get("/api/usage/token", { [h]: key });
      expect(res.status).toBe(200);
      expect(res.body.data).toMatchObject({ name: "headers", total_available: 5 });
    }
  });
});

describe("keys with no limit, no balance or no time left", () => {
  it("an unlimited key answers as new-api does: 100000000 USD, limit null on /v1/key", async () => {
    const { key } = await newKey({ name: "unl", unlimitedQuota: true });
    expect((await get("/v1/dashboard/billing/subscription", bearer(key))).body).toEqual({
      object: "billing_subscription",
      has_payment_method: true,
      soft_limit_usd: 100_000_000,
      hard_limit_usd: 100_000_000,
      system_hard_limit_usd: 100_000_000,
      access_until: 0,
    });
    expect((await get("/api/usage/token", bearer(key))).body.data).toMatchObject({
      unlimited_quota: true,
      total_granted: 0,
      expires_at: 0,
    });
    expect((await get("/v1/key", bearer(key))).body.data).toMatchObject({
      limit: null,
      limit_remaining: null,
      limit_reset: null,
    });
  });

  it("an unlimited key with a monthly refill reports the reset and the next refill", async () => {
    const { key } = await newKey({
      name: "unl-refill",
      unlimitedQuota: true,
      quotaRefill: { interval: "month", amount: 500_000 },
    });
    const now = new Date();
    const next = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1) / 1000;
    expect((await get("/v1/key", bearer(key))).body.data).toMatchObject({
      limit: null,
      limit_reset: "monthly",
      quota_refill_amount: 1,
      next_refill_time: next,
    });
  });

  it("an exhausted key still reads its balance, while the proxy refuses it", async () => {
    const { key } = await newKey({ name: "empty", remainQuota: 0, status: KeyStatus.Exhausted });
    const refused = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { ...bearer(key), "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] }),
    });
    expect(refused.status).toBe(429);
    await refused.text();
    const usage = await get("/api/usage/token", bearer(key));
    expect(usage.status).toBe(200);
    expect(usage.body.data).toMatchObject({ name: "empty", total_available: 0 });
    expect(await openai(key).get("/dashboard/billing/subscription")).toMatchObject({
      hard_limit_usd: 0,
    });
    expect((await get("/v1/key", bearer(key))).body.data).toMatchObject({
      limit: 0,
      limit_remaining: 0,
    });
  });

  it("an expired key still reads its balance and its expiry", async () => {
    const past = Math.floor(Date.now() / 1000) - 60;
    const { key } = await newKey({ name: "old", remainQuota: 10, expiredTime: past });
    expect((await get("/dashboard/billing/subscription", bearer(key))).body).toMatchObject({
      access_until: past,
    });
    expect((await get("/api/usage/token", bearer(key))).body.data.expires_at).toBe(past);
  });

  it("a refill that is due is applied before the answer", async () => {
    const { key, id } = await newKey({
      name: "due",
      remainQuota: 7,
      quotaRefill: { interval: "1d", amount: 400_000 },
    });
    // The period started a day earlier: a boundary has passed since.
    const stored = (await gateway.store.keys.get(id))!;
    await gateway.store.keys.update(id, { quotaPeriod: stored.quotaPeriod! - DAY_MS });
    const data = (await get("/v1/key", bearer(key))).body.data;
    expect(data).toMatchObject({ limit: 0.8, limit_remaining: 0.8, limit_reset: "daily" });
    expect(data.next_refill_time * 1000).toBe(stored.quotaPeriod! + DAY_MS);
    expect((await gateway.keys.get(id))!.remainQuota).toBe(400_000);
  });
});

describe("refusals in each dialect's format", () => {
  const paths = [
    ["/api/usage/token", (b: any) => expect(b).toMatchObject({ success: false })],
    ["/v1/dashboard/billing/subscription", (b: any) => expect(b.error.type).toBeTypeOf("string")],
    ["/dashboard/billing/usage", (b: any) => expect(b.error.type).toBeTypeOf("string")],
    ["/v1/key", (b: any) => expect(b.error.code).toBeTypeOf("number")],
    ["/api/v1/key", (b: any) => expect(b.error.code).toBeTypeOf("number")],
  ] as const;

  it("an unknown key, no key and a malformed Authorization are 401s", async () => {
    for (const [path, shape] of paths) {
      for (const headers of [
        bearer("sk-unknown-0000000000000000000000000000"),
        {},
        { authorization: "Basic dXNlcjpwYXNz" },
        { authorization: "Bearer" },
      ]) {
        const res = await get(path, headers);
        expect(res.status, `${path} ${JSON.stringify(headers)}`).toBe(401);
        shape(res.body);
      }
    }
  });

  it("a disabled key is a 401, a key's IP allowlist a 403, a disabled owner a 403", async () => {
    const disabled = await newKey({ name: "off", remainQuota: 9, status: KeyStatus.Disabled });
    const fenced = await newKey({ name: "fenced", remainQuota: 9, allowIps: ["10.9.8.7"] });
    const owner = await gateway.users.create({ username: "balance-owner" });
    const owned = await newKey({ name: "owned", remainQuota: 9, userId: owner.record.id });
    await gateway.users.update(owner.record.id, { status: 2 });
    for (const [path, shape] of paths) {
      const off = await get(path, bearer(disabled.key));
      expect(off.status, path).toBe(401);
      shape(off.body);
      const ip = await get(path, bearer(fenced.key));
      expect(ip.status, path).toBe(403);
      shape(ip.body);
      const user = await get(path, bearer(owned.key));
      expect(user.status, path).toBe(403);
      shape(user.body);
    }
  });

  it("another method is a 405 in the dialect's format", async () => {
    const { key } = await newKey({ name: "post", remainQuota: 1 });
    for (const [path, shape] of paths) {
      const res = await get(path, bearer(key), "POST");
      expect(res.status, path).toBe(405);
      shape(res.body);
    }
  });
});

describe("isolation", () => {
  it("a key sees only its own numbers, and no answer echoes the key", async () => {
    const a = await newKey({ name: "alpha", remainQuota: 1_000_000 });
    const b = await newKey({ name: "beta", remainQuota: 123_456 });
    const usedA = await useQuota(a.key, a.id, 1);
    expect(usedA).toBeGreaterThan(0);
    for (const path of [
      "/api/usage/token",
      "/v1/dashboard/billing/subscription",
      "/v1/dashboard/billing/usage",
      "/v1/key",
    ]) {
      const ra = await get(path, bearer(a.key));
      const rb = await get(path, bearer(b.key));
      expect(ra.status).toBe(200);
      expect(rb.status).toBe(200);
      for (const r of [ra, rb]) {
        expect(r.text).not.toContain(a.key);
        expect(r.text).not.toContain(b.key);
      }
      expect(ra.text).not.toEqual(rb.text);
    }
    const usageB = (await get("/api/usage/token", bearer(b.key))).body.data;
    expect(usageB).toMatchObject({ name: "beta", total_used: 0, total_available: 123_456 });
    expect((await get("/v1/dashboard/billing/usage", bearer(b.key))).body.total_usage).toBe(0);
    expect((await get("/v1/key", bearer(b.key))).body.data).toMatchObject({
      label: "beta",
      usage: 0,
      limit_remaining: 123_456 / QUOTA_PER_USD,
    });
    expect((await get("/api/usage/token", bearer(a.key))).body.data).toMatchObject({
      name: "alpha",
      total_used: usedA,
    });
  });
});
