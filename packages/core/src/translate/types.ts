import type { TokenUsage } from "../store/types.js";

/**
 * The wire formats clients speak and upstreams answer in:
 * - `openai`: Chat Completions (`POST /v1/chat/completions`, chunks + `data: [DONE]`);
 * - `anthropic`: Messages (`POST /v1/messages`, named SSE events `message_start` ... `message_stop`);
 * - `gemini`: `generateContent` / `streamGenerateContent?alt=sse` (a `GenerateContentResponse` per event);
 * - `responses`: OpenAI's Responses API (`POST /v1/responses`, named events `response.created` …
 *   `response.completed`), what Codex speaks.
 */
export type WireFormat = "openai" | "anthropic" | "gemini" | "responses";

/** A JSON object. */
export type Json = Record<string, unknown>;

/** Options of a request translation. */
export interface RequestOptions {
  /** The model name the upstream must receive (after aliasing). Gemini bodies do not carry it. */
  model: string;
  /** Whether the client asked for a stream. */
  stream: boolean;
}

/** Options of a response translation. */
export interface ResponseOptions {
  /** The model name the client asked for: answers name this model, not the upstream's alias. */
  model: string;
  /** A request id the answer may use for its `id` (`chatcmpl-…`, `msg_…`, `responseId`). */
  id: string;
  /** OpenAI clients: whether the client asked for `stream_options.include_usage`. */
  includeUsage?: boolean;
}

/** One parsed upstream SSE event. */
export interface UpstreamEvent {
  /** The `event:` field, when the upstream sent one (Anthropic always does). */
  event?: string;
  /** The parsed JSON of the `data:` field(s). */
  data: unknown;
}

/**
 * Turns an upstream event stream of one format into events of another, event by event.
 * Stateful: one per request. Events are objects (`data` parsed JSON, or the string `"[DONE]"`
 * for OpenAI's end marker); serialising them to SSE text is the caller's job, so that two
 * translators compose through the OpenAI format (Anthropic ⇄ Gemini = via OpenAI chunks).
 *
 * A translator whose target is `openai` always ends with a usage chunk (`choices: []`, `usage`)
 * before `[DONE]` when the upstream reported usage, as if the client had asked for
 * `stream_options.include_usage`; the caller strips it when the client did not ask.
 */
export interface EventTranslator {
  /** Feeds one upstream event; returns the events it produces in the target format (maybe none). */
  push(ev: UpstreamEvent): UpstreamEvent[];
  /**
   * True once the upstream's end-of-stream signal was seen: OpenAI `[DONE]` (or a chunk with a
   * `finish_reason` followed by the end of the body), Anthropic `message_stop`, Gemini a
   * candidate with a `finishReason`. A body that ends before that is a truncated stream.
   */
  readonly finished: boolean;
  /**
   * Called once when the upstream body ended cleanly; returns the closing target events not yet
   * produced (OpenAI: the usage chunk and `[DONE]`; Anthropic: `message_delta` + `message_stop`).
   * Not called for a truncated stream: the caller then sends an error event in the target format.
   */
  end(): UpstreamEvent[];
  /** The usage the upstream reported so far (merged across events), or null if none yet. */
  usage(): TokenUsage | null;
}

/** Upstream `data: [DONE]` (OpenAI) is fed as this event. */
export const DONE_EVENT: UpstreamEvent = Object.freeze({ data: "[DONE]" });
