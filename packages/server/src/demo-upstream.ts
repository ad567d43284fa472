/**
 * The upstream of `tokenpool serve --demo`: a tiny OpenAI-compatible server on loopback that
 * answers chat completions (plain and streamed) with a fixed reply, so that a first request
 * works offline. It is the server's own, so that the test kit (`@tokenpool/testing`) is no
 * runtime dependency of the CLI; it answers chat completions the way the test kit's mock
 * upstream does (same reply, same chunks, same token counts), which the server's tests rely on.
 *
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** The reply of every demo chat completion. */
export const DEMO_REPLY = "Hello from the mock upstream, this is a test reply.";

/** The models the demo upstream lists. */
const DEMO_MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o3-mini"];

/** Options of {@link startDemoUpstream}. */
export interface DemoUpstreamOptions {
  /** The API key requests must present as `Authorization: Bearer <key>`. */
  apiKey: string;
  /**
   * The loopback port to listen on; 0 picks a free one.
   * @default 0
   */
  port?: number;
}

/** A running demo upstream. */
export interface DemoUpstream {
  /** The OpenAI base URL, e.g. `http://127.0.0.1:43121/v1`. */
  readonly url: string;
  /** Stops listening and drops open connections. */
  close(): Promise<void>;
}

/** Words with the whitespace before each: the stream's chunks, one completion token each. */
function replyChunks(reply: string): string[] {
  const words = reply.match(/\s*\S+/g);
  if (!words) return [reply];
  const tail = reply.slice(words.join("").length);
  if (tail) words[words.length - 1] += tail;
  return words;
}

/** Prompt tokens: a quarter of the characters of the messages' text, rounded up. */
function promptTokensOf(messages: unknown): number {
  if (!Array.isArray(messages)) return 0;
  let chars = 0;
  for (const m of messages) {
    const content = (m as { content?: unknown } | null)?.content;
    const parts = Array.isArray(content) ? content : [{ text: content }];
    for (const part of parts) {
      const text = (part as { text?: unknown } | null)?.text;
      if (typeof text === "string") chars += text.length;
    }
  }
  return Math.ceil(chars / 4);
}

function errorBody(status: number, message: string, code: string | null = null) {
  const type = status >= 500 ? "server_error" : "invalid_request_error";
  return { error: { message, type, param: null, code } };
}

function send(res: ServerResponse, status: number, body: unknown): void {
  if (res.destroyed) return;
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of req) parts.push(chunk as Buffer);
  return Buffer.concat(parts).toString("utf8");
}

/**
 * Starts the demo upstream on a loopback port (`port`, a free one by default). A port that is
 * taken is refused with an error naming it.
 *
 * @example
 * ```ts
 * const demo = await startDemoUpstream({ apiKey: "demo-upstream-key" });
 * await gateway.credentials.add({ provider: "openai", baseUrl: demo.url, secret: { apiKey: "demo-upstream-key" } });
 * ```
 */
export async function startDemoUpstream(options: DemoUpstreamOptions): Promise<DemoUpstream> {
  const chunks = replyChunks(DEMO_REPLY).map((c) => JSON.stringify(c));
  const completionTokens = chunks.length;
  const modelsBody = JSON.stringify({
    object: "list",
    data: DEMO_MODELS.map((id) => ({
      id,
      object: "model",
      created: 1_700_000_000,
      owned_by: "demo",
    })),
  });
  let nextId = 0;

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? "GET";
    const path = (req.url ?? "/").split("?")[0];
    const raw = method === "GET" || method === "HEAD" ? "" : await readBody(req);
    const isChat = method === "POST" && path === "/v1/chat/completions";
    if (!isChat && !(method === "GET" && path === "/v1/models")) {
      send(res, 404, errorBody(404, `Invalid URL (${method} ${path})`));
      return;
    }
    if (req.headers.authorization !== `Bearer ${options.apiKey}`) {
      send(res, 401, errorBody(401, "Incorrect API key provided.", "invalid_api_key"));
      return;
    }
    if (!isChat) {
      send(res, 200, modelsBody);
      return;
    }
    let chat: {
      model?: unknown;
      messages?: unknown;
      stream?: unknown;
      stream_options?: { include_usage?: unknown } | null;
    } | null = null;
    try {
      chat = JSON.parse(raw);
    } catch {}
    if (chat === null || typeof chat !== "object" || Array.isArray(chat)) {
      send(res, 400, errorBody(400, "We could not parse the JSON body of your request."));
      return;
    }
    if (typeof chat.model !== "string" || chat.model === "") {
      send(res, 400, errorBody(400, "you must provide a model parameter"));
      return;
    }
    const prompt = promptTokensOf(chat.messages);
    const usage = `{"prompt_tokens":${prompt},"completion_tokens":${completionTokens},"total_tokens":${prompt + completionTokens}}`;
    const id = `chatcmpl-demo${++nextId}`;
    const created = Math.floor(Date.now() / 1000);
    const head = (object: string) =>
      `"id":"${id}","object":"${object}","created":${created},"model":${JSON.stringify(chat.model)}`;
    if (chat.stream !== true) {
      send(
        res,
        200,
        `{${head("chat.completion")},"choices":[{"index":0,"message":{"role":"assistant",` +
          `"content":${JSON.stringify(DEMO_REPLY)},"refusal":null},"logprobs":null,` +
          `"finish_reason":"stop"}],"usage":${usage}}`,
      );
      return;
    }
    // With include_usage, OpenAI sends `"usage":null` on every chunk but the last one.
    const withUsage = chat.stream_options?.include_usage === true;
    const nullUsage = withUsage ? `,"usage":null` : "";
    const event = (rest: string) => `data: {${head("chat.completion.chunk")},${rest}}\n\n`;
    const delta = (d: string, finish: string) =>
      event(
        `"choices":[{"index":0,"delta":${d},"logprobs":null,"finish_reason":${finish}}]${nullUsage}`,
      );
    res.writeHead(200, {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-cache",
    });
    chunks.forEach((c, i) => {
      if (!res.destroyed)
        res.write(
          delta(i === 0 ? `{"role":"assistant","content":${c}}` : `{"content":${c}}`, "null"),
        );
    });
    if (res.destroyed) return;
    res.write(delta("{}", `"stop"`));
    if (withUsage) res.write(event(`"choices":[],"usage":${usage}`));
    res.end("data: [DONE]\n\n");
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) res.destroy();
      else send(res, 500, errorBody(500, `Demo upstream error: ${String(error)}`));
    });
  });
  const wanted = options.port ?? 0;
  await new Promise<void>((ok, fail) => {
    server.once("error", (error: NodeJS.ErrnoException) =>
      fail(
        error.code === "EADDRINUSE"
          ? new Error(
              `the demo upstream cannot listen on 127.0.0.1:${wanted}: the port is in use; pick another --demo-port (0 = any free port)`,
              { cause: error },
            )
          : error,
      ),
    );
    server.listen(wanted, "127.0.0.1", () => ok());
  });
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    close() {
      closing ??= new Promise<void>((ok) => {
        server.close(() => ok());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
