import { type HeaderBag, header } from "../exchange.js";
import type { TokenUsage } from "../store/types.js";
import {
  AnthropicToOpenAIStream,
  anthropicToOpenAIRequest,
  anthropicToOpenAIResponse,
  anthropicUsage,
  OpenAIToAnthropicStream,
  openaiToAnthropicRequest,
  openaiToAnthropicResponse,
} from "../translate/anthropic.js";
import type { Json } from "../translate/types.js";
import {
  defineFormat,
  mergeUsage,
  namedSseEvent,
  nonNegative,
  parseData,
  withModel,
} from "./shared.js";
import type { StreamInspector, WireFormatSpec } from "./types.js";

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

/**
 * The `anthropic-beta` value sent upstream: the credential's own flags (e.g. the OAuth beta),
 * then the client's.
 */
export function mergeBeta(own: string | undefined, client: string): string {
  return own ? `${own},${client}` : client;
}

/** Auth headers with the client's `anthropic-beta` flags added to the credential's own. */
export function withClientBeta(
  h: Record<string, string>,
  beta: string | undefined,
): Record<string, string> {
  if (!beta) return h;
  return { ...h, "anthropic-beta": mergeBeta(h["anthropic-beta"], beta) };
}

/** The usage of an Anthropic answer or of a `message_start` / `message_delta` event. */
function usageOf(body: unknown): TokenUsage | null {
  if (!body || typeof body !== "object") return null;
  const b = body as Json;
  return anthropicUsage(b.usage ?? (b.message as Json | undefined)?.usage);
}

const ANTHROPIC_USAGE = Buffer.from('"usage"');
const MESSAGE_STOP = Buffer.from("message_stop");
const ERROR_TYPE = Buffer.from('"type":"error"');

/** Anthropic events: input usage in `message_start`, output in `message_delta`, end at `message_stop`. */
export class AnthropicInspector implements StreamInspector {
  usage: TokenUsage | null = null;
  usageFinal = false;
  finished = false;
  failed: string | null = null;
  inspect(ev: Buffer): boolean {
    if (ev.indexOf(ANTHROPIC_USAGE) >= 0) {
      const data = parseData(ev);
      this.usage = mergeUsage(this.usage, usageOf(data));
      if ((data as { type?: unknown } | undefined)?.type === "message_delta")
        this.usageFinal = true;
    } else if (ev.indexOf(MESSAGE_STOP) >= 0) this.finished = true;
    else if (ev.indexOf(ERROR_TYPE) >= 0) {
      const err = (parseData(ev) as { error?: { message?: unknown } } | undefined)?.error;
      this.failed = typeof err?.message === "string" ? err.message : "upstream error event";
    }
    return false;
  }
}

function errorBody(status: number, message: string): Json {
  return { type: "error", error: { type: anthropicErrorType(status), message } };
}

/** Anthropic Messages (`POST /v1/messages`, named SSE events `message_start` … `message_stop`). */
export const anthropicFormat: WireFormatSpec = defineFormat({
  name: "anthropic",
  requestToPivot: anthropicToOpenAIRequest,
  requestFromPivot: openaiToAnthropicRequest,
  answerToPivot: anthropicToOpenAIResponse,
  answerFromPivot: openaiToAnthropicResponse,
  streamToPivot: (opts) => new AnthropicToOpenAIStream(opts),
  streamFromPivot: (opts) => new OpenAIToAnthropicStream(opts),
  usage: usageOf,
  errorBody,
  streamErrorEvent: (status, message) =>
    `event: error\ndata: ${JSON.stringify(errorBody(status, message))}\n\n`,
  sseEvent: namedSseEvent,
  maxTokens: (body) => nonNegative(body.max_completion_tokens ?? body.max_tokens),
  inspector: () => new AnthropicInspector(),
  sameFormatBody: withModel,
  carryHeaders(client: HeaderBag, upstream: Record<string, string>) {
    // The client chose its API version and betas; a credential's own beta flag is kept too.
    const v = header(client, "anthropic-version");
    if (v) upstream["anthropic-version"] = v;
    const b = header(client, "anthropic-beta");
    if (b) upstream["anthropic-beta"] = mergeBeta(upstream["anthropic-beta"], b);
  },
});
