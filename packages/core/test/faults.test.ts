/**
 * Retry, failover and broken streams through a real node:http server, for an untranslated pair
 * (OpenAI → OpenAI) and two translated ones (Anthropic client → Gemini upstream, Gemini client →
 * Anthropic upstream). Credential A has the higher priority, so it is tried first; B is the
 * fallback. Each test gets a fresh gateway and fresh mock upstreams.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, DEFAULT_MOCK_REPLY, type MockUpstream } from "@tokenpool/testing";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "faults-secret-0123456789-0123456789-abcdef";
const UPSTREAM_KEY = "sk-upstream-faults-1a2b3c4d5e6f";
const MODEL = "claude-sonnet-4-5";
const WORDS = DEFAULT_MOCK_REPLY.split(" ").length;

type Format = "openai" | "anthropic" | "gemini";

interface Pair {
  client: Format;
  upstream: Format;
  /** The path prefix of the upstream's generation route, for faults. */
  faultPath: string;
}
const PAIRS: Pair[] = [
  { client: "openai", upstream: "openai", faultPath: "/v1/chat/completions" },
  { client: "anthropic", upstream: "gemini", faultPath: "/v1beta/models/" },
  { client: "gemini", upstream: "anthropic", faultPath: "/v1/messages" },
];

let gateway: Gateway | null = null;
let server: Server | null = null;
let mocks: MockUpstream[] = [];

afterEach(async () => {
  server?.closeAllConnections();
  if (server) await new Promise((r) => server!.close(r));
  await gateway?.close();
  await Promise.all(mocks.map((m) => m.close()));
  gateway = null;
  server = null;
  mocks = [];
});

interface Setup {
  base: string;
  key: string;
  keyId: number;
  a: MockUpstream;
  b: MockUpstream | null;
}

/** A gateway with credential A (priority 2) and, unless `single`, credential B (priority 1). */
async function setup(
  pair: Pair,
  opts: { single?: boolean; chunkDelayMs?: number; headersTimeoutMs?: number } = {},
): Promise<Setup> {
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
    upstream: { headersTimeoutMs: opts.headersTimeoutMs ?? 5_000 },
  });
  const make = async (priority: number) => {
    const m = await createMockUpstream({
      apiKeys: [UPSTREAM_KEY],
      chunkDelayMs: opts.chunkDelayMs ?? 0,
    });
    mocks.push(m);
    await gateway!.credentials.add({
      provider: pair.upstream,
      baseUrl: pair.upstream === "openai" ? m.url : m.origin,
      kind: "api-key",
      secret: { apiKey: UPSTREAM_KEY },
      priority,
    });
    return m;
  };
  const a = await make(2);
  const b = opts.single ? null : await make(1);
  const { key, record } = await gateway.keys.create({ name: "faults", remainQuota: 10_000_000 });
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    key,
    keyId: record.id,
    a,
    b,
  };
}

/** Sends a text request in the client's format. */
function send(pair: Pair, s: Setup, stream: boolean, signal?: AbortSignal): Promise<Response> {
  const user = "Hello there";
  if (pair.client === "gemini") {
    const method = stream ? "streamGenerateContent?alt=sse" : "generateContent";
    return fetch(`${s.base}/v1beta/models/${MODEL}:${method}`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-goog-api-key": s.key },
      body: JSON.stringify({ contents: [{ role: "user", parts: [{ text: user }] }] }),
      signal,
    });
  }
  if (pair.client === "anthropic") {
    return fetch(`${s.base}/v1/messages`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-api-key": s.key,
        "anthropic-version": "2023-06-01",
      },
      body: JSON.stringify({
        model: MODEL,
        max_tokens: 200,
        stream,
        messages: [{ role: "user", content: user }],
      }),
      signal,
    });
  }
  return fetch(`${s.base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${s.key}` },
    body: JSON.stringify({ model: MODEL, stream, messages: [{ role: "user", content: user }] }),
    signal,
  });
}

/** The text of a JSON answer in the client's format. */
function jsonText(format: Format, body: Record<string, unknown>): string {
  if (format === "openai") {
    return ((body.choices as { message: { content: string } }[])[0]?.message.content ??
      "") as string;
  }
  if (format === "anthropic") {
    return (body.content as { text?: string }[]).map((b) => b.text ?? "").join("");
  }
  const parts =
    (body.candidates as { content: { parts: { text?: string }[] } }[])[0]?.content.parts ?? [];
  return parts.map((p) => p.text ?? "").join("");
}

/** SSE events as `{ event?, data }` with data parsed when it is JSON. */
function events(text: string): { event?: string; data: unknown }[] {
  return text
    .split(/\r?\n\r?\n/)
    .filter((e) => e.trim() !== "")
    .map((e) => {
      let event: string | undefined;
      const data: string[] = [];
      for (const line of e.split(/\r?\n/)) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).trim());
      }
      const d = data.join("\n");
      let parsed: unknown = d;
      try {
        parsed = JSON.parse(d);
      } catch {
        // [DONE]
      }
      return event === undefined ? { data: parsed } : { event, data: parsed };
    });
}

/** The text of a stream in the client's format, and whether it ended cleanly or with an error event. */
function streamOutcome(
  format: Format,
  text: string,
): { text: string; clean: boolean; error: boolean } {
  const evs = events(text);
  let out = "";
  let clean = false;
  let error = false;
  for (const { event, data } of evs) {
    const d = data as Record<string, unknown>;
    if (format === "openai") {
      if (data === "[DONE]") clean = true;
      else if (d.error) error = true;
      else out += (d.choices as { delta: { content?: string } }[])[0]?.delta.content ?? "";
    } else if (format === "anthropic") {
      if (event === "message_stop") clean = true;
      else if (event === "error") error = true;
      else if (event === "content_block_delta") out += (d.delta as { text?: string }).text ?? "";
    } else {
      if (d.error) error = true;
      const cand = (
        d.candidates as
          | { content?: { parts?: { text?: string }[] }; finishReason?: string }[]
          | undefined
      )?.[0];
      if (cand?.finishReason) clean = true;
      out += (cand?.content?.parts ?? []).map((p) => p.text ?? "").join("");
    }
  }
  return { text: out, clean, error };
}

async function records(keyId: number) {
  await gateway!.usage.flush();
  return (await gateway!.usage.list({ keyId, limit: 100 })).items;
}

describe.each(PAIRS)("$client client, $upstream upstream", (pair) => {
  it("fails over to another credential after an upstream 500", async () => {
    const s = await setup(pair);
    s.a.fail({ status: 500, path: pair.faultPath });
    const res = await send(pair, s, false);
    expect(res.status).toBe(200);
    expect(jsonText(pair.client, (await res.json()) as Record<string, unknown>)).toBe(
      DEFAULT_MOCK_REPLY,
    );
    expect(s.a.requests.length).toBe(1);
    expect(s.b!.requests.length).toBe(1);
  });

  it("fails over after a 429 with Retry-After, and waits it out when no other credential is left", async () => {
    const s = await setup(pair);
    s.a.fail({ status: 429, headers: { "retry-after": "1" }, path: pair.faultPath });
    const res = await send(pair, s, false);
    expect(res.status).toBe(200);
    expect(s.b!.requests.length).toBe(1);

    const one = await setup(pair, { single: true });
    one.a.fail({ status: 429, headers: { "retry-after": "1" }, path: pair.faultPath });
    const started = Date.now();
    const again = await send(pair, one, true);
    expect(again.status).toBe(200);
    expect(streamOutcome(pair.client, await again.text())).toMatchObject({
      text: DEFAULT_MOCK_REPLY,
      clean: true,
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(900);
    expect(one.a.requests.length).toBe(2);
  });

  it("requests that arrive while every credential cools down after another's 429 wait for it, not 503", async () => {
    const one = await setup(pair, { single: true });
    await gateway!.settings.set({ "request-retry": 0 });
    one.a.fail({ status: 429, headers: { "retry-after": "1" }, path: pair.faultPath });
    // The request that met the 429 has no retry left: it gets the 429 in its own format.
    const first = await send(pair, one, false);
    expect(first.status).toBe(429);
    // Requests arriving during the cooldown wait for its end, then are served.
    const started = Date.now();
    const later = await Promise.all([
      send(pair, one, false),
      send(pair, one, true),
      send(pair, one, false),
    ]);
    expect(later.map((r) => r.status)).toEqual([200, 200, 200]);
    await Promise.all(later.map((r) => r.text()));
    expect(Date.now() - started).toBeGreaterThanOrEqual(700);
    expect(one.a.requests.length).toBe(4);
  });

  it("does not wait for a cooldown longer than max-retry-interval", async () => {
    const one = await setup(pair, { single: true });
    await gateway!.settings.set({ "request-retry": 0, "max-retry-interval": 1 });
    one.a.fail({ status: 429, headers: { "retry-after": "5" }, path: pair.faultPath });
    expect((await send(pair, one, false)).status).toBe(429);
    const started = Date.now();
    const res = await send(pair, one, false);
    expect(res.status).toBe(503);
    // Until the credential is back from its cooldown (the upstream's Retry-After: 5).
    expect(Number(res.headers.get("retry-after"))).toBeGreaterThanOrEqual(4);
    expect(Number(res.headers.get("retry-after"))).toBeLessThanOrEqual(5);
    expect(Date.now() - started).toBeLessThan(500);
    expect(one.a.requests.length).toBe(1);
  });

  it("does not retry a client error (400): another credential would answer the same", async () => {
    const s = await setup(pair);
    s.a.fail({ status: 400, path: pair.faultPath });
    const res = await send(pair, s, false);
    expect(res.status).toBe(400);
    const body = (await res.json()) as Record<string, unknown>;
    // The error is in the client's format.
    if (pair.client === "anthropic") expect(body.type).toBe("error");
    else if (pair.client === "gemini")
      expect((body.error as { status: string }).status).toBe("INVALID_ARGUMENT");
    else expect((body.error as { message: string }).message).toMatch(/400/);
    expect(s.b!.requests.length).toBe(0);
  });

  it.each([false, true])(
    "fails over after a reset before the first byte (stream: %s)",
    async (stream) => {
      const s = await setup(pair);
      s.a.fail({ resetAfterChunks: 0, path: pair.faultPath });
      const res = await send(pair, s, stream);
      expect(res.status).toBe(200);
      const text = stream
        ? streamOutcome(pair.client, await res.text()).text
        : jsonText(pair.client, (await res.json()) as Record<string, unknown>);
      expect(text).toBe(DEFAULT_MOCK_REPLY);
      expect(s.b!.requests.length).toBe(1);
    },
  );

  it("ends a stream cut mid-way with an explicit error event, and bills what was sent", async () => {
    const s = await setup(pair);
    // A few events of the upstream's format, then a TCP reset.
    s.a.fail({ resetAfterChunks: pair.upstream === "anthropic" ? 6 : 4, path: pair.faultPath });
    const res = await send(pair, s, true);
    expect(res.status).toBe(200);
    const outcome = streamOutcome(pair.client, await res.text());
    expect(outcome.clean).toBe(false);
    expect(outcome.error).toBe(true);
    expect(outcome.text.length).toBeGreaterThan(0);
    expect(DEFAULT_MOCK_REPLY.startsWith(outcome.text)).toBe(true);
    expect(outcome.text).not.toBe(DEFAULT_MOCK_REPLY);
    // No silent retry once bytes reached the client.
    expect(s.b!.requests.length).toBe(0);
    let rec = (await records(s.keyId))[0];
    for (let i = 0; i < 50 && !rec; i++) {
      await new Promise((r) => setTimeout(r, 20));
      rec = (await records(s.keyId))[0];
    }
    expect(rec?.status).toBe(502);
    expect(rec?.success).toBe(false);
    expect(rec?.outputTokens).toBeGreaterThanOrEqual(1);
    expect(rec?.outputTokens).toBeLessThan(WORDS);
    expect(rec?.quota).toBeGreaterThan(0);
    const k = await gateway!.store.keys.get(s.keyId);
    expect(k?.usedQuota).toBe(rec?.quota);
  });

  it("times out a hung upstream and fails over", async () => {
    const s = await setup(pair, { headersTimeoutMs: 300 });
    s.a.fail({ delayMs: 4_000, path: pair.faultPath });
    const started = Date.now();
    const res = await send(pair, s, true);
    expect(res.status).toBe(200);
    expect(streamOutcome(pair.client, await res.text())).toMatchObject({
      text: DEFAULT_MOCK_REPLY,
      clean: true,
    });
    expect(Date.now() - started).toBeLessThan(3_000);
    expect(s.b!.requests.length).toBe(1);
  });

  it("aborts the upstream request within a second when the client disconnects", async () => {
    const s = await setup(pair, { single: true, chunkDelayMs: 150 });
    const ac = new AbortController();
    const res = await send(pair, s, true, ac.signal);
    const reader = res.body!.getReader();
    await reader.read();
    const abortedAt = Date.now();
    ac.abort();
    let upstreamClosed: number | undefined;
    for (let i = 0; i < 50 && upstreamClosed === undefined; i++) {
      await new Promise((r) => setTimeout(r, 20));
      upstreamClosed = s.a.requests[0]?.abortedAt;
    }
    expect(upstreamClosed).toBeDefined();
    expect(upstreamClosed! - abortedAt).toBeLessThan(1_000);
  });
});
