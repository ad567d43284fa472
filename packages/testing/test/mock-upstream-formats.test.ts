import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createMockUpstream,
  DEFAULT_MOCK_REPLY,
  type MockUpstream,
  mockEmbedding,
  splitMockReply,
} from "../src/mock-upstream.js";

const KEY = "sk-mock-formats-key-1234";
const WORDS = splitMockReply(DEFAULT_MOCK_REPLY);
const TOOL_ARGS = JSON.stringify({ query: "mock" });

let mock: MockUpstream;

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [KEY] });
});
afterEach(() => mock.reset());
afterAll(() => mock.close());

function post(
  path: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(`${mock.origin}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

const openai = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  post(path, body, { authorization: `Bearer ${KEY}`, ...headers });
const anthropic = (body: unknown, headers: Record<string, string> = {}, path = "/v1/messages") =>
  post(path, body, { "x-api-key": KEY, "anthropic-version": "2023-06-01", ...headers });
const gemini = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  post(path, body, { "x-goog-api-key": KEY, ...headers });
const codeAssist = (action: string, body: unknown, headers: Record<string, string> = {}) =>
  post(`/v1internal:${action}`, body, { authorization: `Bearer ${KEY}`, ...headers });

/** The parsed JSON body of a response, loosely typed for assertions. */
function json(res: Response): Promise<any> {
  return res.json();
}

interface SseEvent {
  event: string | undefined;
  data: any;
  raw: string;
}

/** Read an SSE body (`\n\n` or `\r\n\r\n` separated); `error` is set when the stream broke. */
async function readSse(res: Response): Promise<{ events: SseEvent[]; error: unknown }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const events: SseEvent[] = [];
  let buffered = "";
  const take = () => {
    for (let m = /\r?\n\r?\n/.exec(buffered); m; m = /\r?\n\r?\n/.exec(buffered)) {
      const raw = buffered.slice(0, m.index);
      buffered = buffered.slice(m.index + m[0].length);
      let event: string | undefined;
      let data = "";
      for (const line of raw.split(/\r?\n/)) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      events.push({ event, data: data === "[DONE]" ? data : JSON.parse(data), raw });
    }
  };
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      take();
    }
  } catch (error) {
    return { events, error };
  }
  expect(buffered).toBe("");
  return { events, error: undefined };
}

describe("mock upstream: OpenAI legacy completions and embeddings", () => {
  it("answers a text_completion with prompt tokens = ceil(chars / 4)", async () => {
    const res = await openai("/v1/completions", {
      model: "gpt-3.5-turbo-instruct",
      prompt: "abcdefghij",
    });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toEqual({
      id: expect.stringMatching(/^cmpl-/),
      object: "text_completion",
      created: expect.any(Number),
      model: "gpt-3.5-turbo-instruct",
      choices: [{ text: DEFAULT_MOCK_REPLY, index: 0, logprobs: null, finish_reason: "stop" }],
      usage: { prompt_tokens: 3, completion_tokens: WORDS.length, total_tokens: 3 + WORDS.length },
    });
  });

  it("streams one chunk per word, a finish chunk, the usage chunk and [DONE]", async () => {
    const res = await openai("/v1/completions", {
      model: "m",
      prompt: ["abcd", "efgh"],
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const { events, error } = await readSse(res);
    expect(error).toBeUndefined();
    expect(events).toHaveLength(WORDS.length + 3);
    expect(events.slice(0, WORDS.length).map((e) => e.data.choices[0].text)).toEqual(WORDS);
    expect(events[0]!.data).toMatchObject({
      object: "text_completion",
      model: "m",
      choices: [{ index: 0, logprobs: null, finish_reason: null }],
      usage: null,
    });
    expect(events[WORDS.length]!.data.choices[0]).toMatchObject({
      text: "",
      finish_reason: "stop",
    });
    expect(events.at(-2)!.data).toMatchObject({
      choices: [],
      usage: { prompt_tokens: 2, completion_tokens: WORDS.length },
    });
    expect(events.at(-1)!.data).toBe("[DONE]");
  });

  it("embeds a string or an array of strings deterministically", async () => {
    const one = await json(
      await openai("/v1/embeddings", { model: "text-embedding-3-small", input: "hello" }),
    );
    expect(one).toEqual({
      object: "list",
      data: [{ object: "embedding", index: 0, embedding: mockEmbedding("hello") }],
      model: "text-embedding-3-small",
      usage: { prompt_tokens: 2, total_tokens: 2 },
    });
    expect(one.data[0].embedding).toHaveLength(8);
    for (const v of one.data[0].embedding) expect(Math.abs(v)).toBeLessThanOrEqual(1);

    const many = await json(
      await openai("/v1/embeddings", { model: "e", input: ["hello", "world!!!"] }),
    );
    expect(many.data.map((d: { index: number }) => d.index)).toEqual([0, 1]);
    expect(many.data[0].embedding).toEqual(one.data[0].embedding);
    expect(many.data[1].embedding).not.toEqual(one.data[0].embedding);
    expect(many.usage).toEqual({ prompt_tokens: 4, total_tokens: 4 });

    const b64 = await json(
      await openai("/v1/embeddings", { model: "e", input: "hello", encoding_format: "base64" }),
    );
    const bytes = Buffer.from(b64.data[0].embedding, "base64");
    const floats = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    expect(floats).toHaveLength(8);
    expect(floats[0]).toBeCloseTo(one.data[0].embedding[0], 5);
  });

  it("checks the key and the body of the new OpenAI routes", async () => {
    const noKey = await post("/v1/embeddings", { model: "e", input: "x" });
    expect(noKey.status).toBe(401);
    expect((await json(noKey)).error.code).toBe("invalid_api_key");
    const noInput = await openai("/v1/embeddings", { model: "e" });
    expect(noInput.status).toBe(400);
    expect((await json(noInput)).error.param).toBe("input");
    const noModel = await openai("/v1/completions", { prompt: "x" });
    expect(noModel.status).toBe(400);
    expect((await json(noModel)).error.param).toBe("model");
  });
});

describe("mock upstream: OpenAI Responses API", () => {
  it("answers a completed response with usage", async () => {
    const res = await openai("/v1/responses", {
      model: "gpt-4.1",
      instructions: "Be brief",
      input: "Hi there",
    });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body).toEqual({
      id: expect.stringMatching(/^resp_/),
      object: "response",
      created_at: expect.any(Number),
      status: "completed",
      model: "gpt-4.1",
      output: [
        {
          type: "message",
          id: expect.any(String),
          status: "completed",
          role: "assistant",
          content: [{ type: "output_text", text: DEFAULT_MOCK_REPLY, annotations: [] }],
        },
      ],
      usage: {
        input_tokens: 4,
        output_tokens: WORDS.length,
        total_tokens: 4 + WORDS.length,
        input_tokens_details: { cached_tokens: 0 },
        output_tokens_details: { reasoning_tokens: 0 },
      },
    });
  });

  it("streams the Responses event sequence with event: lines", async () => {
    const input = [{ role: "user", content: [{ type: "input_text", text: "12345678" }] }];
    const res = await openai("/v1/responses", { model: "gpt-4.1", input, stream: true });
    const { events, error } = await readSse(res);
    expect(error).toBeUndefined();
    const names = events.map((e) => e.event);
    expect(names).toEqual([
      "response.created",
      "response.output_item.added",
      "response.content_part.added",
      ...WORDS.map(() => "response.output_text.delta"),
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.completed",
    ]);
    for (const [i, e] of events.entries()) {
      expect(e.data.type).toBe(e.event);
      expect(e.data.sequence_number).toBe(i);
    }
    expect(events[0]!.data.response).toMatchObject({ status: "in_progress", output: [] });
    const deltas = events.filter((e) => e.event === "response.output_text.delta");
    expect(deltas.map((e) => e.data.delta).join("")).toBe(DEFAULT_MOCK_REPLY);
    const done = events.at(-1)!.data.response;
    expect(done.status).toBe("completed");
    expect(done.output[0].content[0].text).toBe(DEFAULT_MOCK_REPLY);
    expect(done.usage).toMatchObject({ input_tokens: 2, output_tokens: WORDS.length });
  });

  it("calls a function tool and echoes a function_call_output", async () => {
    const tools = [{ type: "function", name: "search", parameters: { type: "object" } }];
    const call = await json(await openai("/v1/responses", { model: "m", input: "find", tools }));
    expect(call.output).toEqual([
      {
        type: "function_call",
        id: expect.any(String),
        call_id: expect.stringMatching(/^call_mock/),
        name: "search",
        arguments: TOOL_ARGS,
        status: "completed",
      },
    ]);
    expect(call.usage.output_tokens).toBe(3);

    const stream = await openai("/v1/responses", {
      model: "m",
      input: "find",
      tools,
      stream: true,
    });
    const { events } = await readSse(stream);
    expect(events.map((e) => e.event)).toEqual([
      "response.created",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(events[2]!.data.delta + events[3]!.data.delta).toBe(TOOL_ARGS);

    const input = [
      { role: "user", content: "find" },
      {
        type: "function_call",
        call_id: call.output[0].call_id,
        name: "search",
        arguments: TOOL_ARGS,
      },
      { type: "function_call_output", call_id: call.output[0].call_id, output: "42 results" },
    ];
    const echoed = await json(await openai("/v1/responses", { model: "m", input, tools }));
    expect(echoed.output[0].content[0].text).toBe("Tool result: 42 results");
  });
});

describe("mock upstream: OpenAI chat tool calls", () => {
  const tools = [
    { type: "function", function: { name: "lookup", parameters: { type: "object" } } },
    { type: "function", function: { name: "other" } },
  ];
  const messages = [{ role: "user", content: "Look it up" }];

  it("answers a call of the first declared tool with finish_reason tool_calls", async () => {
    const body = await json(
      await openai("/v1/chat/completions", { model: "gpt-4o", messages, tools }),
    );
    expect(body.choices[0]).toEqual({
      index: 0,
      message: {
        role: "assistant",
        content: null,
        tool_calls: [
          {
            id: expect.stringMatching(/^call_mock/),
            type: "function",
            function: { name: "lookup", arguments: TOOL_ARGS },
          },
        ],
        refusal: null,
      },
      logprobs: null,
      finish_reason: "tool_calls",
    });
    expect(body.usage).toEqual({ prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 });
  });

  it("streams the call header, two argument fragments and the finish chunk", async () => {
    const res = await openai("/v1/chat/completions", {
      model: "gpt-4o",
      messages,
      tools,
      stream: true,
      stream_options: { include_usage: true },
    });
    const { events, error } = await readSse(res);
    expect(error).toBeUndefined();
    expect(events).toHaveLength(6);
    const [first, a, b, finish, usage, done] = events.map((e) => e.data);
    expect(first.choices[0].delta).toEqual({
      role: "assistant",
      content: null,
      tool_calls: [
        {
          index: 0,
          id: expect.stringMatching(/^call_mock/),
          type: "function",
          function: { name: "lookup", arguments: "" },
        },
      ],
    });
    const fragments = [a, b].map((c) => c.choices[0].delta.tool_calls[0].function.arguments);
    expect(fragments.every((f) => f.length > 0)).toBe(true);
    expect(fragments.join("")).toBe(TOOL_ARGS);
    expect(finish.choices[0]).toMatchObject({ delta: {}, finish_reason: "tool_calls" });
    expect(usage).toMatchObject({ choices: [], usage: { completion_tokens: 3 } });
    expect(done).toBe("[DONE]");
  });

  it("echoes the result of a tool message, and takes toolArguments and tool_choice", async () => {
    const withResult = [
      ...messages,
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "c1", type: "function", function: { name: "lookup", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: "c1", content: "sunny, 21C" },
    ];
    const echoed = await json(
      await openai("/v1/chat/completions", { model: "m", messages: withResult, tools }),
    );
    expect(echoed.choices[0]).toMatchObject({
      message: { role: "assistant", content: "Tool result: sunny, 21C" },
      finish_reason: "stop",
    });
    expect(echoed.usage.completion_tokens).toBe(4);

    const stream = await openai("/v1/chat/completions", {
      model: "m",
      messages: withResult,
      tools,
      stream: true,
    });
    const { events } = await readSse(stream);
    const text = events
      .slice(0, -2)
      .map((e) => e.data.choices[0].delta.content)
      .join("");
    expect(text).toBe("Tool result: sunny, 21C");

    const none = await json(
      await openai("/v1/chat/completions", { model: "m", messages, tools, tool_choice: "none" }),
    );
    expect(none.choices[0].message.content).toBe(DEFAULT_MOCK_REPLY);

    const custom = await createMockUpstream({ toolArguments: { city: "Paris", days: 3 } });
    try {
      const res = await fetch(`${custom.url}/chat/completions`, {
        method: "POST",
        body: JSON.stringify({
          model: "m",
          messages,
          tools,
          tool_choice: { type: "function", function: { name: "other" } },
        }),
      });
      const body = await json(res);
      expect(body.choices[0].message.tool_calls[0].function).toEqual({
        name: "other",
        arguments: JSON.stringify({ city: "Paris", days: 3 }),
      });
    } finally {
      await custom.close();
    }
  });
});

describe("mock upstream: Anthropic Messages", () => {
  const request = {
    model: "claude-sonnet-4-5",
    max_tokens: 1024,
    system: "Be terse.", // 9 characters
    messages: [{ role: "user", content: [{ type: "text", text: "Say hello." }] }], // 10 characters
  };

  it("answers a message with Anthropic usage", async () => {
    const res = await anthropic(request);
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({
      id: expect.stringMatching(/^msg_mock/),
      type: "message",
      role: "assistant",
      model: "claude-sonnet-4-5",
      content: [{ type: "text", text: DEFAULT_MOCK_REPLY }],
      stop_reason: "end_turn",
      stop_sequence: null,
      usage: {
        input_tokens: 5,
        output_tokens: WORDS.length,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
      },
    });
  });

  it("streams the real event sequence", async () => {
    const res = await anthropic({ ...request, stream: true });
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const { events, error } = await readSse(res);
    expect(error).toBeUndefined();
    expect(events.map((e) => e.event)).toEqual([
      "message_start",
      "content_block_start",
      "ping",
      ...WORDS.map(() => "content_block_delta"),
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    for (const e of events) expect(e.data.type).toBe(e.event);
    expect(events[0]!.data.message).toMatchObject({
      id: expect.stringMatching(/^msg_mock/),
      content: [],
      stop_reason: null,
      usage: { input_tokens: 5, output_tokens: 1 },
    });
    expect(events[1]!.data).toEqual({
      type: "content_block_start",
      index: 0,
      content_block: { type: "text", text: "" },
    });
    const deltas = events.filter((e) => e.event === "content_block_delta");
    expect(deltas.map((e) => e.data.delta.text).join("")).toBe(DEFAULT_MOCK_REPLY);
    expect(deltas[0]!.data.delta.type).toBe("text_delta");
    expect(events.at(-2)!.data).toEqual({
      type: "message_delta",
      delta: { stop_reason: "end_turn", stop_sequence: null },
      usage: { output_tokens: WORDS.length },
    });
  });

  it("counts tokens", async () => {
    const res = await anthropic(
      { model: "claude-sonnet-4-5", system: request.system, messages: request.messages },
      {},
      "/v1/messages/count_tokens",
    );
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({ input_tokens: 5 });
  });

  it("accepts x-api-key or a Bearer token and rejects others with an authentication_error", async () => {
    const bearer = await post("/v1/messages", request, {
      authorization: `Bearer ${KEY}`,
      "anthropic-version": "2023-06-01",
    });
    expect(bearer.status).toBe(200);
    await bearer.arrayBuffer();
    for (const headers of [{ "x-api-key": "sk-ant-wrong-000000" }, { "x-api-key": "" }]) {
      const res = await anthropic(request, headers);
      expect(res.status).toBe(401);
      expect(await json(res)).toEqual({
        type: "error",
        error: { type: "authentication_error", message: expect.any(String) },
      });
    }
    const none = await post("/v1/messages", request, { "anthropic-version": "2023-06-01" });
    expect(none.status).toBe(401);
    expect((await json(none)).error.type).toBe("authentication_error");
  });

  it("requires max_tokens and the anthropic-version header", async () => {
    const { max_tokens: _, ...noMax } = request;
    const res = await anthropic(noMax);
    expect(res.status).toBe(400);
    expect(await json(res)).toEqual({
      type: "error",
      error: { type: "invalid_request_error", message: "max_tokens: Field required" },
    });
    const noVersion = await post("/v1/messages", request, { "x-api-key": KEY });
    expect(noVersion.status).toBe(400);
    expect((await json(noVersion)).error.message).toMatch(/anthropic-version/);
    const malformed = await anthropic("{nope");
    expect(malformed.status).toBe(400);
    expect((await json(malformed)).error.type).toBe("invalid_request_error");
  });

  it("calls the first tool, streams input_json_delta fragments and echoes tool_result", async () => {
    const tools = [
      { name: "get_weather", description: "Weather", input_schema: { type: "object" } },
      { name: "other", input_schema: { type: "object" } },
    ];
    const body = await json(await anthropic({ ...request, tools }));
    expect(body.stop_reason).toBe("tool_use");
    expect(body.content).toEqual([
      {
        type: "tool_use",
        id: expect.stringMatching(/^toolu_mock/),
        name: "get_weather",
        input: { query: "mock" },
      },
    ]);
    expect(body.usage.output_tokens).toBe(3);

    const { events } = await readSse(await anthropic({ ...request, tools, stream: true }));
    expect(events.map((e) => e.event)).toEqual([
      "message_start",
      "content_block_start",
      "ping",
      "content_block_delta",
      "content_block_delta",
      "content_block_stop",
      "message_delta",
      "message_stop",
    ]);
    expect(events[1]!.data.content_block).toEqual({
      type: "tool_use",
      id: expect.stringMatching(/^toolu_mock/),
      name: "get_weather",
      input: {},
    });
    const partial = events.slice(3, 5).map((e) => {
      expect(e.data.delta.type).toBe("input_json_delta");
      return e.data.delta.partial_json;
    });
    expect(partial.join("")).toBe(TOOL_ARGS);
    expect(events[6]!.data).toMatchObject({
      delta: { stop_reason: "tool_use" },
      usage: { output_tokens: 3 },
    });

    const messages = [
      ...request.messages,
      {
        role: "assistant",
        content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: {} }],
      },
      {
        role: "user",
        content: [
          {
            type: "tool_result",
            tool_use_id: "toolu_1",
            content: [{ type: "text", text: "rainy" }],
          },
        ],
      },
    ];
    const echoed = await json(await anthropic({ ...request, messages, tools }));
    expect(echoed.content).toEqual([{ type: "text", text: "Tool result: rainy" }]);
    expect(echoed.stop_reason).toBe("end_turn");
    // 9 (system) + 10 + 5 ("rainy") characters.
    expect(echoed.usage.input_tokens).toBe(6);
  });

  it("answers injected faults in Anthropic's error shape and resets a stream after n events", async () => {
    mock.fail({ status: 529, path: "/v1/messages" });
    const overloaded = await anthropic(request);
    expect(overloaded.status).toBe(529);
    expect(await json(overloaded)).toEqual({
      type: "error",
      error: { type: "overloaded_error", message: expect.any(String) },
    });
    mock.fail({ status: 429, headers: { "retry-after": "3" } });
    const limited = await anthropic(request);
    expect(limited.headers.get("retry-after")).toBe("3");
    expect((await json(limited)).error.type).toBe("rate_limit_error");

    mock.fail({ resetAfterChunks: 4, path: "/v1/messages" });
    const { events, error } = await readSse(await anthropic({ ...request, stream: true }));
    expect(events.map((e) => e.event)).toEqual([
      "message_start",
      "content_block_start",
      "ping",
      "content_block_delta",
    ]);
    expect(error).toBeInstanceOf(Error);

    mock.fail({ resetAfterChunks: 0, path: "/v1/messages" });
    await expect(anthropic(request)).rejects.toThrow();
  });

  it("spaces the deltas by the chunk delay", async () => {
    const started = performance.now();
    const { events } = await readSse(
      await anthropic({ ...request, stream: true }, { "x-mock-chunk-delay-ms": "15" }),
    );
    expect(events.at(-1)!.event).toBe("message_stop");
    expect(performance.now() - started).toBeGreaterThanOrEqual(15 * WORDS.length - 5);
  });
});

describe("mock upstream: Gemini", () => {
  const request = {
    systemInstruction: { parts: [{ text: "Be terse." }] }, // 9 characters
    contents: [{ role: "user", parts: [{ text: "Say hello." }] }], // 10 characters
  };

  it("answers generateContent with usageMetadata", async () => {
    const res = await gemini("/v1beta/models/gemini-2.5-flash:generateContent", request);
    expect(res.status).toBe(200);
    expect(await json(res)).toEqual({
      candidates: [
        {
          content: { role: "model", parts: [{ text: DEFAULT_MOCK_REPLY }] },
          finishReason: "STOP",
          index: 0,
        },
      ],
      usageMetadata: {
        promptTokenCount: 5,
        candidatesTokenCount: WORDS.length,
        totalTokenCount: 5 + WORDS.length,
      },
      modelVersion: "gemini-2.5-flash",
      responseId: expect.any(String),
    });
  });

  it("streams one GenerateContentResponse per word with alt=sse, \\r\\n\\r\\n separated", async () => {
    const res = await gemini(
      "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse",
      request,
    );
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const { events, error } = await readSse(res);
    expect(error).toBeUndefined();
    expect(events).toHaveLength(WORDS.length);
    expect(events[0]!.raw.startsWith("data: ")).toBe(true);
    expect(events.map((e) => e.data.candidates[0].content.parts[0].text)).toEqual(WORDS);
    for (const [i, e] of events.entries()) {
      expect(e.data.modelVersion).toBe("gemini-2.5-pro");
      expect(e.data.usageMetadata.promptTokenCount).toBe(5);
      expect(e.data.candidates[0].finishReason).toBe(i === WORDS.length - 1 ? "STOP" : undefined);
    }
    expect(events.at(-1)!.data.usageMetadata).toEqual({
      promptTokenCount: 5,
      candidatesTokenCount: WORDS.length,
      totalTokenCount: 5 + WORDS.length,
    });
    expect(new Set(events.map((e) => e.data.responseId)).size).toBe(1);
  });

  it("answers streamGenerateContent without alt=sse with a JSON array", async () => {
    const res = await gemini("/v1beta/models/gemini-2.5-flash:streamGenerateContent", request);
    expect(res.headers.get("content-type")).toBe("application/json");
    const body = await json(res);
    expect(body).toHaveLength(WORDS.length);
    expect(body.at(-1).candidates[0].finishReason).toBe("STOP");
  });

  it("lists gemini models and counts tokens", async () => {
    const custom = await createMockUpstream({ models: ["gpt-4o", "gemini-2.0-flash"] });
    try {
      const body = await json(await fetch(`${custom.origin}/v1beta/models`));
      expect(body.models.map((m: { name: string }) => m.name)).toEqual([
        "models/gemini-2.0-flash",
        "models/gemini-2.5-flash",
        "models/gemini-2.5-pro",
      ]);
      expect(body.models[1]).toMatchObject({
        displayName: expect.any(String),
        supportedGenerationMethods: ["generateContent", "countTokens"],
      });
    } finally {
      await custom.close();
    }
    const count = await gemini("/v1beta/models/gemini-2.5-flash:countTokens", request);
    expect(await json(count)).toEqual({ totalTokens: 5 });
  });

  it("accepts x-goog-api-key, ?key= or Bearer; rejects others in Google's error shape", async () => {
    const path = "/v1beta/models/gemini-2.5-flash:generateContent";
    for (const [url, headers] of [
      [`${path}?key=${KEY}`, {}],
      [path, { authorization: `Bearer ${KEY}` }],
    ] as const) {
      const res = await post(url, request, headers);
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    }
    for (const [url, headers] of [
      [path, {}],
      [`${path}?key=wrong`, {}],
      [path, { "x-goog-api-key": "wrong" }],
    ] as const) {
      const res = await post(url, request, headers);
      expect(res.status).toBe(401);
      expect(await json(res)).toEqual({
        error: { code: 401, message: expect.any(String), status: "UNAUTHENTICATED" },
      });
    }
    const bad = await gemini(path, { contents: [] });
    expect(bad.status).toBe(400);
    expect((await json(bad)).error.status).toBe("INVALID_ARGUMENT");
    const unknown = await gemini("/v1beta/models/gemini-2.5-flash:nope", request);
    expect(unknown.status).toBe(404);
    expect((await json(unknown)).error.status).toBe("NOT_FOUND");
  });

  it("answers faults on Gemini paths in Google's error shape and resets streams", async () => {
    mock.fail({ status: 429, path: "/v1beta/models/gemini-2.5-flash:" });
    const res = await gemini("/v1beta/models/gemini-2.5-flash:generateContent", request);
    expect(res.status).toBe(429);
    expect(await json(res)).toEqual({
      error: { code: 429, message: expect.any(String), status: "RESOURCE_EXHAUSTED" },
    });
    mock.fail({ status: 503 });
    expect(
      (await json(await gemini("/v1beta/models/x:generateContent", request))).error.status,
    ).toBe("UNAVAILABLE");

    mock.fail({ resetAfterChunks: 2, path: "/v1beta/" });
    const { events, error } = await readSse(
      await gemini("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", request),
    );
    expect(events).toHaveLength(2);
    expect(error).toBeInstanceOf(Error);
  });

  it("calls the first declared function and echoes a functionResponse", async () => {
    const tools = [
      { functionDeclarations: [{ name: "get_time", parameters: { type: "OBJECT" } }] },
    ];
    const body = await json(
      await gemini("/v1beta/models/gemini-2.5-flash:generateContent", { ...request, tools }),
    );
    expect(body.candidates[0]).toEqual({
      content: {
        role: "model",
        parts: [{ functionCall: { name: "get_time", args: { query: "mock" } } }],
      },
      finishReason: "STOP",
      index: 0,
    });
    expect(body.usageMetadata.candidatesTokenCount).toBe(3);

    const { events } = await readSse(
      await gemini("/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse", {
        ...request,
        tools,
      }),
    );
    expect(events).toHaveLength(1);
    expect(events[0]!.data.candidates[0].content.parts[0].functionCall.name).toBe("get_time");

    const contents = [
      ...request.contents,
      { role: "model", parts: [{ functionCall: { name: "get_time", args: {} } }] },
      {
        role: "user",
        parts: [{ functionResponse: { name: "get_time", response: { time: "noon" } } }],
      },
    ];
    const echoed = await json(
      await gemini("/v1beta/models/gemini-2.5-flash:generateContent", {
        ...request,
        contents,
        tools,
      }),
    );
    expect(echoed.candidates[0].content.parts).toEqual([{ text: 'Tool result: {"time":"noon"}' }]);
    // 9 + 10 + 15 ('{"time":"noon"}') characters.
    expect(echoed.usageMetadata.promptTokenCount).toBe(9);
  });
});

describe("mock upstream: Cloud Code Assist", () => {
  const request = { contents: [{ role: "user", parts: [{ text: "Say hello." }] }] };

  it("wraps generateContent in {response} and records the request", async () => {
    const body = { model: "gemini-2.5-pro", project: "p-1", request };
    const res = await codeAssist("generateContent", body);
    expect(res.status).toBe(200);
    const answer = await json(res);
    expect(answer.response).toMatchObject({
      candidates: [
        { content: { role: "model", parts: [{ text: DEFAULT_MOCK_REPLY }] }, finishReason: "STOP" },
      ],
      usageMetadata: { promptTokenCount: 3, candidatesTokenCount: WORDS.length },
      modelVersion: "gemini-2.5-pro",
    });
    expect(mock.requests).toHaveLength(1);
    expect(mock.requests[0]).toMatchObject({
      method: "POST",
      path: "/v1internal:generateContent",
      body,
    });
  });

  it("streams {response} events with alt=sse, including a tool call", async () => {
    const { events, error } = await readSse(
      await codeAssist("streamGenerateContent?alt=sse", {
        model: "gemini-2.5-flash",
        project: "p",
        request,
      }),
    );
    expect(error).toBeUndefined();
    expect(events.map((e) => e.data.response.candidates[0].content.parts[0].text)).toEqual(WORDS);
    expect(events.at(-1)!.data.response.candidates[0].finishReason).toBe("STOP");

    const tools = [{ functionDeclarations: [{ name: "read_file" }] }];
    const withTools = await readSse(
      await codeAssist("streamGenerateContent?alt=sse", {
        model: "gemini-2.5-flash",
        request: { ...request, tools },
      }),
    );
    expect(withTools.events).toHaveLength(1);
    expect(withTools.events[0]!.data.response.candidates[0].content.parts[0]).toEqual({
      functionCall: { name: "read_file", args: { query: "mock" } },
    });
  });

  it("needs a Bearer token (not an API key header)", async () => {
    const body = { model: "gemini-2.5-pro", request };
    const res = await post("/v1internal:generateContent", body, { "x-goog-api-key": KEY });
    expect(res.status).toBe(401);
    expect((await json(res)).error.status).toBe("UNAUTHENTICATED");
    mock.fail({ status: 500, path: "/v1internal" });
    const failed = await codeAssist("generateContent", body);
    expect(failed.status).toBe(500);
    expect((await json(failed)).error).toMatchObject({ code: 500, status: "INTERNAL" });
  });

  it("accepts tokens from the authorize option", async () => {
    const oauth = await createMockUpstream({ authorize: (token) => token === "ya29.ok" });
    try {
      const send = (token: string) =>
        fetch(`${oauth.origin}/v1internal:generateContent`, {
          method: "POST",
          headers: { authorization: `Bearer ${token}` },
          body: JSON.stringify({ model: "gemini-2.5-pro", request }),
        });
      expect((await send("ya29.ok")).status).toBe(200);
      expect((await send("ya29.bad")).status).toBe(401);
    } finally {
      await oauth.close();
    }
  });
});
