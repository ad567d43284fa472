/**
 * Webhooks end to end: a gateway on the memory store behind a real node:http server on port 0,
 * a mock upstream, and real receivers (`http.createServer` on port 0). Deliveries are verified
 * with the `standardwebhooks` package; subscriptions are managed over `/v0/management/webhooks`;
 * events come from real proxied requests and operator calls.
 */
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { Webhook } from "standardwebhooks";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createGateway,
  type Gateway,
  memoryStore,
  type Store,
  type WebhookDeliveryAttempt,
  type WebhookOptions,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const UPSTREAM_KEY = "sk-upstream-webhooks-0a1b2c3d4e5f6071";
const MGMT = "webhooks-management-key-0123456789";
const SECRET = "webhooks-test-secret-0123456789-abcdefghij";

// --- helpers ---------------------------------------------------------------------------------

interface Received {
  headers: IncomingHttpHeaders;
  body: string;
  payload: { type: string; timestamp: string; data: Record<string, unknown> };
}

/** A webhook receiver on port 0; `answer(n)` decides the status of the n-th delivery (0-based), or "hang". */
async function receiver(answer: (n: number) => number | "hang" = () => 200) {
  const received: Received[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      const n = received.length;
      received.push({ headers: req.headers, body, payload: JSON.parse(body) });
      const status = answer(n);
      if (status === "hang") return; // never answers
      res.writeHead(status, { "content-type": "text/plain" }).end(status === 200 ? "ok" : "no");
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks`;
  return {
    url,
    received,
    of: (type: string) => received.filter((r) => r.payload.type === type),
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** Polls `check` until it returns a truthy value (or throws after `ms`). */
async function waitFor<T>(check: () => T | Promise<T>, ms = 5_000): Promise<NonNullable<T>> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > until) throw new Error("waitFor: timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Verification headers as the standardwebhooks package wants them. */
const headersOf = (r: Received): Record<string, string> => ({
  "webhook-id": String(r.headers["webhook-id"]),
  "webhook-timestamp": String(r.headers["webhook-timestamp"]),
  "webhook-signature": String(r.headers["webhook-signature"]),
});

interface Env {
  mock: MockUpstream;
  store: Store;
  gateway: Gateway;
  server: Server;
  base: string;
  credentialId: string;
  close(): Promise<void>;
}

async function startGateway(mock: MockUpstream, webhooks: WebhookOptions): Promise<Env> {
  const store = memoryStore();
  const gateway = createGateway({
    store,
    secret: SECRET,
    logger: "silent",
    usage: { flushIntervalMs: 10 },
    webhooks,
  });
  const credential = await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    kind: "api-key",
    secret: { apiKey: UPSTREAM_KEY },
    models: [{ name: "gpt-4o-mini" }],
  });
  await gateway.settings.set({ "request-retry": 0 });
  await gateway.management.setKey(MGMT);
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    mock,
    store,
    gateway,
    server,
    base,
    credentialId: credential.id,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await gateway.close();
    },
  };
}

async function api(env: Env, method: string, path: string, body?: unknown, raw?: string) {
  const res = await fetch(`${env.base}/v0/management${path}`, {
    method,
    headers: { authorization: `Bearer ${MGMT}`, "content-type": "application/json" },
    ...(raw !== undefined
      ? { body: raw }
      : body !== undefined
        ? { body: JSON.stringify(body) }
        : {}),
  });
  const text = await res.text();
  return { status: res.status, text, body: JSON.parse(text) as Record<string, any> };
}

async function chat(env: Env, key: string) {
  const started = performance.now();
  const res = await fetch(`${env.base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] }),
  });
  await res.text();
  return { status: res.status, ms: performance.now() - started };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};

// --- the main gateway -------------------------------------------------------------------------

let mock: MockUpstream;
let env: Env;

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  env = await startGateway(mock, {
    retryDelaysMs: [50, 100, 200],
    timeoutMs: 2_000,
    refreshIntervalMs: 200,
    closeTimeoutMs: 200,
  });
});

afterAll(async () => {
  await env.close();
  await mock.close();
});

describe("subscriptions over /v0/management/webhooks", () => {
  it("creates, lists, reads, patches and deletes, with the secret shown only once", async () => {
    const created = await api(env, "POST", "/webhooks", {
      url: "https://hooks.example.com/tokenpool",
      events: ["key.exhausted", "key.quota_low"],
      threshold: 1000,
      description: "ops",
    });
    expect(created.status).toBe(200);
    expect(created.body.status).toBe("ok");
    const secret = created.body.secret as string;
    expect(secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const id = created.body.webhook.id as string;
    expect(created.body.webhook).toMatchObject({
      url: "https://hooks.example.com/tokenpool",
      events: ["key.exhausted", "key.quota_low"],
      enabled: true,
      threshold: 1000,
      description: "ops",
      secret: `whsec_****${secret.slice(-4)}`,
    });

    const list = await api(env, "GET", "/webhooks");
    expect(list.status).toBe(200);
    expect(list.body.webhooks.map((w: { id: string }) => w.id)).toContain(id);
    const one = await api(env, "GET", `/webhooks/${id}`);
    expect(one.body.webhook.id).toBe(id);
    // The secret is in no answer but the create's, and not in the store's kv in the clear.
    const key64 = secret.slice("whsec_".length);
    for (const text of [list.text, one.text]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(key64);
    }
    const stored = (await env.store.kv.get("webhooks:subscriptions"))!;
    expect(stored).toContain(id);
    expect(stored).not.toContain(key64);

    // A partial update keeps every field it does not name; null clears an optional one.
    const patched = await api(env, "PATCH", `/webhooks/${id}`, { enabled: false });
    expect(patched.status).toBe(200);
    expect(patched.body.webhook).toMatchObject({
      enabled: false,
      url: "https://hooks.example.com/tokenpool",
      events: ["key.exhausted", "key.quota_low"],
      threshold: 1000,
      description: "ops",
    });
    const cleared = await api(env, "PATCH", `/webhooks/${id}`, { description: null });
    expect(cleared.body.webhook.description).toBeUndefined();
    expect(cleared.body.webhook.threshold).toBe(1000);

    expect((await api(env, "DELETE", `/webhooks/${id}`)).body).toEqual({ status: "ok" });
    expect((await api(env, "GET", `/webhooks/${id}`)).status).toBe(404);
  });

  it("refuses bad input with a 400 naming the problem, and writes nothing", async () => {
    const before = (await api(env, "GET", "/webhooks")).body.webhooks.length;
    const bad: [unknown, RegExp][] = [
      [{ url: "ftp://x.example.com", events: ["*"] }, /http or https/],
      [{ url: "https://user:pw@x.example.com", events: ["*"] }, /credentials/],
      [{ url: "not a url", events: ["*"] }, /valid URL/],
      [{ events: ["*"] }, /url/],
      [{ url: "https://x.example.com", events: ["key.nope"] }, /unknown event type "key.nope"/],
      [{ url: "https://x.example.com", events: [] }, /events/],
      [{ url: "https://x.example.com", events: "key.exhausted" }, /events/],
      [{ url: "https://x.example.com", events: ["key.quota_low"] }, /threshold is required/],
      [{ url: "https://x.example.com", events: ["*"], threshold: -1 }, /threshold/],
      [{ url: "https://x.example.com", events: ["*"], enabled: "yes" }, /enabled/],
      [{ url: "https://x.example.com", events: ["*"], secret: "mine" }, /unknown field "secret"/],
      [["https://x.example.com"], /JSON object/],
    ];
    for (const [body, message] of bad) {
      const res = await api(env, "POST", "/webhooks", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(res.body.error).toMatch(message);
    }
    const malformed = await api(env, "POST", "/webhooks", undefined, "{not json");
    expect(malformed).toMatchObject({ status: 400, body: { error: "invalid body" } });

    const { body } = await api(env, "POST", "/webhooks", {
      url: "https://x.example.com/h",
      events: ["credential.disabled"],
    });
    const id = body.webhook.id as string;
    for (const patch of [
      { url: "javascript:alert(1)" },
      { events: ["key.quota_low"] },
      { enabled: 1 },
      { id: "wh_other" },
    ]) {
      const res = await api(env, "PATCH", `/webhooks/${id}`, patch);
      expect(res.status, JSON.stringify(patch)).toBe(400);
    }
    expect((await api(env, "PATCH", `/webhooks/${id}`, undefined, "[")).status).toBe(400);
    const after = await api(env, "GET", `/webhooks/${id}`);
    expect(after.body.webhook).toMatchObject({
      url: "https://x.example.com/h",
      events: ["credential.disabled"],
      enabled: true,
    });
    expect((await api(env, "GET", "/webhooks")).body.webhooks.length).toBe(before + 1);
    await api(env, "DELETE", `/webhooks/${id}`);
  });

  it("answers 404 for an unknown id and 401 without the management key", async () => {
    for (const [method, path] of [
      ["GET", "/webhooks/wh_missing"],
      ["PATCH", "/webhooks/wh_missing"],
      ["DELETE", "/webhooks/wh_missing"],
      ["POST", "/webhooks/wh_missing/rotate-secret"],
      ["GET", "/webhooks/wh_missing/deliveries"],
      ["POST", "/webhooks/wh_missing/test"],
    ] as const) {
      const res = await api(env, method, path, method === "PATCH" ? { enabled: true } : undefined);
      expect(res, `${method} ${path}`).toMatchObject({
        status: 404,
        body: { error: "webhook not found" },
      });
    }
    const res = await fetch(`${env.base}/v0/management/webhooks`);
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "missing management key" });
  });
});

describe("signed deliveries", () => {
  it("delivers a test event that the standardwebhooks package verifies, and a forged one fails", async () => {
    const hook = await receiver();
    try {
      const { body } = await api(env, "POST", "/webhooks", { url: hook.url, events: ["*"] });
      const secret = body.secret as string;
      const id = body.webhook.id as string;
      const test = await api(env, "POST", `/webhooks/${id}/test`);
      expect(test.status).toBe(200);
      expect(test.body.delivery).toMatchObject({
        eventType: "webhook.test",
        attempt: 1,
        status: 200,
        success: true,
        error: null,
      });
      const got = hook.of("webhook.test")[0]!;
      expect(got.headers["content-type"]).toBe("application/json");
      expect(got.headers["webhook-id"]).toBe(test.body.delivery.messageId);
      const verified = new Webhook(secret).verify(got.body, headersOf(got)) as Record<string, any>;
      expect(verified.type).toBe("webhook.test");
      expect(verified.data.webhookId).toBe(id);
      expect(new Date(verified.timestamp).toISOString()).toBe(verified.timestamp);

      // A tampered body, a wrong secret or a stale timestamp do not verify.
      expect(() =>
        new Webhook(secret).verify(got.body.replace("test", "tset"), headersOf(got)),
      ).toThrow();
      expect(() =>
        new Webhook(`whsec_${Buffer.alloc(32, 7).toString("base64")}`).verify(
          got.body,
          headersOf(got),
        ),
      ).toThrow();
      expect(() =>
        new Webhook(secret).verify(got.body, {
          ...headersOf(got),
          "webhook-timestamp": String(Math.floor(Date.now() / 1000) - 3600),
        }),
      ).toThrow();

      // A rotated secret signs from now on; the old one no longer verifies.
      const rotated = await api(env, "POST", `/webhooks/${id}/rotate-secret`);
      expect(rotated.status).toBe(200);
      const fresh = rotated.body.secret as string;
      expect(fresh).not.toBe(secret);
      expect(rotated.body.webhook.secret).toBe(`whsec_****${fresh.slice(-4)}`);
      await env.gateway.webhooks.test(id);
      const second = hook.of("webhook.test")[1]!;
      expect(new Webhook(fresh).verify(second.body, headersOf(second))).toBeTruthy();
      expect(() => new Webhook(secret).verify(second.body, headersOf(second))).toThrow();
      await api(env, "DELETE", `/webhooks/${id}`);
    } finally {
      await hook.close();
    }
  });

  it("retries after a 500 with the same webhook-id, and records every attempt", async () => {
    const hook = await receiver((n) => (n === 0 ? 500 : 200));
    try {
      const { webhook, secret } = await env.gateway.webhooks.create({
        url: hook.url,
        events: ["credential.disabled"],
      });
      const first = (await env.gateway.webhooks.test(webhook.id))!;
      expect(first).toMatchObject({ attempt: 1, status: 500, success: false, error: "HTTP 500" });
      expect(first.nextAttemptAt).toBeGreaterThan(first.timestamp);
      await waitFor(() => hook.received.length >= 2);
      const [a, b] = hook.received;
      expect(a!.headers["webhook-id"]).toBe(b!.headers["webhook-id"]);
      expect(a!.body).toBe(b!.body);
      for (const r of [a!, b!])
        expect(new Webhook(secret).verify(r.body, headersOf(r))).toBeTruthy();

      const deliveries = await waitFor(async () => {
        const res = await api(env, "GET", `/webhooks/${webhook.id}/deliveries`);
        return res.body.deliveries.length >= 2
          ? (res.body.deliveries as WebhookDeliveryAttempt[])
          : null;
      });
      expect(deliveries.map((d) => [d.attempt, d.status, d.success])).toEqual([
        [2, 200, true],
        [1, 500, false],
      ]);
      expect(new Set(deliveries.map((d) => d.messageId)).size).toBe(1);
      expect(deliveries[0]!.nextAttemptAt).toBeNull();
      expect(env.gateway.webhooks.stats().delivered).toBeGreaterThan(0);
      // Nothing more comes: the 200 ended it.
      await sleep(300);
      expect(hook.received.length).toBe(2);
      await env.gateway.webhooks.delete(webhook.id);
    } finally {
      await hook.close();
    }
  });

  it("gives up after the last attempt, and does not retry a 4xx", async () => {
    const failing = await receiver(() => 503);
    const refusing = await receiver(() => 400);
    try {
      const a = await env.gateway.webhooks.create({ url: failing.url, events: ["*"] });
      const b = await env.gateway.webhooks.create({ url: refusing.url, events: ["*"] });
      await env.gateway.webhooks.test(a.webhook.id);
      await env.gateway.webhooks.test(b.webhook.id);
      await waitFor(() => failing.received.length >= 4); // 1 + the 3 retry delays
      await sleep(500);
      expect(failing.received.length).toBe(4);
      expect(refusing.received.length).toBe(1);
      const attempts = (await env.gateway.webhooks.deliveries(a.webhook.id))!;
      expect(attempts[0]).toMatchObject({ attempt: 4, status: 503, nextAttemptAt: null });
      await env.gateway.webhooks.delete(a.webhook.id);
      await env.gateway.webhooks.delete(b.webhook.id);
    } finally {
      await failing.close();
      await refusing.close();
    }
  });
});

describe("events from real traffic", () => {
  it("sends key.quota_low once per crossing, key.exhausted once, credential.disabled/enabled and a sampled limit.refused", async () => {
    const hook = await receiver();
    const gw = env.gateway;
    try {
      const low = await gw.webhooks.create({
        url: hook.url,
        events: ["key.quota_low"],
        threshold: 999_999,
      });
      const all = await gw.webhooks.create({ url: hook.url, events: ["*"] });
      const verifierLow = new Webhook(low.secret);
      const verifierAll = new Webhook(all.secret);

      // key.quota_low: 1000000 units, threshold 999999: the first request crosses it.
      const rich = await gw.keys.create({ name: "rich", remainQuota: 1_000_000 });
      for (let i = 0; i < 3; i++) expect((await chat(env, rich.key)).status).toBe(200);
      const lowEvents = () =>
        hook.of("key.quota_low").filter((r) => r.payload.data.keyId === rich.record.id);
      await waitFor(() => lowEvents().length >= 1);
      await sleep(200);
      expect(lowEvents()).toHaveLength(1);
      const lowEvent = lowEvents()[0]!;
      expect(verifierLow.verify(lowEvent.body, headersOf(lowEvent))).toBeTruthy();
      expect(lowEvent.payload.data).toMatchObject({
        keyId: rich.record.id,
        keyName: "rich",
        threshold: 999_999,
      });
      expect(lowEvent.payload.data.remainQuota as number).toBeLessThan(999_999);
      // Only the subscription with a threshold gets it (the "*" one has none).
      expect(() => verifierAll.verify(lowEvent.body, headersOf(lowEvent))).toThrow();
      expect(JSON.stringify(lowEvent.payload)).not.toContain(rich.key);

      // Topped up above the threshold, then run below it again: a second crossing.
      await gw.keys.update(rich.record.id, { remainQuota: 2_000_000 });
      await chat(env, rich.key);
      await sleep(100);
      await gw.keys.update(rich.record.id, { remainQuota: 999_999 });
      await chat(env, rich.key);
      await waitFor(() => lowEvents().length >= 2);
      await sleep(200);
      expect(lowEvents()).toHaveLength(2);

      // key.exhausted: a key with 1 unit is refused; three refusals, one event.
      const poor = await gw.keys.create({ name: "poor", remainQuota: 1 });
      for (let i = 0; i < 3; i++) expect((await chat(env, poor.key)).status).toBe(429);
      const exhausted = () =>
        hook.of("key.exhausted").filter((r) => r.payload.data.keyId === poor.record.id);
      await waitFor(() => exhausted().length >= 1);
      await sleep(200);
      expect(exhausted()).toHaveLength(1);
      const ex = exhausted()[0]!;
      expect(verifierAll.verify(ex.body, headersOf(ex))).toBeTruthy();
      expect(ex.payload.data).toMatchObject({ keyName: "poor", reason: "key_quota" });
      expect(ex.body).not.toContain(poor.key);

      // credential.disabled / enabled by an operator.
      await gw.credentials.pool.setEnabled(env.credentialId, false, "maintenance");
      await gw.credentials.pool.setEnabled(env.credentialId, true);
      const disabled = await waitFor(() => hook.of("credential.disabled")[0]);
      const enabled = await waitFor(() => hook.of("credential.enabled")[0]);
      expect(disabled.payload.data).toMatchObject({
        credentialId: env.credentialId,
        provider: "openai",
        by: "operator",
      });
      expect(enabled.payload.data).toMatchObject({
        credentialId: env.credentialId,
        by: "operator",
      });
      expect(disabled.body).not.toContain(UPSTREAM_KEY);

      // limit.refused, sampled: rpm 1, three requests, two refusals, one event.
      const limited = await gw.keys.create({
        name: "limited",
        remainQuota: 1_000_000,
        limits: { rpm: 1 },
      });
      const statuses = [];
      for (let i = 0; i < 3; i++) statuses.push((await chat(env, limited.key)).status);
      expect(statuses).toEqual([200, 429, 429]);
      const refused = () =>
        hook.of("limit.refused").filter((r) => r.payload.data.id === limited.record.id);
      await waitFor(() => refused().length >= 1);
      await sleep(200);
      expect(refused()).toHaveLength(1);
      expect(refused()[0]!.payload.data).toMatchObject({ scope: "key", limit: "rpm" });

      await gw.webhooks.delete(low.webhook.id);
      await gw.webhooks.delete(all.webhook.id);
    } finally {
      await hook.close();
    }
  });

  it("sees a subscription another instance created, after its refresh interval", async () => {
    const hook = await receiver();
    // A second gateway on the same store, as another instance would be.
    const other = createGateway({ store: env.store, secret: SECRET, logger: "silent" });
    try {
      await other.ready;
      const { webhook, secret } = await other.webhooks.create({
        url: hook.url,
        events: ["credential.disabled"],
      });
      await sleep(400); // refreshIntervalMs is 200 here
      await env.gateway.credentials.pool.setEnabled(env.credentialId, false, "maintenance");
      await env.gateway.credentials.pool.setEnabled(env.credentialId, true);
      const got = await waitFor(() => hook.of("credential.disabled")[0]);
      expect(new Webhook(secret).verify(got.body, headersOf(got))).toBeTruthy();
      await other.webhooks.delete(webhook.id);
    } finally {
      await other.webhooks.close();
      await hook.close();
    }
  });
});

describe("a receiver that never answers", () => {
  it("does not change proxy latency, and the queue stays bounded", async () => {
    const gw2 = await startGateway(mock, {
      concurrency: 2,
      maxQueue: 20,
      timeoutMs: 60_000,
      limitSampleMs: 0,
      closeTimeoutMs: 200,
    });
    const hang = await receiver(() => "hang");
    const errors: string[] = [];
    gw2.gateway.events.on("error", ({ where }) => errors.push(where));
    try {
      const { key } = await gw2.gateway.keys.create({ name: "fast", unlimitedQuota: true });
      const limited = await gw2.gateway.keys.create({
        name: "limited",
        unlimitedQuota: true,
        limits: { rpm: 1 },
      });
      const N = 40;
      for (let i = 0; i < 5; i++) await chat(gw2, key); // warm up
      const without: number[] = [];
      for (let i = 0; i < N; i++) without.push((await chat(gw2, key)).ms);

      await gw2.gateway.webhooks.create({ url: hang.url, events: ["*"] });
      // Each refusal of the limited key is a limit.refused event (not sampled here): the two
      // slots hang, the queue fills and then drops.
      for (let i = 0; i < 40; i++) await chat(gw2, limited.key);
      await waitFor(() => hang.received.length >= 2);
      const withHang: number[] = [];
      for (let i = 0; i < N; i++) {
        withHang.push((await chat(gw2, key)).ms);
        await chat(gw2, limited.key); // keeps the queue full
      }
      const stats = gw2.gateway.webhooks.stats();
      expect(stats.inFlight).toBe(2);
      expect(stats.queued).toBeLessThanOrEqual(20);
      expect(stats.dropped).toBeGreaterThan(0);
      expect(errors).toContain("webhooks");
      // Generous slack: the medians must be of the same order, not equal.
      expect(median(withHang)).toBeLessThan(median(without) * 3 + 25);
    } finally {
      const started = Date.now();
      await gw2.close();
      // close() waits a bounded time for the hanging attempts, then aborts them.
      expect(Date.now() - started).toBeLessThan(3_000);
      await hang.close();
    }
  });
});
