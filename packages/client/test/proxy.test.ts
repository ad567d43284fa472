/** `client.proxy(apiKey)` against a real gateway: JSON and streams in the three formats. */
import { DEFAULT_MOCK_REPLY } from "@tokenpool/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, createClient, isTokenpoolError, type ProxyApi } from "../src/index.js";
import { startGateway, type TestGateway } from "./setup.js";

let g: TestGateway;
let client: Client;
let proxy: ProxyApi;
let tokenId: number;
const MODEL = "gpt-4o-mini";
const messages = [{ role: "user", content: "Hello" }];

beforeAll(async () => {
  g = await startGateway();
  client = createClient({ baseUrl: g.base, managementKey: g.managementKey });
  const t = await client.tokens.create({ name: "proxy", remain_quota: 50_000_000 });
  tokenId = t.id;
  proxy = client.proxy(t.key);
});

afterAll(() => g.close());

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

describe("OpenAI format", () => {
  it("chat returns the parsed completion", async () => {
    const r = await proxy.chat({ model: MODEL, messages });
    expect(r.choices[0].message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(r.usage.total_tokens).toBeGreaterThan(0);
  });

  it("chatStream yields parsed chunks until [DONE]", async () => {
    const chunks = await collect(proxy.chatStream({ model: MODEL, messages }));
    const text = chunks.map((c) => c.choices?.[0]?.delta?.content ?? "").join("");
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(chunks.length).toBeGreaterThan(3);
  });

  it("chatStream can be left early", async () => {
    for await (const chunk of proxy.chatStream({ model: MODEL, messages })) {
      expect(chunk.object).toBe("chat.completion.chunk");
      break;
    }
  });

  it("an error event in the stream throws a TokenpoolError", async () => {
    g.mock.fail({ path: "/v1/chat/completions", resetAfterChunks: 2 });
    const seen: unknown[] = [];
    let error: unknown;
    try {
      for await (const c of proxy.chatStream({ model: MODEL, messages })) seen.push(c);
    } catch (e) {
      error = e;
    }
    expect(seen.length).toBeGreaterThan(0);
    expect(isTokenpoolError(error)).toBe(true);
    expect(error).toMatchObject({ status: 502, code: "stream_interrupted" });
  });

  it("models lists the models", async () => {
    const r = await proxy.models();
    expect(r.object).toBe("list");
  });

  it("reads the key's own balance in new-api's, OpenAI's and OpenRouter's shapes", async () => {
    const t = await client.tokens.create({ name: "balance", remain_quota: 1_500_000 });
    const own = client.proxy(t.key);
    expect(await own.tokenUsage()).toMatchObject({
      object: "token_usage",
      name: "balance",
      total_granted: 1_500_000,
      total_available: 1_500_000,
      total_used: 0,
    });
    expect(await own.billingSubscription()).toMatchObject({
      object: "billing_subscription",
      hard_limit_usd: 3,
      access_until: 0,
    });
    expect(await own.billingUsage()).toEqual({ object: "list", total_usage: 0 });
    expect(await own.keyInfo()).toMatchObject({ label: "balance", limit: 3, limit_remaining: 3 });
    await expect(client.proxy("sk-unknown-000000000000").keyInfo()).rejects.toMatchObject({
      status: 401,
    });
  });

  it("a refused key is a TokenpoolError with the OpenAI error's code", async () => {
    const bad = client.proxy("sk-not-a-key-0000000000000000");
    const e = await bad.chat({ model: MODEL, messages }).catch((x: unknown) => x);
    expect(isTokenpoolError(e)).toBe(true);
    expect(e).toMatchObject({ status: 401 });
    expect((e as { body: { error: { message: string } } }).body.error.message).toBeTruthy();
  });

  it("an exhausted quota is refused with its code", async () => {
    const t = await client.tokens.create({ name: "broke", remain_quota: 0 });
    const e = await client
      .proxy(t.key)
      .chat({ model: MODEL, messages })
      .catch((x: unknown) => x);
    expect(isTokenpoolError(e)).toBe(true);
    expect((e as { code?: string }).code).toBeTruthy();
    expect((e as { status: number }).status).toBeGreaterThanOrEqual(400);
  });
});

describe("Responses API, embeddings, token counts", () => {
  it("responses returns the parsed response", async () => {
    const r = await proxy.responses({ model: MODEL, input: "Hello there" });
    expect(r.object).toBe("response");
    expect(r.output_text).toBe(DEFAULT_MOCK_REPLY);
  });

  it("responsesStream yields the events until response.completed", async () => {
    const events = await collect(proxy.responsesStream({ model: MODEL, input: "Hello there" }));
    expect(events[0]?.type).toBe("response.created");
    expect(events.at(-1)?.type).toBe("response.completed");
    const text = events
      .filter((e) => e.type === "response.output_text.delta")
      .map((e) => e.delta)
      .join("");
    expect(text).toBe(DEFAULT_MOCK_REPLY);
  });

  it("embeddings returns the vectors", async () => {
    const r = await proxy.embeddings({ model: "text-embedding-3-small", input: ["a", "b"] });
    expect(r.data).toHaveLength(2);
    expect(r.data[0].embedding.length).toBeGreaterThan(0);
  });

  it("countTokens counts a Messages request", async () => {
    const r = await proxy.countTokens({ model: MODEL, messages });
    expect(Number.isInteger(r.input_tokens)).toBe(true);
    expect(r.input_tokens).toBeGreaterThan(0);
  });
});

describe("Anthropic format", () => {
  it("messages returns the parsed message", async () => {
    const r = await proxy.messages({ model: MODEL, max_tokens: 100, messages });
    expect(r.type).toBe("message");
    expect(r.content[0].text).toBe(DEFAULT_MOCK_REPLY);
  });

  it("messagesStream yields the events' data", async () => {
    const events = await collect(proxy.messagesStream({ model: MODEL, max_tokens: 100, messages }));
    expect(events[0]!.type).toBe("message_start");
    expect(events.at(-1)!.type).toBe("message_stop");
    const text = events
      .filter((e) => e.type === "content_block_delta")
      .map((e) => e.delta.text)
      .join("");
    expect(text).toBe(DEFAULT_MOCK_REPLY);
  });

  it("an error event throws with Anthropic's error type as code", async () => {
    g.mock.fail({ path: "/v1/chat/completions", resetAfterChunks: 2 });
    const e = await collect(
      proxy.messagesStream({ model: MODEL, max_tokens: 100, messages }),
    ).catch((x: unknown) => x);
    expect(isTokenpoolError(e)).toBe(true);
    expect(e).toMatchObject({ status: 502 });
    expect((e as { code?: string }).code).toBeTruthy();
  });
});

describe("Gemini format", () => {
  it("generateContent returns the parsed response", async () => {
    const r = await proxy.generateContent(MODEL, {
      contents: [{ role: "user", parts: [{ text: "Hello" }] }],
    });
    expect(r.candidates[0].content.parts[0].text).toBe(DEFAULT_MOCK_REPLY);
  });

  it("streamGenerateContent yields the chunks (alt=sse)", async () => {
    const chunks = await collect(
      proxy.streamGenerateContent(MODEL, {
        contents: [{ role: "user", parts: [{ text: "Hello" }] }],
      }),
    );
    const text = chunks
      .map((c) => (c.candidates?.[0]?.content?.parts ?? []).map((p: any) => p.text ?? "").join(""))
      .join("");
    expect(text).toBe(DEFAULT_MOCK_REPLY);
  });
});

describe("usage", () => {
  it("the key's used quota grew", async () => {
    await new Promise((r) => setTimeout(r, 50));
    expect((await client.tokens.get(tokenId)).used_quota).toBeGreaterThan(0);
  });
});
