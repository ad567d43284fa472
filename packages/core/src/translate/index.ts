import { formatOf, translateRequestBody } from "../formats/registry.js";
import type { TokenUsage } from "../store/types.js";
import type { Json, RequestOptions, UpstreamEvent, WireFormat } from "./types.js";

export { anthropicErrorType } from "../formats/anthropic.js";
export { googleStatus, unwrapResponse } from "../formats/gemini.js";
export { errorMessageOf } from "../formats/registry.js";
export * from "./types.js";

/*
 * Shorthands by format name over the wire-format registry (`formats/`), which owns what each
 * format means; the proxy engine uses the format objects themselves.
 */

/** A client's request body in another format (`from` = the client's, `to` = the upstream's). */
export function translateRequest(
  from: WireFormat,
  to: WireFormat,
  body: Json,
  opts: RequestOptions,
): Json {
  return translateRequestBody(formatOf(from), formatOf(to), body, opts);
}

/** The usage of an upstream answer (a JSON body or one stream event) of `format`; null if none. */
export function usageOf(format: WireFormat, body: unknown): TokenUsage | null {
  return formatOf(format).usage(body);
}

/** One event as SSE text in `format`. */
export function sseEvent(format: WireFormat, ev: UpstreamEvent): string {
  return formatOf(format).sseEvent(ev);
}

/** An error body in `format` (OpenAI's `code` is given, else derived from the status). */
export function errorBody(
  format: WireFormat,
  status: number,
  message: string,
  code?: string,
): Json {
  return formatOf(format).errorBody(status, message, code);
}

/** The event that tells a streaming client of `format` the answer broke off. */
export function streamErrorEvent(format: WireFormat, status: number, message: string): string {
  return formatOf(format).streamErrorEvent(status, message);
}
