import { describe, expect, it } from "vitest";
import {
  AnthropicToOpenAIStream,
  anthropicStopToOpenAI,
  anthropicToOpenAIRequest,
  anthropicToOpenAIResponse,
  anthropicUsage,
  OpenAIToAnthropicStream,
  openaiFinishToAnthropic,
  openaiToAnthropicRequest,
  openaiToAnthropicResponse,
  openaiUsageToAnthropic,
} from "../src/translate/anthropic.js";
import type { Json, UpstreamEvent } from "../src/translate/types.js";

const req = { model: "up-model", stream: false };
const res = { model: "client-model", id: "abc" };

/** An Anthropic SSE event as the upstream parser yields it. */
const aev = (type: string, fields: Json = {}): UpstreamEvent => ({
  event: type,
  data: { type, ...fields },
});

/** An OpenAI chunk with one choice. */
const chunk = (delta: Json, finish: string | null = null): UpstreamEvent => ({
  data: {
    id: "chatcmpl-x",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt",
    choices: [{ index: 0, delta, finish_reason: finish }],
  },
});

const feed = (t: { push(e: UpstreamEvent): UpstreamEvent[] }, events: UpstreamEvent[]) =>
  events.flatMap((e) => t.push(e));

/** The `data` objects of translated events (the `[DONE]` marker kept as a string). */
const datas = (events: UpstreamEvent[]) => events.map((e) => e.data as Json);

describe("anthropicToOpenAIRequest", () => {
  it("maps system, text turns and sampling options", () => {
    const out = anthropicToOpenAIRequest(
      {
        model: "claude",
        system: [
          { type: "text", text: "Be brief." },
          { type: "text", text: "Be kind.", cache_control: { type: "ephemeral" } },
        ],
        messages: [
          { role: "user", content: "Hi" },
          { role: "assistant", content: [{ type: "text", text: "Hello" }] },
          { role: "user", content: [{ type: "text", text: "How are you?" }] },
        ],
        max_tokens: 100,
        temperature: 0.5,
        top_p: 0.9,
        top_k: 5,
        stop_sequences: ["END"],
        metadata: { user_id: "u1" },
      },
      req,
    );
    expect(out).toEqual({
      model: "up-model",
      stream: false,
      messages: [
        { role: "system", content: "Be brief.\n\nBe kind." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello" },
        { role: "user", content: "How are you?" },
      ],
      max_tokens: 100,
      temperature: 0.5,
      top_p: 0.9,
      stop: ["END"],
      user: "u1",
    });
  });

  it("asks for usage when streaming and maps thinking budgets to effort", () => {
    const base = { messages: [{ role: "user", content: "x" }], max_tokens: 9000 };
    const stream = { model: "m", stream: true };
    const effort = (budget: number) =>
      anthropicToOpenAIRequest(
        { ...base, thinking: { type: "enabled", budget_tokens: budget } },
        stream,
      ).reasoning_effort;
    expect(effort(1024)).toBe("low");
    expect(effort(4096)).toBe("medium");
    expect(effort(16384)).toBe("high");
    const out = anthropicToOpenAIRequest({ ...base, thinking: { type: "disabled" } }, stream);
    expect(out.stream).toBe(true);
    expect(out.stream_options).toEqual({ include_usage: true });
    expect(out.reasoning_effort).toBeUndefined();
  });

  it("maps images (base64 and url) to image_url parts", () => {
    const out = anthropicToOpenAIRequest(
      {
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "What is this?" },
              { type: "image", source: { type: "base64", media_type: "image/png", data: "AAAA" } },
              { type: "image", source: { type: "url", url: "https://x/y.jpg" } },
              { type: "unknown_block", foo: 1 },
            ],
          },
        ],
      },
      req,
    );
    expect(out.messages).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
          { type: "image_url", image_url: { url: "https://x/y.jpg" } },
        ],
      },
    ]);
  });

  it("maps tool_use, tool_result (before user text), thinking and tools", () => {
    const out = anthropicToOpenAIRequest(
      {
        messages: [
          { role: "user", content: "Weather in Paris and Rome?" },
          {
            role: "assistant",
            content: [
              { type: "thinking", thinking: "Need the tool.", signature: "sig" },
              { type: "redacted_thinking", data: "xxx" },
              { type: "text", text: "Checking." },
              { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Paris" } },
              { type: "tool_use", id: "toolu_2", name: "weather", input: { city: "Rome" } },
            ],
          },
          {
            role: "user",
            content: [
              { type: "text", text: "Thanks" },
              { type: "tool_result", tool_use_id: "toolu_1", content: "Sunny" },
              {
                type: "tool_result",
                tool_use_id: "toolu_2",
                is_error: true,
                content: [{ type: "text", text: "timeout" }],
              },
            ],
          },
        ],
        tools: [
          {
            name: "weather",
            description: "Get weather",
            input_schema: { type: "object", properties: { city: { type: "string" } } },
          },
          { type: "web_search_20250305", name: "web_search", max_uses: 3 },
        ],
        tool_choice: { type: "any", disable_parallel_tool_use: true },
      },
      req,
    );
    expect(out.messages).toEqual([
      { role: "user", content: "Weather in Paris and Rome?" },
      {
        role: "assistant",
        content: "Checking.",
        reasoning_content: "Need the tool.",
        tool_calls: [
          {
            id: "toolu_1",
            type: "function",
            function: { name: "weather", arguments: '{"city":"Paris"}' },
          },
          {
            id: "toolu_2",
            type: "function",
            function: { name: "weather", arguments: '{"city":"Rome"}' },
          },
        ],
      },
      { role: "tool", tool_call_id: "toolu_1", content: "Sunny" },
      { role: "tool", tool_call_id: "toolu_2", content: "Error: timeout" },
      { role: "user", content: "Thanks" },
    ]);
    expect(out.tools).toEqual([
      {
        type: "function",
        function: {
          name: "weather",
          description: "Get weather",
          parameters: { type: "object", properties: { city: { type: "string" } } },
        },
      },
    ]);
    expect(out.tool_choice).toBe("required");
    expect(out.parallel_tool_calls).toBe(false);
  });

  it("maps every tool_choice kind", () => {
    const tools = [{ name: "f", input_schema: { type: "object" } }];
    const choice = (tc: Json) =>
      anthropicToOpenAIRequest({ messages: [], tools, tool_choice: tc }, req).tool_choice;
    expect(choice({ type: "auto" })).toBe("auto");
    expect(choice({ type: "none" })).toBe("none");
    expect(choice({ type: "tool", name: "f" })).toEqual({
      type: "function",
      function: { name: "f" },
    });
  });

  it("never throws on odd input", () => {
    const odd = [
      {},
      { messages: "x" },
      { messages: [null, 3, { role: "user", content: [null, { type: "tool_result" }] }] },
      { system: 5, tools: [null, { name: 3 }], tool_choice: "auto", thinking: "yes" },
    ];
    for (const body of odd) expect(() => anthropicToOpenAIRequest(body, req)).not.toThrow();
    expect(anthropicToOpenAIRequest(null as unknown as Json, req)).toEqual({
      model: "up-model",
      stream: false,
      messages: [],
    });
  });
});

describe("openaiToAnthropicRequest", () => {
  it("maps system/developer messages, text turns and options", () => {
    const out = openaiToAnthropicRequest(
      {
        model: "gpt",
        messages: [
          { role: "system", content: "Be brief." },
          { role: "developer", content: [{ type: "text", text: "Be kind." }] },
          { role: "user", content: "Hi" },
          { role: "assistant", content: "Hello", reasoning_content: "unsigned" },
          { role: "user", content: [{ type: "text", text: "Again" }] },
          { role: "user", content: "and again" },
        ],
        temperature: 1.7,
        top_p: 0.8,
        stop: "END",
        user: "u1",
        n: 1,
        seed: 4,
        logprobs: true,
        response_format: { type: "json_object" },
        presence_penalty: 0.1,
        frequency_penalty: 0.1,
        stream_options: { include_usage: true },
      },
      { model: "claude", stream: true },
    );
    expect(out).toEqual({
      model: "claude",
      system: "Be brief.\n\nBe kind.",
      messages: [
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello" },
        {
          role: "user",
          content: [
            { type: "text", text: "Again" },
            { type: "text", text: "and again" },
          ],
        },
      ],
      max_tokens: 4096,
      stream: true,
      temperature: 1,
      top_p: 0.8,
      stop_sequences: ["END"],
      metadata: { user_id: "u1" },
    });
  });

  it("prefers max_completion_tokens and accepts stop arrays", () => {
    const out = openaiToAnthropicRequest(
      {
        messages: [],
        max_tokens: 10,
        max_completion_tokens: 20,
        stop: ["a", "b"],
        temperature: -1,
      },
      req,
    );
    expect(out.max_tokens).toBe(20);
    expect(out.stop_sequences).toEqual(["a", "b"]);
    expect(out.temperature).toBe(0);
    expect(openaiToAnthropicRequest({ messages: [], max_tokens: 10 }, req).max_tokens).toBe(10);
  });

  it("maps images: data URLs to base64 sources, http URLs to url sources", () => {
    const out = openaiToAnthropicRequest(
      {
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "Look" },
              { type: "image_url", image_url: { url: "data:image/jpeg;base64,/9j/AA==" } },
              { type: "image_url", image_url: { url: "https://x/y.png", detail: "high" } },
              { type: "image_url", image_url: { url: "ftp://nope" } },
              { type: "input_audio", input_audio: { data: "x", format: "wav" } },
            ],
          },
        ],
      },
      req,
    );
    expect(out.messages).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "Look" },
          { type: "image", source: { type: "base64", media_type: "image/jpeg", data: "/9j/AA==" } },
          { type: "image", source: { type: "url", url: "https://x/y.png" } },
        ],
      },
    ]);
  });

  it("maps tool calls and merges tool results with the following user message", () => {
    const out = openaiToAnthropicRequest(
      {
        messages: [
          { role: "user", content: "Weather?" },
          {
            role: "assistant",
            content: "Checking.",
            tool_calls: [
              {
                id: "call_1",
                type: "function",
                function: { name: "weather", arguments: '{"city":"Paris"}' },
              },
              { id: "call_2", type: "function", function: { name: "weather", arguments: "{bad" } },
            ],
          },
          { role: "tool", tool_call_id: "call_1", content: "Sunny" },
          { role: "tool", tool_call_id: "call_2", content: [{ type: "text", text: "Rainy" }] },
          { role: "user", content: "Thanks" },
        ],
        tools: [
          {
            type: "function",
            function: {
              name: "weather",
              description: "Get weather",
              parameters: { type: "object" },
            },
          },
          { type: "function", function: { name: "noargs" } },
        ],
        tool_choice: { type: "function", function: { name: "weather" } },
        parallel_tool_calls: false,
      },
      req,
    );
    expect(out.messages).toEqual([
      { role: "user", content: "Weather?" },
      {
        role: "assistant",
        content: [
          { type: "text", text: "Checking." },
          { type: "tool_use", id: "call_1", name: "weather", input: { city: "Paris" } },
          { type: "tool_use", id: "call_2", name: "weather", input: {} },
        ],
      },
      {
        role: "user",
        content: [
          { type: "tool_result", tool_use_id: "call_1", content: "Sunny" },
          { type: "tool_result", tool_use_id: "call_2", content: "Rainy" },
          { type: "text", text: "Thanks" },
        ],
      },
    ]);
    expect(out.tools).toEqual([
      { name: "weather", description: "Get weather", input_schema: { type: "object" } },
      { name: "noargs", input_schema: { type: "object", properties: {} } },
    ]);
    expect(out.tool_choice).toEqual({
      type: "tool",
      name: "weather",
      disable_parallel_tool_use: true,
    });
  });

  it("maps every tool_choice kind", () => {
    const tools = [{ type: "function", function: { name: "f" } }];
    const choice = (tc: unknown) =>
      openaiToAnthropicRequest({ messages: [], tools, tool_choice: tc }, req).tool_choice;
    expect(choice("auto")).toEqual({ type: "auto" });
    expect(choice("required")).toEqual({ type: "any" });
    expect(choice("none")).toEqual({ type: "none" });
    expect(choice(undefined)).toBeUndefined();
  });

  it("handles legacy function_call / role:function like tools", () => {
    const out = openaiToAnthropicRequest(
      {
        messages: [
          { role: "user", content: "Go" },
          { role: "assistant", content: null, function_call: { name: "f", arguments: '{"a":1}' } },
          { role: "function", name: "f", content: "done" },
        ],
        functions: [{ name: "f", parameters: { type: "object" } }],
        function_call: "auto",
      },
      req,
    );
    expect(out.messages).toEqual([
      { role: "user", content: "Go" },
      { role: "assistant", content: [{ type: "tool_use", id: "f", name: "f", input: { a: 1 } }] },
      { role: "user", content: [{ type: "tool_result", tool_use_id: "f", content: "done" }] },
    ]);
    expect(out.tools).toEqual([{ name: "f", input_schema: { type: "object" } }]);
    expect(out.tool_choice).toEqual({ type: "auto" });
  });

  it("maps reasoning_effort to a thinking budget below max_tokens", () => {
    const body = { messages: [{ role: "user", content: "x" }], temperature: 0.3 };
    const low = openaiToAnthropicRequest({ ...body, reasoning_effort: "low" }, req);
    expect(low.thinking).toEqual({ type: "enabled", budget_tokens: 2048 });
    expect(low.max_tokens).toBe(4096);
    expect(low.temperature).toBeUndefined();
    const med = openaiToAnthropicRequest({ ...body, reasoning_effort: "medium" }, req);
    expect(med.thinking).toEqual({ type: "enabled", budget_tokens: 8192 });
    expect(med.max_tokens as number).toBeGreaterThan(8192);
    const high = openaiToAnthropicRequest(
      { ...body, reasoning_effort: "high", max_completion_tokens: 30000 },
      req,
    );
    expect(high.thinking).toEqual({ type: "enabled", budget_tokens: 24576 });
    expect(high.max_tokens).toBe(30000);
  });

  it("never throws on odd input", () => {
    const odd = [
      {},
      { messages: {} },
      { messages: [null, { role: "wizard" }, { role: "assistant", tool_calls: [null, {}] }] },
      { messages: [{ role: "tool" }], tools: "x", stop: 5, tool_choice: 3 },
    ];
    for (const body of odd) expect(() => openaiToAnthropicRequest(body, req)).not.toThrow();
    expect(openaiToAnthropicRequest(null as unknown as Json, req)).toEqual({
      model: "up-model",
      messages: [],
      max_tokens: 4096,
      stream: false,
    });
  });

  it("round-trips a tool conversation through both request translations", () => {
    const anthropic = {
      system: "sys",
      messages: [
        { role: "user", content: "Weather?" },
        {
          role: "assistant",
          content: [
            { type: "text", text: "Checking." },
            { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Paris" } },
          ],
        },
        {
          role: "user",
          content: [
            { type: "tool_result", tool_use_id: "toolu_1", content: "Sunny" },
            { type: "text", text: "Thanks" },
          ],
        },
      ],
      max_tokens: 512,
      tools: [{ name: "weather", description: "d", input_schema: { type: "object" } }],
      tool_choice: { type: "auto" },
    };
    const openai = anthropicToOpenAIRequest(anthropic, req);
    const back = openaiToAnthropicRequest(openai, { model: "claude", stream: false });
    expect(back).toEqual({ ...anthropic, model: "claude", stream: false });
  });
});

describe("usage and stop reasons", () => {
  it("reads Anthropic usage with cache tokens (OpenAI semantics)", () => {
    expect(
      anthropicUsage({
        input_tokens: 10,
        output_tokens: 5,
        cache_read_input_tokens: 100,
        cache_creation_input_tokens: 20,
      }),
    ).toEqual({
      inputTokens: 130,
      outputTokens: 5,
      reasoningTokens: 0,
      cachedTokens: 100,
      totalTokens: 135,
    });
    expect(anthropicUsage(null)).toBeNull();
    expect(anthropicUsage({ foo: 1 })).toBeNull();
  });

  it("writes usage as Anthropic usage", () => {
    expect(
      openaiUsageToAnthropic({
        inputTokens: 130,
        outputTokens: 5,
        reasoningTokens: 0,
        cachedTokens: 100,
        totalTokens: 135,
      }),
    ).toEqual({
      input_tokens: 30,
      output_tokens: 5,
      cache_read_input_tokens: 100,
      cache_creation_input_tokens: 0,
    });
  });

  it("maps stop reasons both ways", () => {
    expect(anthropicStopToOpenAI("end_turn")).toBe("stop");
    expect(anthropicStopToOpenAI("stop_sequence")).toBe("stop");
    expect(anthropicStopToOpenAI("max_tokens")).toBe("length");
    expect(anthropicStopToOpenAI("tool_use")).toBe("tool_calls");
    expect(anthropicStopToOpenAI("refusal")).toBe("content_filter");
    expect(anthropicStopToOpenAI(null)).toBeNull();
    expect(openaiFinishToAnthropic("stop")).toBe("end_turn");
    expect(openaiFinishToAnthropic("length")).toBe("max_tokens");
    expect(openaiFinishToAnthropic("tool_calls")).toBe("tool_use");
    expect(openaiFinishToAnthropic("content_filter")).toBe("refusal");
    expect(openaiFinishToAnthropic(undefined)).toBeNull();
  });
});

describe("responses", () => {
  const anthropicAnswer = {
    id: "msg_up",
    type: "message",
    role: "assistant",
    model: "claude-up",
    content: [
      { type: "thinking", thinking: "Hmm.", signature: "sig" },
      { type: "text", text: "Let me check." },
      { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Paris" } },
    ],
    stop_reason: "tool_use",
    stop_sequence: null,
    usage: {
      input_tokens: 10,
      output_tokens: 5,
      cache_read_input_tokens: 100,
      cache_creation_input_tokens: 20,
    },
  };

  it("maps an Anthropic answer to a chat.completion", () => {
    const out = anthropicToOpenAIResponse(anthropicAnswer, res);
    expect(out).toMatchObject({
      id: "chatcmpl-abc",
      object: "chat.completion",
      model: "client-model",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: "Let me check.",
            reasoning_content: "Hmm.",
            tool_calls: [
              {
                id: "toolu_1",
                type: "function",
                function: { name: "weather", arguments: '{"city":"Paris"}' },
              },
            ],
          },
          finish_reason: "tool_calls",
        },
      ],
      usage: {
        prompt_tokens: 130,
        completion_tokens: 5,
        total_tokens: 135,
        prompt_tokens_details: { cached_tokens: 100 },
      },
    });
    expect(typeof out.created).toBe("number");
  });

  it("gives null content to an empty answer and maps max_tokens", () => {
    const out = anthropicToOpenAIResponse({ content: [], stop_reason: "max_tokens" }, res);
    const choice = (out.choices as Json[])[0]!;
    expect(choice.message).toEqual({ role: "assistant", content: null });
    expect(choice.finish_reason).toBe("length");
    expect(() => anthropicToOpenAIResponse(null as unknown as Json, res)).not.toThrow();
  });

  it("maps a chat.completion to an Anthropic answer", () => {
    const out = openaiToAnthropicResponse(
      {
        id: "chatcmpl-up",
        object: "chat.completion",
        choices: [
          {
            index: 0,
            message: {
              role: "assistant",
              content: "Let me check.",
              reasoning_content: "Hmm.",
              tool_calls: [
                {
                  id: "call_1",
                  type: "function",
                  function: { name: "weather", arguments: '{"city":"Paris"}' },
                },
              ],
            },
            finish_reason: "tool_calls",
          },
        ],
        usage: {
          prompt_tokens: 130,
          completion_tokens: 5,
          total_tokens: 135,
          prompt_tokens_details: { cached_tokens: 100 },
        },
      },
      res,
    );
    expect(out).toEqual({
      id: "msg_abc",
      type: "message",
      role: "assistant",
      model: "client-model",
      content: [
        { type: "thinking", thinking: "Hmm.", signature: "" },
        { type: "text", text: "Let me check." },
        { type: "tool_use", id: "call_1", name: "weather", input: { city: "Paris" } },
      ],
      stop_reason: "tool_use",
      stop_sequence: null,
      usage: {
        input_tokens: 30,
        output_tokens: 5,
        cache_read_input_tokens: 100,
        cache_creation_input_tokens: 0,
      },
    });
  });

  it("maps finish reasons of plain answers", () => {
    const answer = (finish: string) =>
      openaiToAnthropicResponse(
        { choices: [{ message: { role: "assistant", content: "x" }, finish_reason: finish }] },
        res,
      );
    expect(answer("stop").stop_reason).toBe("end_turn");
    expect(answer("length").stop_reason).toBe("max_tokens");
    expect(answer("content_filter").stop_reason).toBe("refusal");
    expect(answer("stop").usage).toEqual({
      input_tokens: 0,
      output_tokens: 0,
      cache_read_input_tokens: 0,
      cache_creation_input_tokens: 0,
    });
    expect(() => openaiToAnthropicResponse({ choices: "x" }, res)).not.toThrow();
  });

  it("round-trips an Anthropic answer through OpenAI", () => {
    const openai = anthropicToOpenAIResponse(anthropicAnswer, res);
    const back = openaiToAnthropicResponse(openai, { model: "claude-up", id: "up" });
    expect(back.content).toEqual([
      { type: "thinking", thinking: "Hmm.", signature: "" },
      { type: "text", text: "Let me check." },
      { type: "tool_use", id: "toolu_1", name: "weather", input: { city: "Paris" } },
    ]);
    expect(back.stop_reason).toBe("tool_use");
    // Cache writes count as plain input once translated to OpenAI.
    expect(back.usage).toEqual({
      input_tokens: 30,
      output_tokens: 5,
      cache_read_input_tokens: 100,
      cache_creation_input_tokens: 0,
    });
  });
});

/** A streamed Anthropic answer: thinking, text, then a tool call in JSON fragments. */
const anthropicStream: UpstreamEvent[] = [
  aev("message_start", {
    message: {
      id: "msg_up",
      type: "message",
      role: "assistant",
      model: "claude-up",
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 10, output_tokens: 1, cache_read_input_tokens: 100 },
    },
  }),
  aev("ping"),
  aev("content_block_start", {
    index: 0,
    content_block: { type: "thinking", thinking: "", signature: "" },
  }),
  aev("content_block_delta", { index: 0, delta: { type: "thinking_delta", thinking: "Hmm." } }),
  aev("content_block_delta", { index: 0, delta: { type: "signature_delta", signature: "sig" } }),
  aev("content_block_stop", { index: 0 }),
  aev("content_block_start", { index: 1, content_block: { type: "text", text: "" } }),
  aev("content_block_delta", { index: 1, delta: { type: "text_delta", text: "Let me " } }),
  aev("content_block_delta", { index: 1, delta: { type: "text_delta", text: "check." } }),
  aev("content_block_stop", { index: 1 }),
  aev("content_block_start", {
    index: 2,
    content_block: { type: "tool_use", id: "toolu_1", name: "weather", input: {} },
  }),
  aev("content_block_delta", {
    index: 2,
    delta: { type: "input_json_delta", partial_json: "" },
  }),
  aev("content_block_delta", {
    index: 2,
    delta: { type: "input_json_delta", partial_json: '{"city":' },
  }),
  aev("content_block_delta", {
    index: 2,
    delta: { type: "input_json_delta", partial_json: '"Paris"}' },
  }),
  aev("content_block_stop", { index: 2 }),
  aev("content_block_start", {
    index: 3,
    content_block: { type: "tool_use", id: "toolu_2", name: "time", input: {} },
  }),
  aev("content_block_delta", { index: 3, delta: { type: "input_json_delta", partial_json: "{}" } }),
  aev("content_block_stop", { index: 3 }),
  aev("message_delta", {
    delta: { stop_reason: "tool_use", stop_sequence: null },
    usage: { output_tokens: 42 },
  }),
  aev("message_stop"),
];

describe("AnthropicToOpenAIStream", () => {
  it("translates a streamed answer into chunks, usage and [DONE]", () => {
    const t = new AnthropicToOpenAIStream(res);
    const out = feed(t, anthropicStream.slice(0, -1));
    expect(t.finished).toBe(false);
    out.push(...t.push(anthropicStream[anthropicStream.length - 1]!));
    expect(t.finished).toBe(true);
    expect(t.end()).toEqual([]);
    const data = datas(out);
    const chunks = data.slice(0, -2);
    for (const c of chunks) {
      expect(c).toMatchObject({ id: "chatcmpl-abc", object: "chat.completion.chunk" });
      expect(c.model).toBe("client-model");
    }
    const deltas = chunks.map((c) => (c.choices as Json[])[0]!.delta);
    expect(deltas).toEqual([
      { role: "assistant", content: "" },
      { reasoning_content: "Hmm." },
      { content: "Let me " },
      { content: "check." },
      {
        tool_calls: [
          {
            index: 0,
            id: "toolu_1",
            type: "function",
            function: { name: "weather", arguments: "" },
          },
        ],
      },
      { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] },
      {
        tool_calls: [
          { index: 1, id: "toolu_2", type: "function", function: { name: "time", arguments: "" } },
        ],
      },
      { tool_calls: [{ index: 1, function: { arguments: "{}" } }] },
      {},
    ]);
    expect((chunks[chunks.length - 1]!.choices as Json[])[0]!.finish_reason).toBe("tool_calls");
    expect(data[data.length - 2]).toMatchObject({
      choices: [],
      usage: {
        prompt_tokens: 110,
        completion_tokens: 42,
        total_tokens: 152,
        prompt_tokens_details: { cached_tokens: 100 },
      },
    });
    expect(data[data.length - 1]).toBe("[DONE]");
    expect(t.usage()).toEqual({
      inputTokens: 110,
      outputTokens: 42,
      reasoningTokens: 0,
      cachedTokens: 100,
      totalTokens: 152,
    });
  });

  it("takes input counts from message_delta when present", () => {
    const t = new AnthropicToOpenAIStream(res);
    feed(t, [
      aev("message_start", { message: { usage: { input_tokens: 0, output_tokens: 1 } } }),
      aev("message_delta", {
        delta: { stop_reason: "end_turn" },
        usage: { input_tokens: 7, output_tokens: 3, cache_read_input_tokens: 2 },
      }),
    ]);
    expect(t.usage()).toMatchObject({ inputTokens: 9, outputTokens: 3, cachedTokens: 2 });
  });

  it("throws on an upstream error event", () => {
    const t = new AnthropicToOpenAIStream(res);
    t.push(anthropicStream[0]!);
    expect(() =>
      t.push(aev("error", { error: { type: "overloaded_error", message: "Overloaded" } })),
    ).toThrow("Overloaded");
  });

  it("closes at end() when message_stop never came", () => {
    const t = new AnthropicToOpenAIStream(res);
    feed(t, anthropicStream.slice(0, 2));
    const closing = datas(t.end());
    expect((closing[0]!.choices as Json[])[0]!.finish_reason).toBe("stop");
    expect(closing[closing.length - 1]).toBe("[DONE]");
    expect(t.end()).toEqual([]);
  });
});

describe("OpenAIToAnthropicStream", () => {
  const openaiStream: UpstreamEvent[] = [
    chunk({ role: "assistant", content: "" }),
    chunk({ reasoning_content: "Hmm." }),
    chunk({ content: "Let me " }),
    chunk({ content: "check." }),
    chunk({
      tool_calls: [
        { index: 0, id: "call_1", type: "function", function: { name: "weather", arguments: "" } },
      ],
    }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
    chunk({
      tool_calls: [
        { index: 1, id: "call_2", type: "function", function: { name: "time", arguments: "{}" } },
      ],
    }),
    chunk({}, "tool_calls"),
    {
      data: {
        id: "chatcmpl-x",
        object: "chat.completion.chunk",
        choices: [],
        usage: {
          prompt_tokens: 110,
          completion_tokens: 42,
          total_tokens: 152,
          prompt_tokens_details: { cached_tokens: 100 },
        },
      },
    },
    { data: "[DONE]" },
  ];

  it("translates chunks into Anthropic events, waiting for [DONE] to close", () => {
    const t = new OpenAIToAnthropicStream(res);
    const beforeDone = feed(t, openaiStream.slice(0, -1));
    expect(t.finished).toBe(true);
    expect(beforeDone.map((e) => e.event)).not.toContain("message_delta");
    const out = [...beforeDone, ...t.push(openaiStream[openaiStream.length - 1]!)];
    expect(t.end()).toEqual([]);
    for (const e of out) expect((e.data as Json).type).toBe(e.event);
    expect(datas(out)).toEqual([
      {
        type: "message_start",
        message: {
          id: "msg_abc",
          type: "message",
          role: "assistant",
          model: "client-model",
          content: [],
          stop_reason: null,
          stop_sequence: null,
          usage: { input_tokens: 0, output_tokens: 0 },
        },
      },
      {
        type: "content_block_start",
        index: 0,
        content_block: { type: "thinking", thinking: "", signature: "" },
      },
      {
        type: "content_block_delta",
        index: 0,
        delta: { type: "thinking_delta", thinking: "Hmm." },
      },
      { type: "content_block_stop", index: 0 },
      { type: "content_block_start", index: 1, content_block: { type: "text", text: "" } },
      { type: "content_block_delta", index: 1, delta: { type: "text_delta", text: "Let me " } },
      { type: "content_block_delta", index: 1, delta: { type: "text_delta", text: "check." } },
      { type: "content_block_stop", index: 1 },
      {
        type: "content_block_start",
        index: 2,
        content_block: { type: "tool_use", id: "call_1", name: "weather", input: {} },
      },
      {
        type: "content_block_delta",
        index: 2,
        delta: { type: "input_json_delta", partial_json: '{"city":' },
      },
      {
        type: "content_block_delta",
        index: 2,
        delta: { type: "input_json_delta", partial_json: '"Paris"}' },
      },
      { type: "content_block_stop", index: 2 },
      {
        type: "content_block_start",
        index: 3,
        content_block: { type: "tool_use", id: "call_2", name: "time", input: {} },
      },
      {
        type: "content_block_delta",
        index: 3,
        delta: { type: "input_json_delta", partial_json: "{}" },
      },
      { type: "content_block_stop", index: 3 },
      {
        type: "message_delta",
        delta: { stop_reason: "tool_use", stop_sequence: null },
        usage: { output_tokens: 42, input_tokens: 10, cache_read_input_tokens: 100 },
      },
      { type: "message_stop" },
    ]);
    expect(t.usage()).toMatchObject({ inputTokens: 110, outputTokens: 42, cachedTokens: 100 });
  });

  it("closes at end() after a finish_reason without [DONE]", () => {
    const t = new OpenAIToAnthropicStream(res);
    const out = feed(t, [chunk({ content: "Hi" }), chunk({}, "length")]);
    expect(t.finished).toBe(true);
    expect(out.map((e) => e.event)).toEqual([
      "message_start",
      "content_block_start",
      "content_block_delta",
      "content_block_stop",
    ]);
    const closing = t.end();
    expect(datas(closing)).toEqual([
      {
        type: "message_delta",
        delta: { stop_reason: "max_tokens", stop_sequence: null },
        usage: { output_tokens: 0 },
      },
      { type: "message_stop" },
    ]);
    expect(t.end()).toEqual([]);
  });

  it("is not finished before a finish_reason and throws on upstream errors", () => {
    const t = new OpenAIToAnthropicStream(res);
    t.push(chunk({ content: "Hi" }));
    expect(t.finished).toBe(false);
    expect(() => t.push({ data: { error: { message: "boom" } } })).toThrow("boom");
  });
});

describe("stream composition", () => {
  /** Drops what cannot survive the OpenAI hop: pings, signatures, ids and start usage. */
  const normalise = (events: UpstreamEvent[]) =>
    datas(events)
      .filter((d) => d.type !== "ping")
      .filter((d) => obj(d.delta).type !== "signature_delta")
      .filter(
        (d) => !(obj(d.delta).type === "input_json_delta" && obj(d.delta).partial_json === ""),
      )
      .map((d) => {
        if (d.type === "message_start") return { type: d.type };
        if (d.type === "message_delta") return { type: d.type, delta: d.delta };
        return d;
      });
  const obj = (v: unknown): Json => (typeof v === "object" && v !== null ? (v as Json) : {});

  it("Anthropic → OpenAI → Anthropic reproduces text and tool_use events", () => {
    const events = anthropicStream;
    const a2o = new AnthropicToOpenAIStream(res);
    const o2a = new OpenAIToAnthropicStream(res);
    const chunks = feed(a2o, events);
    const back = [...feed(o2a, chunks), ...o2a.end()];
    expect(a2o.finished && o2a.finished).toBe(true);
    expect(normalise(back)).toEqual(normalise(events));
    const stop = datas(back).find((d) => d.type === "message_delta")!;
    expect(stop.usage).toEqual({
      output_tokens: 42,
      input_tokens: 10,
      cache_read_input_tokens: 100,
    });
  });
});
