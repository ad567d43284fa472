import type { TokenUsage } from "../store/types.js";
import {
  AnthropicToOpenAIStream,
  anthropicToOpenAIRequest,
  anthropicToOpenAIResponse,
  anthropicUsage,
  OpenAIToAnthropicStream,
  openaiToAnthropicRequest,
  openaiToAnthropicResponse,
} from "./anthropic.js";
import {
  GeminiToOpenAIStream,
  geminiToOpenAIRequest,
  geminiToOpenAIResponse,
  geminiUsage,
  OpenAIToGeminiStream,
  openaiToGeminiRequest,
  openaiToGeminiResponse,
} from "./gemini.js";
import { openaiUsageOf } from "./openai.js";
import {
  ChatToResponsesStream,
  chatToResponsesRequest,
  chatToResponsesResponse,
  ResponsesToChatStream,
  responsesToChatRequest,
  responsesToChatResponse,
} from "./responses.js";
import type {
  EventTranslator,
  Json,
  RequestOptions,
  ResponseOptions,
  UpstreamEvent,
  WireFormat,
} from "./types.js";

export type {
  EventTranslator,
  Json,
  RequestOptions,
  ResponseOptions,
  UpstreamEvent,
  WireFormat,
} from "./types.js";
export { DONE_EVENT } from "./types.js";

/**
 * Translation between the three wire formats goes through the OpenAI format: Anthropic ⇄ Gemini
 * is Anthropic → OpenAI → Gemini. One pair of converters per non-OpenAI format instead of one per
 * ordered pair, at the price of what the OpenAI format cannot say (e.g. Anthropic's signed
 * thinking blocks do not survive a trip through another format).
 */
const TO_OPENAI_REQUEST = {
  anthropic: anthropicToOpenAIRequest,
  gemini: geminiToOpenAIRequest,
  responses: responsesToChatRequest,
} as const;
const FROM_OPENAI_REQUEST = {
  anthropic: openaiToAnthropicRequest,
  gemini: openaiToGeminiRequest,
  responses: chatToResponsesRequest,
} as const;
const TO_OPENAI_RESPONSE = {
  anthropic: anthropicToOpenAIResponse,
  gemini: geminiToOpenAIResponse,
  responses: responsesToChatResponse,
} as const;
const FROM_OPENAI_RESPONSE = {
  anthropic: openaiToAnthropicResponse,
  gemini: openaiToGeminiResponse,
  responses: chatToResponsesResponse,
} as const;

/** A client's request body in another format (`from` = the client's, `to` = the upstream's). */
export function translateRequest(
  from: WireFormat,
  to: WireFormat,
  body: Json,
  opts: RequestOptions,
): Json {
  if (from === to) return body;
  const openai =
    from === "openai" ? { ...body, model: opts.model } : TO_OPENAI_REQUEST[from](body, opts);
  return to === "openai" ? openai : FROM_OPENAI_REQUEST[to](openai, opts);
}

/** An upstream's JSON answer in the client's format (`from` = the upstream's, `to` = the client's). */
export function translateResponse(
  from: WireFormat,
  to: WireFormat,
  body: Json,
  opts: ResponseOptions,
): Json {
  if (from === to) return body;
  const openai = from === "openai" ? body : TO_OPENAI_RESPONSE[from](body, opts);
  return to === "openai" ? openai : FROM_OPENAI_RESPONSE[to](openai, opts);
}

/** The usage of an upstream answer (a JSON body or one stream event) of `format`; null if none. */
export function usageOf(format: WireFormat, body: unknown): TokenUsage | null {
  if (!body || typeof body !== "object") return null;
  const b = body as Json;
  if (format === "openai" || format === "responses")
    return openaiUsageOf(b.usage ?? (b.response as Json | undefined)?.usage);
  if (format === "anthropic")
    return anthropicUsage(b.usage ?? (b.message as Json | undefined)?.usage);
  return geminiUsage(b.usageMetadata);
}

/** Passes Gemini events through, unwrapping a Code Assist envelope and tracking usage and the end. */
class GeminiUnwrap implements EventTranslator {
  #usage: TokenUsage | null = null;
  finished = false;
  push(ev: UpstreamEvent): UpstreamEvent[] {
    const data = unwrapResponse(ev.data);
    const u = geminiUsage((data as Json | null)?.usageMetadata);
    if (u) this.#usage = u;
    const cands = (data as Json | null)?.candidates;
    if (Array.isArray(cands) && cands.some((c) => (c as Json | null)?.finishReason)) {
      this.finished = true;
    }
    return [{ data }];
  }
  end(): UpstreamEvent[] {
    return [];
  }
  usage(): TokenUsage | null {
    return this.#usage;
  }
}

/** `{ response: X }` (Cloud Code Assist) → X; anything else as it is. */
export function unwrapResponse(data: unknown): unknown {
  if (data && typeof data === "object" && !Array.isArray(data)) {
    const r = (data as Json).response;
    if (r && typeof r === "object" && !("candidates" in data)) return r;
  }
  return data;
}

class Composed implements EventTranslator {
  readonly #a: EventTranslator;
  readonly #b: EventTranslator;
  constructor(a: EventTranslator, b: EventTranslator) {
    this.#a = a;
    this.#b = b;
  }
  get finished(): boolean {
    return this.#a.finished;
  }
  push(ev: UpstreamEvent): UpstreamEvent[] {
    const mid = this.#a.push(ev);
    if (mid.length === 0) return mid;
    const out: UpstreamEvent[] = [];
    for (const m of mid) for (const e of this.#b.push(m)) out.push(e);
    return out;
  }
  end(): UpstreamEvent[] {
    const out: UpstreamEvent[] = [];
    for (const m of this.#a.end()) for (const e of this.#b.push(m)) out.push(e);
    for (const e of this.#b.end()) out.push(e);
    return out;
  }
  usage(): TokenUsage | null {
    return this.#a.usage();
  }
}

/**
 * A translator of upstream stream events of `from` into the client's format `to`; `wrapped` =
 * the upstream's events come in a Code Assist envelope. Null when the events can be relayed as
 * they are (same format, no envelope).
 */
export function streamTranslator(
  from: WireFormat,
  to: WireFormat,
  opts: ResponseOptions,
  wrapped = false,
): EventTranslator | null {
  if (from === to) {
    if (!wrapped) return null;
    return new GeminiUnwrap();
  }
  let toOpenAI: EventTranslator | null = null;
  if (from === "anthropic") toOpenAI = new AnthropicToOpenAIStream(opts);
  else if (from === "responses") toOpenAI = new ResponsesToChatStream(opts);
  else if (from === "gemini") {
    const g = new GeminiToOpenAIStream(opts);
    toOpenAI = wrapped ? new Composed(new GeminiUnwrap(), g) : g;
  }
  if (to === "openai") return toOpenAI ?? null;
  const fromOpenAI =
    to === "anthropic"
      ? new OpenAIToAnthropicStream(opts)
      : to === "responses"
        ? new ChatToResponsesStream(opts)
        : new OpenAIToGeminiStream(opts);
  return toOpenAI ? new Composed(toOpenAI, fromOpenAI) : fromOpenAI;
}

/** One event as SSE text in `format`. */
export function sseEvent(format: WireFormat, ev: UpstreamEvent): string {
  if (format === "openai") {
    return ev.data === "[DONE]" ? "data: [DONE]\n\n" : `data: ${JSON.stringify(ev.data)}\n\n`;
  }
  if (format === "anthropic" || format === "responses") {
    const type = ev.event ?? ((ev.data as Json | null)?.type as string | undefined) ?? "message";
    return `event: ${type}\ndata: ${JSON.stringify(ev.data)}\n\n`;
  }
  return `data: ${JSON.stringify(ev.data)}\r\n\r\n`;
}

/** The error message of an upstream error body of any format (OpenAI, Anthropic, Google). */
export function errorMessageOf(body: string): string | null {
  try {
    const parsed = JSON.parse(body) as unknown;
    const first = Array.isArray(parsed) ? parsed[0] : parsed;
    const err = (first as Json | null)?.error;
    if (typeof err === "string") return err;
    const m = (err as Json | null)?.message ?? (first as Json | null)?.message;
    return typeof m === "string" ? m : null;
  } catch {
    return null;
  }
}

/** Anthropic's error `type` for an HTTP status. */
export function anthropicErrorType(status: number): string {
  if (status === 400 || status === 413 || status === 422)
    return status === 413 ? "request_too_large" : "invalid_request_error";
  if (status === 401) return "authentication_error";
  if (status === 402) return "billing_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  if (status === 529 || status === 503) return "overloaded_error";
  if (status === 504) return "timeout_error";
  return status >= 500 ? "api_error" : "invalid_request_error";
}

/** Google's canonical status name for an HTTP status. */
export function googleStatus(status: number): string {
  const table: Record<number, string> = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
  };
  return table[status] ?? (status >= 500 ? "UNAVAILABLE" : "FAILED_PRECONDITION");
}

/** An error body in `format` (OpenAI's `code` is given, else derived from the status). */
export function errorBody(
  format: WireFormat,
  status: number,
  message: string,
  code?: string,
): Json {
  if (format === "anthropic") {
    return { type: "error", error: { type: anthropicErrorType(status), message } };
  }
  if (format === "gemini")
    return { error: { code: status, message, status: googleStatus(status) } };
  let type = "invalid_request_error";
  if (status === 429) type = "rate_limit_error";
  else if (status === 401) type = "authentication_error";
  else if (status === 403) type = "permission_error";
  else if (status >= 500) type = "api_error";
  return { error: { message, type, param: null, code: code ?? null } };
}

/**
 * The event that tells a streaming client the answer broke off, in its format. It is the last
 * event: no `[DONE]` / `message_stop` / `finishReason` follows, so the stream reads as truncated.
 */
export function streamErrorEvent(format: WireFormat, status: number, message: string): string {
  if (format === "openai") {
    return `data: ${JSON.stringify({ error: { message, type: "upstream_error", param: null, code: "stream_interrupted" } })}\n\n`;
  }
  if (format === "responses") {
    const ev = {
      type: "error",
      code: "stream_interrupted",
      message,
      param: null,
      sequence_number: 0,
    };
    return `event: error\ndata: ${JSON.stringify(ev)}\n\n`;
  }
  const body = errorBody(format, status, message);
  return format === "anthropic"
    ? `event: error\ndata: ${JSON.stringify(body)}\n\n`
    : `data: ${JSON.stringify(body)}\r\n\r\n`;
}
