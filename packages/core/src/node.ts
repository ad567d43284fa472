import { EventEmitter } from "node:events";
import type { IncomingMessage, ServerResponse } from "node:http";
import { GatewayError } from "./errors.js";
import type { Gateway } from "./gateway.js";
import { type Exchange, isStreamBody, type Reply } from "./http/exchange.js";

/** A node:http request listener. */
export type NodeHandler = (req: IncomingMessage, res: ServerResponse) => void;

function tooLarge(limit: number): GatewayError {
  return new GatewayError("BODY_TOO_LARGE", `The request body is larger than ${limit} bytes.`);
}

/** Reads a node request body, or re-encodes a body a framework's parser already consumed. */
function readNodeBody(req: IncomingMessage & { body?: unknown }, limit: number): Promise<Buffer> {
  // Express's json()/text()/raw() parsers leave the stream consumed and the result on req.body.
  if (req.body !== undefined && (req.readableEnded || req.complete)) {
    const b = req.body;
    const buf = Buffer.isBuffer(b) ? b : Buffer.from(typeof b === "string" ? b : JSON.stringify(b));
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

  constructor(req: IncomingMessage, res: ServerResponse) {
    const url = req.url ?? "/";
    const q = url.indexOf("?");
    this.method = req.method ?? "GET";
    this.path = q < 0 ? url : url.slice(0, q);
    this.search = q < 0 ? "" : url.slice(q + 1);
    this.headers = req.headers;
    this.remoteAddress = req.socket.remoteAddress ?? "";
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

/** Adapts a node:http request to an {@link Exchange} without creating Web objects. */
export function fromNodeRequest(req: IncomingMessage, res: ServerResponse): Exchange {
  return new NodeExchange(req, res);
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
 * Serves a gateway on node:http (and on anything built on it: Express, Fastify, the server).
 *
 * @example
 * ```ts
 * import { createServer } from "node:http";
 * import { toNodeHandler } from "@tokenpool/core/node";
 * createServer(toNodeHandler(gateway)).listen(8317);
 * ```
 */
export function toNodeHandler(gateway: Pick<Gateway, "serve">): NodeHandler {
  return (req, res) => {
    const ex = fromNodeRequest(req, res);
    gateway
      .serve(ex)
      .then((reply) => writeNodeReply(res, reply))
      .catch(() => {
        if (!res.headersSent) {
          res.writeHead(500, { "content-type": "application/json" });
          res.end(
            '{"error":{"message":"internal error","type":"api_error","param":null,"code":"internal"}}',
          );
        } else res.destroy();
      });
  };
}
