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
      if (size > limit) {
        cleanup();
        req.resume();
        reject(tooLarge(limit));
        return;
      }
      chunks.push(c);
    };
    const onEnd = () => {
      cleanup();
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
    };
    const onError = (e: Error) => {
      cleanup();
      reject(new GatewayError("INVALID_REQUEST", `could not read the request body: ${e.message}`));
    };
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("aborted", onAborted);
    };
    const onAborted = () => onError(new Error("client aborted"));
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("aborted", onAborted);
  });
}

/** Adapts a node:http request to an {@link Exchange} without creating Web objects. */
export function fromNodeRequest(req: IncomingMessage, res: ServerResponse): Exchange {
  const url = req.url ?? "/";
  const q = url.indexOf("?");
  const controller = new AbortController();
  res.once("close", () => {
    if (!res.writableFinished) controller.abort();
  });
  let body: Promise<Buffer> | null = null;
  return {
    method: req.method ?? "GET",
    path: q < 0 ? url : url.slice(0, q),
    search: q < 0 ? "" : url.slice(q + 1),
    headers: req.headers,
    remoteAddress: req.socket.remoteAddress ?? "",
    body: (limit) => {
      body ??= readNodeBody(req, limit);
      return body;
    },
    signal: controller.signal,
  };
}

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
    res.writeHead(status, { ...headers, "content-length": String(buf?.byteLength ?? 0) });
    res.end(buf);
    return;
  }
  res.writeHead(status, headers);
  res.flushHeaders();
  try {
    for await (const chunk of body) {
      if (res.destroyed) break;
      if (!res.write(chunk) && !(await drained(res))) break;
    }
    res.end();
  } catch {
    res.destroy();
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
