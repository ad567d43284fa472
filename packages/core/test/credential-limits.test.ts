/**
 * Limits of upstream credentials (rpm, tpm, concurrency, spend per calendar day and month): a
 * credential at a limit is skipped by selection (the request goes to the next one, no error, no
 * cooldown), and when none is left the answer is a 429 in the route's format with the earliest
 * `Retry-After`. Real gateways behind node:http servers on port 0, the official `openai` and
 * `@anthropic-ai/sdk` clients and raw fetch, against mock upstreams that record their peak
 * concurrency.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Anthropic from "@anthropic-ai/sdk";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterEach, describe, expect, it, vi } from "vitest";
import {
  type AddCredentialInput,
  createGateway,
  type Gateway,
  type GatewayEvents,
  memoryStore,
  type Store,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const MODEL = "gpt-4o-mini";
const messages = [{ role: "user" as const, content: "Hi" }];

interface Rig {
  gateway: Gateway;
  base: string;
  key: string;
  events: Parameters<GatewayEvents["limit.refused"]>[0][];
  errors: Parameters<GatewayEvents["credential.error"]>[0][];
  close(): Promise<void>;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  vi.useRealTimers();
  while (cleanups.length > 0) await cleanups.pop()!();
});

async function mockUpstream(opts: Parameters<typeof createMockUpstream>[0] = {}) {
  const m = await createMockUpstream(opts);
  cleanups.push(() => m.close());
  return m;
}

/** A gateway with `creds` (in order), a key without quota limits, and an HTTP server on port 0. */
async function rig(
  creds: AddCredentialInput[],
  opts: { store?: Store; settings?: Record<string, unknown> } = {},
): Promise<Rig> {
  const gateway = createGateway({
    store: opts.store ?? memoryStore(),
    secret: "credential-limits-secret-0123456789-abcdef",
    logger: false,
    usage: { flushIntervalMs: 10 },
  });
  await gateway.ready;
  for (const c of creds) await gateway.credentials.add(c);
  await gateway.settings.set({
    "request-retry": 0,
    "routing-strategy": "fill-first",
    ...opts.settings,
  });
  const key = (await gateway.keys.create({ name: "limits", unlimitedQuota: true })).key;
  const server: Server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const events: Rig["events"] = [];
  const errors: Rig["errors"] = [];
  gateway.events.on("limit.refused", (e) => events.push(e));
  gateway.events.on("credential.error", (e) => errors.push(e));
  const close = async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await gateway.close();
  };
  cleanups.push(close);
  return { gateway, base, key, events, errors, close };
}

function chat(r: Rig, body: Record<string, unknown> = {}, headers: Record<string, string> = {}) {
  return fetch(`${r.base}/v1/chat/completions`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${r.key}`,
      "content-type": "application/json",
      ...headers,
    },
    body: JSON.stringify({ model: MODEL, messages, ...body }),
  });
}

/** An OpenAI API-key credential on `mock`. */
function openaiCred(
  mock: MockUpstream,
  id: string,
  limits?: AddCredentialInput["limits"],
  extra: Partial<AddCredentialInput> = {},
): AddCredentialInput {
  return {
    id,
    provider: "openai",
    kind: "api-key",
    baseUrl: mock.url,
    secret: { apiKey: `sk-upstream-${id}-0123456789abcdef` },
    models: [{ name: MODEL }],
    ...(limits ? { limits } : {}),
    ...extra,
  };
}

/** Which credentials the requests recorded by `mock` used, in order (by their API key). */
function used(mock: MockUpstream): string[] {
  return mock.requests.map(
    (q) => /sk-upstream-(.+)-0123456789abcdef/.exec(q.headers.authorization ?? "")?.[1] ?? "?",
  );
}

/** Whether the concurrency pool of credential `id` has a free slot (checked through the store). */
async function slotFree(store: Store, id: string, limit = 1): Promise<boolean> {
  const now = Date.now();
  const r = await store.acquireLeases(
    [{ pool: `conc:cred:${id}`, limit }],
    "probe",
    now + 1000,
    now,
  );
  if (r.ok) await store.releaseLeases("probe", [`conc:cred:${id}`]);
  return r.ok;
}

describe("a credential at its rpm limit", () => {
  it("is skipped: the third request goes to the other credential, with no error, cooldown or failure", async () => {
    const mock = await mockUpstream();
    const r = await rig([openaiCred(mock, "a", { rpm: 2 }), openaiCred(mock, "b")]);
    for (let i = 0; i < 3; i++) expect((await chat(r)).status).toBe(200);
    expect(used(mock)).toEqual(["a", "a", "b"]);
    expect(r.events).toEqual([
      { scope: "credential", id: "a", limit: "rpm", retryAfterMs: expect.any(Number) },
    ]);
    expect(r.events[0]!.retryAfterMs).toBeGreaterThan(0);
    // A minute plus at most one bucket (1 s) of the store's window.
    expect(r.events[0]!.retryAfterMs).toBeLessThanOrEqual(61_000);
    expect(r.errors).toEqual([]);
    const a = r.gateway.credentials.get("a")!;
    expect(a.enabled).toBe(true);
    expect(a.state.errorCount).toBe(0);
    expect(a.state.cooldowns).toEqual({});
  });

  it("does not use up an attempt: with request-retry 0 the request still reaches the next credential", async () => {
    const mock = await mockUpstream();
    const r = await rig([
      openaiCred(mock, "a", { rpm: 1 }),
      openaiCred(mock, "b", { rpm: 1 }),
      openaiCred(mock, "c"),
    ]);
    for (let i = 0; i < 3; i++) expect((await chat(r)).status).toBe(200);
    expect(used(mock)).toEqual(["a", "b", "c"]);
  });

  it("keeps round-robin fair among the others", async () => {
    const mock = await mockUpstream();
    const r = await rig(
      [openaiCred(mock, "a", { rpm: 1 }), openaiCred(mock, "b"), openaiCred(mock, "c")],
      { settings: { "routing-strategy": "round-robin" } },
    );
    for (let i = 0; i < 9; i++) expect((await chat(r)).status).toBe(200);
    const counts = { a: 0, b: 0, c: 0 } as Record<string, number>;
    for (const id of used(mock)) counts[id]!++;
    expect(counts).toEqual({ a: 1, b: 4, c: 4 });
  });

  it("sends a session bound to it elsewhere for this request only", async () => {
    const mock = await mockUpstream();
    const r = await rig([openaiCred(mock, "a", { rpm: 1 }), openaiCred(mock, "b")]);
    const session = { "x-session-id": "session-1" };
    expect((await chat(r, {}, session)).status).toBe(200);
    expect((await chat(r, {}, session)).status).toBe(200);
    expect(used(mock)).toEqual(["a", "b"]);
    expect(r.gateway.credentials.pool.sessionCredential("session-1")).toBe("a");
  });
});

describe("when every credential is at its limit", () => {
  it("OpenAI routes answer 429 rate_limit_exceeded with Retry-After; the openai client gets a RateLimitError", async () => {
    const mock = await mockUpstream();
    const r = await rig([openaiCred(mock, "a", { rpm: 1 }), openaiCred(mock, "b", { rpm: 1 })]);
    expect((await chat(r)).status).toBe(200);
    expect((await chat(r)).status).toBe(200);
    const client = new OpenAI({ apiKey: r.key, baseURL: `${r.base}/v1`, maxRetries: 0 });
    const e = await client.chat.completions
      .create({ model: MODEL, messages })
      .catch((error: unknown) => error);
    expect(e).toBeInstanceOf(OpenAI.RateLimitError);
    const err = e as InstanceType<typeof OpenAI.RateLimitError>;
    expect(err.status).toBe(429);
    expect(err.code).toBe("rate_limit_exceeded");
    expect(err.type).toBe("requests");
    const after = Number(err.headers?.get("retry-after"));
    expect(after).toBeGreaterThanOrEqual(1);
    expect(after).toBeLessThanOrEqual(61);
    expect(err.message).toContain("requests per minute");
    expect(mock.requests.length).toBe(2);
    // The second request skipped a; the third skipped both.
    expect(r.events.map((x) => x.id)).toEqual(["a", "a", "b"]);
    expect(r.errors).toEqual([]);
  });

  it("the Retry-After is the earliest among the skipped credentials", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    const t0 = Date.UTC(2026, 5, 1, 12, 0, 0);
    vi.setSystemTime(t0);
    const mock = await mockUpstream();
    const r = await rig([openaiCred(mock, "a", { rpm: 1 }), openaiCred(mock, "b", { rpm: 1 })]);
    expect((await chat(r)).status).toBe(200);
    vi.setSystemTime(t0 + 30_000);
    expect((await chat(r)).status).toBe(200);
    vi.setSystemTime(t0 + 40_000);
    const res = await chat(r);
    expect(res.status).toBe(429);
    // a's hit leaves its minute first (about 20 s from now; windows count in 1 s buckets).
    const after = Number(res.headers.get("retry-after"));
    expect(after).toBeGreaterThanOrEqual(20);
    expect(after).toBeLessThanOrEqual(21);
    vi.setSystemTime(t0 + 61_000);
    expect((await chat(r)).status).toBe(200);
    expect(used(mock)).toEqual(["a", "b", "a"]);
  });

  it("Anthropic routes answer rate_limit_error, Gemini routes RESOURCE_EXHAUSTED, both with Retry-After", async () => {
    const mock = await mockUpstream();
    const r = await rig([
      {
        provider: "anthropic",
        kind: "api-key",
        baseUrl: mock.origin,
        secret: { apiKey: "sk-ant-upstream-0123456789" },
        models: [{ name: "claude-sonnet-4-5" }],
        limits: { rpm: 1 },
      },
      {
        provider: "gemini",
        kind: "api-key",
        baseUrl: mock.origin,
        secret: { apiKey: "gemini-upstream-0123456789" },
        models: [{ name: "gemini-2.5-flash" }],
        limits: { rpm: 1 },
      },
    ]);
    const anthropic = new Anthropic({ apiKey: r.key, baseURL: r.base, maxRetries: 0 });
    await anthropic.messages.create({ model: "claude-sonnet-4-5", max_tokens: 16, messages });
    const e = await anthropic.messages
      .create({ model: "claude-sonnet-4-5", max_tokens: 16, messages })
      .catch((error: unknown) => error);
    expect(e).toBeInstanceOf(Anthropic.RateLimitError);
    const ae = e as InstanceType<typeof Anthropic.RateLimitError>;
    expect(ae.error).toEqual({
      type: "error",
      error: { type: "rate_limit_error", message: expect.stringContaining("requests per minute") },
    });
    expect(Number(ae.headers?.get("retry-after"))).toBeGreaterThanOrEqual(1);

    const gemini = () =>
      fetch(`${r.base}/v1beta/models/gemini-2.5-flash:generateContent`, {
        method: "POST",
        headers: { "x-goog-api-key": r.key, "content-type": "application/json" },
        body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: "Hi" }] }] }),
      });
    expect((await gemini()).status).toBe(200);
    const res = await gemini();
    expect(res.status).toBe(429);
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    const body = (await res.json()) as { error: { code: number; status: string } };
    expect(body.error).toMatchObject({ code: 429, status: "RESOURCE_EXHAUSTED" });
  });

  it("a tpm limit says tokens (OpenAI type `tokens`), and a request larger than the limit gets no Retry-After", async () => {
    const mock = await mockUpstream();
    const r = await rig([openaiCred(mock, "a", { tpm: 50 })]);
    const res = await chat(r, { max_tokens: 1000 });
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBeNull();
    const body = (await res.json()) as { error: { type: string; code: string; message: string } };
    expect(body.error).toMatchObject({ type: "tokens", code: "rate_limit_exceeded" });
    expect(body.error.message).toContain("tokens per minute");
    expect(r.events).toEqual([{ scope: "credential", id: "a", limit: "tpm", retryAfterMs: null }]);
    expect(mock.requests.length).toBe(0);
  });
});

describe("tpm", () => {
  it("is hit with the estimate and settled to the actual tokens", async () => {
    const mock = await mockUpstream();
    // The estimate of one request (prompt bound + max_tokens 200) is above 200 tokens, its actual
    // usage (a few prompt tokens, 10 reply words) far below: after settling, the next one fits.
    const r = await rig([openaiCred(mock, "a", { tpm: 600 }), openaiCred(mock, "b")]);
    for (let i = 0; i < 4; i++) {
      expect((await chat(r, { max_tokens: 200 })).status).toBe(200);
      // The settlement runs in the background.
      await new Promise((res) => setTimeout(res, 20));
    }
    expect(used(mock)).toEqual(["a", "a", "a", "a"]);
    expect(r.events).toEqual([]);
  });
});

describe("max concurrency", () => {
  it("1 with 20 parallel streaming requests: the upstream never sees two at once on that credential", async () => {
    const limited = await mockUpstream({ chunkDelayMs: 5 });
    const other = await mockUpstream({ chunkDelayMs: 5 });
    const r = await rig([openaiCred(limited, "a", { maxConcurrency: 1 }), openaiCred(other, "b")]);
    const client = new OpenAI({ apiKey: r.key, baseURL: `${r.base}/v1`, maxRetries: 0 });
    const results = await Promise.all(
      Array.from({ length: 20 }, async () => {
        const stream = await client.chat.completions.create({
          model: MODEL,
          messages,
          stream: true,
        });
        let text = "";
        for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
        return text;
      }),
    );
    expect(results.every((t) => t.length > 0)).toBe(true);
    expect(limited.peakInFlight).toBe(1);
    expect(limited.requests.length).toBeGreaterThanOrEqual(1);
    expect(limited.requests.length + other.requests.length).toBe(20);
    expect(other.peakInFlight).toBeGreaterThan(1);
    await vi.waitFor(async () => expect(await slotFree(r.gateway.store, "a")).toBe(true));
    expect(r.events.every((e) => e.limit === "concurrency" && e.id === "a")).toBe(true);
  });

  it("a failover releases the failed credential's slot at once", async () => {
    const mock = await mockUpstream();
    const r = await rig([openaiCred(mock, "a", { maxConcurrency: 1 }), openaiCred(mock, "b")], {
      settings: { "request-retry": 1 },
    });
    mock.fail({ status: 500, times: 1 });
    expect((await chat(r)).status).toBe(200);
    expect(used(mock)).toEqual(["a", "b"]);
    // The freed lease waits LEASE_IDLE_MS here for the next request, then goes back to the store.
    await vi.waitFor(async () => expect(await slotFree(r.gateway.store, "a")).toBe(true));
    // fill-first: a serves again at once (its slot is free).
    expect((await chat(r)).status).toBe(200);
    expect(used(mock)).toEqual(["a", "b", "a"]);
    expect(r.events).toEqual([]);
  });

  it("a stream cut by the upstream, or by the client, releases its slot", async () => {
    const mock = await mockUpstream({ chunkDelayMs: 20 });
    const r = await rig([openaiCred(mock, "a", { maxConcurrency: 1 })]);
    mock.fail({ resetAfterChunks: 2 });
    const cut = await chat(r, { stream: true });
    expect(cut.status).toBe(200);
    await cut.text().catch(() => "");
    await vi.waitFor(async () => expect(await slotFree(r.gateway.store, "a")).toBe(true));

    const res = await chat(r, { stream: true });
    const reader = res.body!.getReader();
    await reader.read();
    expect(await slotFree(r.gateway.store, "a")).toBe(false);
    await reader.cancel();
    await vi.waitFor(async () => expect(await slotFree(r.gateway.store, "a")).toBe(true));
    expect((await chat(r)).status).toBe(200);
  });

  it("holds the slot while a stream runs: a second request meanwhile goes elsewhere or gets a 429", async () => {
    const mock = await mockUpstream({ chunkDelayMs: 30 });
    const r = await rig([openaiCred(mock, "a", { maxConcurrency: 1 })]);
    const first = await chat(r, { stream: true });
    const reader = first.body!.getReader();
    await reader.read();
    const second = await chat(r);
    expect(second.status).toBe(429);
    // A slot comes free when a request ends: retry within a second, not at the lease's expiry.
    expect(second.headers.get("retry-after")).toBe("1");
    expect(r.events).toEqual([
      { scope: "credential", id: "a", limit: "concurrency", retryAfterMs: expect.any(Number) },
    ]);
    while (!(await reader.read()).done);
    await vi.waitFor(async () => expect(await slotFree(r.gateway.store, "a")).toBe(true));
  });
});

describe("spend caps", () => {
  /** A raw body of known size: the estimate of a model without a price is its bytes + max_tokens. */
  const SPEND_MODEL = "spend-model";
  const body = JSON.stringify({ model: SPEND_MODEL, messages, max_tokens: 10 });
  const ESTIMATE = Buffer.byteLength(body) + 10;
  const send = (r: Rig) =>
    fetch(`${r.base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${r.key}`, "content-type": "application/json" },
      body,
    });
  const cred = (mock: MockUpstream, id: string, limits?: AddCredentialInput["limits"]) =>
    openaiCred(mock, id, limits, { models: [{ name: SPEND_MODEL }] });

  it("per day: refused until the next midnight of the time zone, then admitted again", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    // 23:59:00 in Shanghai (UTC+8) is 15:59:00 UTC.
    vi.setSystemTime(Date.UTC(2026, 11, 4, 15, 59, 0));
    const mock = await mockUpstream();
    const r = await rig([cred(mock, "a", { spendPerDay: ESTIMATE }), cred(mock, "b")], {
      settings: { "quota-refill-time-zone": "Asia/Shanghai" },
    });
    expect((await send(r)).status).toBe(200);
    expect((await send(r)).status).toBe(200);
    expect(used(mock)).toEqual(["a", "b"]);
    expect(r.events).toEqual([
      { scope: "credential", id: "a", limit: "spend-day", retryAfterMs: 60_000 },
    ]);
    // Next day in Shanghai: a new counter.
    vi.setSystemTime(Date.UTC(2026, 11, 4, 16, 0, 1));
    expect((await send(r)).status).toBe(200);
    expect(used(mock)).toEqual(["a", "b", "a"]);
  });

  it("per month: the 429 says until the 1st; a new month admits again", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.UTC(2026, 11, 31, 23, 0, 0));
    const mock = await mockUpstream();
    const r = await rig([cred(mock, "a", { spendPerMonth: ESTIMATE })]);
    expect((await send(r)).status).toBe(200);
    const res = await send(r);
    expect(res.status).toBe(429);
    expect(res.headers.get("retry-after")).toBe("3600");
    expect(((await res.json()) as { error: { message: string } }).error.message).toContain(
      "spend per month",
    );
    vi.setSystemTime(Date.UTC(2027, 0, 1, 0, 0, 0));
    expect((await send(r)).status).toBe(200);
  });
});

describe("the library API", () => {
  it("validates limits: non-negative integers, known fields only, with a clear message", async () => {
    const mock = await mockUpstream();
    const r = await rig([openaiCred(mock, "a")]);
    const bad: unknown[] = [{ rpm: -1 }, { rpm: 1.5 }, { tpm: "10" }, { rpmLimit: 5 }, [1], null];
    for (const limits of bad) {
      const e = await r.gateway.credentials
        .add({ ...openaiCred(mock, "x"), limits: limits as never })
        .catch((error: unknown) => error);
      expect(e).toMatchObject({ name: "GatewayError", code: "INVALID_REQUEST", status: 400 });
      expect((e as Error).message).toMatch(/^Invalid credential limits: /);
      const u = await r.gateway.credentials
        .update("a", { limits: limits as never })
        .catch((error: unknown) => error);
      expect(u).toMatchObject({ code: "INVALID_REQUEST" });
    }
    expect(r.gateway.credentials.get("x")).toBeNull();
    const e = await r.gateway.credentials
      .add({ ...openaiCred(mock, "y"), limits: { rpmLimit: 5 } as never })
      .catch((error: unknown) => error);
    expect((e as Error).message).toContain("unknown limit `rpmLimit`");
  });

  it("update merges limits field by field; 0 removes one", async () => {
    const mock = await mockUpstream();
    const r = await rig([openaiCred(mock, "a", { rpm: 5, tpm: 1000 })]);
    expect(r.gateway.credentials.get("a")!.limits).toEqual({ rpm: 5, tpm: 1000 });
    await r.gateway.credentials.update("a", { limits: { maxConcurrency: 2 } });
    expect(r.gateway.credentials.get("a")!.limits).toEqual({
      rpm: 5,
      tpm: 1000,
      maxConcurrency: 2,
    });
    await r.gateway.credentials.update("a", { limits: { tpm: 0, spendPerDay: 300 } });
    expect(r.gateway.credentials.get("a")!.limits).toEqual({
      rpm: 5,
      maxConcurrency: 2,
      spendPerDay: 300,
    });
    // Other patches keep them.
    await r.gateway.credentials.update("a", { priority: 3 });
    expect(r.gateway.credentials.get("a")!.limits).toEqual({
      rpm: 5,
      maxConcurrency: 2,
      spendPerDay: 300,
    });
  });
});
