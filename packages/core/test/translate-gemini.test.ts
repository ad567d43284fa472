import { describe, expect, it } from "vitest";
import {
  cleanGeminiSchema,
  GeminiToOpenAIStream,
  geminiFinishToOpenAI,
  geminiToOpenAIRequest,
  geminiToOpenAIResponse,
  geminiUsage,
  OpenAIToGeminiStream,
  openaiFinishToGemini,
  openaiToGeminiRequest,
  openaiToGeminiResponse,
  openaiUsageToGemini,
} from "../src/translate/gemini.js";
import type { Json, UpstreamEvent } from "../src/translate/types.js";

const REQ = { model: "gemini-2.5-flash", stream: false };
const RES = { model: "gemini-2.5-flash", id: "abc" };

type Chunk = {
  choices: { index: number; delta: Json; finish_reason: string | null }[];
  usage?: Json;
};

function dataOf(events: UpstreamEvent[]): Json[] {
  return events.map((e) => e.data as Json);
}

describe("geminiToOpenAIRequest", () => {
  it("maps text, system instruction, multi-turn and stream options", () => {
    const out = geminiToOpenAIRequest(
      {
        system_instruction: { parts: [{ text: "Be brief." }] },
        contents: [
          { parts: [{ text: "Hi" }] },
          { role: "model", parts: [{ text: "thinking...", thought: true }, { text: "Hello" }] },
          { role: "user", parts: [{ text: "How are you?" }] },
        ],
      },
      { model: "gpt-4o", stream: true },
    );
    expect(out).toEqual({
      model: "gpt-4o",
      stream: true,
      stream_options: { include_usage: true },
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "Hi" },
        { role: "assistant", content: "Hello", reasoning_content: "thinking..." },
        { role: "user", content: "How are you?" },
      ],
    });
  });

  it("maps images (inline and file) to image_url parts", () => {
    const out = geminiToOpenAIRequest(
      {
        contents: [
          {
            role: "user",
            parts: [
              { text: "What is this?" },
              { inlineData: { mimeType: "image/png", data: "AAAA" } },
              { file_data: { mime_type: "image/jpeg", file_uri: "https://x.test/a.jpg" } },
            ],
          },
        ],
      },
      REQ,
    );
    expect(out.messages).toEqual([
      {
        role: "user",
        content: [
          { type: "text", text: "What is this?" },
          { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
          { type: "image_url", image_url: { url: "https://x.test/a.jpg" } },
        ],
      },
    ]);
  });

  it("maps function calls and responses with matching ids", () => {
    const out = geminiToOpenAIRequest(
      {
        contents: [
          { role: "user", parts: [{ text: "Weather in Paris and Rome?" }] },
          {
            role: "model",
            parts: [
              { functionCall: { name: "weather", args: { city: "Paris" } } },
              { function_call: { name: "weather", args: { city: "Rome" } } },
              { functionCall: { name: "clock", args: {}, id: "given-id" } },
            ],
          },
          {
            role: "user",
            parts: [
              { functionResponse: { name: "clock", id: "given-id", response: { result: "noon" } } },
              { functionResponse: { name: "weather", response: { temp: 20 } } },
              { function_response: { name: "weather", response: { content: "sunny" } } },
            ],
          },
        ],
      },
      REQ,
    );
    const msgs = out.messages as Json[];
    expect(msgs[1]).toEqual({
      role: "assistant",
      content: null,
      tool_calls: [
        {
          id: "call_0_weather",
          type: "function",
          function: { name: "weather", arguments: '{"city":"Paris"}' },
        },
        {
          id: "call_1_weather",
          type: "function",
          function: { name: "weather", arguments: '{"city":"Rome"}' },
        },
        { id: "given-id", type: "function", function: { name: "clock", arguments: "{}" } },
      ],
    });
    expect(msgs.slice(2)).toEqual([
      { role: "tool", tool_call_id: "given-id", content: "noon" },
      { role: "tool", tool_call_id: "call_0_weather", content: '{"temp":20}' },
      { role: "tool", tool_call_id: "call_1_weather", content: "sunny" },
    ]);
  });

  it("maps tools, tool config and generation config", () => {
    const out = geminiToOpenAIRequest(
      {
        contents: [{ role: "user", parts: [{ text: "x" }] }],
        tools: [
          {
            functionDeclarations: [
              {
                name: "weather",
                description: "Get weather",
                parameters: {
                  type: "OBJECT",
                  properties: { city: { type: "STRING", nullable: true } },
                  required: ["city"],
                },
              },
            ],
          },
          {
            function_declarations: [
              { name: "raw", parametersJsonSchema: { type: "object", properties: {} } },
            ],
          },
          { googleSearch: {} },
        ],
        toolConfig: { functionCallingConfig: { mode: "ANY", allowedFunctionNames: ["weather"] } },
        generationConfig: {
          maxOutputTokens: 100,
          temperature: 0.5,
          topP: 0.9,
          topK: 40,
          stopSequences: ["END"],
          candidateCount: 2,
          responseMimeType: "application/json",
          thinkingConfig: { thinkingBudget: 8192 },
        },
      },
      REQ,
    );
    expect(out.tools).toEqual([
      {
        type: "function",
        function: {
          name: "weather",
          description: "Get weather",
          parameters: {
            type: "object",
            properties: { city: { type: ["string", "null"] } },
            required: ["city"],
          },
        },
      },
      {
        type: "function",
        function: { name: "raw", parameters: { type: "object", properties: {} } },
      },
    ]);
    expect(out.tool_choice).toEqual({ type: "function", function: { name: "weather" } });
    expect(out).toMatchObject({
      max_tokens: 100,
      temperature: 0.5,
      top_p: 0.9,
      stop: ["END"],
      n: 2,
      response_format: { type: "json_object" },
      reasoning_effort: "medium",
    });
    expect(out).not.toHaveProperty("topK");
  });

  it("maps tool modes, schemas and thinking budgets", () => {
    const mode = (m: string, names?: string[]) =>
      geminiToOpenAIRequest(
        {
          contents: [],
          toolConfig: { functionCallingConfig: { mode: m, allowedFunctionNames: names } },
        },
        REQ,
      ).tool_choice;
    expect(mode("AUTO")).toBe("auto");
    expect(mode("NONE")).toBe("none");
    expect(mode("ANY")).toBe("required");
    expect(mode("ANY", ["a", "b"])).toBe("required");

    const budget = (b: number) =>
      geminiToOpenAIRequest(
        { contents: [], generationConfig: { thinkingConfig: { thinkingBudget: b } } },
        REQ,
      ).reasoning_effort;
    expect(budget(0)).toBeUndefined();
    expect(budget(1024)).toBe("low");
    expect(budget(16383)).toBe("medium");
    expect(budget(24576)).toBe("high");

    const schema = geminiToOpenAIRequest(
      {
        contents: [],
        generation_config: {
          response_mime_type: "application/json",
          response_schema: { type: "OBJECT", properties: { a: { type: "INTEGER" } } },
        },
      },
      REQ,
    ).response_format;
    expect(schema).toEqual({
      type: "json_schema",
      json_schema: {
        name: "response",
        schema: { type: "object", properties: { a: { type: "integer" } } },
      },
    });
  });

  it("never throws on odd input", () => {
    const odd = {
      contents: [null, 1, "x", { parts: [null, { weird: 1 }, { functionResponse: null }] }],
      tools: [null, { functionDeclarations: [null, { description: "no name" }] }],
      generationConfig: "nope",
      systemInstruction: 5,
    } as unknown as Json;
    expect(geminiToOpenAIRequest(odd, REQ)).toEqual({
      model: REQ.model,
      stream: false,
      messages: [],
    });
  });
});

describe("openaiToGeminiRequest", () => {
  it("maps system, text, multi-turn and merges same-role turns", () => {
    const out = openaiToGeminiRequest(
      {
        model: "ignored",
        stream: true,
        messages: [
          { role: "system", content: "Be brief." },
          { role: "developer", content: [{ type: "text", text: "Use French." }] },
          { role: "user", content: "Hi" },
          { role: "user", content: "there" },
          { role: "assistant", content: "Bonjour", reasoning_content: "greet" },
          { role: "user", content: "Ça va?" },
        ],
        user: "u1",
        logprobs: true,
      },
      REQ,
    );
    expect(out).toEqual({
      systemInstruction: { parts: [{ text: "Be brief." }, { text: "Use French." }] },
      contents: [
        { role: "user", parts: [{ text: "Hi" }, { text: "there" }] },
        { role: "model", parts: [{ text: "greet", thought: true }, { text: "Bonjour" }] },
        { role: "user", parts: [{ text: "Ça va?" }] },
      ],
    });
  });

  it("maps images to inlineData / fileData", () => {
    const out = openaiToGeminiRequest(
      {
        messages: [
          {
            role: "user",
            content: [
              { type: "text", text: "Compare" },
              { type: "image_url", image_url: { url: "data:image/png;base64,AAAA" } },
              { type: "image_url", image_url: { url: "https://x.test/b.webp?size=2" } },
              { type: "image_url", image_url: { url: "https://x.test/noext" } },
            ],
          },
        ],
      },
      REQ,
    );
    expect(out.contents).toEqual([
      {
        role: "user",
        parts: [
          { text: "Compare" },
          { inlineData: { mimeType: "image/png", data: "AAAA" } },
          { fileData: { mimeType: "image/webp", fileUri: "https://x.test/b.webp?size=2" } },
          { fileData: { mimeType: "image/jpeg", fileUri: "https://x.test/noext" } },
        ],
      },
    ]);
  });

  it("maps tool calls and tool results (names looked up by id), merging tool turns", () => {
    const out = openaiToGeminiRequest(
      {
        messages: [
          { role: "user", content: "Weather?" },
          {
            role: "assistant",
            content: null,
            tool_calls: [
              { id: "t1", type: "function", function: { name: "weather", arguments: '{"c":"P"}' } },
              { id: "t2", type: "function", function: { name: "clock", arguments: "not json" } },
            ],
          },
          { role: "tool", tool_call_id: "t2", content: "noon" },
          { role: "tool", tool_call_id: "t1", content: '{"temp":20}' },
        ],
        tools: [
          {
            type: "function",
            function: {
              name: "weather",
              description: "d",
              parameters: {
                $schema: "http://json-schema.org/draft-07/schema#",
                type: "object",
                properties: { c: { type: "string" } },
                additionalProperties: false,
              },
              strict: true,
            },
          },
          {
            type: "function",
            function: { name: "clock", parameters: { type: "object", properties: {} } },
          },
        ],
        tool_choice: "required",
      },
      REQ,
    );
    expect(out.contents).toEqual([
      { role: "user", parts: [{ text: "Weather?" }] },
      {
        role: "model",
        parts: [
          { functionCall: { name: "weather", args: { c: "P" } } },
          { functionCall: { name: "clock", args: {} } },
        ],
      },
      {
        role: "user",
        parts: [
          { functionResponse: { name: "clock", response: { content: "noon" } } },
          { functionResponse: { name: "weather", response: { temp: 20 } } },
        ],
      },
    ]);
    expect(out.tools).toEqual([
      {
        functionDeclarations: [
          {
            name: "weather",
            description: "d",
            parameters: { type: "object", properties: { c: { type: "string" } } },
          },
          { name: "clock" },
        ],
      },
    ]);
    expect(out.toolConfig).toEqual({ functionCallingConfig: { mode: "ANY" } });
  });

  it("adds the signature sentinel to replayed function calls for newer models", () => {
    const out = openaiToGeminiRequest(
      {
        messages: [
          {
            role: "assistant",
            tool_calls: [
              { id: "a", function: { name: "f", arguments: "{}" } },
              { id: "b", function: { name: "g", arguments: "{}" } },
            ],
          },
        ],
      },
      { model: "gemini-3-pro-preview", stream: false },
    );
    const parts = (out.contents as Json[])[0]?.parts as Json[];
    expect(parts[0]?.thoughtSignature).toBe("skip_thought_signature_validator");
    expect(parts[1]).not.toHaveProperty("thoughtSignature");
  });

  it("maps tool_choice and generation parameters", () => {
    const out = openaiToGeminiRequest(
      {
        messages: [{ role: "user", content: "x" }],
        tools: [{ type: "function", function: { name: "f", parameters: { type: "object" } } }],
        tool_choice: { type: "function", function: { name: "f" } },
        max_tokens: 50,
        max_completion_tokens: 70,
        temperature: 0.2,
        top_p: 0.8,
        stop: "END",
        n: 1,
        response_format: {
          type: "json_schema",
          json_schema: {
            name: "r",
            strict: true,
            schema: {
              type: "object",
              properties: { a: { const: "x" } },
              additionalProperties: false,
            },
          },
        },
        reasoning_effort: "high",
      },
      REQ,
    );
    expect(out.toolConfig).toEqual({
      functionCallingConfig: { mode: "ANY", allowedFunctionNames: ["f"] },
    });
    expect(out.generationConfig).toEqual({
      maxOutputTokens: 70,
      temperature: 0.2,
      topP: 0.8,
      stopSequences: ["END"],
      candidateCount: 1,
      responseMimeType: "application/json",
      responseSchema: {
        type: "object",
        properties: { a: { enum: ["x"], type: "string" } },
      },
      thinkingConfig: { thinkingBudget: 24576, includeThoughts: true },
    });
    const low = openaiToGeminiRequest(
      { messages: [], reasoning_effort: "low", response_format: { type: "json_object" } },
      REQ,
    );
    expect(low.generationConfig).toEqual({
      responseMimeType: "application/json",
      thinkingConfig: { thinkingBudget: 1024, includeThoughts: true },
    });
    expect(openaiToGeminiRequest({ messages: [], reasoning_effort: "medium" }, REQ)).toEqual({
      contents: [],
      generationConfig: { thinkingConfig: { thinkingBudget: 8192, includeThoughts: true } },
    });
  });

  it("round-trips a Gemini conversation with tools through OpenAI", () => {
    const gemini = {
      systemInstruction: { parts: [{ text: "sys" }] },
      contents: [
        { role: "user", parts: [{ text: "Weather?" }] },
        {
          role: "model",
          parts: [
            { functionCall: { name: "weather", args: { city: "Paris" } } },
            { functionCall: { name: "weather", args: { city: "Rome" } } },
          ],
        },
        {
          role: "user",
          parts: [
            { functionResponse: { name: "weather", response: { temp: 20 } } },
            { functionResponse: { name: "weather", response: { temp: 25 } } },
          ],
        },
        { role: "model", parts: [{ text: "Warm." }] },
      ],
    };
    const back = openaiToGeminiRequest(geminiToOpenAIRequest(gemini, REQ), REQ);
    expect(back).toEqual(gemini);
  });
});

describe("cleanGeminiSchema", () => {
  it("cleans recursively without touching property names", () => {
    const schema = {
      $schema: "x",
      $id: "y",
      type: "object",
      additionalProperties: false,
      properties: {
        default: { type: ["string", "null"], default: "a", examples: ["e"] },
        strict: {
          type: "array",
          items: { type: "object", additionalProperties: {}, properties: {} },
        },
        kind: { const: 3 },
        pick: { oneOf: [{ type: "string" }, { type: "integer" }] },
        maybe: { anyOf: [{ type: "number" }, { type: "null" }] },
        node: { $ref: "#/$defs/Node" },
      },
      required: ["default"],
      $defs: { Node: { type: "object", properties: { name: { type: "string" } } } },
    };
    const copy = structuredClone(schema);
    expect(cleanGeminiSchema(schema)).toEqual({
      type: "object",
      properties: {
        default: { type: "string", nullable: true, default: "a" },
        strict: { type: "array", items: { type: "object", properties: {} } },
        kind: { enum: [3] },
        pick: { anyOf: [{ type: "string" }, { type: "integer" }] },
        maybe: { type: "number", nullable: true },
        node: { type: "object", properties: { name: { type: "string" } } },
      },
      required: ["default"],
    });
    expect(schema).toEqual(copy);
  });

  it("stops on recursive references and tolerates non-objects", () => {
    const schema = {
      type: "object",
      properties: { next: { $ref: "#/definitions/L" } },
      definitions: { L: { type: "object", properties: { next: { $ref: "#/definitions/L" } } } },
    };
    expect(() => cleanGeminiSchema(schema)).not.toThrow();
    expect(cleanGeminiSchema(null)).toBeNull();
    expect(cleanGeminiSchema("x")).toBe("x");
    expect(cleanGeminiSchema({ $ref: "#/nowhere" })).toEqual({ type: "object" });
  });
});

describe("usage and finish reasons", () => {
  it("maps usageMetadata with cached tokens and thoughts", () => {
    const u = geminiUsage({
      promptTokenCount: 100,
      candidatesTokenCount: 20,
      thoughtsTokenCount: 30,
      cachedContentTokenCount: 40,
      toolUsePromptTokenCount: 5,
      totalTokenCount: 155,
    });
    expect(u).toEqual({
      inputTokens: 105,
      outputTokens: 50,
      reasoningTokens: 30,
      cachedTokens: 40,
      totalTokens: 155,
    });
    expect(geminiUsage(null)).toBeNull();
    expect(geminiUsage({})).toBeNull();
    expect(geminiUsage({ promptTokenCount: 3 })).toEqual({
      inputTokens: 3,
      outputTokens: 0,
      reasoningTokens: 0,
      cachedTokens: 0,
      totalTokens: 3,
    });
    expect(
      openaiUsageToGemini({
        inputTokens: 100,
        outputTokens: 50,
        reasoningTokens: 30,
        cachedTokens: 40,
        totalTokens: 150,
      }),
    ).toEqual({
      promptTokenCount: 100,
      candidatesTokenCount: 20,
      thoughtsTokenCount: 30,
      cachedContentTokenCount: 40,
      totalTokenCount: 150,
    });
    expect(
      openaiUsageToGemini({
        inputTokens: 1,
        outputTokens: 2,
        reasoningTokens: 0,
        cachedTokens: 0,
        totalTokens: 3,
      }),
    ).toEqual({ promptTokenCount: 1, candidatesTokenCount: 2, totalTokenCount: 3 });
  });

  it("maps finish reasons both ways", () => {
    expect(geminiFinishToOpenAI("STOP", false)).toBe("stop");
    expect(geminiFinishToOpenAI("STOP", true)).toBe("tool_calls");
    expect(geminiFinishToOpenAI("MAX_TOKENS", true)).toBe("length");
    for (const r of ["SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII"]) {
      expect(geminiFinishToOpenAI(r, false)).toBe("content_filter");
    }
    expect(geminiFinishToOpenAI("OTHER", false)).toBe("stop");
    expect(openaiFinishToGemini("stop")).toBe("STOP");
    expect(openaiFinishToGemini("tool_calls")).toBe("STOP");
    expect(openaiFinishToGemini("length")).toBe("MAX_TOKENS");
    expect(openaiFinishToGemini("content_filter")).toBe("SAFETY");
    expect(openaiFinishToGemini(null)).toBeUndefined();
  });
});

describe("responses", () => {
  it("maps a Gemini response with thoughts, tool calls and usage to OpenAI", () => {
    const out = geminiToOpenAIResponse(
      {
        candidates: [
          {
            content: {
              role: "model",
              parts: [
                { text: "hmm", thought: true },
                { text: "Let me " },
                { text: "check." },
                { functionCall: { name: "weather", args: { city: "Paris" } } },
                { functionCall: { name: "clock", args: {}, id: "fc-1" } },
                { executableCode: { code: "x" } },
              ],
            },
            finishReason: "STOP",
            index: 0,
          },
          { content: { parts: [{ text: "cut" }] }, finishReason: "MAX_TOKENS", index: 1 },
        ],
        usageMetadata: {
          promptTokenCount: 10,
          candidatesTokenCount: 5,
          thoughtsTokenCount: 3,
          cachedContentTokenCount: 4,
          totalTokenCount: 18,
        },
      },
      { model: "my-model", id: "r1" },
    );
    expect(out).toMatchObject({
      id: "chatcmpl-r1",
      object: "chat.completion",
      model: "my-model",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: "Let me check.",
            reasoning_content: "hmm",
            tool_calls: [
              {
                id: "call_0_weather",
                type: "function",
                function: { name: "weather", arguments: '{"city":"Paris"}' },
              },
              { id: "fc-1", type: "function", function: { name: "clock", arguments: "{}" } },
            ],
          },
          finish_reason: "tool_calls",
        },
        { index: 1, message: { role: "assistant", content: "cut" }, finish_reason: "length" },
      ],
      usage: {
        prompt_tokens: 10,
        completion_tokens: 8,
        total_tokens: 18,
        prompt_tokens_details: { cached_tokens: 4 },
        completion_tokens_details: { reasoning_tokens: 3 },
      },
    });
    expect(typeof out.created).toBe("number");
  });

  it("maps a blocked prompt to content_filter", () => {
    const out = geminiToOpenAIResponse(
      { promptFeedback: { blockReason: "SAFETY" }, usageMetadata: { promptTokenCount: 3 } },
      RES,
    );
    expect(out.choices).toEqual([
      {
        index: 0,
        message: { role: "assistant", content: "" },
        logprobs: null,
        finish_reason: "content_filter",
      },
    ]);
    const safety = geminiToOpenAIResponse({ candidates: [{ finishReason: "SAFETY" }] }, RES);
    expect((safety.choices as Json[])[0]).toMatchObject({
      message: { content: "" },
      finish_reason: "content_filter",
    });
  });

  it("maps an OpenAI completion to a Gemini response", () => {
    const out = openaiToGeminiResponse(
      {
        id: "chatcmpl-x",
        choices: [
          {
            index: 0,
            message: {
              role: "assistant",
              content: "Checking.",
              reasoning_content: "think",
              tool_calls: [
                { id: "c1", type: "function", function: { name: "f", arguments: '{"a":1}' } },
              ],
            },
            finish_reason: "tool_calls",
          },
          { index: 1, message: { role: "assistant", content: "" }, finish_reason: "length" },
          { index: 2, message: { content: "no" }, finish_reason: "content_filter" },
        ],
        usage: {
          prompt_tokens: 10,
          completion_tokens: 8,
          total_tokens: 18,
          prompt_tokens_details: { cached_tokens: 4 },
          completion_tokens_details: { reasoning_tokens: 3 },
        },
      },
      RES,
    );
    expect(out).toEqual({
      candidates: [
        {
          content: {
            role: "model",
            parts: [
              { text: "think", thought: true },
              { text: "Checking." },
              { functionCall: { name: "f", args: { a: 1 } } },
            ],
          },
          finishReason: "STOP",
          index: 0,
        },
        { content: { role: "model", parts: [{ text: "" }] }, finishReason: "MAX_TOKENS", index: 1 },
        { content: { role: "model", parts: [{ text: "no" }] }, finishReason: "SAFETY", index: 2 },
      ],
      usageMetadata: {
        promptTokenCount: 10,
        candidatesTokenCount: 5,
        thoughtsTokenCount: 3,
        cachedContentTokenCount: 4,
        totalTokenCount: 18,
      },
      modelVersion: RES.model,
      responseId: RES.id,
    });
  });

  it("round-trips a response through both directions", () => {
    const gemini = {
      candidates: [
        {
          content: {
            role: "model",
            parts: [
              { text: "why", thought: true },
              { text: "Sure" },
              { functionCall: { name: "f", args: { x: [1, 2] } } },
            ],
          },
          finishReason: "STOP",
          index: 0,
        },
      ],
      usageMetadata: {
        promptTokenCount: 7,
        candidatesTokenCount: 2,
        thoughtsTokenCount: 1,
        totalTokenCount: 10,
      },
      modelVersion: RES.model,
      responseId: RES.id,
    };
    expect(openaiToGeminiResponse(geminiToOpenAIResponse(gemini, RES), RES)).toEqual(gemini);
  });
});

describe("GeminiToOpenAIStream", () => {
  const geminiChunks: unknown[] = [
    {
      candidates: [{ content: { role: "model", parts: [{ text: "plan", thought: true }] } }],
      usageMetadata: { promptTokenCount: 10, totalTokenCount: 10 },
    },
    {
      candidates: [{ content: { role: "model", parts: [{ text: "Hel" }] }, index: 0 }],
      usageMetadata: { promptTokenCount: 10, candidatesTokenCount: 1, totalTokenCount: 11 },
    },
    {
      candidates: [
        {
          content: {
            role: "model",
            parts: [
              { text: "lo" },
              { functionCall: { name: "weather", args: { city: "Paris" } } },
              { functionCall: { name: "clock", args: {} } },
            ],
          },
          finishReason: "STOP",
          index: 0,
        },
      ],
      usageMetadata: {
        promptTokenCount: 10,
        candidatesTokenCount: 6,
        thoughtsTokenCount: 4,
        cachedContentTokenCount: 2,
        totalTokenCount: 20,
      },
    },
  ];

  function run(chunks: unknown[]) {
    const t = new GeminiToOpenAIStream({ model: "m", id: "s1" });
    const out: UpstreamEvent[] = [];
    for (const c of chunks) out.push(...t.push({ data: c }));
    const finished = t.finished;
    out.push(...t.end());
    return { t, out, finished };
  }

  it("produces OpenAI chunks with role, reasoning, text, whole tool calls, finish, usage, DONE", () => {
    const { t, out, finished } = run(geminiChunks);
    expect(finished).toBe(true);
    expect(out.at(-1)).toEqual({ data: "[DONE]" });
    const chunks = dataOf(out.slice(0, -1)) as unknown as Chunk[];
    for (const c of chunks) {
      expect(c).toMatchObject({ id: "chatcmpl-s1", object: "chat.completion.chunk", model: "m" });
    }
    expect(chunks.map((c) => c.choices[0]?.delta)).toEqual([
      { role: "assistant", reasoning_content: "plan" },
      { content: "Hel" },
      { content: "lo" },
      {
        tool_calls: [
          {
            index: 0,
            id: "call_0_weather",
            type: "function",
            function: { name: "weather", arguments: '{"city":"Paris"}' },
          },
        ],
      },
      {
        tool_calls: [
          {
            index: 1,
            id: "call_1_clock",
            type: "function",
            function: { name: "clock", arguments: "{}" },
          },
        ],
      },
      {},
      undefined,
    ]);
    expect(chunks.map((c) => c.choices[0]?.finish_reason ?? null)).toEqual([
      null,
      null,
      null,
      null,
      null,
      "tool_calls",
      null,
    ]);
    const last = chunks.at(-1)!;
    expect(last.choices).toEqual([]);
    expect(last.usage).toEqual({
      prompt_tokens: 10,
      completion_tokens: 10,
      total_tokens: 20,
      prompt_tokens_details: { cached_tokens: 2 },
      completion_tokens_details: { reasoning_tokens: 4 },
    });
    expect(t.usage()).toEqual({
      inputTokens: 10,
      outputTokens: 10,
      reasoningTokens: 4,
      cachedTokens: 2,
      totalTokens: 20,
    });
  });

  it("unwraps the Cloud Code Assist envelope", () => {
    const { out, finished } = run(geminiChunks.map((c) => ({ response: c, traceId: "t" })));
    const direct = run(geminiChunks).out;
    expect(finished).toBe(true);
    const strip = (evs: UpstreamEvent[]) =>
      dataOf(evs).map((d) => (typeof d === "object" ? { ...d, created: 0 } : d));
    expect(strip(out)).toEqual(strip(direct));
  });

  it("maps MAX_TOKENS, a bare finish, a blocked prompt, and is unfinished without a reason", () => {
    const len = run([
      { candidates: [{ content: { parts: [{ text: "a" }] }, finishReason: "MAX_TOKENS" }] },
    ]);
    expect((dataOf(len.out) as unknown as Chunk[])[1]?.choices[0]?.finish_reason).toBe("length");
    expect(len.out.at(-1)).toEqual({ data: "[DONE]" });

    const bare = run([{ candidates: [{ finishReason: "STOP" }] }]);
    const bareChunks = dataOf(bare.out.slice(0, -1)) as unknown as Chunk[];
    expect(bareChunks.map((c) => c.choices[0])).toEqual([
      { index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null },
      { index: 0, delta: {}, logprobs: null, finish_reason: "stop" },
    ]);

    const blocked = run([{ promptFeedback: { blockReason: "SAFETY" } }]);
    expect(blocked.finished).toBe(true);
    expect((dataOf(blocked.out) as unknown as Chunk[])[1]?.choices[0]?.finish_reason).toBe(
      "content_filter",
    );

    const t = new GeminiToOpenAIStream(RES);
    t.push({ data: { candidates: [{ content: { parts: [{ text: "x" }] } }] } });
    t.push({ data: "garbage" });
    t.push({ data: null });
    expect(t.finished).toBe(false);
    expect(t.usage()).toBeNull();
    expect(t.end()).toEqual([{ data: "[DONE]" }]);
  });
});

describe("OpenAIToGeminiStream", () => {
  const base = { id: "chatcmpl-1", object: "chat.completion.chunk", created: 1, model: "gpt" };
  const chunk = (delta: Json, finish: string | null = null) => ({
    ...base,
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  });

  it("passes text through, accumulates tool calls and emits them with finish and usage on DONE", () => {
    const t = new OpenAIToGeminiStream({ model: "gemini-x", id: "r9" });
    const out: UpstreamEvent[] = [];
    const feed = (data: unknown) => out.push(...t.push({ data }));
    feed(chunk({ role: "assistant", content: "" }));
    feed(chunk({ reasoning_content: "think" }));
    feed(chunk({ content: "Hi" }));
    feed(
      chunk({
        tool_calls: [
          { index: 0, id: "c0", type: "function", function: { name: "weather", arguments: "" } },
        ],
      }),
    );
    feed(chunk({ tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] }));
    feed(chunk({ tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] }));
    feed(
      chunk({
        tool_calls: [{ index: 1, id: "c1", function: { name: "clock", arguments: "{}" } }],
      }),
    );
    const beforeFinish = out.length;
    feed(chunk({}, "tool_calls"));
    expect(out.length).toBe(beforeFinish);
    expect(t.finished).toBe(true);
    feed({
      ...base,
      choices: [],
      usage: {
        prompt_tokens: 10,
        completion_tokens: 8,
        total_tokens: 18,
        completion_tokens_details: { reasoning_tokens: 3 },
      },
    });
    feed("[DONE]");
    expect(t.end()).toEqual([]);
    expect(dataOf(out)).toEqual([
      {
        candidates: [
          { content: { role: "model", parts: [{ text: "think", thought: true }] }, index: 0 },
        ],
        modelVersion: "gemini-x",
        responseId: "r9",
      },
      {
        candidates: [{ content: { role: "model", parts: [{ text: "Hi" }] }, index: 0 }],
        modelVersion: "gemini-x",
        responseId: "r9",
      },
      {
        candidates: [
          {
            content: {
              role: "model",
              parts: [
                { functionCall: { name: "weather", args: { city: "Paris" } } },
                { functionCall: { name: "clock", args: {} } },
              ],
            },
            finishReason: "STOP",
            index: 0,
          },
        ],
        usageMetadata: {
          promptTokenCount: 10,
          candidatesTokenCount: 5,
          thoughtsTokenCount: 3,
          totalTokenCount: 18,
        },
        modelVersion: "gemini-x",
        responseId: "r9",
      },
    ]);
    expect(t.usage()).toMatchObject({ inputTokens: 10, outputTokens: 8, reasoningTokens: 3 });
  });

  it("flushes the held finish at end() when no [DONE] arrives", () => {
    const t = new OpenAIToGeminiStream(RES);
    expect(t.push({ data: chunk({ content: "a" }) })).toHaveLength(1);
    expect(t.push({ data: chunk({}, "length") })).toEqual([]);
    expect(t.finished).toBe(true);
    expect(dataOf(t.end())).toEqual([
      {
        candidates: [
          {
            content: { role: "model", parts: [{ text: "" }] },
            finishReason: "MAX_TOKENS",
            index: 0,
          },
        ],
        modelVersion: RES.model,
        responseId: RES.id,
      },
    ]);
    expect(t.end()).toEqual([]);
    expect(t.push({ data: "[DONE]" })).toEqual([]);
  });

  it("composes with GeminiToOpenAIStream into equivalent Gemini content", () => {
    const upstream: unknown[] = [
      { candidates: [{ content: { role: "model", parts: [{ text: "x", thought: true }] } }] },
      { candidates: [{ content: { role: "model", parts: [{ text: "Hello " }] } }] },
      { candidates: [{ content: { role: "model", parts: [{ text: "world" }] } }] },
      {
        candidates: [
          {
            content: {
              role: "model",
              parts: [{ functionCall: { name: "f", args: { a: { b: [1, "2"] } } } }],
            },
            finishReason: "STOP",
          },
        ],
        usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 3, totalTokenCount: 7 },
      },
    ];
    const a = new GeminiToOpenAIStream({ model: "m", id: "1" });
    const b = new OpenAIToGeminiStream({ model: "m", id: "1" });
    const out: UpstreamEvent[] = [];
    for (const data of upstream) for (const ev of a.push({ data })) out.push(...b.push(ev));
    expect(a.finished).toBe(true);
    for (const ev of a.end()) out.push(...b.push(ev));
    expect(b.finished).toBe(true);
    out.push(...b.end());

    const parts = dataOf(out).flatMap((d) =>
      arrOf(d.candidates).flatMap((c) =>
        arrOf((c as { content: { parts: unknown } }).content.parts),
      ),
    ) as Json[];
    const text = parts.filter((p) => typeof p.text === "string" && !p.thought).map((p) => p.text);
    expect(text.join("")).toBe("Hello world");
    expect(parts.filter((p) => p.thought).map((p) => p.text)).toEqual(["x"]);
    expect(parts.filter((p) => p.functionCall).map((p) => p.functionCall)).toEqual([
      { name: "f", args: { a: { b: [1, "2"] } } },
    ]);
    const last = dataOf(out).at(-1)!;
    expect(arrOf(last.candidates)[0]).toMatchObject({ finishReason: "STOP" });
    expect(last.usageMetadata).toEqual({
      promptTokenCount: 4,
      candidatesTokenCount: 3,
      totalTokenCount: 7,
    });
  });
});

function arrOf(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}
