/**
 * The Responses API as a fourth format: a Responses client (official `openai` client) served by
 * Anthropic, Gemini and Codex upstreams, and chat / Anthropic clients served by a Codex upstream
 * (which speaks only the Responses API), through a real node:http server and the mock upstream.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Anthropic from "@anthropic-ai/sdk";
import { createMockUpstream, DEFAULT_MOCK_REPLY, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const UPSTREAM_KEY = "sk-upstream-responses-5a4b3c2d1e0f";
const WORDS = DEFAULT_MOCK_REPLY.split(" ").length;
type Up = "anthropic" | "gemini" | "codex";
const UPS: Up[] = ["anthropic", "gemini", "codex"];
const UPSTREAM_PATH: Record<Up, RegExp> = {
  anthropic: /^\/v1\/messages$/,
  gemini: /^\/v1beta\/models\//,
  codex: /^\/v1\/responses$/,
};

let mock: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;
const keys = {} as Record<Up, string>;

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  gateway = createGateway({
    store: memoryStore(),
    secret: "responses-secret-0123456789-0123456789",
    logger: false,
  });
  for (const up of UPS) {
    await gateway.credentials.add({
      provider: up,
      kind: "api-key",
      baseUrl: up === "codex" ? mock.url : mock.origin,
      secret: { apiKey: UPSTREAM_KEY },
      groups: [`g-${up}`],
    });
    keys[up] = (
      await gateway.keys.create({ name: up, unlimitedQuota: true, group: `g-${up}` })
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

const openai = (up: Up) => new OpenAI({ baseURL: `${base}/v1`, apiKey: keys[up], maxRetries: 0 });
const lastPath = () => mock.requests.at(-1)?.path ?? "";
const TOOL = {
  type: "function" as const,
  name: "get_weather",
  description: "The weather of a city",
  parameters: { type: "object", properties: { query: { type: "string" } }, required: ["query"] },
  strict: false,
};

describe.each(UPS)("a Responses client served by a %s upstream", (up) => {
  it("answers with text (JSON) and usage", async () => {
    const r = await openai(up).responses.create({
      model: "gpt-5",
      instructions: "Be brief.",
      input: "Hello there",
    });
    expect(r.output_text).toBe(DEFAULT_MOCK_REPLY);
    expect(r.status).toBe("completed");
    expect(r.usage?.output_tokens).toBe(WORDS);
    expect(lastPath()).toMatch(UPSTREAM_PATH[up]);
  });

  it("streams the Responses event sequence", async () => {
    const s = openai(up).responses.stream({ model: "gpt-5", input: "Hello there" });
    const types: string[] = [];
    let text = "";
    for await (const ev of s) {
      types.push(ev.type);
      if (ev.type === "response.output_text.delta") text += ev.delta;
    }
    const final = await s.finalResponse();
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(final.output_text).toBe(DEFAULT_MOCK_REPLY);
    expect(types[0]).toBe("response.created");
    expect(types.at(-1)).toBe("response.completed");
    expect(final.usage?.output_tokens).toBe(WORDS);
  });

  it("relays a function call and passes its output back", async () => {
    const r = await openai(up).responses.create({
      model: "gpt-5",
      input: "Weather in Paris?",
      tools: [TOOL],
    });
    const call = r.output.find((o) => o.type === "function_call");
    if (call?.type !== "function_call") throw new Error("no function_call item");
    expect(call.name).toBe("get_weather");
    expect(JSON.parse(call.arguments)).toEqual({ query: "mock" });
    const next = await openai(up).responses.create({
      model: "gpt-5",
      tools: [TOOL],
      input: [
        { role: "user", content: "Weather in Paris?" },
        {
          type: "function_call",
          call_id: call.call_id,
          name: call.name,
          arguments: call.arguments,
        },
        { type: "function_call_output", call_id: call.call_id, output: "sunny" },
      ],
    });
    // A Gemini upstream receives the output as a functionResponse object (the mock echoes its JSON).
    expect(next.output_text).toBe(
      up === "gemini" ? 'Tool result: {"content":"sunny"}' : "Tool result: sunny",
    );
  });
});

describe("other clients served by a Codex upstream (Responses API only)", () => {
  it("serves a chat completion, JSON and streamed", async () => {
    const before = mock.requests.length;
    const r = await openai("codex").chat.completions.create({
      model: "gpt-5-codex",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hello there" },
      ],
    });
    expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(r.usage?.completion_tokens).toBe(WORDS);
    const up = mock.requests.slice(before)[0];
    expect(up?.path).toBe("/v1/responses");
    expect(up?.body).toMatchObject({ model: "gpt-5-codex", instructions: "Be brief." });

    const s = await openai("codex").chat.completions.create({
      model: "gpt-5-codex",
      messages: [{ role: "user", content: "Stream it" }],
      stream: true,
    });
    let text = "";
    for await (const chunk of s) text += chunk.choices[0]?.delta.content ?? "";
    expect(text).toBe(DEFAULT_MOCK_REPLY);
  });

  it("relays a streamed tool call to a chat client", async () => {
    const s = await openai("codex").chat.completions.create({
      model: "gpt-5-codex",
      messages: [{ role: "user", content: "Weather in Paris?" }],
      tools: [{ type: "function", function: { name: TOOL.name, parameters: TOOL.parameters } }],
      stream: true,
    });
    let name = "";
    let args = "";
    let finish: string | null = null;
    for await (const chunk of s) {
      const d = chunk.choices[0]?.delta.tool_calls?.[0];
      name += d?.function?.name ?? "";
      args += d?.function?.arguments ?? "";
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(name).toBe("get_weather");
    expect(JSON.parse(args)).toEqual({ query: "mock" });
    expect(finish).toBe("tool_calls");
  });

  it("serves an Anthropic client", async () => {
    const c = new Anthropic({ baseURL: base, apiKey: keys.codex, maxRetries: 0 });
    const r = await c.messages.create({
      model: "gpt-5-codex",
      max_tokens: 100,
      messages: [{ role: "user", content: "Hello there" }],
    });
    expect(r.content.map((b) => (b.type === "text" ? b.text : "")).join("")).toBe(
      DEFAULT_MOCK_REPLY,
    );
    expect(r.usage.output_tokens).toBe(WORDS);
    expect(lastPath()).toBe("/v1/responses");
  });
});

describe("which API an OpenAI credential is called on", () => {
  it("passes Responses clients through to OpenAI's own API, and translates for compatible ones", async () => {
    const { adapterFor } = await import("../src/providers/index.js");
    const cred = (baseUrl: string) =>
      ({ provider: "openai", kind: "api-key", baseUrl }) as Parameters<typeof adapterFor>[0];
    expect(adapterFor(cred("https://api.openai.com/v1"), "responses")?.format).toBe("responses");
    expect(adapterFor(cred("https://api.openai.com/v1"), "openai")?.format).toBe("openai");
    expect(adapterFor(cred("https://openrouter.ai/api/v1"), "responses")?.format).toBe("openai");
  });
});
