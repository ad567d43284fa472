import { GatewayError } from "../errors.js";
import { type Exchange, type HeaderBag, isStreamBody, type Reply } from "../exchange.js";

function tooLarge(limit: number): GatewayError {
  return new GatewayError("BODY_TOO_LARGE", `The request body is larger than ${limit} bytes.`);
}

async function readWebBody(request: Request, limit: number): Promise<Buffer> {
  const declared = Number(request.headers.get("content-length") ?? Number.NaN);
  if (declared > limit) throw tooLarge(limit);
  if (!request.body) return Buffer.alloc(0);
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel().catch(() => {});
      throw tooLarge(limit);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

/** Adapts a fetch `Request` to an {@link Exchange}. */
export function fromRequest(request: Request, remoteAddress: string): Exchange {
  const url = new URL(request.url);
  const headers: HeaderBag = {};
  request.headers.forEach((v, k) => {
    headers[k] = v;
  });
  let body: Promise<Buffer> | null = null;
  return {
    method: request.method,
    path: url.pathname,
    search: url.search.slice(1),
    headers,
    remoteAddress,
    body: (limit) => {
      body ??= readWebBody(request, limit);
      return body;
    },
    signal: request.signal,
  };
}

/** Adapts a {@link Reply} to a fetch `Response`; streamed bodies stay streamed (pull-based). */
export function toResponse(reply: Reply): Response {
  const { status, headers, body } = reply;
  if (!isStreamBody(body)) {
    return new Response(
      body === null ? null : typeof body === "string" ? body : new Uint8Array(body),
      { status, headers },
    );
  }
  const it = body[Symbol.asyncIterator]();
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const { done, value } = await it.next();
        if (done) controller.close();
        else controller.enqueue(value);
      } catch (error) {
        controller.error(error);
      }
    },
    async cancel() {
      await it.return?.();
    },
  });
  return new Response(stream, { status, headers });
}
