/**
 * A raw HTTP/1.1 client on a TCP socket, for what fetch and undici hide: how a server treats a
 * body it refuses while the client is still sending it (EPIPE, ECONNRESET, or a readable answer).
 *
 * @module
 */
import { connect } from "node:net";

/** Options of {@link sendRawBody}. */
export interface RawBodyOptions {
  port: number;
  /** @default "127.0.0.1" */
  host?: string;
  /** @default "POST" */
  method?: string;
  /** Request target, e.g. `/v1/chat/completions`. */
  path: string;
  /** Extra request headers (`host` and the framing header are added). */
  headers?: Record<string, string>;
  /** How many bytes of body to send (ignored with `endless`). */
  bytes: number;
  /** `transfer-encoding: chunked` instead of a declared `content-length`. */
  chunked?: boolean;
  /** Send `connection: close`. */
  close?: boolean;
  /** Keep sending (chunked) until the server closes the connection. */
  endless?: boolean;
  /** Size of each write. @default 65536 */
  chunkBytes?: number;
}

/** What {@link sendRawBody} saw. */
export interface RawBodyResult {
  /** The status code of the first answer, or 0 when none arrived. */
  status: number;
  /** The header block of the first answer, lower-cased. */
  headers: string;
  /** The body of the first answer (by its content-length). */
  body: string;
  /** Socket errors the client saw (`EPIPE`, `ECONNRESET`), empty when none. */
  error: string;
  /** Body bytes written before the server closed or the body was complete. */
  written: number;
}

/**
 * Sends a request with a body of `bytes` bytes (content-length or chunked framing) over a raw
 * socket, writing with backpressure until the body is sent or the server closes, half-closes
 * when done (as an HTTP client that waits for the answer), and resolves once the socket closed.
 *
 * @example
 * ```ts
 * const r = await sendRawBody({ port, path: "/v1/chat/completions", bytes: 5 << 20 });
 * expect(r.status).toBe(413);
 * expect(r.error).toBe("");
 * ```
 */
export function sendRawBody(options: RawBodyOptions): Promise<RawBodyResult> {
  const chunkBytes = options.chunkBytes ?? 65_536;
  const piece = Buffer.alloc(chunkBytes, 0x61);
  return new Promise((resolve) => {
    const socket = connect(options.port, options.host ?? "127.0.0.1");
    const received: Buffer[] = [];
    let error = "";
    let written = 0;
    socket.on("data", (d: Buffer) => received.push(d));
    socket.on("error", (e) => {
      error += String(e);
    });
    socket.on("close", () => resolve({ ...parseAnswer(Buffer.concat(received)), error, written }));
    const head = Object.entries({
      host: "localhost",
      ...options.headers,
      ...(options.close ? { connection: "close" } : {}),
      ...(options.chunked || options.endless
        ? { "transfer-encoding": "chunked" }
        : { "content-length": String(options.bytes) }),
    })
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join("");
    socket.write(`${options.method ?? "POST"} ${options.path} HTTP/1.1\r\n${head}\r\n`);
    const chunked = options.chunked || options.endless;
    void (async () => {
      while (options.endless || written < options.bytes) {
        if (socket.destroyed || socket.writableEnded) return;
        const c = options.endless ? piece : piece.subarray(0, options.bytes - written);
        const frame = chunked
          ? Buffer.concat([Buffer.from(`${c.length.toString(16)}\r\n`), c, Buffer.from("\r\n")])
          : c;
        written += c.length;
        if (!socket.write(frame)) {
          await new Promise<void>((r) => {
            const done = () => {
              socket.off("drain", done);
              socket.off("close", done);
              r();
            };
            socket.once("drain", done);
            socket.once("close", done);
          });
        }
      }
      if (socket.destroyed || socket.writableEnded) return;
      if (chunked) socket.write("0\r\n\r\n");
      socket.end();
    })();
  });
}

function parseAnswer(raw: Buffer): Pick<RawBodyResult, "status" | "headers" | "body"> {
  const headEnd = raw.indexOf("\r\n\r\n");
  if (headEnd < 0) return { status: 0, headers: "", body: "" };
  const head = raw.subarray(0, headEnd).toString("latin1");
  const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(head)?.[1] ?? 0);
  return {
    status: Number(head.slice(9, 12)),
    headers: head.toLowerCase(),
    body: raw.subarray(headEnd + 4, headEnd + 4 + length).toString("utf8"),
  };
}
