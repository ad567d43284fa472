/**
 * The 3×3 matrix: each client format (OpenAI with the official `openai` client, Anthropic with
 * the official `@anthropic-ai/sdk` client, Gemini with plain fetch) served by each upstream format
 * (OpenAI, Anthropic, Gemini API key), through a real node:http server and one real mock upstream
 * speaking all three. Keys are bound to groups; each group has one credential of one format.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Anthropic from "@anthropic-ai/sdk";
import { createMockUpstream, DEFAULT_MOCK_REPLY, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "formats-secret-0123456789-0123456789-abcdef";
const UPSTREAM_KEY = "sk-upstream-formats-7f6e5d4c3b2a";
const MODEL = "gemini-2.5-flash";
const WORDS = DEFAULT_MOCK_REPLY.split(" ").length;

type Format = "openai" | "anthropic" | "gemini";
const FORMATS: Format[] = ["openai", "anthropic", "gemini"];

let mock: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;
const keys = {} as Record<Format, string>;

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
  });
  const upstreams: Record<Format, { provider: string; baseUrl: string }> = {
    openai: { provider: "openai", baseUrl: mock.url },
    anthropic: { provider: "anthropic", baseUrl: mock.origin },
    gemini: { provider: "gemini", baseUrl: mock.origin },
  };
  for (const f of FORMATS) {
    await gateway.credentials.add({
      ...upstreams[f],
      kind: "api-key",
      secret: { apiKey: UPSTREAM_KEY },
      groups: [`up-${f}`],
    });
    keys[f] = (
      await gateway.keys.create({ name: `via-${f}`, unlimitedQuota: true, group: `up-${f}` })
    ).key;
  }
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
  await mock.close();
});

/** The path the upstream of each format is called on. */
const UPSTREAM_PATH: Record<Format, RegExp> = {
  openai: /^\/v1\/chat\/completions$/,
  anthropic: /^\/v1\/messages$/,
  gemini: /^\/v1beta\/models\/[^/]+:(generateContent|streamGenerateContent\?alt=sse)$/,
};

const TOOL = {
  name: "get_weather",
  description: "The weather of a city",
  parameters: { type: "object", properties: { query: { type: "string" } }, required: ["query"] },
};

/** One client format: text (JSON and stream), a tool call, and a tool result, as plain values. */
interface Client {
  text(upstream: Format): Promise<{ text: string; outputTokens: number }>;
  streamText(upstream: Format): Promise<{ text: string; events: number; outputTokens: number }>;
  toolCall(upstream: Format, stream: boolean): Promise<{ name: string; args: unknown }>;
  toolResult(upstream: Format): Promise<string>;
}

const openaiClient: Client = {
  async text(up) {
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: keys[up] });
    const r = await c.chat.completions.create({
      model: MODEL,
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hello there" },
      ],
    });
    return {
      text: r.choices[0]?.message.content ?? "",
      outputTokens: r.usage?.completion_tokens ?? -1,
    };
  },
  async streamText(up) {
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: keys[up] });
    const s = await c.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Hello there" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let events = 0;
    let outputTokens = -1;
    for await (const chunk of s) {
      events++;
      text += chunk.choices[0]?.delta.content ?? "";
      if (chunk.usage) outputTokens = chunk.usage.completion_tokens;
    }
    return { text, events, outputTokens };
  },
  async toolCall(up, stream) {
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: keys[up] });
    const body = {
      model: MODEL,
      messages: [{ role: "user" as const, content: "Weather in Paris?" }],
      tools: [{ type: "function" as const, function: TOOL }],
    };
    if (!stream) {
      const r = await c.chat.completions.create(body);
      const call = r.choices[0]?.message.tool_calls?.[0];
      expect(r.choices[0]?.finish_reason).toBe("tool_calls");
      if (call?.type !== "function") throw new Error("no function call");
      return { name: call.function.name, args: JSON.parse(call.function.arguments) };
    }
    const s = await c.chat.completions.create({ ...body, stream: true });
    let name = "";
    let args = "";
    let finish: string | null = null;
    for await (const chunk of s) {
      const d = chunk.choices[0]?.delta.tool_calls?.[0];
      if (d?.function?.name) name += d.function.name;
      if (d?.function?.arguments) args += d.function.arguments;
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(finish).toBe("tool_calls");
    return { name, args: JSON.parse(args) };
  },
  async toolResult(up) {
    const c = new OpenAI({ baseURL: `${base}/v1`, apiKey: keys[up] });
    const r = await c.chat.completions.create({
      model: MODEL,
      messages: [
        { role: "user", content: "Weather in Paris?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            {
              id: "call_1",
              type: "function",
              function: { name: "get_weather", arguments: '{"query":"Paris"}' },
            },
          ],
        },
        { role: "tool", tool_call_id: "call_1", content: "sunny" },
      ],
      tools: [{ type: "function", function: TOOL }],
    });
    return r.choices[0]?.message.content ?? "";
  },
};

const anthropicClient: Client = {
  async text(up) {
    const c = new Anthropic({ baseURL: base, apiKey: keys[up] });
    const r = await c.messages.create({
      model: MODEL,
      max_tokens: 100,
      system: "Be brief.",
      messages: [{ role: "user", content: "Hello there" }],
    });
    const text = r.content.map((b) => (b.type === "text" ? b.text : "")).join("");
    expect(r.stop_reason).toBe("end_turn");
    return { text, outputTokens: r.usage.output_tokens };
  },
  async streamText(up) {
    const c = new Anthropic({ baseURL: base, apiKey: keys[up] });
    const s = c.messages.stream({
      model: MODEL,
      max_tokens: 100,
      messages: [{ role: "user", content: "Hello there" }],
    });
    let events = 0;
    let text = "";
    for await (const ev of s) {
      events++;
      if (ev.type === "content_block_delta" && ev.delta.type === "text_delta")
        text += ev.delta.text;
    }
    const final = await s.finalMessage();
    expect(final.stop_reason).toBe("end_turn");
    return { text, events, outputTokens: final.usage.output_tokens };
  },
  async toolCall(up, stream) {
    const c = new Anthropic({ baseURL: base, apiKey: keys[up] });
    const body = {
      model: MODEL,
      max_tokens: 100,
      messages: [{ role: "user" as const, content: "Weather in Paris?" }],
      tools: [
        {
          name: TOOL.name,
          description: TOOL.description,
          input_schema: TOOL.parameters as Anthropic.Tool.InputSchema,
        },
      ],
    };
    const r = stream ? await c.messages.stream(body).finalMessage() : await c.messages.create(body);
    expect(r.stop_reason).toBe("tool_use");
    const block = r.content.find((b) => b.type === "tool_use");
    if (block?.type !== "tool_use") throw new Error("no tool_use block");
    return { name: block.name, args: block.input };
  },
  async toolResult(up) {
    const c = new Anthropic({ baseURL: base, apiKey: keys[up] });
    const r = await c.messages.create({
      model: MODEL,
      max_tokens: 100,
      tools: [
        {
          name: TOOL.name,
          description: TOOL.description,
          input_schema: TOOL.parameters as Anthropic.Tool.InputSchema,
        },
      ],
      messages: [
        { role: "user", content: "Weather in Paris?" },
        {
          role: "assistant",
          content: [
            { type: "tool_use", id: "toolu_1", name: "get_weather", input: { query: "Paris" } },
          ],
        },
        {
          role: "user",
          content: [{ type: "tool_result", tool_use_id: "toolu_1", content: "sunny" }],
        },
      ],
    });
    return r.content.map((b) => (b.type === "text" ? b.text : "")).join("");
  },
};

/** Parses an SSE body (`data:` lines) into JSON objects. */
async function sseObjects(res: Response): Promise<Record<string, unknown>[]> {
  const text = await res.text();
  return text
    .split(/\r?\n\r?\n/)
    .map((ev) =>
      ev
        .split(/\r?\n/)
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim())
        .join("\n"),
    )
    .filter((d) => d !== "")
    .map((d) => JSON.parse(d) as Record<string, unknown>);
}

interface GeminiPart {
  text?: string;
  thought?: boolean;
  functionCall?: { name: string; args: unknown };
}
interface GeminiAnswer {
  candidates?: { content?: { parts?: GeminiPart[] }; finishReason?: string }[];
  usageMetadata?: { candidatesTokenCount?: number };
}

function geminiCall(up: Format, body: unknown, stream: boolean): Promise<Response> {
  const method = stream ? "streamGenerateContent?alt=sse" : "generateContent";
  return fetch(`${base}/v1beta/models/${MODEL}:${method}`, {
    method: "POST",
    headers: { "content-type": "application/json", "x-goog-api-key": keys[up] },
    body: JSON.stringify(body),
  });
}

const partsText = (a: GeminiAnswer) =>
  (a.candidates?.[0]?.content?.parts ?? []).map((p) => (p.thought ? "" : (p.text ?? ""))).join("");

const geminiTools = [{ functionDeclarations: [TOOL] }];

const geminiClient: Client = {
  async text(up) {
    const res = await geminiCall(
      up,
      {
        systemInstruction: { parts: [{ text: "Be brief." }] },
        contents: [{ role: "user", parts: [{ text: "Hello there" }] }],
      },
      false,
    );
    expect(res.status).toBe(200);
    const a = (await res.json()) as GeminiAnswer;
    expect(a.candidates?.[0]?.finishReason).toBe("STOP");
    return { text: partsText(a), outputTokens: a.usageMetadata?.candidatesTokenCount ?? -1 };
  },
  async streamText(up) {
    const res = await geminiCall(
      up,
      { contents: [{ role: "user", parts: [{ text: "Hello there" }] }] },
      true,
    );
    expect(res.status).toBe(200);
    const events = (await sseObjects(res)) as GeminiAnswer[];
    const last = events.at(-1);
    expect(last?.candidates?.[0]?.finishReason).toBe("STOP");
    return {
      text: events.map(partsText).join(""),
      events: events.length,
      outputTokens: last?.usageMetadata?.candidatesTokenCount ?? -1,
    };
  },
  async toolCall(up, stream) {
    const res = await geminiCall(
      up,
      { contents: [{ role: "user", parts: [{ text: "Weather in Paris?" }] }], tools: geminiTools },
      stream,
    );
    expect(res.status).toBe(200);
    const answers = stream
      ? ((await sseObjects(res)) as GeminiAnswer[])
      : [(await res.json()) as GeminiAnswer];
    const call = answers
      .flatMap((a) => a.candidates?.[0]?.content?.parts ?? [])
      .find((p) => p.functionCall)?.functionCall;
    if (!call) throw new Error("no functionCall part");
    return { name: call.name, args: call.args };
  },
  async toolResult(up) {
    const res = await geminiCall(
      up,
      {
        contents: [
          { role: "user", parts: [{ text: "Weather in Paris?" }] },
          {
            role: "model",
            parts: [{ functionCall: { name: "get_weather", args: { query: "Paris" } } }],
          },
          {
            role: "user",
            parts: [{ functionResponse: { name: "get_weather", response: { content: "sunny" } } }],
          },
        ],
        tools: geminiTools,
      },
      false,
    );
    expect(res.status).toBe(200);
    return partsText((await res.json()) as GeminiAnswer);
  },
};

const CLIENTS: Record<Format, Client> = {
  openai: openaiClient,
  anthropic: anthropicClient,
  gemini: geminiClient,
};

const lastUpstreamPath = () => mock.requests.at(-1)?.path ?? "";

describe.each(FORMATS)("%s client", (client) => {
  describe.each(FORMATS)("served by a %s upstream", (upstream) => {
    const c = CLIENTS[client];

    it("answers a text request (system prompt, JSON)", async () => {
      const r = await c.text(upstream);
      expect(r.text).toBe(DEFAULT_MOCK_REPLY);
      expect(r.outputTokens).toBe(WORDS);
      expect(lastUpstreamPath()).toMatch(UPSTREAM_PATH[upstream]);
    });

    it("streams a text answer event by event, with usage", async () => {
      const r = await c.streamText(upstream);
      expect(r.text).toBe(DEFAULT_MOCK_REPLY);
      expect(r.events).toBeGreaterThan(WORDS / 2);
      expect(r.outputTokens).toBe(WORDS);
      expect(lastUpstreamPath()).toMatch(UPSTREAM_PATH[upstream]);
    });

    it.each([false, true])("relays a tool call (stream: %s)", async (stream) => {
      const r = await c.toolCall(upstream, stream);
      expect(r).toEqual({ name: "get_weather", args: { query: "mock" } });
    });

    it("passes a tool result back to the model", async () => {
      // A Gemini upstream receives the result as a `functionResponse` object (the mock echoes its JSON).
      const expected =
        upstream === "gemini" ? 'Tool result: {"content":"sunny"}' : "Tool result: sunny";
      expect(await c.toolResult(upstream)).toBe(expected);
    });
  });
});

describe("usage is recorded in one shape whatever the formats", () => {
  it("records input and output tokens for a translated request", async () => {
    const mine = async () =>
      (await gateway.usage.list({ limit: 1000 })).items
        .filter((r) => r.route === "POST /v1/messages" && r.provider === "gemini")
        .sort((a, b) => b.id - a.id);
    await gateway.usage.flush();
    const before = (await mine()).length;
    await anthropicClient.text("gemini");
    await gateway.usage.flush();
    const after = await mine();
    expect(after.length).toBe(before + 1);
    const rec = after[0]!;
    expect(rec.outputTokens).toBe(WORDS);
    expect(rec.inputTokens).toBeGreaterThan(0);
    expect(rec.success).toBe(true);
    expect(rec.stream).toBe(false);
  });
});
