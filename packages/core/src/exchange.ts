/**
 * The neutral request/reply shapes the router works on. The two entry points adapt to them:
 * `gateway.handler(Request)` for fetch-style runtimes and `toNodeHandler()` for node:http,
 * which never creates Web `Request`/`Response` objects (they cost CPU on the proxy path).
 */
import { isUtf8 } from "node:buffer";
import { checkJsonDepth } from "./util/json-depth.js";

/** Incoming headers, lower-case names (node:http's `IncomingHttpHeaders` fits as is). */
export type HeaderBag = Record<string, string | string[] | undefined>;

/**
 * Tells when the client went away. Either a Web `AbortSignal` (fetch runtimes) or, on node:http,
 * a lighter EventEmitter with `aborted` that emits `abort` (undici accepts both as `signal`;
 * creating an AbortController per request costs several microseconds on Node 20).
 */
export type ClientSignal =
  | AbortSignal
  | (import("node:events").EventEmitter & { readonly aborted: boolean });

/** One incoming request. */
export interface Exchange {
  method: string;
  /** Path without the query string, e.g. `/v1/chat/completions`. */
  path: string;
  /** The raw query string without `?` (parse with URLSearchParams when needed). */
  search: string;
  headers: HeaderBag;
  /** The direct peer address. */
  remoteAddress: string;
  /** Reads the whole body, at most `limit` bytes (throws BODY_TOO_LARGE beyond). */
  body(limit: number): Promise<Buffer>;
  /** Aborted when the client goes away before the reply is finished. */
  readonly signal: ClientSignal;
}

/** A reply body: bytes, text, a stream of chunks written as they come, or nothing. */
export type ReplyBody = string | Uint8Array | AsyncIterable<Uint8Array> | null;

/** One reply. */
export interface Reply {
  status: number;
  headers: Record<string, string>;
  body: ReplyBody;
}

/** A single header value (the first one when repeated). */
export function header(h: HeaderBag, name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v[0] : v;
}

/** A JSON reply. */
export function json(status: number, value: unknown, headers: Record<string, string> = {}): Reply {
  return {
    status,
    headers: { "content-type": "application/json; charset=utf-8", ...headers },
    body: JSON.stringify(value),
  };
}

/** Whether a reply body streams. */
export function isStreamBody(body: ReplyBody): body is AsyncIterable<Uint8Array> {
  return body !== null && typeof body === "object" && Symbol.asyncIterator in body;
}

/**
 * Parses the bytes of a JSON request body, the one way every dialect does: text that is not
 * UTF-8 (RFC 8259 allows nothing else; decoding would silently turn it into U+FFFD while the
 * proxy forwards the original bytes) or not JSON is `fail()`; nesting deeper than
 * {@link MAX_JSON_DEPTH} throws `JSON_TOO_DEEP` (400), which each route renders in its dialect.
 */
export function parseJsonBytes(raw: Buffer, fail: () => Error): unknown {
  if (!isUtf8(raw)) throw fail();
  checkJsonDepth(raw);
  try {
    return JSON.parse(raw.toString("utf8"));
  } catch {
    throw fail();
  }
}

/**
 * Reads a body that must be a JSON object, at most `limit` bytes (see {@link parseJsonBytes}).
 * Each dialect words the two failures its own way through `fail`.
 */
export async function readJsonObjectBody(
  ex: Exchange,
  limit: number,
  fail: (reason: "invalid_json" | "not_object") => Error,
): Promise<{ raw: Buffer; body: Record<string, unknown> }> {
  const raw = await ex.body(limit);
  const body = parseJsonBytes(raw, () => fail("invalid_json"));
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw fail("not_object");
  return { raw, body: body as Record<string, unknown> };
}
