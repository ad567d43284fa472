/**
 * What a mock upstream answers to a chat-like request, depending on its tools: a call of the first
 * declared tool, the echo of a tool result, or the configured reply.
 *
 * @module
 */
import { contentText, isObject, type MockEnv, splitMockReply } from "./shared.js";

/** The default arguments of a mock tool call (the `toolArguments` option overrides them). */
export const DEFAULT_MOCK_TOOL_ARGUMENTS: Readonly<Record<string, unknown>> = Object.freeze({
  query: "mock",
});

/** Completion tokens of a mock tool call: 1 for the call plus one per arguments fragment. */
export const MOCK_TOOL_CALL_TOKENS = 3;

/** The tool-related facts of a request, whatever its format. */
export interface ToolTurn {
  /** The tool the mock calls (the first declared one, or the one `tool_choice` forces), or null. */
  toolName: string | null;
  /** The text of the tool result(s) in the last turn, or null when the last turn is not one. */
  toolResult: string | null;
}

/** The mock's answer to a chat-like request. */
export type MockAnswer =
  | {
      kind: "text";
      /** The reply cut into stream chunks (one word each). */
      chunks: readonly string[];
      text: string;
      tokens: number;
    }
  | {
      kind: "tool";
      name: string;
      args: Record<string, unknown>;
      /** `JSON.stringify(args)`. */
      json: string;
      /** `json` cut in the middle, streamed as two fragments. */
      fragments: readonly [string, string];
      tokens: number;
    };

/**
 * The answer to a request: the echo `Tool result: <text>` when its last turn is a tool result,
 * otherwise a call of `toolName` when there is one, otherwise the configured reply.
 */
export function mockAnswer(env: MockEnv, turn: ToolTurn): MockAnswer {
  if (turn.toolResult !== null)
    return textAnswer(splitMockReply(`Tool result: ${turn.toolResult}`));
  if (turn.toolName !== null) {
    const json = JSON.stringify(env.toolArguments);
    const half = Math.floor(json.length / 2);
    return {
      kind: "tool",
      name: turn.toolName,
      args: env.toolArguments,
      json,
      fragments: [json.slice(0, half), json.slice(half)],
      tokens: MOCK_TOOL_CALL_TOKENS,
    };
  }
  return textAnswer(env.replyChunks);
}

function textAnswer(chunks: readonly string[]): MockAnswer {
  return { kind: "text", chunks, text: chunks.join(""), tokens: chunks.length };
}

/** OpenAI Chat Completions: `tools[].function.name`, `tool_choice`, last message role `tool`. */
export function openAIChatToolTurn(body: Record<string, unknown>): ToolTurn {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const last: unknown = messages[messages.length - 1];
  const toolResult = isObject(last) && last.role === "tool" ? contentText(last.content) : null;
  let toolName: string | null = null;
  if (Array.isArray(body.tools)) {
    for (const tool of body.tools) {
      const name = isObject(tool) && isObject(tool.function) ? tool.function.name : undefined;
      if (typeof name === "string" && name !== "") {
        toolName = name;
        break;
      }
    }
  }
  const choice = body.tool_choice;
  if (toolName !== null && choice === "none") toolName = null;
  else if (toolName !== null && isObject(choice) && isObject(choice.function)) {
    if (typeof choice.function.name === "string") toolName = choice.function.name;
  }
  return { toolName, toolResult };
}

/** OpenAI Responses: flat `tools[]` of type `function`, last input item `function_call_output`. */
export function responsesToolTurn(body: Record<string, unknown>): ToolTurn {
  const input = Array.isArray(body.input) ? body.input : [];
  const last: unknown = input[input.length - 1];
  const toolResult =
    isObject(last) && last.type === "function_call_output" ? contentText(last.output) : null;
  let toolName: string | null = null;
  if (Array.isArray(body.tools)) {
    for (const tool of body.tools) {
      if (isObject(tool) && tool.type === "function" && typeof tool.name === "string") {
        toolName = tool.name;
        break;
      }
    }
  }
  const choice = body.tool_choice;
  if (toolName !== null && choice === "none") toolName = null;
  else if (toolName !== null && isObject(choice) && choice.type === "function") {
    if (typeof choice.name === "string") toolName = choice.name;
  }
  return { toolName, toolResult };
}

/** Anthropic Messages: `tools[].name`, `tool_choice`, last user message with `tool_result` blocks. */
export function anthropicToolTurn(body: Record<string, unknown>): ToolTurn {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  const last: unknown = messages[messages.length - 1];
  let toolResult: string | null = null;
  if (isObject(last) && last.role === "user" && Array.isArray(last.content)) {
    const results = last.content.filter((b) => isObject(b) && b.type === "tool_result");
    if (results.length > 0) {
      toolResult = results.map((b) => contentText((b as { content?: unknown }).content)).join("\n");
    }
  }
  let toolName: string | null = null;
  if (Array.isArray(body.tools)) {
    for (const tool of body.tools) {
      if (isObject(tool) && typeof tool.name === "string" && tool.name !== "") {
        toolName = tool.name;
        break;
      }
    }
  }
  const choice = body.tool_choice;
  if (toolName !== null && isObject(choice)) {
    if (choice.type === "none") toolName = null;
    else if (choice.type === "tool" && typeof choice.name === "string") toolName = choice.name;
  }
  return { toolName, toolResult };
}

/**
 * Gemini `GenerateContentRequest`: `tools[].functionDeclarations[].name`,
 * `toolConfig.functionCallingConfig`, last content with `functionResponse` parts.
 */
export function geminiToolTurn(request: Record<string, unknown>): ToolTurn {
  const contents = Array.isArray(request.contents) ? request.contents : [];
  const last: unknown = contents[contents.length - 1];
  let toolResult: string | null = null;
  if (isObject(last) && last.role !== "model" && Array.isArray(last.parts)) {
    const responses = last.parts.filter((p) => isObject(p) && isObject(p.functionResponse));
    if (responses.length > 0) {
      toolResult = responses
        .map((p) =>
          JSON.stringify(
            (p as { functionResponse: { response?: unknown } }).functionResponse.response ?? null,
          ),
        )
        .join("\n");
    }
  }
  let toolName: string | null = null;
  if (Array.isArray(request.tools)) {
    outer: for (const tool of request.tools) {
      const declarations = isObject(tool) ? tool.functionDeclarations : undefined;
      if (!Array.isArray(declarations)) continue;
      for (const declaration of declarations) {
        if (isObject(declaration) && typeof declaration.name === "string") {
          toolName = declaration.name;
          break outer;
        }
      }
    }
  }
  const toolConfig = request.toolConfig;
  const config = isObject(toolConfig) ? toolConfig.functionCallingConfig : undefined;
  if (toolName !== null && isObject(config)) {
    const allowed = config.allowedFunctionNames;
    if (config.mode === "NONE") toolName = null;
    else if (Array.isArray(allowed) && typeof allowed[0] === "string") toolName = allowed[0];
  }
  return { toolName, toolResult };
}
