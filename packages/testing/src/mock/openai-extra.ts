/**
 * The OpenAI routes besides plain chat completions: chat completions with tools, legacy text
 * completions, embeddings and the Responses API.
 *
 * @module
 */
import {
  answerJson,
  contentText,
  countMockPromptTokens,
  isObject,
  type JsonObject,
  type MockCall,
  type MockEnv,
  openAIAuthDenied,
  openAIErrorBody,
  openAIUsageJson,
  sendJson,
  sseData,
  sseEvent,
  tokensOfChars,
  writeSse,
} from "./shared.js";
import { type MockAnswer, mockAnswer, openAIChatToolTurn, responsesToolTurn } from "./tools.js";

/** A request body whose `model` is a non-empty string (checked before the route runs). */
type ModelRequest = JsonObject & { model: string };

export const COMPLETIONS_PATH = "/v1/completions";
export const EMBEDDINGS_PATH = "/v1/embeddings";
export const RESPONSES_PATH = "/v1/responses";

/** Number of floats of a mock embedding unless the request asks for `dimensions`. */
export const MOCK_EMBEDDING_DIMENSIONS = 8;

const PARSE_ERROR =
  "We could not parse the JSON body of your request. (HINT: This likely means you aren't " +
  "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was " +
  "sent was not valid JSON.)";

/** Whether a chat request takes the tool-aware path (tools declared or a tool result last). */
export function chatNeedsTools(chat: { tools?: unknown; messages?: unknown }): boolean {
  if (Array.isArray(chat.tools) && chat.tools.length > 0) return true;
  const messages = chat.messages;
  if (!Array.isArray(messages) || messages.length === 0) return false;
  return (messages[messages.length - 1] as { role?: unknown } | null)?.role === "tool";
}

/** `POST /v1/chat/completions` with tools declared or a tool result as the last message. */
export async function handleChatWithTools(
  env: MockEnv,
  call: MockCall,
  chat: ModelRequest,
): Promise<void> {
  const answer = mockAnswer(env, openAIChatToolTurn(chat));
  const promptTokens = countMockPromptTokens(chat.messages);
  const usage = openAIUsageJson(env, chat, promptTokens, answer.tokens);
  const n = env.nextId();
  const id = `chatcmpl-mock${n}`;
  const callId = `call_mock${n}`;
  const created = Math.floor(Date.now() / 1000);
  const model = chat.model;
  const finish = answer.kind === "tool" ? "tool_calls" : "stop";

  if (chat.stream !== true) {
    const message =
      answer.kind === "tool"
        ? {
            role: "assistant",
            content: null,
            tool_calls: [
              {
                id: callId,
                type: "function",
                function: { name: answer.name, arguments: answer.json },
              },
            ],
            refusal: null,
          }
        : { role: "assistant", content: answer.text, refusal: null };
    const head = { id, object: "chat.completion", created, model };
    const choices = [{ index: 0, message, logprobs: null, finish_reason: finish }];
    const json = JSON.stringify({ ...head, choices }).slice(0, -1);
    answerJson(call, `${json},"usage":${usage}}`);
    return;
  }

  const so = chat.stream_options;
  const includeUsage = isObject(so) && so.include_usage === true;
  const chunk = (delta: JsonObject, finishReason: string | null) =>
    sseData({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }],
      ...(includeUsage ? { usage: null } : {}),
    });
  const events: string[] = [];
  if (answer.kind === "tool") {
    events.push(
      chunk(
        {
          role: "assistant",
          content: null,
          tool_calls: [
            {
              index: 0,
              id: callId,
              type: "function",
              function: { name: answer.name, arguments: "" },
            },
          ],
        },
        null,
      ),
    );
    for (const fragment of answer.fragments) {
      events.push(chunk({ tool_calls: [{ index: 0, function: { arguments: fragment } }] }, null));
    }
  } else {
    answer.chunks.forEach((text, i) => {
      events.push(chunk(i === 0 ? { role: "assistant", content: text } : { content: text }, null));
    });
  }
  const content = events.length;
  events.push(chunk({}, finish));
  if (includeUsage) {
    const head = JSON.stringify({
      id,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [],
    });
    events.push(`data: ${head.slice(0, -1)},"usage":${usage}}\n\n`);
  }
  events.push("data: [DONE]\n\n");
  await writeSse(env, call, events, (i) => i > 0 && i <= content);
}

/** `POST /v1/completions`, `/v1/embeddings` and `/v1/responses`; false for other routes. */
export async function handleOpenAIExtra(env: MockEnv, call: MockCall): Promise<boolean> {
  const { pathname } = call;
  if (
    call.method !== "POST" ||
    (pathname !== COMPLETIONS_PATH && pathname !== EMBEDDINGS_PATH && pathname !== RESPONSES_PATH)
  ) {
    return false;
  }
  const denied = openAIAuthDenied(env, call.req.headers.authorization);
  if (denied) {
    sendJson(call.res, 401, openAIErrorBody(401, denied, "invalid_api_key"), call.extraHeaders);
    return true;
  }
  const body = call.body;
  if (call.malformed || !isObject(body)) {
    sendJson(call.res, 400, openAIErrorBody(400, PARSE_ERROR), call.extraHeaders);
    return true;
  }
  if (typeof body.model !== "string" || body.model === "") {
    const error = openAIErrorBody(400, "you must provide a model parameter", null, "model");
    sendJson(call.res, 400, error, call.extraHeaders);
    return true;
  }
  const request = body as ModelRequest;
  if (pathname === COMPLETIONS_PATH) await completions(env, call, request);
  else if (pathname === EMBEDDINGS_PATH) embeddings(call, request);
  else await responses(env, call, request);
  return true;
}

async function completions(env: MockEnv, call: MockCall, body: ModelRequest): Promise<void> {
  const prompt = body.prompt;
  let chars = 0;
  if (typeof prompt === "string") chars = prompt.length;
  else if (Array.isArray(prompt)) {
    for (const p of prompt) if (typeof p === "string") chars += p.length;
  }
  const promptTokens = tokensOfChars(chars);
  const chunks = env.replyChunks;
  const usage = openAIUsageJson(env, body, promptTokens, chunks.length);
  const id = `cmpl-mock${env.nextId()}`;
  const created = Math.floor(Date.now() / 1000);
  const head = { id, object: "text_completion", created, model: body.model };

  if (body.stream !== true) {
    const choices = [{ text: chunks.join(""), index: 0, logprobs: null, finish_reason: "stop" }];
    answerJson(call, `${JSON.stringify({ ...head, choices }).slice(0, -1)},"usage":${usage}}`);
    return;
  }
  const so = body.stream_options;
  const includeUsage = isObject(so) && so.include_usage === true;
  const chunk = (text: string, finish: string | null) =>
    sseData({
      ...head,
      choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
      ...(includeUsage ? { usage: null } : {}),
    });
  const events = chunks.map((text) => chunk(text, null));
  events.push(chunk("", "stop"));
  if (includeUsage) {
    events.push(
      `data: ${JSON.stringify({ ...head, choices: [] }).slice(0, -1)},"usage":${usage}}\n\n`,
    );
  }
  events.push("data: [DONE]\n\n");
  await writeSse(env, call, events, (i) => i > 0 && i <= chunks.length);
}

function embeddings(call: MockCall, body: ModelRequest): void {
  const input = body.input;
  const items: unknown[] =
    typeof input === "string" || (Array.isArray(input) && typeof input[0] === "number")
      ? [input]
      : Array.isArray(input)
        ? input
        : [];
  if (items.length === 0 || items.some((i) => typeof i !== "string" && !Array.isArray(i))) {
    const error = openAIErrorBody(400, "'input' is a required property", null, "input");
    sendJson(call.res, 400, error, call.extraHeaders);
    return;
  }
  const dims =
    typeof body.dimensions === "number" && Number.isInteger(body.dimensions) && body.dimensions > 0
      ? Math.min(body.dimensions, 4096)
      : MOCK_EMBEDDING_DIMENSIONS;
  const base64 = body.encoding_format === "base64";
  let chars = 0;
  let tokenIds = 0;
  const data = items.map((item, index) => {
    const text = typeof item === "string" ? item : JSON.stringify(item);
    if (typeof item === "string") chars += item.length;
    else tokenIds += (item as unknown[]).length;
    const vector = mockEmbedding(text, dims);
    const embedding = base64
      ? Buffer.from(new Float32Array(vector).buffer).toString("base64")
      : vector;
    return { object: "embedding", index, embedding };
  });
  const promptTokens = tokensOfChars(chars) + tokenIds;
  answerJson(call, {
    object: "list",
    data,
    model: body.model,
    usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
  });
}

/**
 * The deterministic embedding a mock upstream returns for `text`: `dimensions` floats derived from
 * an FNV-1a hash of the text, L2-normalised and rounded to 6 decimals.
 */
export function mockEmbedding(text: string, dimensions = MOCK_EMBEDDING_DIMENSIONS): number[] {
  const raw: number[] = [];
  for (let d = 0; d < dimensions; d++) {
    let h = 0x811c9dc5 ^ Math.imul(d + 1, 0x9e3779b1);
    for (let i = 0; i < text.length; i++) {
      h ^= text.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    h ^= h >>> 15;
    h = Math.imul(h, 0x2c1b3c6d);
    h ^= h >>> 12;
    raw.push(((h >>> 0) / 0xffffffff) * 2 - 1);
  }
  const norm = Math.sqrt(raw.reduce((sum, v) => sum + v * v, 0)) || 1;
  return raw.map((v) => Math.round((v / norm) * 1e6) / 1e6);
}

/** Characters of text in a Responses request: `instructions` and every input item's text. */
function responsesChars(body: JsonObject): number {
  let chars = typeof body.instructions === "string" ? body.instructions.length : 0;
  const input = body.input;
  if (typeof input === "string") return chars + input.length;
  if (!Array.isArray(input)) return chars;
  for (const item of input) {
    if (!isObject(item)) continue;
    if (item.type === "function_call_output") chars += contentText(item.output).length;
    else chars += contentText(item.content).length;
  }
  return chars;
}

async function responses(env: MockEnv, call: MockCall, body: ModelRequest): Promise<void> {
  const answer: MockAnswer = mockAnswer(env, responsesToolTurn(body));
  const inputTokens = tokensOfChars(responsesChars(body));
  const n = env.nextId();
  const id = `resp_mock${n}`;
  const createdAt = Math.floor(Date.now() / 1000);
  const usage = {
    input_tokens: inputTokens,
    output_tokens: answer.tokens,
    total_tokens: inputTokens + answer.tokens,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens_details: { reasoning_tokens: 0 },
  };
  const itemId = answer.kind === "tool" ? `fc_mock${n}` : `msg_mock${n}`;
  const callId = `call_mock${n}`;
  const part = {
    type: "output_text",
    text: answer.kind === "text" ? answer.text : "",
    annotations: [],
  };
  const item =
    answer.kind === "tool"
      ? {
          type: "function_call",
          id: itemId,
          call_id: callId,
          name: answer.name,
          arguments: answer.json,
          status: "completed",
        }
      : { type: "message", id: itemId, status: "completed", role: "assistant", content: [part] };
  const response = (status: string, output: unknown[], u: unknown) => ({
    id,
    object: "response",
    created_at: createdAt,
    status,
    model: body.model,
    output,
    usage: u,
  });

  if (body.stream !== true) {
    answerJson(call, response("completed", [item], usage));
    return;
  }
  let seq = 0;
  const ev = (type: string, data: JsonObject) =>
    sseEvent(type, { type, sequence_number: seq++, ...data });
  const at = { item_id: itemId, output_index: 0 };
  const events = [ev("response.created", { response: response("in_progress", [], null) })];
  let contentEvents: number;
  if (answer.kind === "tool") {
    const added = { ...item, arguments: "", status: "in_progress" };
    events.push(ev("response.output_item.added", { output_index: 0, item: added }));
    for (const delta of answer.fragments) {
      events.push(ev("response.function_call_arguments.delta", { ...at, delta }));
    }
    contentEvents = answer.fragments.length;
    events.push(ev("response.function_call_arguments.done", { ...at, arguments: answer.json }));
  } else {
    const added = {
      type: "message",
      id: itemId,
      status: "in_progress",
      role: "assistant",
      content: [],
    };
    events.push(ev("response.output_item.added", { output_index: 0, item: added }));
    const emptyPart = { ...part, text: "" };
    events.push(ev("response.content_part.added", { ...at, content_index: 0, part: emptyPart }));
    for (const delta of answer.chunks) {
      events.push(ev("response.output_text.delta", { ...at, content_index: 0, delta }));
    }
    contentEvents = answer.chunks.length;
    events.push(ev("response.output_text.done", { ...at, content_index: 0, text: answer.text }));
    events.push(ev("response.content_part.done", { ...at, content_index: 0, part }));
  }
  const firstContent = answer.kind === "tool" ? 2 : 3;
  events.push(ev("response.output_item.done", { output_index: 0, item }));
  events.push(ev("response.completed", { response: response("completed", [item], usage) }));
  await writeSse(env, call, events, (i) => i > firstContent && i <= firstContent + contentEvents);
}
