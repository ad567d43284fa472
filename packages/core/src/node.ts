import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { GatewayError } from "./errors.js";
import { type Exchange, isStreamBody, type Reply } from "./exchange.js";
import type { Gateway } from "./gateway.js";
import { jsonTooDeep, valueDepthExceeds } from "./util/json-depth.js";

/** A node:http request listener. */
export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

function tooLarge(limit: number): GatewayError {
  return new GatewayError("BODY_TOO_LARGE", `The request body is larger than ${limit} bytes.`);
}

/** A node request that a framework's body parser may have consumed (Express, Connect). */
type ParsedNodeRequest = IncomingMessage & { body?: unknown; rawBody?: unknown };

/** The `charset` parameter of a content type, as a Buffer encoding. */
function charsetOf(contentType: string): BufferEncoding {
  const m = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType);
  const c = m?.[1]?.toLowerCase();
  return c === "latin1" || c === "iso-8859-1" || c === "us-ascii" || c === "ascii"
    ? "latin1"
    : c === "utf-16le"
      ? "utf16le"
      : "utf8";
}

/** Appends `value` under `key` as qs/URLSearchParams would parse it back (`a[b]=c`, `a[0]=x`). */
function appendForm(out: URLSearchParams, key: string, value: unknown): void {
  if (value === undefined) return;
  if (value !== null && typeof value === "object") {
    for (const [k, v] of Object.entries(value)) appendForm(out, `${key}[${k}]`, v);
  } else out.append(key, value === null ? "" : String(value));
}

/**
 * The bytes of a body a parser already turned into `req.body`, in the format the request's
 * content type announces: a Buffer (`raw()`) as is, a string (`text()`) in its charset, a form
 * (`urlencoded()`, also `extended` nesting) as `application/x-www-form-urlencoded`, anything else
 * (`json()`, including `strict: false` scalars) as JSON. A `rawBody` Buffer left by a `verify`
 * hook wins, being the exact bytes received.
 */
function reencodeParsedBody(req: ParsedNodeRequest): Buffer {
  if (Buffer.isBuffer(req.rawBody)) return req.rawBody;
  const b = req.body;
  if (b === undefined) return Buffer.alloc(0);
  if (Buffer.isBuffer(b)) return b;
  if (b instanceof Uint8Array) return Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  // JSON.stringify and appendForm recurse: a parsed body nested thousands of levels deep would
  // overflow the stack here. Anything deeper than the JSON limit is refused before encoding.
  if (valueDepthExceeds(b)) throw jsonTooDeep();
  const type = String(req.headers["content-type"] ?? "").toLowerCase();
  const mime = type.split(";")[0]!.trim();
  const isJson = mime === "application/json" || mime.endsWith("+json");
  if (typeof b === "string" && !isJson) return Buffer.from(b, charsetOf(type));
  if (mime === "application/x-www-form-urlencoded" && typeof b === "object" && b !== null) {
    const form = new URLSearchParams();
    for (const [k, v] of Object.entries(b)) appendForm(form, k, v);
    return Buffer.from(form.toString());
  }
  return Buffer.from(JSON.stringify(b) ?? "");
}

/**
 * Reads a node request body, or re-encodes a body a framework's parser already consumed
 * (Express's `json()`, `text()`, `raw()`, `urlencoded()`; see {@link reencodeParsedBody}).
 */
function readNodeBody(req: ParsedNodeRequest, limit: number): Promise<Buffer> {
  // A parser leaves the stream ended (or complete and no longer readable, which is how
  // on-finished, used by body-parser, tells it) and its result on req.body. Checking the stream
  // rather than req.body matters: Express 4's parsers set `req.body = {}` even when they skip a
  // request, and then the bytes are still waiting in the stream.
  if (req.readableEnded || (req.complete && !req.readable)) {
    let buf: Buffer;
    try {
      buf = reencodeParsedBody(req);
    } catch (error) {
      return Promise.reject(error);
    }
    return buf.length > limit ? Promise.reject(tooLarge(limit)) : Promise.resolve(buf);
  }
  const declared = Number(req.headers["content-length"] ?? Number.NaN);
  if (declared > limit) return Promise.reject(tooLarge(limit));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
      else {
        done();
        req.resume();
        reject(tooLarge(limit));
      }
    };
    const onEnd = () => {
      done();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    // A client that goes away mid-body makes the request emit "error" (aborted) or just "close".
    const onError = (e: Error) => {
      done();
      reject(new GatewayError("INVALID_REQUEST", `could not read the request body: ${e.message}`));
    };
    const onClose = () => onError(new Error("the client closed the request before its body ended"));
    const done = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
    };
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
  });
}

/** The client signal of a node request: an EventEmitter with `aborted`, which undici accepts. */
class NodeClientSignal extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;

  abort(): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = new Error("client closed the connection");
    this.emit("abort");
  }
}

/**
 * A node:http request as an {@link Exchange}, without Web objects. The client signal is made
 * only when a route asks for it (the proxy routes do; errors and management routes do not).
 */
class NodeExchange implements Exchange {
  readonly method: string;
  readonly path: string;
  readonly search: string;
  readonly headers: IncomingMessage["headers"];
  readonly remoteAddress: string;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  #signal: NodeClientSignal | null = null;
  #body: Promise<Buffer> | null = null;

  constructor(req: IncomingMessage, res: ServerResponse, options: NodeRequestOptions | undefined) {
    const url = options?.url ?? req.url ?? "/";
    const q = url.indexOf("?");
    this.method = req.method ?? "GET";
    this.path = q < 0 ? url : url.slice(0, q);
    this.search = q < 0 ? "" : url.slice(q + 1);
    this.headers = req.headers;
    this.remoteAddress = options?.remoteAddress ?? req.socket.remoteAddress ?? "";
    this.#req = req;
    this.#res = res;
  }

  body(limit: number): Promise<Buffer> {
    this.#body ??= readNodeBody(this.#req, limit);
    return this.#body;
  }

  get signal(): NodeClientSignal {
    if (this.#signal) return this.#signal;
    const signal = new NodeClientSignal();
    this.#signal = signal;
    const res = this.#res;
    if (res.closed) {
      if (!res.writableFinished) signal.abort();
    } else {
      res.once("close", () => {
        if (!res.writableFinished) signal.abort();
      });
    }
    return signal;
  }
}

/**
 * What a binding may set instead of what {@link fromNodeRequest} reads from the node request.
 * Both are conversions a framework has already done; the gateway applies its own rules on top.
 */
export interface NodeRequestOptions {
  /**
   * The client address the gateway sees as the request's peer: key allowlists, loopback checks
   * and `trustedProxies` start from it. A framework that resolved `X-Forwarded-For` under its
   * own trust settings (Express's `req.ip` with `trust proxy`, Fastify's `request.ip` with
   * `trustProxy`) passes its result here.
   * @default req.socket.remoteAddress
   */
  remoteAddress?: string;
  /**
   * The request target the gateway routes on (path and query string), e.g. the part after a
   * mount prefix: `/v1/chat/completions?x=1` for `/llm/v1/chat/completions?x=1` mounted at `/llm`.
   * @default req.url
   */
  url?: string;
}

/**
 * Adapts a node:http request to an {@link Exchange} without creating Web objects.
 *
 * @example
 * ```ts
 * // Under a framework that mounted the gateway at a prefix and resolved the client IP:
 * const ex = fromNodeRequest(req, res, { url: req.url, remoteAddress: req.ip });
 * await writeNodeReply(res, await gateway.serve(ex));
 * ```
 */
export function fromNodeRequest(
  req: IncomingMessage,
  res: ServerResponse,
  options?: NodeRequestOptions,
): Exchange {
  return new NodeExchange(req, res, options);
}

/** How long streamed headers may wait for the first chunk before they are sent alone. */
const HEADER_FLUSH_MS = 25;

/** Resolves when `res` can take more data, or when it closed (false). */
function drained(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    const onDrain = () => {
      res.off("close", onClose);
      resolve(true);
    };
    const onClose = () => {
      res.off("drain", onDrain);
      resolve(false);
    };
    res.once("drain", onDrain);
    res.once("close", onClose);
  });
}

/**
 * Writes a {@link Reply} to a node response: fixed bodies with a content length, streamed
 * bodies chunk by chunk with headers flushed first and `drain` respected.
 */
export async function writeNodeReply(res: ServerResponse, reply: Reply): Promise<void> {
  const { status, headers, body } = reply;
  if (!isStreamBody(body)) {
    const buf = body === null ? null : typeof body === "string" ? Buffer.from(body) : body;
    headers["content-length"] = String(buf?.byteLength ?? 0);
    res.writeHead(status, headers);
    res.end(buf);
    return;
  }
  res.writeHead(status, headers);
  // Headers leave with the first chunk (one syscall, not two). If the upstream is slow to send
  // one (a model thinking), they are flushed on their own so the client sees the status at once.
  let headerTimer: NodeJS.Timeout | null = setTimeout(() => {
    headerTimer = null;
    if (!res.headersSent && !res.destroyed) res.flushHeaders();
  }, HEADER_FLUSH_MS);
  // Writes are corked until the next tick: chunks that are ready together, and the final end(),
  // go out in one writev instead of one syscall each.
  let corked = false;
  const uncork = () => {
    corked = false;
    res.uncork();
  };
  try {
    for await (const chunk of body) {
      if (headerTimer) {
        clearTimeout(headerTimer);
        headerTimer = null;
      }
      if (res.destroyed) break;
      if (!corked) {
        corked = true;
        res.cork();
        process.nextTick(uncork);
      }
      if (!res.write(chunk) && !(await drained(res))) break;
    }
    res.end();
  } catch {
    res.destroy();
  } finally {
    if (headerTimer) clearTimeout(headerTimer);
  }
}

/**
 * How much of a request body that is still arriving when its reply is ready (a 413, a 401 before
 * the body was read) is discarded, at most, before the connection is cut.
 */
export const EARLY_REPLY_DRAIN_MAX_BYTES = 64 * 1024 * 1024;

/** How long, at most, such a body is discarded before the connection is cut. */
export const EARLY_REPLY_DRAIN_MAX_MS = 10_000;

/**
 * Writes a reply that is ready before the request body has fully arrived. Why not just
 * `res.end()`: when the connection then closes (the client sent `connection: close`, or we do
 * after a 413), the kernel answers the bytes still coming with a reset, so the client gets EPIPE
 * or ECONNRESET instead of reading the answer. So the whole answer is written at once, the rest
 * of the body is read and thrown away, and the reply is ended only when the body is complete:
 * the client finishes sending, then reads the answer. A 413 also closes the connection, so a
 * client sending a huge body does not keep it afterwards. Past
 * {@link EARLY_REPLY_DRAIN_MAX_BYTES} or {@link EARLY_REPLY_DRAIN_MAX_MS} the connection is cut.
 */
function writeEarlyReply(req: IncomingMessage, res: ServerResponse, reply: Reply): void {
  const { status, headers, body } = reply;
  const buf =
    body === null || isStreamBody(body)
      ? null
      : typeof body === "string"
        ? Buffer.from(body)
        : body;
  headers["content-length"] = String(buf?.byteLength ?? 0);
  if (status === 413) headers.connection = "close";
  res.writeHead(status, headers);
  if (buf) res.write(buf);
  let discarded = 0;
  const finish = (cut: boolean) => {
    clearTimeout(timer);
    req.off("data", onData);
    req.off("end", onEnd);
    req.off("close", onClose);
    if (cut) {
      // The answer is already on its way; end it, then stop reading.
      res.end(() => req.socket.destroy());
    } else res.end();
  };
  const onData = (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > EARLY_REPLY_DRAIN_MAX_BYTES) finish(true);
  };
  const onEnd = () => finish(false);
  const onClose = () => finish(!req.complete);
  const timer = setTimeout(() => finish(true), EARLY_REPLY_DRAIN_MAX_MS);
  timer.unref();
  req.on("data", onData);
  req.on("end", onEnd);
  req.on("close", onClose);
  req.resume();
}

/**
 * Serves one node:http request: adapts it (see {@link fromNodeRequest}), runs the gateway and
 * writes the reply (see {@link writeNodeReply}). Never rejects: a failure before the headers is a
 * 500 in OpenAI's error shape, after them the connection is cut. For bindings whose per-request
 * overrides come from their own request object (Fastify's `request.ip`).
 *
 * @example
 * ```ts
 * reply.hijack();
 * void serveNodeRequest(gateway, request.raw, reply.raw, { remoteAddress: request.ip });
 * ```
 */
export function serveNodeRequest(
  gateway: Pick<Gateway, "serve">,
  req: IncomingMessage,
  res: ServerResponse,
  options?: NodeRequestOptions,
): Promise<void> {
  return gateway
    .serve(fromNodeRequest(req, res, options))
    .then((reply) =>
      // A reply ready before the body arrived whole (a 413, an auth error) waits for the rest.
      !req.complete && !req.readableEnded && !isStreamBody(reply.body) && !res.headersSent
        ? writeEarlyReply(req, res, reply)
        : writeNodeReply(res, reply),
    )
    .catch(() => {
      if (!res.headersSent) {
        res.writeHead(500, { "content-type": "application/json" });
        res.end(
          '{"error":{"message":"internal error","type":"api_error","param":null,"code":"internal"}}',
        );
      } else res.destroy();
    });
}

/** Options of {@link toNodeHandler}: per-request overrides, as in {@link NodeRequestOptions}. */
export interface NodeHandlerOptions<Req extends IncomingMessage = IncomingMessage> {
  /**
   * The client address of a request (see {@link NodeRequestOptions.remoteAddress}); `undefined`
   * keeps the socket's peer.
   * @default (req) => req.socket.remoteAddress
   */
  remoteAddress?(req: Req): string | undefined;
  /**
   * The request target to route on (see {@link NodeRequestOptions.url}).
   * @default (req) => req.url
   */
  url?(req: Req): string;
}

/**
 * Serves a gateway on node:http (and on anything built on it: Express, Fastify, the server).
 *
 * @example
 * ```ts
 * import { createServer } from "node:http";
 * import { toNodeHandler } from "@tokenpool/core/node";
 * createServer(toNodeHandler(gateway)).listen(8317);
 * // Behind a framework that knows better (a mount prefix, a resolved client IP):
 * const handle = toNodeHandler(gateway, { url: (req) => req.url, remoteAddress: (req) => req.ip });
 * ```
 */
export function toNodeHandler<Req extends IncomingMessage = IncomingMessage>(
  gateway: Pick<Gateway, "serve">,
  options: NodeHandlerOptions<Req> = {},
): (req: Req, res: ServerResponse) => void {
  const { remoteAddress, url } = options;
  if (!remoteAddress && !url) return (req, res) => void serveNodeRequest(gateway, req, res);
  return (req, res) =>
    void serveNodeRequest(gateway, req, res, {
      ...(remoteAddress ? { remoteAddress: remoteAddress(req) } : {}),
      ...(url ? { url: url(req) } : {}),
    });
}
