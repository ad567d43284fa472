import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream, splitMockReply } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DEFAULT_MODEL_RATIO } from "../src/billing/defaults.js";
import { Billing, QUOTA_PER_USD } from "../src/billing/price.js";
import { countPromptTokens, countTokens, promptTokenBound } from "../src/billing/tokens.js";
import { GatewayEmitter } from "../src/events.js";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";
import { TOKENIZE_WITHIN } from "../src/proxy/reserve.js";
import { SettingsService } from "../src/settings/service.js";

const SECRET = "billing-secret-0123456789-0123456789-abcdef";

async function billingWith(settings: Record<string, unknown> = {}): Promise<Billing> {
  const s = new SettingsService(memoryStore(), new GatewayEmitter(), settings);
  await s.load();
  return new Billing(s, 1024);
}

describe("Billing.cost", () => {
  it("prices prompt, cached, completion and reasoning tokens by their ratios, times the model and group ratios", async () => {
    const billing = await billingWith({
      "model-ratio": { m: 2 },
      "completion-ratio": { m: 3 },
      "cache-ratio": { m: 0.25 },
      "group-ratio": { default: 1, vip: 1.5 },
    });
    const usage = { inputTokens: 1000, cachedTokens: 400, outputTokens: 200, reasoningTokens: 50 };
    // (1000 − 400 + 400 × 0.25 + (200 − 50) × 3 + 50 × 3) × 2 = 2600; reasoning is part of the
    // completion tokens and is not counted twice.
    expect(billing.cost("m", "default", usage)).toBe(2600);
    expect(billing.cost("m", "vip", usage)).toBe(3900);
    // An unknown group costs the `*` entry when there is one, else 1.
    expect(billing.cost("m", "nobody", usage)).toBe(2600);
    // Without details: (1000 + 200 × 3) × 2.
    expect(billing.cost("m", "default", { inputTokens: 1000, outputTokens: 200 })).toBe(3200);
  });

  it("prices reasoning tokens by their own ratio when one is configured", async () => {
    const billing = await billingWith({
      "model-ratio": { m: 1 },
      "completion-ratio": { m: 2 },
      "reasoning-ratio": { m: 5 },
    });
    // 100 + (80 − 30) × 2 + 30 × 5
    expect(
      billing.cost("m", "default", { inputTokens: 100, outputTokens: 80, reasoningTokens: 30 }),
    ).toBe(350);
    // The estimate prices the whole completion at the dearer ratio: 100 + 80 × 5.
    expect(billing.estimate("m", "default", 100, 80)).toBe(500);
  });

  it("rounds up to whole units without floating-point dust", async () => {
    const billing = await billingWith({
      "model-ratio": { m: 0.075 },
      "completion-ratio": { m: 1 },
    });
    expect(billing.cost("m", "default", { inputTokens: 200, outputTokens: 0 })).toBe(15);
    expect(billing.cost("m", "default", { inputTokens: 201, outputTokens: 0 })).toBe(16);
    expect(billing.cost("m", "default", { inputTokens: 1, outputTokens: 0 })).toBe(1);
    expect(billing.cost("m", "default", { inputTokens: 0, outputTokens: 0 })).toBe(0);
  });

  it("finds a model by its name without a date suffix, then `*`, then uses 1", async () => {
    const billing = await billingWith({
      "model-ratio": { base: 2, "*": 3 },
      "completion-ratio": {},
    });
    const u = { inputTokens: 10, outputTokens: 0 };
    expect(billing.cost("base-2024-07-18", "default", u)).toBe(20);
    expect(billing.cost("base-20241022", "default", u)).toBe(20);
    expect(billing.cost("base-latest", "default", u)).toBe(20);
    expect(billing.cost("other", "default", u)).toBe(30);
    const plain = await billingWith({ "model-ratio": {}, "completion-ratio": {} });
    expect(plain.cost("other", "default", { inputTokens: 10, outputTokens: 10 })).toBe(20);
  });

  it("has list prices for common models by default (ratio 1 = $2 per 1M prompt tokens)", async () => {
    const billing = await billingWith();
    const usd = (model: string, inputTokens: number, outputTokens: number, cachedTokens = 0) =>
      billing.cost(model, "default", { inputTokens, outputTokens, cachedTokens }) / QUOTA_PER_USD;
    const M = 1_000_000;
    expect(usd("gpt-4o-mini", M, 0)).toBeCloseTo(0.15);
    expect(usd("gpt-4o-mini", 0, M)).toBeCloseTo(0.6);
    expect(usd("gpt-4o-mini-2024-07-18", M, 0)).toBeCloseTo(0.15);
    expect(usd("gpt-4o", M, M)).toBeCloseTo(12.5);
    expect(usd("gpt-4o", M, 0, M)).toBeCloseTo(1.25);
    expect(usd("gpt-4o-2024-05-13", M, M)).toBeCloseTo(20);
    expect(usd("gpt-4.1", M, M)).toBeCloseTo(10);
    expect(usd("gpt-4.1-mini", M, M)).toBeCloseTo(2);
    expect(usd("o3-mini", M, M)).toBeCloseTo(5.5);
    expect(usd("o4-mini-2025-04-16", M, 0, M)).toBeCloseTo(0.275);
    expect(usd("claude-sonnet-4-20250514", M, M)).toBeCloseTo(18);
    expect(usd("claude-3-5-haiku-latest", M, M)).toBeCloseTo(4.8);
    expect(usd("gemini-2.5-pro", M, M)).toBeCloseTo(11.25);
    expect(usd("gemini-2.5-flash", M, M)).toBeCloseTo(2.8);
    // Unknown models cost ratio 1 for both prompt and completion.
    expect(usd("some-unknown-model", M, M)).toBeCloseTo(4);
  });
});

describe("prompt token counting", () => {
  it("counts a chat like OpenAI does and stays under the byte bound", async () => {
    const body = {
      model: "gpt-4o",
      messages: [
        { role: "system", content: "You are a helpful assistant." },
        { role: "user", content: "What is the capital of France? Answer in one word." },
      ],
    };
    // 3 framing tokens per message, role and content tokens, 3 to prime the reply.
    const expected =
      2 * 3 +
      (await countTokens("gpt-4o", "system")) +
      (await countTokens("gpt-4o", "You are a helpful assistant.")) +
      (await countTokens("gpt-4o", "user")) +
      (await countTokens("gpt-4o", "What is the capital of France? Answer in one word.")) +
      3;
    expect(await countPromptTokens("gpt-4o", body)).toBe(expected);
    expect(expected).toBe(29);
    const raw = Buffer.from(JSON.stringify(body));
    expect(promptTokenBound(raw)).toBe(raw.length);
    expect(promptTokenBound(raw)).toBeGreaterThan(expected);
  });

  it("counts special-token text as text and uses cl100k for older models", async () => {
    expect(await countTokens("gpt-4o", "a <|endoftext|> b")).toBeGreaterThan(3);
    // The encodings differ on some text; each model family gets its own.
    const text = "Grüße aus München — 東京タワー";
    expect(await countTokens("gpt-4", text)).not.toBe(await countTokens("gpt-4o", text));
  });

  it("gives images an allowance in both the count and the bound", async () => {
    const body = {
      model: "gpt-4o",
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "What is in this image?" },
            { type: "image_url", image_url: { url: "https://example.com/a.png" } },
          ],
        },
      ],
    };
    const n = await countPromptTokens("gpt-4o", body);
    expect(n).toBeGreaterThan(1445);
    expect(promptTokenBound(Buffer.from(JSON.stringify(body)))).toBeGreaterThan(n);
  });
});

describe("billing through the HTTP surface", () => {
  let mock: MockUpstream;
  let gateway: Gateway;
  let server: Server;
  let base: string;
  let usageOverride: ((body: Record<string, unknown>) => Record<string, unknown>) | null;

  beforeEach(async () => {
    usageOverride = null;
    mock = await createMockUpstream({
      chunkDelayMs: 30,
      usage: (body, d) => usageOverride?.(body) ?? { ...d },
    });
    gateway = createGateway({
      store: memoryStore(),
      secret: SECRET,
      logger: false,
      usage: { flushIntervalMs: 10 },
    });
    await gateway.credentials.add({
      provider: "openai",
      baseUrl: mock.url,
      secret: { apiKey: "k" },
    });
    server = createServer(toNodeHandler(gateway));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await gateway.close();
    await mock.close();
  });

  const client = (apiKey: string) => new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });
  const messages = [{ role: "user" as const, content: "Price this request, please." }];
  const words = splitMockReply("Hello from the mock upstream, this is a test reply.").length;

  async function lastRecord(keyId: number) {
    await gateway.usage.flush();
    return (await gateway.usage.list({ keyId })).items[0]!;
  }

  it("bills the upstream's usage with the current price tables, and a changed ratio applies to the next request", async () => {
    const { key, record } = await gateway.keys.create({ name: "prices", remainQuota: 10_000_000 });
    const openai = client(key);
    usageOverride = () => ({ prompt_tokens: 1000, completion_tokens: 400 });

    await openai.chat.completions.create({ model: "gpt-4o", messages });
    // Default gpt-4o: (1000 + 400 × 4) × 1.25
    expect((await lastRecord(record.id)).quota).toBe(3250);

    await gateway.settings.set({ "model-ratio": { ...DEFAULT_MODEL_RATIO, "gpt-4o": 2 } });
    await openai.chat.completions.create({ model: "gpt-4o", messages });
    expect((await lastRecord(record.id)).quota).toBe(5200);

    await gateway.settings.set({
      "group-ratio": { default: 0.5 },
      "completion-ratio": { "gpt-4o": 1 },
    });
    await openai.chat.completions.create({ model: "gpt-4o", messages });
    expect((await lastRecord(record.id)).quota).toBe(1400);

    // Cached and reasoning tokens from the usage details, priced by the cache ratio.
    await gateway.settings.reset("group-ratio");
    await gateway.settings.reset("completion-ratio");
    await gateway.settings.reset("model-ratio");
    usageOverride = () => ({
      prompt_tokens: 1000,
      completion_tokens: 400,
      prompt_tokens_details: { cached_tokens: 600 },
      completion_tokens_details: { reasoning_tokens: 100 },
    });
    const s = await openai.chat.completions.create({ model: "o4-mini", messages, stream: true });
    for await (const _ of s) {
      // drain
    }
    const rec = await lastRecord(record.id);
    expect(rec).toMatchObject({ cachedTokens: 600, reasoningTokens: 100, inputTokens: 1000 });
    // o4-mini: (400 + 600 × 0.25 + 400 × 4) × 0.55
    expect(rec.quota).toBe(Math.ceil((400 + 150 + 1600) * 0.55));
    const k = await gateway.store.keys.get(record.id);
    expect(k!.usedQuota).toBe(3250 + 5200 + 1400 + rec.quota);
    expect(k!.remainQuota).toBe(10_000_000 - k!.usedQuota);
    expect(k!.accessedTime).toBeGreaterThan(0);
  });

  it("bills a non-streamed answer without usage by counting it locally", async () => {
    const { key, record } = await gateway.keys.create({ name: "nousage", remainQuota: 1_000_000 });
    usageOverride = () => ({});
    const body = { model: "gpt-4o-mini", messages };
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(res.status).toBe(200);
    const rec = await lastRecord(record.id);
    expect(rec.inputTokens).toBe(await countPromptTokens("gpt-4o-mini", body));
    expect(rec.outputTokens).toBe(
      await countTokens("gpt-4o-mini", "Hello from the mock upstream, this is a test reply."),
    );
    expect(rec.quota).toBeGreaterThan(0);
  });

  /** The key's balance while a stream is in flight: what its reservation holds. */
  async function heldWhileStreaming(apiKey: string, keyId: number, maxTokens: number) {
    const stream = await client(apiKey).chat.completions.create({
      model: "gpt-4o",
      messages,
      max_tokens: maxTokens,
      stream: true,
    });
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const during = (await gateway.store.keys.get(keyId))!.remainQuota;
    while (!(await it.next()).done) {
      // drain
    }
    return during;
  }

  it("reserves a cheap upper bound while the balance dwarfs it, and the tokenizer's count near the end of the quota", async () => {
    const body = { model: "gpt-4o", messages, max_tokens: words, stream: true };
    const billing = new Billing(gateway.settings, 1024);
    const exact = billing.estimate(
      "gpt-4o",
      "default",
      await countPromptTokens("gpt-4o", body),
      words,
    );
    const bodyBytes = Buffer.byteLength(JSON.stringify(body));
    // The bound is priced from the body the client sent: at least this request's own JSON.
    const atLeastBound = billing.estimate("gpt-4o", "default", bodyBytes, words);
    expect(atLeastBound).toBeGreaterThan(exact);

    const rich = await gateway.keys.create({ name: "rich", remainQuota: 100_000_000 });
    const richHeld = 100_000_000 - (await heldWhileStreaming(rich.key, rich.record.id, words));
    expect(richHeld).toBeGreaterThanOrEqual(atLeastBound);

    // Under TOKENIZE_WITHIN upper bounds left: the prompt is counted and exactly that is held.
    const nearQuota = Math.floor((atLeastBound * TOKENIZE_WITHIN) / 2);
    const near = await gateway.keys.create({ name: "near", remainQuota: nearQuota });
    expect(nearQuota - (await heldWhileStreaming(near.key, near.record.id, words))).toBe(exact);

    // A balance that covers the count but not the bound still serves the request...
    const tight = await gateway.keys.create({ name: "tight", remainQuota: exact });
    await heldWhileStreaming(tight.key, tight.record.id, words);
    // ...and one unit less is refused, quoting the counted estimate.
    const short = await gateway.keys.create({ name: "short", remainQuota: exact - 1 });
    const err = await client(short.key)
      .chat.completions.create({ model: "gpt-4o", messages, max_tokens: words, stream: true })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.RateLimitError);
    expect((err as InstanceType<typeof OpenAI.RateLimitError>).message).toContain(
      `${exact} quota units estimated`,
    );
  });

  it("retries a refused upper bound with the tokenizer's count when the cached balance was stale", async () => {
    const body = { model: "gpt-4o", messages, max_tokens: words, stream: true };
    const billing = new Billing(gateway.settings, 1024);
    const exact = billing.estimate(
      "gpt-4o",
      "default",
      await countPromptTokens("gpt-4o", body),
      words,
    );
    const { key, record } = await gateway.keys.create({ name: "stale", remainQuota: 10_000_000 });
    const openai = client(key);
    await openai.chat.completions.create({ model: "gpt-4o", messages, max_tokens: words });
    await gateway.usage.flush();
    // Another instance drains the key: reservations emit no change, so the cached record still
    // shows a large balance and the first attempt reserves the byte bound, which no longer fits.
    const left = (await gateway.store.keys.get(record.id))!.remainQuota;
    const drained = await gateway.store.reserveQuota(record.id, left - exact);
    expect(drained.ok).toBe(true);
    const s = await openai.chat.completions.create({
      model: "gpt-4o",
      messages,
      max_tokens: words,
      stream: true,
    });
    let text = "";
    for await (const c of s) text += c.choices[0]?.delta.content ?? "";
    expect(text).toBe("Hello from the mock upstream, this is a test reply.");
  });
});
