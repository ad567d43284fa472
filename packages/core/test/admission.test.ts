/**
 * The admission stage for downstream keys, their owners and their groups: rpm / tpm / rpd
 * windows and concurrency caps enforced before quota is reserved, refusals as 429 in each route's
 * format with `Retry-After`, OpenAI's `x-ratelimit-*` headers on every answer of a limited key,
 * the FIFO queue of `queueTimeoutMs` (cancelled when the client leaves), and slots freed when a
 * request ends. One gateway on the memory store behind a real node:http server on port 0, the
 * official `openai` and `@anthropic-ai/sdk` clients and raw fetch, against a mock upstream that
 * records its peak of requests in flight.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Anthropic from "@anthropic-ai/sdk";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { intText } from "../src/admission/rate-limits.js";
import { CLAIM_SWEEP_MS } from "../src/admission/window-claims.js";
import { createGateway, type Gateway, type GatewayEvents, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const UPSTREAM_KEY = "sk-upstream-admission-0a1b2c3d4e5f60718293";
const messages = [{ role: "user" as const, content: "Hi" }];

let mock: MockUpstream;
/** Serves `slow-model`: 40 chunks, 10 ms apart (a stream of about 400 ms). */
let slow: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;
const refusals: Parameters<GatewayEvents["limit.refused"]>[0][] = [];

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  slow = await createMockUpstream({
    apiKeys: [UPSTREAM_KEY],
    chunkDelayMs: 10,
    reply: Array.from({ length: 40 }, (_, i) => `w${i}`).join(" "),
  });
  gateway = createGateway({
    store: memoryStore(),
    secret: "admission-test-secret-0123456789-abcdefghij",
    logger: "silent",
    usage: { flushIntervalMs: 10 },
  });
  const apiKey = { kind: "api-key" as const, secret: { apiKey: UPSTREAM_KEY } };
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    ...apiKey,
    models: [{ name: "gpt-4o-mini" }],
  });
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: slow.url,
    ...apiKey,
    models: [{ name: "slow-model" }],
  });
  await gateway.credentials.add({
    provider: "anthropic",
    baseUrl: mock.origin,
    ...apiKey,
    models: [{ name: "claude-sonnet-4-5" }],
  });
  await gateway.credentials.add({
    provider: "gemini",
    baseUrl: mock.origin,
    ...apiKey,
    models: [{ name: "gemini-2.5-flash" }],
  });
  await gateway.settings.set({ "request-retry": 0 });
  gateway.events.on("limit.refused", (info) => refusals.push(info));
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await gateway.close();
  await mock.close();
  await slow.close();
});

beforeEach(() => {
  refusals.length = 0;
  mock.reset();
  slow.reset();
});

/** A new unlimited-quota key with `limits` (set through the library API). */
async function limitedKey(
  limits: Record<string, number>,
  extra: { userId?: number; group?: string } = {},
): Promise<string> {
  const { key, record } = await gateway.keys.create({
    name: "adm",
    unlimitedQuota: true,
    ...extra,
  });
  await gateway.keys.update(record.id, { limits });
  return key;
}

function post(path: string, body: unknown, apiKey: string, init: RequestInit = {}) {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
    ...init,
  });
}

const chat = (apiKey: string, extra: Record<string, unknown> = {}, init: RequestInit = {}) =>
  post("/v1/chat/completions", { model: "gpt-4o-mini", messages, ...extra }, apiKey, init);

/** A slow stream (about 400 ms) from the slow upstream. */
const slowStream = (apiKey: string, init: RequestInit = {}) =>
  post("/v1/chat/completions", { model: "slow-model", messages, stream: true }, apiKey, init);

describe("requests per minute of a key", () => {
  it("admits rpm requests with x-ratelimit headers, then refuses with OpenAI's 429", async () => {
    const key = await limitedKey({ rpm: 3 });
    for (let i = 0; i < 3; i++) {
      const res = await chat(key);
      expect(res.status).toBe(200);
      expect(res.headers.get("x-ratelimit-limit-requests")).toBe("3");
      expect(res.headers.get("x-ratelimit-remaining-requests")).toBe(String(2 - i));
      expect(res.headers.get("x-ratelimit-reset-requests")).toMatch(/^\d+(ms|s|m\d+s)$/);
      expect(res.headers.get("x-ratelimit-limit-tokens")).toBeNull();
      await res.text();
    }
    const refused = await chat(key);
    expect(refused.status).toBe(429);
    const retry = Number(refused.headers.get("retry-after"));
    expect(retry).toBeGreaterThanOrEqual(1);
    // The oldest counted 1 s bucket leaves the window 60 s after its end.
    expect(retry).toBeLessThanOrEqual(61);
    expect(refused.headers.get("x-ratelimit-limit-requests")).toBe("3");
    const body = (await refused.json()) as { error: { code: string; type: string } };
    expect(body.error.code).toBe("rate_limit_exceeded");
    expect(body.error.type).toBe("requests");
    expect(mock.requests).toHaveLength(3);
    expect(refusals).toEqual([
      expect.objectContaining({ scope: "key", limit: "rpm", retryAfterMs: expect.any(Number) }),
    ]);
  });

  it("puts the headers on streamed answers, upstream errors and refusals of later stages too", async () => {
    const key = await limitedKey({ rpm: 10, tpm: 100_000 });
    const stream = await chat(key, { stream: true });
    expect(stream.status).toBe(200);
    expect(stream.headers.get("content-type")).toContain("text/event-stream");
    expect(stream.headers.get("x-ratelimit-remaining-requests")).toBe("9");
    expect(stream.headers.get("x-ratelimit-limit-tokens")).toBe("100000");
    await stream.text();
    mock.fail({ status: 500, times: 1 });
    const failed = await chat(key);
    expect(failed.status).toBeGreaterThanOrEqual(500);
    expect(failed.headers.get("x-ratelimit-remaining-requests")).toBe("8");
    // A key out of quota is refused by the reserve stage, after admission.
    const { key: poor, record } = await gateway.keys.create({ name: "poor", remainQuota: 0 });
    await gateway.keys.update(record.id, { limits: { rpm: 10 } });
    const refused = await chat(poor);
    expect(refused.status).toBe(429);
    expect(((await refused.json()) as { error: { code: string } }).error.code).toBe(
      "quota_exhausted",
    );
    expect(refused.headers.get("x-ratelimit-limit-requests")).toBe("10");
  });

  it("is a RateLimitError with the headers for the official openai client", async () => {
    const key = await limitedKey({ rpm: 1 });
    const client = new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0 });
    await client.chat.completions.create({ model: "gpt-4o-mini", messages });
    const err = await client.chat.completions
      .create({ model: "gpt-4o-mini", messages })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    const e = err as InstanceType<typeof OpenAI.RateLimitError>;
    expect(e.code).toBe("rate_limit_exceeded");
    expect(e.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(e.headers.get("x-ratelimit-limit-requests")).toBe("1");
  });

  it("is Anthropic's rate_limit_error and Google's RESOURCE_EXHAUSTED on their routes", async () => {
    const key = await limitedKey({ rpm: 1 });
    const anthropic = new Anthropic({ apiKey: key, baseURL: base, maxRetries: 0 });
    const ask = () =>
      anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages });
    await ask();
    const err = await ask().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.RateLimitError);
    expect((err as InstanceType<typeof Anthropic.RateLimitError>).error).toMatchObject({
      type: "error",
      error: { type: "rate_limit_error" },
    });

    const gemini = await limitedKey({ rpm: 1 });
    const gen = () =>
      fetch(`${base}/v1beta/models/gemini-2.5-flash:generateContent`, {
        method: "POST",
        headers: { "x-goog-api-key": gemini, "content-type": "application/json" },
        body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "Hi" }] }] }),
      });
    expect((await gen()).status).toBe(200);
    const refused = await gen();
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toMatch(/^\d+$/);
    expect(await refused.json()).toMatchObject({
      error: { code: 429, status: "RESOURCE_EXHAUSTED" },
    });
  });
});

describe("changes", () => {
  it("a key's new limits apply from its next request", async () => {
    const { key, record } = await gateway.keys.create({ name: "chg", unlimitedQuota: true });
    await gateway.keys.update(record.id, { limits: { rpm: 1 } });
    expect((await chat(key)).status).toBe(200);
    expect((await chat(key)).status).toBe(429);
    await gateway.keys.update(record.id, { limits: { rpm: 3 } });
    expect((await chat(key)).status).toBe(200);
    expect((await chat(key)).status).toBe(200);
    expect((await chat(key)).status).toBe(429);
    await gateway.keys.update(record.id, { limits: { rpm: 0 } });
    const free = await chat(key);
    expect(free.status).toBe(200);
    expect(free.headers.get("x-ratelimit-limit-requests")).toBeNull();
  });
});

describe("tokens per minute and requests per day", () => {
  it("counts estimated tokens, settles them to the actual usage, and refuses beyond", async () => {
    // The mock answers ~20 completion tokens; max_tokens 100 is the estimate's allowance.
    const key = await limitedKey({ tpm: 300 });
    const first = await chat(key, { max_tokens: 100 });
    expect(first.status).toBe(200);
    expect(first.headers.get("x-ratelimit-limit-tokens")).toBe("300");
    const left = Number(first.headers.get("x-ratelimit-remaining-tokens"));
    expect(left).toBeLessThanOrEqual(200);
    await first.text();
    // Settled to the actual tokens (corrections are written within CLAIM_SWEEP_MS): room for
    // more than the estimate alone would leave.
    const settled = () => new Promise((r) => setTimeout(r, CLAIM_SWEEP_MS * 1.5));
    await settled();
    let admitted = 1;
    for (let i = 0; i < 20; i++) {
      const res = await chat(key, { max_tokens: 100 });
      await res.text();
      await settled();
      if (res.status !== 200) {
        expect(res.status).toBe(429);
        break;
      }
      admitted++;
    }
    expect(admitted).toBeGreaterThan(2);
    expect(admitted).toBeLessThan(20);
    expect(refusals.at(-1)).toMatchObject({ scope: "key", limit: "tpm" });
  });

  it("refuses a request larger than the tpm limit without a Retry-After", async () => {
    const key = await limitedKey({ tpm: 50 });
    const res = await chat(key, { max_tokens: 1000 });
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBeNull();
    const body = (await res.json()) as { error: { message: string; type: string } };
    expect(body.error.type).toBe("tokens");
    expect(body.error.message).toContain("too large");
  });

  it("refuses past rpd", async () => {
    const key = await limitedKey({ rpd: 2 });
    expect((await chat(key)).status).toBe(200);
    expect((await chat(key)).status).toBe(200);
    const res = await chat(key);
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThan(60);
  });
});

describe("users and groups", () => {
  it("a user's rpm covers all its keys together", async () => {
    const { record: user } = await gateway.users.create({ username: "adm-u1", quota: 10 ** 9 });
    await gateway.users.update(user.id, { limits: { rpm: 2 } });
    const a = await limitedKey({}, { userId: user.id });
    const b = await limitedKey({}, { userId: user.id });
    expect((await chat(a)).status).toBe(200);
    expect((await chat(b)).status).toBe(200);
    const res = await chat(a);
    expect(res.status).toBe(429);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain("owner");
    expect(refusals.at(-1)).toMatchObject({ scope: "user", id: user.id, limit: "rpm" });
  });

  it("group-limits fill the unset limits of a key without an owner", async () => {
    await gateway.settings.set({ "group-limits": { default: { rpm_limit: 1 } } });
    try {
      const { key } = await gateway.keys.create({ name: "grouped", unlimitedQuota: true });
      const res = await chat(key);
      expect(res.status).toBe(200);
      expect(res.headers.get("x-ratelimit-limit-requests")).toBe("1");
      expect((await chat(key)).status).toBe(429);
      // Its own limit wins over the group's.
      const own = await limitedKey({ rpm: 5 });
      for (let i = 0; i < 5; i++) expect((await chat(own)).status).toBe(200);
      expect((await chat(own)).status).toBe(429);
    } finally {
      await gateway.settings.set({ "group-limits": {} });
    }
  });
});

describe("group-limits and quota-refill-time-zone through the management dialect", () => {
  const MGMT = "admission-management-key-0123456789";
  const manage = (method: string, path: string, body?: unknown) =>
    fetch(`${base}/v0/management/${path}`, {
      method,
      headers: { "x-management-key": MGMT, "content-type": "application/json" },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });

  it("are read and written like the seed's scalar settings, bad values refused", async () => {
    await gateway.management.setKey(MGMT);
    const value = { gold: { rpm_limit: 100, max_concurrency: 4, queue_timeout_ms: 5000 } };
    expect((await manage("PUT", "group-limits", { value })).status).toBe(200);
    expect(await (await manage("GET", "group-limits")).json()).toEqual({ "group-limits": value });
    for (const bad of [
      { gold: { rpm_limit: -1 } },
      { gold: { rpm_limit: 1.5 } },
      { gold: { rpm: 10 } },
      { gold: 5 },
      [1],
    ]) {
      const res = await manage("PUT", "group-limits", { value: bad });
      expect(res.status).toBe(400);
      expect(await res.json()).toEqual({ error: "invalid body" });
    }
    expect(await (await manage("GET", "group-limits")).json()).toEqual({ "group-limits": value });
    expect((await manage("PUT", "quota-refill-time-zone", { value: "Asia/Shanghai" })).status).toBe(
      200,
    );
    expect((await manage("PUT", "quota-refill-time-zone", { value: "Mars/Olympus" })).status).toBe(
      400,
    );
    expect(await (await manage("GET", "quota-refill-time-zone")).json()).toEqual({
      "quota-refill-time-zone": "Asia/Shanghai",
    });
    await gateway.settings.set({ "group-limits": {}, "quota-refill-time-zone": "UTC" });
  });
});

describe("concurrency", () => {
  it("never lets more than maxConcurrency requests of a key reach the upstream at once", async () => {
    const key = await limitedKey({ maxConcurrency: 2 });
    const results = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const res = await slowStream(key);
        await res.text();
        return res.status;
      }),
    );
    expect(slow.peakInFlight).toBeLessThanOrEqual(2);
    expect(results.filter((s) => s === 200).length).toBeGreaterThanOrEqual(2);
    expect(results.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(refusals.some((r) => r.limit === "concurrency")).toBe(true);
    // Every slot came back.
    expect((await chat(key)).status).toBe(200);
  });

  it("with queueTimeoutMs the same burst waits for slots, first come first served, and all succeed", async () => {
    const key = await limitedKey({ maxConcurrency: 2, queueTimeoutMs: 30_000 });
    const results = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        // 20 ms apart: they reach the gateway in this order.
        await new Promise((r) => setTimeout(r, i * 20));
        const res = await post(
          "/v1/chat/completions",
          { model: "slow-model", messages, stream: true, user: `r${i}` },
          key,
        );
        await res.text();
        return res.status;
      }),
    );
    expect(results).toEqual(Array(10).fill(200));
    expect(slow.peakInFlight).toBe(2);
    expect(refusals).toEqual([]);
    // Served in their order of arrival.
    const served = slow.requests.map((r) => (r.body as { user: string }).user);
    expect(served).toEqual(Array.from({ length: 10 }, (_, i) => `r${i}`));
  });

  it("the official openai client: a burst gets RateLimitErrors, and succeeds with queueTimeoutMs", async () => {
    const burst = async (key: string) => {
      const client = new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0 });
      return Promise.all(
        Array.from({ length: 8 }, async () => {
          try {
            const stream = await client.chat.completions.create({
              model: "slow-model",
              messages,
              stream: true,
            });
            let text = "";
            for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
            return text;
          } catch (error) {
            return error;
          }
        }),
      );
    };
    const refused = await burst(await limitedKey({ maxConcurrency: 2 }));
    const errors = refused.filter((r) => r instanceof OpenAI.RateLimitError);
    expect(errors.length).toBeGreaterThan(0);
    expect(
      (errors[0] as InstanceType<typeof OpenAI.RateLimitError>).headers.get("retry-after"),
    ).toMatch(/^\d+$/);
    slow.reset();
    const queued = await burst(await limitedKey({ maxConcurrency: 2, queueTimeoutMs: 30_000 }));
    for (const r of queued) expect(r).toMatch(/^w0 w1 .* w39$/);
    expect(slow.peakInFlight).toBe(2);
  });

  it("a queued request whose client leaves gives up its place; the slot goes to the next", async () => {
    const key = await limitedKey({ maxConcurrency: 1, queueTimeoutMs: 30_000 });
    const holder = slowStream(key);
    await new Promise((r) => setTimeout(r, 100));
    const gone = new AbortController();
    const leaving = slowStream(key, { signal: gone.signal }).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    const waiting = chat(key);
    await new Promise((r) => setTimeout(r, 50));
    gone.abort();
    expect(await leaving).toBeInstanceOf(Error);
    await (await holder).text();
    const res = await waiting;
    expect(res.status).toBe(200);
    // Only the holder reached the slow upstream, and the last request the other one.
    expect(slow.requests).toHaveLength(1);
    expect(mock.requests).toHaveLength(1);
    expect(slow.peakInFlight).toBe(1);
  });

  it("a queued request is refused when no slot comes in time", async () => {
    const key = await limitedKey({ maxConcurrency: 1, queueTimeoutMs: 100 });
    const holder = slowStream(key);
    await new Promise((r) => setTimeout(r, 100));
    const started = Date.now();
    const res = await chat(key);
    expect(res.status).toBe(429);
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain(
      "within 100 ms",
    );
    await (await holder).text();
  });

  it("a stream cut by its client frees its slot", async () => {
    const key = await limitedKey({ maxConcurrency: 1 });
    const cut = new AbortController();
    const res = await slowStream(key, { signal: cut.signal });
    const reader = res.body!.getReader();
    await reader.read();
    cut.abort();
    await reader.read().catch(() => {});
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      await new Promise((r) => setTimeout(r, 20));
      status = (await chat(key)).status;
    }
    expect(status).toBe(200);
  });
});

describe("what is not limited", () => {
  it("an unlimited key's answers carry no x-ratelimit headers and take no store step", async () => {
    const { key } = await gateway.keys.create({ name: "free", unlimitedQuota: true });
    const res = await chat(key);
    expect(res.status).toBe(200);
    expect(res.headers.get("x-ratelimit-limit-requests")).toBeNull();
  });

  it("refuses bad limits through the library API and keeps the stored ones", async () => {
    const { record } = await gateway.keys.create({ name: "bad", unlimitedQuota: true });
    await gateway.keys.update(record.id, { limits: { rpm: 5 } });
    await expect(gateway.keys.update(record.id, { limits: { rpm: -1 } })).rejects.toThrow();
    expect((await gateway.keys.get(record.id))?.limits).toMatchObject({ rpm: 5 });
  });
});

describe("header texts", () => {
  it("intText writes every integer as String does, large ones included", () => {
    const values = [0, 7, 999_999_999, 1_000_000_000, 1_000_000_001, 1_999_999_999_000];
    values.push(999_999_876_543, 1e12, 1e15 + 42, Number.MAX_SAFE_INTEGER, 2 ** 60, 1.5e9 + 0.5);
    for (let i = 0; i < 1_000; i++) values.push(Math.floor(Math.random() * 1e13));
    for (const v of values) expect(intText(v)).toBe(String(v));
  });
});
