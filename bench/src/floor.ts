/**
 * Bench child "floor": the thinnest useful Node proxy, a node:http server that forwards method,
 * path, headers (minus hop-by-hop ones and `host`) and body to the upstream with an undici `Pool`
 * `request()`, and writes status, headers and body back chunk by chunk with backpressure. A Node
 * gateway can hardly use less CPU per request than this, so tokenpool is judged against it.
 *
 * @module
 */
import {
  createServer,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from "node:http";
import type { AddressInfo } from "node:net";
import { type Dispatcher, Pool } from "undici";
import { runChild, UPSTREAM_KEY, upstreamArg } from "./child.js";

/** Connection-level headers that a proxy must not forward (RFC 9110 §7.6.1), plus `host`. */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "host",
]);

function forwardable(headers: IncomingHttpHeaders | Record<string, string | string[] | undefined>) {
  const out: OutgoingHttpHeaders & Record<string, string | string[]> = {};
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value;
  }
  return out;
}

/** A running floor proxy. */
interface FloorProxy {
  origin: string;
  close(): Promise<void>;
}

/**
 * Start a bare pass-through proxy to `upstreamOrigin` on 127.0.0.1.
 *
 * @example
 * ```ts
 * const floor = await startFloorProxy("http://127.0.0.1:8787");
 * ```
 */
async function startFloorProxy(upstreamOrigin: string, port = 0): Promise<FloorProxy> {
  const pool = new Pool(upstreamOrigin, { pipelining: 1 });

  function forward(req: IncomingMessage, res: ServerResponse, body: Buffer | null): void {
    pool
      .request({
        method: (req.method ?? "GET") as Dispatcher.HttpMethod,
        path: req.url ?? "/",
        headers: forwardable(req.headers),
        body,
      })
      .then(
        (upstream) => {
          const stream = upstream.body;
          stream.on("error", () => res.destroy());
          if (res.destroyed) {
            stream.destroy();
            return;
          }
          res.writeHead(upstream.statusCode, forwardable(upstream.headers));
          // Chunk by chunk with backpressure, by hand: with stream.pipeline() this proxy measured
          // 1.5-2x the CPU per request.
          const resume = () => stream.resume();
          stream.on("data", (chunk: Buffer) => {
            if (!res.write(chunk)) {
              stream.pause();
              res.once("drain", resume);
            }
          });
          stream.on("end", () => res.end());
          // A client that goes away cancels the upstream request.
          res.on("close", () => {
            if (!stream.readableEnded) stream.destroy();
          });
        },
        (error: unknown) => {
          if (res.headersSent || res.destroyed) {
            res.destroy();
            return;
          }
          const message = `floor proxy: upstream request failed: ${String(error)}`;
          res.writeHead(502, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: { message, type: "upstream_error" } }));
        },
      );
  }

  const server = createServer((req, res) => {
    // Request bodies are small JSON documents that a gateway reads anyway (to find the model), and
    // forwarding a buffer is cheaper for undici than forwarding a stream.
    const parts: Buffer[] = [];
    req.on("error", () => res.destroy());
    res.on("error", () => {});
    req.on("data", (chunk: Buffer) => parts.push(chunk));
    req.on("end", () => {
      const body =
        parts.length === 0 ? null : parts.length === 1 ? parts[0]! : Buffer.concat(parts);
      forward(req, res, body);
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => resolve());
  });
  const { port: actualPort } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${actualPort}`,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.destroy();
    },
  };
}

runChild(async () => {
  const floor = await startFloorProxy(new URL(upstreamArg()).origin);
  return { origin: floor.origin, authorization: `Bearer ${UPSTREAM_KEY}`, close: floor.close };
});
