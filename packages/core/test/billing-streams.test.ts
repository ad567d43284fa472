import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream, splitMockReply } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { Billing } from "../src/billing/price.js";
import { countPromptTokens, countTokens, promptTokenBound } from "../src/billing/tokens.js";
import { streamedText } from "../src/formats/sse.js";
import { createGateway, type Gateway, memoryStore, type UsageRecord } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";
import { TOKENIZE_WITHIN } from "../src/proxy/reserve.js";

const SECRET = "streams-secret-0123456789-0123456789-abcdef";

/** A 48-word reply: long enough to be cut halfway. */
const LONG_REPLY = Array.from(
  { length: 48 },
  (_, i) =>
    ["tokens", "stream", "quota", "gateway", "billing", "réponse", "数据", "emoji🙂"][i % 8],
).join(" ");

let mock: MockUpstream | undefined;
let gateway: Gateway | undefined;
let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  if (server) await new Promise((r) => server!.close(r));
  await gateway?.close();
  await mock?.close();
  server = gateway = mock = undefined;
});

/** A gateway on a real node:http server in front of a mock upstream. */
async function start(upstream: Parameters<typeof createMockUpstream>[0] = {}) {
  mock = await createMockUpstream(upstream);
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
  });
  await gateway.credentials.add({ provider: "openai", baseUrl: mock.url, secret: { apiKey: "k" } });
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    mock,
    gateway,
    billing: new Billing(gateway.settings, 1024),
    client: (apiKey: string) => new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 }),
  };
}

async function records(g: Gateway, keyId: number): Promise<UsageRecord[]> {
  await g.usage.flush();
  return (await g.usage.list({ keyId, limit: 10_000 })).items;
}

/** Waits until `n` usage records of the key are written. */
async function waitForRecords(g: Gateway, keyId: number, n: number): Promise<UsageRecord[]> {
  for (let i = 0; i < 200; i++) {
    const items = await records(g, keyId);
    if (items.length >= n) return items;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`no usage record for key ${keyId}`);
}

const messages = [
  { role: "system" as const, content: "You are a terse assistant." },
  { role: "user" as const, content: "Stream me something long enough to be cut halfway." },
];

describe("500 concurrent streams against one key", () => {
  it("never overdraw the key, serve exactly what the quota pays for, and bill the sum of the records", async () => {
    const model = "gpt-4o";
    const words = splitMockReply(LONG_REPLY).length;
    const body = { model, messages, max_tokens: words, stream: true as const };
    const promptTokens = await countPromptTokens(model, body);
    // The upstream reports the same prompt count as the gateway's tokenizer, and the reply is
    // exactly `max_tokens` long: each request's estimate equals its actual cost.
    const {
      gateway: g,
      billing,
      client,
    } = await start({
      reply: LONG_REPLY,
      chunkDelayMs: 2,
      maxRecordedRequests: 0,
      usage: (_req, d) => ({ ...d, prompt_tokens: promptTokens }),
    });
    const cost = billing.cost(model, "default", {
      inputTokens: promptTokens,
      outputTokens: words,
    });
    expect(billing.estimate(model, "default", promptTokens, words)).toBe(cost);
    const QUOTA = 100 * cost + Math.floor(cost / 2);
    // The key is close enough to its end that every request is counted with the tokenizer.
    const bound = billing.estimate(
      model,
      "default",
      promptTokenBound(Buffer.from(JSON.stringify(body))),
      words,
    );
    expect(bound * TOKENIZE_WITHIN).toBeGreaterThan(QUOTA);

    const { key, record } = await g.keys.create({ name: "crowd", remainQuota: QUOTA });
    let lowest = QUOTA;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const k = await g.store.keys.get(record.id);
        lowest = Math.min(lowest, k!.remainQuota);
        await new Promise((r) => setTimeout(r, 2));
      }
    })();

    const openai = client(key);
    const outcomes = await Promise.all(
      Array.from({ length: 500 }, async () => {
        try {
          const stream = await openai.chat.completions.create(body);
          let text = "";
          for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
          return text === LONG_REPLY ? "ok" : `truncated: ${text}`;
        } catch (e) {
          if (e instanceof OpenAI.RateLimitError) {
            expect((e.error as { code?: string }).code).toBe("quota_exhausted");
            return "refused";
          }
          return `error: ${String(e)}`;
        }
      }),
    );
    sampling = false;
    await sampler;

    const ok = outcomes.filter((o) => o === "ok").length;
    const refused = outcomes.filter((o) => o === "refused").length;
    expect(outcomes.filter((o) => o !== "ok" && o !== "refused")).toEqual([]);
    expect(ok).toBe(Math.floor(QUOTA / cost));
    expect(ok).toBe(100);
    expect(refused).toBe(400);

    const all = await records(g, record.id);
    // Each refusal left a request log record that charged nothing.
    const refusals = all.filter((r) => r.errorType === "quota_exhausted");
    expect(refusals).toHaveLength(refused);
    for (const r of refusals) expect(r).toMatchObject({ success: false, status: 429, quota: 0 });
    const recs = all.filter((r) => r.success);
    const k = (await g.store.keys.get(record.id))!;
    const billed = all.reduce((sum, r) => sum + r.quota, 0);
    expect(lowest).toBeGreaterThanOrEqual(0);
    expect(k.remainQuota).toBeGreaterThanOrEqual(0);
    expect(all).toHaveLength(ok + refused);
    expect(recs).toHaveLength(ok);
    expect(QUOTA - k.remainQuota).toBe(k.usedQuota);
    expect(k.usedQuota).toBe(billed);
    // Settlement charged each request its actual cost, never more.
    for (const r of recs) {
      expect(r).toMatchObject({ success: true, stream: true, inputTokens: promptTokens });
      expect(r.quota).toBe(billing.cost(model, "default", r));
    }
    expect(k.remainQuota).toBe(QUOTA - 100 * cost);
  }, 60_000);
});

describe("a stream cut halfway", () => {
  const model = "gpt-4o-mini";
  const body = { model, messages, stream: true as const };

  async function expectBilledFor(g: Gateway, billing: Billing, keyId: number, received: string) {
    const [rec] = await waitForRecords(g, keyId, 1);
    const promptTokens = await countPromptTokens(model, body);
    const outputTokens = await countTokens(model, received);
    expect(received.length).toBeGreaterThan(0);
    expect(received.length).toBeLessThan(LONG_REPLY.length);
    expect(rec).toMatchObject({ success: false, inputTokens: promptTokens, outputTokens });
    const expected = billing.cost(model, "default", { inputTokens: promptTokens, outputTokens });
    expect(rec!.quota).toBe(expected);
    // Never zero, never the whole reservation.
    expect(rec!.quota).toBeGreaterThan(0);
    expect(rec!.quota).toBeLessThan(billing.estimate(model, "default", promptTokens, undefined));
    const k = (await g.store.keys.get(keyId))!;
    expect(k.usedQuota).toBe(expected);
    expect(k.remainQuota).toBe(1_000_000 - expected);
    return rec!;
  }

  it("by the client is billed for the prompt and the text the client received", async () => {
    const { gateway: g, billing, client } = await start({ reply: LONG_REPLY, chunkDelayMs: 40 });
    const { key, record } = await g.keys.create({ name: "abort", remainQuota: 1_000_000 });
    const stream = await client(key).chat.completions.create(body);
    let received = "";
    let chunks = 0;
    for await (const chunk of stream) {
      received += chunk.choices[0]?.delta.content ?? "";
      if (++chunks === 24) {
        stream.controller.abort();
        break;
      }
    }
    const rec = await expectBilledFor(g, billing, record.id, received);
    expect(rec.status).toBe(499);
  });

  it("by an upstream reset is billed for the prompt and the text the client received", async () => {
    const { gateway: g, billing, client, mock: m } = await start({ reply: LONG_REPLY });
    m.fail({ resetAfterChunks: 24 });
    const { key, record } = await g.keys.create({ name: "reset", remainQuota: 1_000_000 });
    const stream = await client(key).chat.completions.create(body);
    let received = "";
    const error = await (async () => {
      for await (const chunk of stream) received += chunk.choices[0]?.delta.content ?? "";
    })().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OpenAI.APIError);
    expect(received).toBe(splitMockReply(LONG_REPLY).slice(0, 24).join(""));
    const rec = await expectBilledFor(g, billing, record.id, received);
    expect(rec.status).toBe(502);
  });
});

describe("unlimited keys", () => {
  it("are never refused for quota, and still record and count their usage", async () => {
    const { gateway: g, billing, client } = await start({ chunkDelayMs: 1 });
    const { key, record } = await g.keys.create({
      name: "unlimited",
      remainQuota: 0,
      unlimitedQuota: true,
    });
    const openai = client(key);
    const results = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const stream = await openai.chat.completions.create({
          model: "gpt-4o",
          messages: [{ role: "user", content: `request ${i}` }],
          stream: true,
        });
        let text = "";
        for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
        return text;
      }),
    );
    expect(results.every((t) => t.length > 0)).toBe(true);
    const recs = await records(g, record.id);
    expect(recs).toHaveLength(40);
    const billed = recs.reduce((sum, r) => sum + r.quota, 0);
    for (const r of recs) expect(r.quota).toBe(billing.cost("gpt-4o", "default", r));
    const k = (await g.store.keys.get(record.id))!;
    expect(billed).toBeGreaterThan(0);
    expect(k.usedQuota).toBe(billed);
    expect(k.remainQuota).toBe(0);
    expect(k.accessedTime).toBeGreaterThan(0);
  });

  it("still draw on their owner's quota", async () => {
    const { gateway: g, billing, client } = await start();
    const owner = await g.store.users.create({
      username: "owner",
      displayName: "owner",
      role: "user",
      status: 1,
      group: "default",
      quota: 1_000_000,
      usedQuota: 0,
      accessTokenHash: null,
      createdTime: Math.floor(Date.now() / 1000),
    });
    const { key, record } = await g.keys.create({
      name: "owned",
      userId: owner.id,
      remainQuota: 0,
      unlimitedQuota: true,
    });
    await client(key).chat.completions.create({ model: "gpt-4o", messages });
    const [rec] = await records(g, record.id);
    expect(rec!.quota).toBe(billing.cost("gpt-4o", "default", rec!));
    const u = (await g.store.users.get(owner.id))!;
    expect(u.usedQuota).toBe(rec!.quota);
    expect(u.quota).toBe(1_000_000 - rec!.quota);
    const k = (await g.store.keys.get(record.id))!;
    expect(k).toMatchObject({ remainQuota: 0, usedQuota: rec!.quota });
  });
});

describe("streamedText", () => {
  it("collects content, refusals, tool-call arguments and reasoning per choice", () => {
    const ev = (o: unknown) => Buffer.from(`data: ${JSON.stringify(o)}\n\n`);
    const text = streamedText([
      ev({ choices: [{ index: 0, delta: { role: "assistant", content: "Hel" } }] }),
      ev({ choices: [{ index: 1, delta: { content: "Bon" } }] }),
      ev({ choices: [{ index: 0, delta: { content: "lo" } }] }),
      ev({ choices: [{ index: 1, delta: { reasoning_content: "thinking" } }] }),
      ev({
        choices: [
          {
            index: 0,
            delta: {
              tool_calls: [{ index: 0, function: { name: "get_weather", arguments: '{"ci' } }],
            },
          },
        ],
      }),
      ev({
        choices: [{ index: 0, delta: { tool_calls: [{ function: { arguments: 'ty":1}' } }] } }],
      }),
      Buffer.from("data: [DONE]\n\n"),
      Buffer.from(": a comment\n\n"),
      Buffer.from("data: not json\n\n"),
    ]);
    expect(text).toEqual({
      output: ['Helloget_weather{"city":1}', "Bon"],
      reasoning: ["thinking"],
    });
  });
});
