/**
 * The Anthropic Messages routes of the mock upstream: `POST /v1/messages` (JSON or the named SSE
 * event sequence) and `POST /v1/messages/count_tokens`, with Anthropic's auth and error shapes.
 *
 * @module
 */
import {
  answerJson,
  bearerToken,
  contentText,
  headerValue,
  isObject,
  type JsonObject,
  type MockCall,
  type MockEnv,
  sendJson,
  sseEvent,
  tokensOfChars,
  writeSse,
} from "./shared.js";
import { anthropicToolTurn, mockAnswer } from "./tools.js";

export const MESSAGES_PATH = "/v1/messages";
export const COUNT_TOKENS_PATH = "/v1/messages/count_tokens";

/** The body of an Anthropic error response. */
export interface AnthropicErrorBody {
  type: "error";
  error: { type: string; message: string };
}

/** Whether a path belongs to the Anthropic routes (errors there use Anthropic's shape). */
export function isAnthropicPath(pathname: string): boolean {
  return pathname === MESSAGES_PATH || pathname.startsWith(`${MESSAGES_PATH}/`);
}

/** The Anthropic error body for `status` (`type` from the status, as the real API maps them). */
export function anthropicErrorBody(status: number, message: string): AnthropicErrorBody {
  let type = "api_error";
  if (status === 400) type = "invalid_request_error";
  else if (status === 401) type = "authentication_error";
  else if (status === 403) type = "permission_error";
  else if (status === 404) type = "not_found_error";
  else if (status === 413) type = "request_too_large";
  else if (status === 429) type = "rate_limit_error";
  else if (status === 529) type = "overloaded_error";
  else if (status < 500) type = "invalid_request_error";
  return { type: "error", error: { type, message } };
}

function fail(call: MockCall, status: number, message: string): void {
  sendJson(call.res, status, anthropicErrorBody(status, message), call.extraHeaders);
}

/** The prompt token count of a Messages request: ceil(characters of system + messages / 4). */
export function countAnthropicPromptTokens(body: JsonObject): number {
  let chars = contentText(body.system).length;
  if (Array.isArray(body.messages)) {
    for (const message of body.messages) {
      const content = isObject(message) ? message.content : undefined;
      if (typeof content === "string") {
        chars += content.length;
        continue;
      }
      if (!Array.isArray(content)) continue;
      for (const block of content) {
        if (!isObject(block)) continue;
        if (typeof block.text === "string") chars += block.text.length;
        else if (block.type === "tool_result") chars += contentText(block.content).length;
      }
    }
  }
  return tokensOfChars(chars);
}

/** Handles every path under `/v1/messages`. */
export async function handleAnthropic(env: MockEnv, call: MockCall): Promise<void> {
  const { pathname } = call;
  const isMessages = pathname === MESSAGES_PATH;
  if (call.method !== "POST" || (!isMessages && pathname !== COUNT_TOKENS_PATH)) {
    fail(call, 404, "Not Found");
    return;
  }
  if (env.authRequired) {
    const token = headerValue(call.req, "x-api-key") ?? bearerToken(call.req.headers.authorization);
    if (token === undefined) {
      fail(call, 401, "x-api-key header is required");
      return;
    }
    if (!env.accepts(token)) {
      fail(call, 401, "invalid x-api-key");
      return;
    }
  }
  const body = call.body;
  if (call.malformed || !isObject(body)) {
    fail(call, 400, "There was an error parsing the body of your request as JSON.");
    return;
  }
  if (headerValue(call.req, "anthropic-version") === undefined) {
    fail(call, 400, "anthropic-version: header is required");
    return;
  }
  if (typeof body.model !== "string" || body.model === "") {
    fail(call, 400, "model: Field required");
    return;
  }
  if (!Array.isArray(body.messages)) {
    fail(call, 400, "messages: Field required");
    return;
  }
  const inputTokens = countAnthropicPromptTokens(body);
  if (!isMessages) {
    answerJson(call, { input_tokens: inputTokens });
    return;
  }
  if (typeof body.max_tokens !== "number") {
    fail(call, 400, "max_tokens: Field required");
    return;
  }

  const answer = mockAnswer(env, anthropicToolTurn(body));
  const n = env.nextId();
  const id = `msg_mock${n}`;
  const toolId = `toolu_mock${n}`;
  const stopReason = answer.kind === "tool" ? "tool_use" : "end_turn";
  const usage = (output: number) => ({
    input_tokens: inputTokens,
    output_tokens: output,
    cache_creation_input_tokens: 0,
    cache_read_input_tokens: 0,
  });
  const message = (content: unknown[], stop: string | null, output: number) => ({
    id,
    type: "message",
    role: "assistant",
    model: body.model,
    content,
    stop_reason: stop,
    stop_sequence: null,
    usage: usage(output),
  });

  if (body.stream !== true) {
    const block =
      answer.kind === "tool"
        ? { type: "tool_use", id: toolId, name: answer.name, input: answer.args }
        : { type: "text", text: answer.text };
    answerJson(call, message([block], stopReason, answer.tokens));
    return;
  }

  const events = [
    sseEvent("message_start", { type: "message_start", message: message([], null, 1) }),
  ];
  const startBlock =
    answer.kind === "tool"
      ? { type: "tool_use", id: toolId, name: answer.name, input: {} }
      : { type: "text", text: "" };
  events.push(
    sseEvent("content_block_start", {
      type: "content_block_start",
      index: 0,
      content_block: startBlock,
    }),
    sseEvent("ping", { type: "ping" }),
  );
  const deltas =
    answer.kind === "tool"
      ? answer.fragments.map((partial_json) => ({ type: "input_json_delta", partial_json }))
      : answer.chunks.map((text) => ({ type: "text_delta", text }));
  for (const delta of deltas) {
    events.push(sseEvent("content_block_delta", { type: "content_block_delta", index: 0, delta }));
  }
  events.push(
    sseEvent("content_block_stop", { type: "content_block_stop", index: 0 }),
    sseEvent("message_delta", {
      type: "message_delta",
      delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { output_tokens: answer.tokens },
    }),
    sseEvent("message_stop", { type: "message_stop" }),
  );
  // Delays between the deltas and before content_block_stop.
  await writeSse(env, call, events, (i) => i > 3 && i <= 3 + deltas.length);
}
