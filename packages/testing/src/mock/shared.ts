/**
 * Helpers shared by the wire formats of the mock upstream: HTTP answers, SSE streaming with the
 * chunk delay and `resetAfterChunks` semantics, auth, token counting.
 *
 * @module
 */
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from "node:http";

/** A JSON object. */
export type JsonObject = Record<string, unknown>;

/** The body of an OpenAI-style error response. */
export interface OpenAIErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null };
}

/** The default token counts of a mock chat completion, passed to `MockUpstreamOptions.usage`. */
export interface MockUsageCounts {
  prompt_tokens: number;
  completion_tokens: number;
}

/** What the format handlers need from the server they run in (one per mock upstream). */
export interface MockEnv {
  /** The reply chunks ({@link splitMockReply} of the `reply` option). */
  readonly replyChunks: readonly string[];
  /** The arguments of a mock tool call. */
  readonly toolArguments: Record<string, unknown>;
  /** The `models` option. */
  readonly models: readonly string[];
  /** The `usage` option (OpenAI chat and legacy completions only). */
  readonly usage:
    | ((request: JsonObject, defaults: MockUsageCounts) => Record<string, unknown>)
    | undefined;
  /** Whether requests need a key (`apiKeys` or `authorize` given). */
  readonly authRequired: boolean;
  /** Whether a key or bearer token is accepted. */
  accepts(token: string): boolean;
  /** A fresh number for ids. */
  nextId(): number;
  /** Resolves after `ms`, or early (with false) when the response is closed or the mock closes. */
  wait(ms: number, res: ServerResponse): Promise<boolean>;
}

/** One routed request. */
export interface MockCall {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly method: string;
  /** The path without the query string. */
  readonly pathname: string;
  readonly query: URLSearchParams;
  /** The parsed JSON body, or null. */
  readonly body: unknown;
  /** True when the body was not JSON. */
  readonly malformed: boolean;
  /** The `resetAfterChunks` of the fault this request took, if any. */
  readonly resetAfter: number | undefined;
  /** The `headers` of the fault this request took, if any. */
  readonly extraHeaders: Record<string, string> | undefined;
  /** Delay between SSE chunks for this request (option or `x-mock-chunk-delay-ms`). */
  readonly chunkDelay: number;
}

/**
 * Cut a reply into the chunks a mock upstream streams: one word per chunk, each word with the
 * whitespace before it (`"Hello world"` → `["Hello", " world"]`), trailing whitespace kept on the
 * last chunk; a reply without any word is a single chunk. The completion token count of a mock
 * reply is the length of this array.
 */
export function splitMockReply(reply: string): string[] {
  const words = reply.match(/\s*\S+/g);
  if (!words) return [reply];
  const rest = reply.slice(words.join("").length);
  if (rest) words[words.length - 1] += rest;
  return words;
}

/**
 * The prompt token count a mock upstream reports for a chat request:
 * `ceil(total characters of all message contents / 4)`. String contents count whole; array
 * contents count the `text` of their parts; other contents count 0.
 */
export function countMockPromptTokens(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  let chars = 0;
  for (const message of messages) {
    const content = (message as { content?: unknown } | null)?.content;
    if (typeof content === "string") chars += content.length;
    else if (Array.isArray(content)) {
      for (const part of content) {
        const text = (part as { text?: unknown } | null)?.text;
        if (typeof text === "string") chars += text.length;
      }
    }
  }
  return Math.ceil(chars / 4);
}

/** The OpenAI error body a mock upstream sends for `status`. */
export function openAIErrorBody(
  status: number,
  message: string,
  code: string | null = null,
  param: string | null = null,
): OpenAIErrorBody {
  let type = "invalid_request_error";
  if (status === 429) type = "requests";
  else if (status === 403) type = "permission_error";
  else if (status >= 500) type = "server_error";
  return { error: { message, type, param, code } };
}

/** A custom usage object as JSON, with `total_tokens` filled in when missing. */
export function customUsage(u: Record<string, unknown>): string {
  if (u.total_tokens !== undefined) return JSON.stringify(u);
  const n = (v: unknown) => (typeof v === "number" ? v : 0);
  return JSON.stringify({ ...u, total_tokens: n(u.prompt_tokens) + n(u.completion_tokens) });
}

/** The OpenAI `usage` JSON of a chat or text completion: the `usage` option's or the default. */
export function openAIUsageJson(
  env: MockEnv,
  request: JsonObject,
  promptTokens: number,
  completionTokens: number,
): string {
  if (env.usage) {
    return customUsage(
      env.usage(request, { prompt_tokens: promptTokens, completion_tokens: completionTokens }),
    );
  }
  return (
    `{"prompt_tokens":${promptTokens},"completion_tokens":${completionTokens},` +
    `"total_tokens":${promptTokens + completionTokens}}`
  );
}

export const SSE_HEADERS: OutgoingHttpHeaders = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
};

export function withExtra(
  base: OutgoingHttpHeaders,
  extra: Record<string, string> | undefined,
): OutgoingHttpHeaders {
  return extra ? { ...base, ...extra } : base;
}

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  extraHeaders?: Record<string, string>,
): void {
  if (res.destroyed) return;
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(
    status,
    withExtra(
      { "content-type": "application/json", "content-length": Buffer.byteLength(text) },
      extraHeaders,
    ),
  );
  res.end(text);
}

/**
 * Answer a non-streaming request with JSON, or reset the connection instead when the request
 * took a `resetAfterChunks` fault.
 */
export function answerJson(call: MockCall, body: unknown): void {
  if (call.resetAfter !== undefined) resetSocket(call.res);
  else sendJson(call.res, 200, body, call.extraHeaders);
}

/** One SSE event with only a `data:` line (OpenAI). */
export function sseData(data: unknown): string {
  return `data: ${JSON.stringify(data)}\n\n`;
}

/** One SSE event with an `event:` line (Anthropic, OpenAI Responses). */
export function sseEvent(name: string, data: unknown): string {
  return `event: ${name}\ndata: ${JSON.stringify(data)}\n\n`;
}

/**
 * Stream SSE `events` (complete event texts) with the request's chunk delay before each event `i`
 * for which `delayed(i)` is true, and the `resetAfterChunks` semantics: send that many events,
 * then reset the connection.
 */
export async function writeSse(
  env: MockEnv,
  call: MockCall,
  events: readonly string[],
  delayed: (i: number) => boolean,
): Promise<void> {
  const { res, resetAfter, chunkDelay: delay } = call;
  const last = resetAfter === undefined ? events.length : Math.min(resetAfter, events.length);
  res.writeHead(200, withExtra(SSE_HEADERS, call.extraHeaders));
  // Without a delay the first event carries the headers; otherwise the client must see them now.
  if (delay > 0 || last === 0) res.flushHeaders();
  for (let i = 0; i < last; i++) {
    if (delay > 0 && delayed(i) && !(await env.wait(delay, res))) return;
    if (res.destroyed) return;
    if (i === events.length - 1 && resetAfter === undefined) res.end(events[i]);
    else res.write(events[i]);
  }
  if (resetAfter !== undefined) resetWhenFlushed(res);
}

/** Reset the connection once everything written so far has reached the kernel (the client gets it). */
export function resetWhenFlushed(res: ServerResponse): void {
  // Node corks chunked writes until the next tick, so look at the socket only after that.
  setImmediate(() => {
    const socket = res.socket;
    if (!socket || socket.destroyed) return;
    if (socket.writableLength === 0) resetSocket(res);
    else socket.once("drain", () => resetSocket(res));
  });
}

/** Abort the connection with a TCP RST, as a crashed upstream or a broken network would. */
export function resetSocket(res: ServerResponse): void {
  const socket = res.socket;
  if (!socket || socket.destroyed) return;
  if (typeof socket.resetAndDestroy === "function") socket.resetAndDestroy();
  else socket.destroy();
}

/** The token of an `Authorization: Bearer <token>` header, or undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  return header.startsWith("Bearer ") ? header.slice(7).trim() : "";
}

/** A header value as one string (repeated headers: the first). */
export function headerValue(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/**
 * Checks the `Authorization: Bearer` header of an OpenAI-format request when keys are required;
 * returns the 401 message, or null when the request may pass.
 */
export function openAIAuthDenied(env: MockEnv, header: string | undefined): string | null {
  if (!env.authRequired) return null;
  if (!header) {
    return (
      "You didn't provide an API key. You need to provide your API key in an Authorization " +
      "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    );
  }
  const key = bearerToken(header) ?? "";
  if (env.accepts(key)) return null;
  return `Incorrect API key provided: ${maskKey(key)}.`;
}

export function maskKey(key: string): string {
  return key.length <= 8 ? "***" : `${key.slice(0, 3)}***${key.slice(-4)}`;
}

export function isObject(value: unknown): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** The text of a content that is a string or an array of parts with `text`, concatenated. */
export function contentText(content: unknown): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) return "";
  let text = "";
  for (const part of content) {
    const t = (part as { text?: unknown } | null)?.text;
    if (typeof t === "string") text += t;
  }
  return text;
}

/** `ceil(chars / 4)`, the mock's token count of `chars` characters of text. */
export function tokensOfChars(chars: number): number {
  return Math.ceil(chars / 4);
}
