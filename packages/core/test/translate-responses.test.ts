import type { Response, ResponseStreamEvent } from "openai/resources/responses/responses";
import { describe, expect, it } from "vitest";
import {
  ChatToResponsesStream,
  chatToResponsesRequest,
  chatToResponsesResponse,
  ResponsesToChatStream,
  responsesToChatRequest,
  responsesToChatResponse,
  responsesUsage,
  usageToResponses,
} from "../src/translate/responses.js";
import type { Json, UpstreamEvent } from "../src/translate/types.js";

const req = { model: "up-model", stream: false };
const res = { model: "client-model", id: "abc" };

/** A Responses SSE event as the upstream parser yields it. */
let seq = 0;
const rev = (type: string, fields: Json = {}): UpstreamEvent => ({
  event: type,
  data: { type, sequence_number: seq++, ...fields },
});

/** A chat chunk with one choice. */
const chunk = (delta: Json, finish: string | null = null): UpstreamEvent => ({
  data: {
    id: "chatcmpl-x",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt",
    choices: [{ index: 0, delta, finish_reason: finish }],
  },
});

const usageChunk = (usage: Json): UpstreamEvent => ({
  data: {
    id: "chatcmpl-x",
    object: "chat.completion.chunk",
    created: 1,
    model: "gpt",
    choices: [],
    usage,
  },
});

const feed = (t: { push(e: UpstreamEvent): UpstreamEvent[] }, events: UpstreamEvent[]) =>
  events.flatMap((e) => t.push(e));

const datas = (events: UpstreamEvent[]) => events.map((e) => e.data as Json);

const respUsage = {
  input_tokens: 100,
  input_tokens_details: { cached_tokens: 40, cache_write_tokens: 0 },
  output_tokens: 30,
  output_tokens_details: { reasoning_tokens: 10 },
  total_tokens: 130,
};

const chatUsage = {
  prompt_tokens: 100,
  completion_tokens: 30,
  total_tokens: 130,
  prompt_tokens_details: { cached_tokens: 40 },
  completion_tokens_details: { reasoning_tokens: 10 },
};

describe("responsesToChatRequest", () => {
  it("maps instructions, a string input and options", () => {
    const out = responsesToChatRequest(
      {
        model: "gpt-5",
        instructions: "Be brief.",
        input: "Hi",
        max_output_tokens: 200,
        temperature: 0.3,
        top_p: 0.8,
        reasoning: { effort: "high", summary: "auto" },
        user: "u1",
        store: true,
        previous_response_id: "resp_prev",
        include: ["reasoning.encrypted_content"],
        truncation: "auto",
        metadata: { a: "b" },
      },
      { model: "up-model", stream: true },
    );
    expect(out).toEqual({
      model: "up-model",
      stream: true,
      stream_options: { include_usage: true },
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
      ],
      max_tokens: 200,
      temperature: 0.3,
      top_p: 0.8,
      reasoning_effort: "high",
      user: "u1",
    });
  });

  it("maps a multi-turn conversation with images, files, developer messages and tool calls", () => {
    const out = responsesToChatRequest(
      {
        input: [
          { role: "developer", content: "Use tools." },
          {
            type: "message",
            role: "user",
            content: [
              { type: "input_text", text: "What is this?" },
              { type: "input_image", image_url: "https://x/img.png", detail: "low" },
              { type: "input_image", file_id: "file-1" },
              {
                type: "input_file",
                file_data: "data:application/pdf;base64,AAA",
                filename: "a.pdf",
              },
            ],
          },
          { type: "reasoning", id: "rs_1", summary: [{ type: "summary_text", text: "Think." }] },
          {
            type: "message",
            role: "assistant",
            content: [{ type: "output_text", text: "Let me check.", annotations: [] }],
          },
          { type: "function_call", call_id: "call_1", name: "look", arguments: '{"q":1}' },
          { type: "function_call", call_id: "call_2", name: "look", arguments: '{"q":2}' },
          { type: "function_call_output", call_id: "call_1", output: "one" },
          {
            type: "function_call_output",
            call_id: "call_2",
            output: [{ type: "input_text", text: "two" }],
          },
          { type: "web_search_call", id: "ws_1", status: "completed" },
          { type: "item_reference", id: "msg_old" },
          { type: "function_call", call_id: "call_3", name: "fin", arguments: "{}" },
          { type: "function_call_output", call_id: "call_3", output: "ok" },
          { role: "user", content: [{ type: "input_text", text: "Thanks" }] },
          42,
          null,
        ],
      },
      req,
    );
    expect(out.messages).toEqual([
      { role: "system", content: "Use tools." },
      {
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image_url", image_url: { url: "https://x/img.png", detail: "low" } },
          {
            type: "file",
            file: { file_data: "data:application/pdf;base64,AAA", filename: "a.pdf" },
          },
        ],
      },
      {
        role: "assistant",
        content: "Let me check.",
        reasoning_content: "Think.",
        tool_calls: [
          { id: "call_1", type: "function", function: { name: "look", arguments: '{"q":1}' } },
          { id: "call_2", type: "function", function: { name: "look", arguments: '{"q":2}' } },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: "one" },
      { role: "tool", tool_call_id: "call_2", content: "two" },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          { id: "call_3", type: "function", function: { name: "fin", arguments: "{}" } },
        ],
      },
      { role: "tool", tool_call_id: "call_3", content: "ok" },
      { role: "user", content: "Thanks" },
    ]);
  });

  it("maps function tools, tool_choice and structured output; drops built-in tools", () => {
    const out = responsesToChatRequest(
      {
        input: "x",
        tools: [
          { type: "web_search" },
          { type: "file_search", vector_store_ids: ["v"] },
          {
            type: "function",
            name: "get",
            description: "Get it",
            parameters: { type: "object", properties: { a: { type: "string" } } },
            strict: true,
          },
        ],
        tool_choice: { type: "function", name: "get" },
        parallel_tool_calls: false,
        text: {
          format: { type: "json_schema", name: "Out", schema: { type: "object" }, strict: true },
        },
      },
      req,
    );
    expect(out.tools).toEqual([
      {
        type: "function",
        function: {
          name: "get",
          description: "Get it",
          parameters: { type: "object", properties: { a: { type: "string" } } },
          strict: true,
        },
      },
    ]);
    expect(out.tool_choice).toEqual({ type: "function", function: { name: "get" } });
    expect(out.parallel_tool_calls).toBe(false);
    expect(out.response_format).toEqual({
      type: "json_schema",
      json_schema: { name: "Out", schema: { type: "object" }, strict: true },
    });
    const json = responsesToChatRequest(
      { input: "x", text: { format: { type: "json_object" } }, tool_choice: "required" },
      req,
    );
    expect(json.response_format).toEqual({ type: "json_object" });
    expect(json.tool_choice).toBeUndefined();
    expect(
      responsesToChatRequest(
        { input: "x", tools: [{ type: "web_search" }], tool_choice: "auto" },
        req,
      ),
    ).toEqual({ model: "up-model", stream: false, messages: [{ role: "user", content: "x" }] });
  });

  it("never throws on odd input", () => {
    for (const body of [
      {},
      { input: 5 },
      { input: [{}], tools: "x", text: 1 },
      { instructions: [] },
    ]) {
      expect(() => responsesToChatRequest(body as Json, req)).not.toThrow();
    }
    expect(responsesToChatRequest({}, req)).toEqual({
      model: "up-model",
      stream: false,
      messages: [],
    });
  });
});

describe("chatToResponsesRequest", () => {
  it("maps system messages to instructions and the rest to input items", () => {
    const out = chatToResponsesRequest(
      {
        model: "x",
        messages: [
          { role: "system", content: "Be brief." },
          { role: "developer", content: [{ type: "text", text: "Use tools." }] },
          {
            role: "user",
            content: [
              { type: "text", text: "Look" },
              { type: "image_url", image_url: { url: "data:image/png;base64,AA" } },
            ],
          },
          {
            role: "assistant",
            content: "Checking.",
            reasoning_content: "hmm",
            tool_calls: [
              { id: "call_1", type: "function", function: { name: "look", arguments: '{"q":1}' } },
            ],
          },
          { role: "tool", tool_call_id: "call_1", content: "found" },
          { role: "user", content: "Thanks" },
        ],
        max_tokens: 10,
        max_completion_tokens: 50,
        temperature: 0.2,
        reasoning_effort: "low",
        stop: ["x"],
        n: 1,
        stream_options: { include_usage: true },
        user: "u",
      },
      { model: "gpt-5-codex", stream: true },
    );
    expect(out).toEqual({
      model: "gpt-5-codex",
      instructions: "Be brief.\n\nUse tools.",
      input: [
        {
          type: "message",
          role: "user",
          content: [
            { type: "input_text", text: "Look" },
            { type: "input_image", image_url: "data:image/png;base64,AA", detail: "auto" },
          ],
        },
        {
          type: "message",
          role: "assistant",
          content: [{ type: "output_text", text: "Checking." }],
        },
        { type: "function_call", call_id: "call_1", name: "look", arguments: '{"q":1}' },
        { type: "function_call_output", call_id: "call_1", output: "found" },
        { type: "message", role: "user", content: [{ type: "input_text", text: "Thanks" }] },
      ],
      stream: true,
      store: false,
      max_output_tokens: 50,
      temperature: 0.2,
      reasoning: { effort: "low" },
      user: "u",
    });
  });

  it("maps tools, tool_choice and response_format", () => {
    const out = chatToResponsesRequest(
      {
        messages: [{ role: "user", content: "x" }],
        tools: [
          {
            type: "function",
            function: { name: "get", description: "d", parameters: { type: "object" } },
          },
          { type: "function", function: { name: "put", strict: true } },
        ],
        tool_choice: { type: "function", function: { name: "get" } },
        parallel_tool_calls: true,
        response_format: {
          type: "json_schema",
          json_schema: { name: "Out", schema: { type: "object" }, strict: true },
        },
      },
      req,
    );
    expect(out.tools).toEqual([
      {
        type: "function",
        name: "get",
        description: "d",
        parameters: { type: "object" },
        strict: false,
      },
      {
        type: "function",
        name: "put",
        parameters: { type: "object", properties: {} },
        strict: true,
      },
    ]);
    expect(out.tool_choice).toEqual({ type: "function", name: "get" });
    expect(out.parallel_tool_calls).toBe(true);
    expect(out.text).toEqual({
      format: { type: "json_schema", name: "Out", schema: { type: "object" }, strict: true },
    });
    const json = chatToResponsesRequest({ response_format: { type: "json_object" } }, req);
    expect(json.text).toEqual({ format: { type: "json_object" } });
    expect(json.input).toEqual([]);
  });

  it("round-trips through responsesToChatRequest with call ids preserved", () => {
    const chat = {
      messages: [
        { role: "system", content: "S" },
        { role: "user", content: "Hi" },
        {
          role: "assistant",
          content: null,
          tool_calls: [
            { id: "call_a", type: "function", function: { name: "f", arguments: "{}" } },
            { id: "call_b", type: "function", function: { name: "g", arguments: '{"x":1}' } },
          ],
        },
        { role: "tool", tool_call_id: "call_a", content: "A" },
        { role: "tool", tool_call_id: "call_b", content: "B" },
        { role: "assistant", content: "Done." },
      ],
    };
    const back = responsesToChatRequest(chatToResponsesRequest(chat, req), req);
    expect(back.messages).toEqual(chat.messages);
  });
});

describe("answers", () => {
  const response = {
    id: "resp_up",
    object: "response",
    created_at: 1700000000,
    status: "completed",
    model: "gpt-5",
    output: [
      {
        type: "reasoning",
        id: "rs_1",
        summary: [
          { type: "summary_text", text: "First." },
          { type: "summary_text", text: "Second." },
        ],
      },
      {
        type: "message",
        id: "msg_1",
        status: "completed",
        role: "assistant",
        content: [
          { type: "output_text", text: "Hello ", annotations: [] },
          { type: "output_text", text: "world", annotations: [] },
        ],
      },
    ],
    usage: respUsage,
  };

  it("responsesToChatResponse maps text, reasoning and usage", () => {
    expect(responsesToChatResponse(response, res)).toEqual({
      id: "chatcmpl-abc",
      object: "chat.completion",
      created: 1700000000,
      model: "client-model",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: "Hello world",
            reasoning_content: "First.\n\nSecond.",
          },
          logprobs: null,
          finish_reason: "stop",
        },
      ],
      usage: chatUsage,
    });
  });

  it("responsesToChatResponse maps function calls and statuses", () => {
    const calls = responsesToChatResponse(
      {
        status: "completed",
        output: [
          {
            type: "function_call",
            id: "fc_1",
            call_id: "call_1",
            name: "f",
            arguments: '{"a":1}',
            status: "completed",
          },
        ],
      },
      res,
    );
    const choice = (calls.choices as Json[])[0] as Json;
    expect(choice.finish_reason).toBe("tool_calls");
    expect(choice.message).toEqual({
      role: "assistant",
      content: null,
      tool_calls: [
        { id: "call_1", type: "function", function: { name: "f", arguments: '{"a":1}' } },
      ],
    });
    const finish = (b: Json) =>
      ((responsesToChatResponse(b, res).choices as Json[])[0] as Json).finish_reason;
    expect(
      finish({ status: "incomplete", incomplete_details: { reason: "max_output_tokens" } }),
    ).toBe("length");
    expect(finish({ status: "incomplete", incomplete_details: { reason: "content_filter" } })).toBe(
      "content_filter",
    );
    expect(finish({})).toBe("stop");
    expect(() => responsesToChatResponse({ output: [1, null, { type: "x" }] }, res)).not.toThrow();
  });

  it("chatToResponsesResponse maps text, reasoning, tool calls and usage", () => {
    const out = chatToResponsesResponse(
      {
        id: "chatcmpl-up",
        object: "chat.completion",
        created: 1700000000,
        model: "gpt",
        choices: [
          {
            index: 0,
            message: {
              role: "assistant",
              content: "Calling.",
              reasoning_content: "Plan.",
              tool_calls: [
                { id: "call_1", type: "function", function: { name: "f", arguments: '{"a":1}' } },
              ],
            },
            finish_reason: "tool_calls",
          },
        ],
        usage: chatUsage,
      },
      res,
    );
    expect(out).toEqual({
      id: "resp_abc",
      object: "response",
      created_at: 1700000000,
      status: "completed",
      error: null,
      incomplete_details: null,
      instructions: null,
      metadata: {},
      model: "client-model",
      output: [
        { type: "reasoning", id: "rs_abc", summary: [{ type: "summary_text", text: "Plan." }] },
        {
          type: "message",
          id: "msg_abc",
          status: "completed",
          role: "assistant",
          content: [{ type: "output_text", text: "Calling.", annotations: [] }],
        },
        {
          type: "function_call",
          id: "fc_abc_0",
          call_id: "call_1",
          name: "f",
          arguments: '{"a":1}',
          status: "completed",
        },
      ],
      output_text: "Calling.",
      parallel_tool_calls: true,
      temperature: null,
      tool_choice: "auto",
      tools: [],
      top_p: null,
      usage: respUsage,
    } satisfies Response);
  });

  it("chatToResponsesResponse maps length to incomplete", () => {
    const out = chatToResponsesResponse(
      { choices: [{ message: { role: "assistant", content: "Trunc" }, finish_reason: "length" }] },
      res,
    );
    expect(out.status).toBe("incomplete");
    expect(out.incomplete_details).toEqual({ reason: "max_output_tokens" });
    expect(out.output_text).toBe("Trunc");
    expect(() => chatToResponsesResponse({ choices: 3 }, res)).not.toThrow();
  });

  it("answers round-trip", () => {
    const back = responsesToChatResponse(
      chatToResponsesResponse(responsesToChatResponse(response, res), res),
      res,
    );
    expect(back.choices).toEqual(responsesToChatResponse(response, res).choices);
    expect(back.usage).toEqual(chatUsage);
  });
});

describe("usage", () => {
  it("reads and writes Responses usage", () => {
    const u = responsesUsage(respUsage);
    expect(u).toEqual({
      inputTokens: 100,
      outputTokens: 30,
      reasoningTokens: 10,
      cachedTokens: 40,
      totalTokens: 130,
    });
    expect(usageToResponses(u ?? expect.fail("no usage"))).toEqual(respUsage);
    expect(responsesUsage({})).toBeNull();
    expect(responsesUsage("x")).toBeNull();
  });
});

/** A Responses upstream stream: reasoning, text, then a function call in fragments. */
function responsesStream(status = "completed", usage: Json | null = respUsage): UpstreamEvent[] {
  const base = { id: "resp_up", object: "response", created_at: 1700000000, model: "gpt-5" };
  const fc = {
    type: "function_call",
    id: "fc_1",
    call_id: "call_1",
    name: "get_weather",
    arguments: "",
    status: "in_progress",
  };
  const final: Json = {
    ...base,
    status,
    output: [],
    incomplete_details: status === "incomplete" ? { reason: "max_output_tokens" } : null,
  };
  if (usage) final.usage = usage;
  return [
    rev("response.created", { response: { ...base, status: "in_progress", output: [] } }),
    rev("response.in_progress", { response: { ...base, status: "in_progress", output: [] } }),
    rev("response.output_item.added", {
      output_index: 0,
      item: { type: "reasoning", id: "rs_1", summary: [] },
    }),
    rev("response.reasoning_summary_part.added", {
      item_id: "rs_1",
      output_index: 0,
      summary_index: 0,
      part: { type: "summary_text", text: "" },
    }),
    rev("response.reasoning_summary_text.delta", {
      item_id: "rs_1",
      output_index: 0,
      summary_index: 0,
      delta: "Thinking",
    }),
    rev("response.output_item.done", {
      output_index: 0,
      item: {
        type: "reasoning",
        id: "rs_1",
        summary: [{ type: "summary_text", text: "Thinking" }],
      },
    }),
    rev("response.output_item.added", {
      output_index: 1,
      item: { type: "message", id: "msg_1", status: "in_progress", role: "assistant", content: [] },
    }),
    rev("response.content_part.added", {
      item_id: "msg_1",
      output_index: 1,
      content_index: 0,
      part: { type: "output_text", text: "", annotations: [] },
    }),
    rev("response.output_text.delta", {
      item_id: "msg_1",
      output_index: 1,
      content_index: 0,
      delta: "Hel",
    }),
    rev("response.output_text.delta", {
      item_id: "msg_1",
      output_index: 1,
      content_index: 0,
      delta: "lo",
    }),
    rev("response.output_text.done", {
      item_id: "msg_1",
      output_index: 1,
      content_index: 0,
      text: "Hello",
    }),
    rev("response.output_item.done", {
      output_index: 1,
      item: {
        type: "message",
        id: "msg_1",
        status: "completed",
        role: "assistant",
        content: [{ type: "output_text", text: "Hello", annotations: [] }],
      },
    }),
    rev("response.output_item.added", { output_index: 2, item: fc }),
    rev("response.function_call_arguments.delta", {
      item_id: "fc_1",
      output_index: 2,
      delta: '{"city":',
    }),
    rev("response.function_call_arguments.delta", {
      item_id: "fc_1",
      output_index: 2,
      delta: '"Paris"}',
    }),
    rev("response.function_call_arguments.done", {
      item_id: "fc_1",
      output_index: 2,
      arguments: '{"city":"Paris"}',
    }),
    rev("response.output_item.done", {
      output_index: 2,
      item: { ...fc, arguments: '{"city":"Paris"}', status: "completed" },
    }),
    rev(status === "incomplete" ? "response.incomplete" : "response.completed", {
      response: final,
    }),
  ];
}

describe("ResponsesToChatStream", () => {
  it("translates reasoning, text and a fragmented function call", () => {
    const t = new ResponsesToChatStream(res);
    const out = feed(t, responsesStream());
    expect(t.finished).toBe(true);
    const ds = datas(out);
    expect(ds.at(-1)).toBe("[DONE]");
    const chunks = ds.slice(0, -1);
    for (const c of chunks) {
      expect(c.id).toBe("chatcmpl-abc");
      expect(c.model).toBe("client-model");
      expect(c.object).toBe("chat.completion.chunk");
    }
    const deltas = chunks.slice(0, -1).map((c) => ((c.choices as Json[])[0] as Json).delta);
    expect(deltas).toEqual([
      { role: "assistant", content: "" },
      { reasoning_content: "Thinking" },
      { content: "Hel" },
      { content: "lo" },
      {
        tool_calls: [
          {
            index: 0,
            id: "call_1",
            type: "function",
            function: { name: "get_weather", arguments: "" },
          },
        ],
      },
      { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] },
      {},
    ]);
    const finish = chunks.at(-2) as Json;
    expect(((finish.choices as Json[])[0] as Json).finish_reason).toBe("tool_calls");
    const usage = chunks.at(-1) as Json;
    expect(usage.choices).toEqual([]);
    expect(usage.usage).toEqual(chatUsage);
    expect(t.usage()).toEqual(responsesUsage(respUsage));
    expect(t.end()).toEqual([]);
  });

  it("maps incomplete to length and sends arguments given only whole", () => {
    const t = new ResponsesToChatStream(res);
    const out = feed(t, [
      rev("response.created", { response: { id: "r", status: "in_progress", output: [] } }),
      rev("response.output_item.added", {
        output_index: 0,
        item: { type: "function_call", id: "fc_9", call_id: "call_9", name: "f", arguments: "" },
      }),
      rev("response.function_call_arguments.done", {
        item_id: "fc_9",
        output_index: 0,
        arguments: '{"x":1}',
      }),
      rev("response.incomplete", {
        response: { status: "incomplete", incomplete_details: { reason: "max_output_tokens" } },
      }),
    ]);
    const ds = datas(out);
    expect(ds.at(-1)).toBe("[DONE]");
    const choices = ds.slice(0, -1).map((c) => (c.choices as Json[])[0] as Json);
    expect(choices[2]?.delta).toEqual({
      tool_calls: [{ index: 0, function: { arguments: '{"x":1}' } }],
    });
    expect(choices.at(-1)?.finish_reason).toBe("length");
    expect(t.usage()).toBeNull();
  });

  it("throws on upstream errors", () => {
    const t = new ResponsesToChatStream(res);
    expect(() =>
      t.push(
        rev("response.failed", {
          response: { status: "failed", error: { code: "x", message: "boom" } },
        }),
      ),
    ).toThrow("boom");
    expect(() =>
      new ResponsesToChatStream(res).push(rev("error", { code: "rate", message: "slow down" })),
    ).toThrow("slow down");
  });

  it("closes at end() when the upstream ended without response.completed", () => {
    const t = new ResponsesToChatStream(res);
    t.push(rev("response.output_text.delta", { item_id: "m", output_index: 0, delta: "x" }));
    expect(t.finished).toBe(false);
    const ds = datas(t.end());
    expect((((ds[0] as Json).choices as Json[])[0] as Json).finish_reason).toBe("stop");
    expect(ds.at(-1)).toBe("[DONE]");
  });
});

describe("ChatToResponsesStream", () => {
  const chatStream = (): UpstreamEvent[] => [
    chunk({ role: "assistant", content: "" }),
    chunk({ reasoning_content: "Plan" }),
    chunk({ content: "Hel" }),
    chunk({ content: "lo" }),
    chunk({
      tool_calls: [
        {
          index: 0,
          id: "call_1",
          type: "function",
          function: { name: "get_weather", arguments: "" },
        },
      ],
    }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }),
    chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }),
    chunk({}, "tool_calls"),
    usageChunk(chatUsage),
    { data: "[DONE]" },
  ];

  it("produces the Responses events in order", () => {
    const t = new ChatToResponsesStream(res);
    const out = feed(t, chatStream());
    expect(t.finished).toBe(true);
    const ds = datas(out);
    expect(ds.map((d) => d.type)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.reasoning_summary_part.added",
      "response.reasoning_summary_text.delta",
      "response.reasoning_summary_text.done",
      "response.reasoning_summary_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.content_part.added",
      "response.output_text.delta",
      "response.output_text.delta",
      "response.output_text.done",
      "response.content_part.done",
      "response.output_item.done",
      "response.output_item.added",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.delta",
      "response.function_call_arguments.done",
      "response.output_item.done",
      "response.completed",
    ]);
    expect(out.every((e) => e.event === (e.data as Json).type)).toBe(true);
    expect(ds.map((d) => d.sequence_number)).toEqual(ds.map((_, i) => i));
    // Every event is a valid SDK stream event.
    const events = ds as unknown as ResponseStreamEvent[];
    const created = events[0];
    expect(created?.type === "response.created" && created.response.status).toBe("in_progress");
    expect(ds[3]).toEqual({
      type: "response.reasoning_summary_part.added",
      sequence_number: 3,
      item_id: "rs_abc",
      output_index: 0,
      summary_index: 0,
      part: { type: "summary_text", text: "" },
    } satisfies ResponseStreamEvent);
    expect(ds[7]).toEqual({
      type: "response.output_item.done",
      sequence_number: 7,
      output_index: 0,
      item: { type: "reasoning", id: "rs_abc", summary: [{ type: "summary_text", text: "Plan" }] },
    } satisfies ResponseStreamEvent);
    expect(ds[9]).toEqual({
      type: "response.content_part.added",
      sequence_number: 9,
      item_id: "msg_abc",
      output_index: 1,
      content_index: 0,
      part: { type: "output_text", text: "", annotations: [] },
    } satisfies ResponseStreamEvent);
    expect(ds[10]).toEqual({
      type: "response.output_text.delta",
      sequence_number: 10,
      item_id: "msg_abc",
      output_index: 1,
      content_index: 0,
      delta: "Hel",
      logprobs: [],
    } satisfies ResponseStreamEvent);
    expect(ds[14]).toEqual({
      type: "response.output_item.done",
      sequence_number: 14,
      output_index: 1,
      item: {
        type: "message",
        id: "msg_abc",
        status: "completed",
        role: "assistant",
        content: [{ type: "output_text", text: "Hello", annotations: [] }],
      },
    } satisfies ResponseStreamEvent);
    expect(ds[15]).toEqual({
      type: "response.output_item.added",
      sequence_number: 15,
      output_index: 2,
      item: {
        type: "function_call",
        id: "fc_abc_0",
        call_id: "call_1",
        name: "get_weather",
        arguments: "",
        status: "in_progress",
      },
    } satisfies ResponseStreamEvent);
    expect(ds[18]).toEqual({
      type: "response.function_call_arguments.done",
      sequence_number: 18,
      item_id: "fc_abc_0",
      output_index: 2,
      name: "get_weather",
      arguments: '{"city":"Paris"}',
    } satisfies ResponseStreamEvent);
    const completed = ds.at(-1) as Json;
    const response = completed.response as Json;
    expect(response).toMatchObject({
      id: "resp_abc",
      object: "response",
      status: "completed",
      model: "client-model",
      output_text: "Hello",
      usage: respUsage,
      output: [
        { type: "reasoning", id: "rs_abc", summary: [{ type: "summary_text", text: "Plan" }] },
        {
          type: "message",
          id: "msg_abc",
          status: "completed",
          role: "assistant",
          content: [{ type: "output_text", text: "Hello", annotations: [] }],
        },
        {
          type: "function_call",
          id: "fc_abc_0",
          call_id: "call_1",
          name: "get_weather",
          arguments: '{"city":"Paris"}',
          status: "completed",
        },
      ],
    });
    // The final response object has every field the SDK's Response requires.
    const sdk: Response = response as unknown as Response;
    const required: (keyof Response)[] = [
      "id",
      "created_at",
      "output_text",
      "error",
      "incomplete_details",
      "instructions",
      "metadata",
      "model",
      "object",
      "output",
      "parallel_tool_calls",
      "temperature",
      "tool_choice",
      "tools",
      "top_p",
    ];
    for (const k of required) expect(sdk).toHaveProperty(k);
    expect(t.usage()).toEqual(responsesUsage(chatUsage));
    expect(t.end()).toEqual([]);
  });

  it("ends with response.incomplete for length, at end() without [DONE]", () => {
    const t = new ChatToResponsesStream(res);
    feed(t, [chunk({ content: "Tr" }), chunk({}, "length")]);
    expect(t.finished).toBe(true);
    const ds = datas(t.end());
    const last = ds.at(-1) as Json;
    expect(last.type).toBe("response.incomplete");
    expect(last.response).toMatchObject({
      status: "incomplete",
      incomplete_details: { reason: "max_output_tokens" },
      output_text: "Tr",
    });
  });

  it("handles several tool calls, some given whole in one chunk", () => {
    const t = new ChatToResponsesStream(res);
    const out = feed(t, [
      chunk({
        tool_calls: [
          { index: 0, id: "call_a", type: "function", function: { name: "f", arguments: "{}" } },
          {
            index: 1,
            id: "call_b",
            type: "function",
            function: { name: "g", arguments: '{"y":2}' },
          },
        ],
      }),
      chunk({}, "tool_calls"),
      { data: "[DONE]" },
    ]);
    const response = (datas(out).at(-1) as Json).response as Json;
    expect(response.output).toEqual([
      {
        type: "function_call",
        id: "fc_abc_0",
        call_id: "call_a",
        name: "f",
        arguments: "{}",
        status: "completed",
      },
      {
        type: "function_call",
        id: "fc_abc_1",
        call_id: "call_b",
        name: "g",
        arguments: '{"y":2}',
        status: "completed",
      },
    ]);
    expect(response.usage).toBeUndefined();
  });

  it("throws on an upstream error chunk", () => {
    const t = new ChatToResponsesStream(res);
    expect(() => t.push({ data: { error: { message: "bad" } } })).toThrow("bad");
  });
});

describe("stream composition", () => {
  it("Responses → chat → Responses keeps text, reasoning and function calls", () => {
    const a = new ResponsesToChatStream(res);
    const b = new ChatToResponsesStream(res);
    const out = responsesStream().flatMap((e) => a.push(e).flatMap((c) => b.push(c)));
    expect(a.finished && b.finished).toBe(true);
    const ds = datas(out);
    const last = ds.at(-1) as Json;
    expect(last.type).toBe("response.completed");
    const response = last.response as Json;
    expect(response.output_text).toBe("Hello");
    expect(response.output).toEqual([
      { type: "reasoning", id: "rs_abc", summary: [{ type: "summary_text", text: "Thinking" }] },
      {
        type: "message",
        id: "msg_abc",
        status: "completed",
        role: "assistant",
        content: [{ type: "output_text", text: "Hello", annotations: [] }],
      },
      {
        type: "function_call",
        id: "fc_abc_0",
        call_id: "call_1",
        name: "get_weather",
        arguments: '{"city":"Paris"}',
        status: "completed",
      },
    ]);
    expect(response.usage).toEqual(respUsage);
    const text = ds
      .filter((d) => d.type === "response.output_text.delta")
      .map((d) => d.delta)
      .join("");
    expect(text).toBe("Hello");
    const args = ds
      .filter((d) => d.type === "response.function_call_arguments.delta")
      .map((d) => d.delta);
    expect(args).toEqual(['{"city":', '"Paris"}']);
  });

  it("chat → Responses → chat keeps the chunks' content", () => {
    const a = new ChatToResponsesStream(res);
    const b = new ResponsesToChatStream(res);
    const chunks = [
      chunk({ role: "assistant", content: "" }),
      chunk({ content: "Hi" }),
      chunk({ content: " there" }),
      chunk({}, "stop"),
      usageChunk(chatUsage),
      { data: "[DONE]" },
    ];
    const out = datas(chunks.flatMap((e) => a.push(e).flatMap((r) => b.push(r))));
    expect(out.at(-1)).toBe("[DONE]");
    const deltas = out
      .slice(0, -1)
      .flatMap((c) => (c.choices as Json[]).map((ch) => ch.delta as Json))
      .filter((d) => typeof d.content === "string")
      .map((d) => d.content)
      .join("");
    expect(deltas).toBe("Hi there");
    expect((out.at(-2) as Json).usage).toEqual(chatUsage);
  });
});
