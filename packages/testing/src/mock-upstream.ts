import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { listenMock, mockCloser } from "./listen.js";
import { anthropicErrorBody, handleAnthropic, isAnthropicPath } from "./mock/anthropic.js";
import { googleErrorBody, handleCodeAssist, handleGemini, isGooglePath } from "./mock/gemini.js";
import { chatNeedsTools, handleChatWithTools, handleOpenAIExtra } from "./mock/openai-extra.js";
import {
  countMockPromptTokens,
  customUsage,
  type MockCall,
  type MockEnv,
  type MockUsageCounts,
  maskKey,
  openAIErrorBody,
  resetSocket,
  resetWhenFlushed,
  SSE_HEADERS,
  sendJson,
  splitMockReply,
  sseData,
  sseEvent,
  withExtra,
} from "./mock/shared.js";
import { DEFAULT_MOCK_TOOL_ARGUMENTS } from "./mock/tools.js";

export { type AnthropicErrorBody, anthropicErrorBody } from "./mock/anthropic.js";
export {
  DEFAULT_MOCK_GEMINI_MODELS,
  type GoogleErrorBody,
  googleErrorBody,
  MOCK_CODE_ASSIST_PROJECT,
} from "./mock/gemini.js";
export { MOCK_EMBEDDING_DIMENSIONS, mockEmbedding } from "./mock/openai-extra.js";
export {
  countMockPromptTokens,
  type MockUsageCounts,
  type OpenAIErrorBody,
  openAIErrorBody,
  splitMockReply,
} from "./mock/shared.js";
export { DEFAULT_MOCK_TOOL_ARGUMENTS, MOCK_TOOL_CALL_TOKENS } from "./mock/tools.js";

/** The reply text of a mock upstream when no `reply` option is given. */
export const DEFAULT_MOCK_REPLY = "Hello from the mock upstream, this is a test reply.";

/** The models listed by `GET /v1/models` when no `models` option is given. */
export const DEFAULT_MOCK_MODELS: readonly string[] = [
  "gpt-4o-mini",
  "gpt-4o",
  "gpt-4.1-mini",
  "o3-mini",
];

/** Options of {@link createMockUpstream}. */
export interface MockUpstreamOptions {
  /**
   * Port to listen on; 0 picks a free one.
   * @default 0
   */
  port?: number;
  /**
   * Interface to listen on.
   * @default "127.0.0.1"
   */
  host?: string;
  /**
   * Accepted upstream API keys. When given, every `/v1` request needs
   * `Authorization: Bearer <one of them>` and gets a 401 OpenAI error otherwise.
   * When omitted, any (or no) key is accepted.
   */
  apiKeys?: readonly string[];
  /**
   * Decides whether a bearer token is accepted, e.g. the access tokens a mock OAuth server
   * issued: `authorize: (token) => oauth.accepts(token)`. When given, every `/v1` request needs
   * `Authorization: Bearer <token>` with a token in `apiKeys` or accepted by this function, and
   * gets a 401 OpenAI error otherwise. When neither is given, any (or no) key is accepted.
   */
  authorize?: (token: string) => boolean;
  /**
   * The assistant reply of every chat completion. See {@link splitMockReply} for how it is
   * cut into stream chunks and counted as completion tokens.
   * @default DEFAULT_MOCK_REPLY
   */
  reply?: string;
  /**
   * Model ids listed by `GET /v1/models`.
   * @default DEFAULT_MOCK_MODELS
   */
  models?: readonly string[];
  /**
   * Delay between two SSE chunks of a streaming reply, in milliseconds. A request can override
   * it with the header `x-mock-chunk-delay-ms`.
   * @default 0
   */
  chunkDelayMs?: number;
  /**
   * How many requests {@link MockUpstream.requests} keeps (the most recent ones). 0 disables
   * recording, which the benchmarks use.
   * @default 1000
   */
  maxRecordedRequests?: number;
  /**
   * Computes the `usage` object of each chat completion (the JSON answer's and the stream's
   * usage chunk) instead of the default one, e.g. to report cached or reasoning tokens or a
   * prompt count from a real tokenizer. It receives the parsed request body and the default
   * counts; `total_tokens` is added when the result has none.
   * @default the counts described on {@link createMockUpstream}
   */
  usage?: (request: Record<string, unknown>, defaults: MockUsageCounts) => Record<string, unknown>;
  /**
   * The arguments of the tool call the mock answers to a request that declares tools (every
   * chat-like format, see {@link createMockUpstream}).
   * @default DEFAULT_MOCK_TOOL_ARGUMENTS (`{ query: "mock" }`)
   */
  toolArguments?: Record<string, unknown>;
}

/**
 * A fault to inject with {@link MockUpstream.fail}. Each request takes the first queued fault
 * whose `path` matches, before authentication and routing. The parts combine: `delayMs` happens
 * first, then `status` (an error answer) wins over `resetAfterChunks`; `headers` are added to
 * whatever answer is sent.
 */
export interface MockFault {
  /**
   * Answer with this HTTP status and an error body (or `body`) instead of the normal reply. The
   * error body has the shape of the path's format: Anthropic's under `/v1/messages`, Google's under
   * `/v1beta/` and `/v1internal`, OpenAI's elsewhere.
   */
  status?: number;
  /** Body of the `status` answer: a string is sent as is, anything else as JSON. */
  body?: unknown;
  /** Extra response headers, e.g. `{ "retry-after": "2" }`. */
  headers?: Record<string, string>;
  /** Delay before the response starts, in milliseconds. */
  delayMs?: number;
  /**
   * Streaming requests: send this many SSE events (headers flushed), then reset the connection
   * (TCP RST). Events count in stream order, as the format sends them: for OpenAI chat one per
   * word, the `finish_reason` chunk, the usage chunk when requested, `[DONE]`; for Anthropic
   * `message_start`, `content_block_start`, `ping`, one `content_block_delta` per word, ...; for
   * Gemini one event per word. Non-streaming requests (every route but `GET /v1/models`): reset
   * the connection before answering.
   */
  resetAfterChunks?: number;
  /**
   * How many requests this fault applies to.
   * @default 1
   */
  times?: number;
  /** Only requests whose path starts with this (e.g. `"/v1/chat/completions"`); all when omitted. */
  path?: string;
  /**
   * Quote the credential the request presented (`Authorization: Bearer`, `x-api-key`,
   * `x-goog-api-key` or `?key=`) back in full, as careless upstreams do: in the error message of a
   * `status` answer without `body` ("Incorrect API key provided: <credential>."), in an
   * `x-upstream-credential` response header, and in the error event of `errorEvent`.
   */
  echoCredential?: boolean;
  /**
   * With `status`: answer 200 with a Server-Sent Events stream that carries one error event in
   * the path's format (OpenAI `data: {"error":...}`, Anthropic and Responses `event: error`,
   * Google `data: {"error":...}`) and ends, instead of a JSON error answer.
   */
  errorEvent?: boolean;
}

/** One request received by a mock upstream. */
export interface RecordedRequest {
  method: string;
  /** The request target as received: path and query string, e.g. `/v1/chat/completions`. */
  path: string;
  /** Request headers with lower-case names; repeated headers are joined with `", "`. */
  headers: Record<string, string>;
  /** The body parsed as JSON, or `null` when it was empty or not JSON. */
  body: unknown;
  /** Arrival time, `Date.now()`. */
  at: number;
  /**
   * When the client closed the connection before the answer was complete (`Date.now()`), e.g.
   * a gateway aborting the upstream request because its own client went away; absent otherwise.
   */
  abortedAt?: number;
}

/** A running mock upstream (OpenAI, Anthropic and Gemini formats). */
export interface MockUpstream {
  /** Base URL including `/v1`, e.g. `http://127.0.0.1:41234/v1`. */
  readonly url: string;
  /** Origin without `/v1`, e.g. `http://127.0.0.1:41234`. */
  readonly origin: string;
  /** The port the server listens on. */
  readonly port: number;
  /** The most recent requests, oldest first (capped by `maxRecordedRequests`). */
  readonly requests: readonly RecordedRequest[];
  /** Requests being answered right now (received, their answer not yet finished or closed). */
  readonly inFlight: number;
  /** The most requests answered at once since the start (or the last {@link MockUpstream.reset}). */
  readonly peakInFlight: number;
  /** Queue a fault for the next matching request(s); faults apply in the order they were queued. */
  fail(fault: MockFault): void;
  /** Forget recorded requests and queued faults, and start the peak count again from now. */
  reset(): void;
  /** Stop listening and destroy open connections (including streams in progress). */
  close(): Promise<void>;
}

interface QueuedFault extends MockFault {
  remaining: number;
}

interface StreamPlan {
  /** Start of a content chunk, up to `"delta":`. */
  prefix: string;
  /** End of a content chunk, after the delta. */
  suffix: string;
  finalChunk: string;
  usageChunk: string | null;
  delay: number;
  resetAfter: number | undefined;
  extraHeaders: Record<string, string> | undefined;
}

interface Reply {
  /** JSON-encoded chunk texts, so that streaming needs one concatenation per chunk. */
  chunkJson: string[];
  /** The whole reply as a JSON string. */
  json: string;
  completionTokens: number;
}

const DEFAULT_MAX_RECORDED = 1000;
const CHAT_PATH = "/v1/chat/completions";
const MODELS_PATH = "/v1/models";

/**
 * Start a mock upstream on node:http, for tests and benchmarks. It speaks the OpenAI format and
 * the other wire formats a gateway forwards to (see the package README for every route).
 *
 * Routes: `POST /v1/chat/completions` (JSON, or SSE with `stream: true`) and `GET /v1/models`;
 * OpenAI `POST /v1/completions`, `/v1/embeddings`, `/v1/responses`; Anthropic
 * `POST /v1/messages` and `/v1/messages/count_tokens`; Gemini `GET /v1beta/models` and
 * `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent`, `:countTokens`; Cloud
 * Code Assist `POST /v1internal:generateContent`, `:streamGenerateContent`, `:countTokens`,
 * `:loadCodeAssist`, `:onboardUser`.
 *
 * Usage in every answer, unless the `usage` option computes it: `completion_tokens` = number of
 * chunks of the reply ({@link splitMockReply}: one per word), `prompt_tokens` = `ceil(total
 * characters of all message contents / 4)` ({@link countMockPromptTokens}), `total_tokens` =
 * their sum. In a stream, the usage chunk (`choices: []`) is sent only when
 * `stream_options.include_usage` is true; every chunk before it then carries `"usage": null`, as
 * OpenAI's do.
 *
 * Errors use OpenAI's error body (`{ error: { message, type, param, code } }`): 401
 * `invalid_api_key` for a missing or unknown key (when `apiKeys` is set), 400 for a body that is
 * not a JSON object or a chat request without a string `model`, 404 for other routes. Anthropic
 * and Google routes answer in their own error shapes ({@link anthropicErrorBody},
 * {@link googleErrorBody}).
 *
 * Tools (OpenAI chat and Responses, Anthropic, Gemini, Code Assist): when the request declares
 * tools and its last turn is not a tool result, the answer is one call of the first declared tool
 * (or the one `tool_choice` forces; none with `tool_choice` "none") with `toolArguments`, counted
 * as {@link MOCK_TOOL_CALL_TOKENS} completion tokens. When the last turn is a tool result, the
 * reply is `Tool result: <its text>`. Chat requests without tools nor a trailing tool message take
 * the unchanged fast path.
 *
 * @example
 * ```ts
 * const upstream = await createMockUpstream({ apiKeys: ["sk-test"] });
 * upstream.fail({ status: 429, headers: { "retry-after": "1" } });
 * // ... point the gateway at upstream.url, send requests, inspect upstream.requests
 * await upstream.close();
 * ```
 */
export async function createMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const host = options.host ?? "127.0.0.1";
  const apiKeys = options.apiKeys ? new Set(options.apiKeys) : null;
  const models = options.models ?? DEFAULT_MOCK_MODELS;
  const defaultChunkDelay = options.chunkDelayMs ?? 0;
  const maxRecorded = options.maxRecordedRequests ?? DEFAULT_MAX_RECORDED;
  const chunks = splitMockReply(options.reply ?? DEFAULT_MOCK_REPLY);
  const reply: Reply = {
    chunkJson: chunks.map((chunk) => JSON.stringify(chunk)),
    json: JSON.stringify(chunks.join("")),
    completionTokens: chunks.length,
  };
  const toolArguments = options.toolArguments ?? DEFAULT_MOCK_TOOL_ARGUMENTS;
  const modelsBody = JSON.stringify({
    object: "list",
    data: models.map((id) => ({ id, object: "model", created: 1_700_000_000, owned_by: "mock" })),
  });

  const requests: RecordedRequest[] = [];
  const faults: QueuedFault[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let nextId = 0;

  function takeFault(path: string): QueuedFault | undefined {
    const index = faults.findIndex((f) => f.path === undefined || path.startsWith(f.path));
    if (index < 0) return undefined;
    const fault = faults[index]!;
    fault.remaining -= 1;
    if (fault.remaining <= 0) faults.splice(index, 1);
    return fault;
  }

  /** Resolves after `ms`, or early (with false) when the response is closed or the mock closes. */
  function wait(ms: number, res: ServerResponse): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        timers.delete(timer);
        res.off("close", onClose);
        resolve(ok);
      };
      const onClose = () => done(false);
      const timer = setTimeout(() => done(!res.destroyed), ms);
      timers.add(timer);
      res.once("close", onClose);
    });
  }

  const env: MockEnv = {
    replyChunks: chunks,
    toolArguments,
    models,
    usage: options.usage,
    authRequired: apiKeys !== null || options.authorize !== undefined,
    accepts: (token) =>
      apiKeys?.has(token) === true || (token !== "" && options.authorize?.(token) === true),
    nextId: () => ++nextId,
    wait,
  };

  /** A routed request for the format handlers under ./mock/. */
  function makeCall(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: unknown,
    malformed: boolean,
    fault: QueuedFault | undefined,
  ): MockCall {
    const queryAt = path.indexOf("?");
    const headerDelay = req.headers["x-mock-chunk-delay-ms"];
    return {
      req,
      res,
      method: req.method ?? "GET",
      pathname: queryAt < 0 ? path : path.slice(0, queryAt),
      query: new URLSearchParams(queryAt < 0 ? "" : path.slice(queryAt + 1)),
      body,
      malformed,
      resetAfter: fault?.resetAfterChunks,
      extraHeaders: fault?.headers,
      chunkDelay: headerDelay === undefined ? defaultChunkDelay : Number(headerDelay) || 0,
    };
  }

  /** The mock's routes besides OpenAI chat and models; false when none matches. */
  async function handleOther(call: MockCall): Promise<boolean> {
    const { pathname } = call;
    const anthropic = isAnthropicPath(pathname);
    const google = !anthropic && isGooglePath(pathname);
    if (!anthropic && !google && call.method !== "POST") return false;
    if (anthropic) await handleAnthropic(env, call);
    else if (pathname.startsWith("/v1internal")) await handleCodeAssist(env, call);
    else if (google) await handleGemini(env, call);
    else return handleOpenAIExtra(env, call);
    return true;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = req.method ?? "GET";
    const path = req.url ?? "/";
    const raw = method === "GET" || method === "HEAD" ? null : await readBody(req);
    let body: unknown = null;
    let malformed = false;
    if (raw && raw.length > 0) {
      try {
        body = JSON.parse(raw.toString("utf8"));
      } catch {
        malformed = true;
      }
    }
    if (maxRecorded > 0) {
      if (requests.length >= maxRecorded) requests.shift();
      const rec: RecordedRequest = {
        method,
        path,
        headers: flattenHeaders(req),
        body,
        at: Date.now(),
      };
      requests.push(rec);
      res.once("close", () => {
        if (!res.writableFinished) rec.abortedAt = Date.now();
      });
    }

    const fault = faults.length > 0 ? takeFault(path) : undefined;
    const presented = fault?.echoCredential ? presentedCredential(req, path) : undefined;
    const extraHeaders =
      presented === undefined
        ? fault?.headers
        : { ...fault?.headers, "x-upstream-credential": presented };
    if (fault?.delayMs && !(await wait(fault.delayMs, res))) return;
    const queryAt = path.indexOf("?");
    const pathname = queryAt < 0 ? path : path.slice(0, queryAt);
    if (fault?.status !== undefined) {
      const message =
        presented === undefined
          ? undefined
          : `Incorrect API key provided: ${presented}. You can find your API key in your account settings.`;
      if (fault.errorEvent) {
        res.writeHead(200, withExtra(SSE_HEADERS, extraHeaders));
        res.end(faultErrorEvent(pathname, fault.status, message));
        return;
      }
      const faultBody =
        fault.body === undefined ? faultErrorBody(pathname, fault.status, message) : fault.body;
      sendJson(res, fault.status, faultBody, extraHeaders);
      return;
    }

    const isChat = pathname === CHAT_PATH && method === "POST";
    const isModels = pathname === MODELS_PATH && method === "GET";
    if (!isChat && !isModels) {
      if (await handleOther(makeCall(req, res, path, body, malformed, fault))) return;
      const error = openAIErrorBody(404, `Invalid URL (${method} ${pathname})`);
      sendJson(res, 404, error, extraHeaders);
      return;
    }
    if (apiKeys || options.authorize) {
      const denied = checkAuth(req.headers.authorization, apiKeys, options.authorize);
      if (denied) {
        sendJson(res, 401, openAIErrorBody(401, denied, "invalid_api_key"), extraHeaders);
        return;
      }
    }
    if (isModels) {
      sendJson(res, 200, modelsBody, extraHeaders);
      return;
    }

    if (malformed || body === null || typeof body !== "object" || Array.isArray(body)) {
      const message =
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't " +
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was " +
        "sent was not valid JSON.)";
      sendJson(res, 400, openAIErrorBody(400, message), extraHeaders);
      return;
    }
    const chat = body as {
      model?: unknown;
      messages?: unknown;
      tools?: unknown;
      stream?: unknown;
      stream_options?: { include_usage?: unknown } | null;
    };
    if (typeof chat.model !== "string" || chat.model === "") {
      const error = openAIErrorBody(400, "you must provide a model parameter", null, "model");
      sendJson(res, 400, error, extraHeaders);
      return;
    }
    if (chatNeedsTools(chat)) {
      const call = makeCall(req, res, path, body, malformed, fault);
      await handleChatWithTools(env, call, chat as Record<string, unknown> & { model: string });
      return;
    }

    const promptTokens = countMockPromptTokens(chat.messages);
    const usage = options.usage
      ? customUsage(
          options.usage(chat as Record<string, unknown>, {
            prompt_tokens: promptTokens,
            completion_tokens: reply.completionTokens,
          }),
        )
      : `{"prompt_tokens":${promptTokens},"completion_tokens":${reply.completionTokens},` +
        `"total_tokens":${promptTokens + reply.completionTokens}}`;
    const id = `chatcmpl-mock${++nextId}`;
    const created = Math.floor(Date.now() / 1000);
    const model = JSON.stringify(chat.model);

    if (chat.stream !== true) {
      if (fault?.resetAfterChunks !== undefined) {
        resetSocket(res);
        return;
      }
      const json =
        `{"id":"${id}","object":"chat.completion","created":${created},"model":${model},` +
        `"choices":[{"index":0,"message":{"role":"assistant","content":${reply.json},` +
        `"refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":${usage}}`;
      sendJson(res, 200, json, extraHeaders);
      return;
    }

    const includeUsage = chat.stream_options?.include_usage === true;
    const headerDelay = req.headers["x-mock-chunk-delay-ms"];
    const delay = headerDelay === undefined ? defaultChunkDelay : Number(headerDelay) || 0;
    const resetAfter = fault?.resetAfterChunks;
    await streamReply(res, {
      prefix:
        `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},` +
        `"model":${model},"choices":[{"index":0,"delta":`,
      // With include_usage, OpenAI sends `"usage":null` on every chunk but the last one.
      suffix: includeUsage
        ? `,"logprobs":null,"finish_reason":null}],"usage":null}\n\n`
        : `,"logprobs":null,"finish_reason":null}]}\n\n`,
      finalChunk:
        `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},` +
        `"model":${model},"choices":[{"index":0,"delta":{},"logprobs":null,` +
        `"finish_reason":"stop"}]${includeUsage ? `,"usage":null` : ""}}\n\n`,
      usageChunk: includeUsage
        ? `data: {"id":"${id}","object":"chat.completion.chunk","created":${created},` +
          `"model":${model},"choices":[],"usage":${usage}}\n\n`
        : null,
      delay,
      resetAfter,
      extraHeaders,
    });
  }

  async function streamReply(res: ServerResponse, stream: StreamPlan): Promise<void> {
    const { prefix, suffix, delay, resetAfter } = stream;
    const words = reply.chunkJson.length;
    // Events: one per word, the finish_reason chunk, the usage chunk (optional), [DONE].
    const events = words + (stream.usageChunk ? 3 : 2);
    const last = resetAfter === undefined ? events : Math.min(resetAfter, events);
    res.writeHead(200, withExtra(SSE_HEADERS, stream.extraHeaders));
    // Without a delay the first chunk carries the headers; otherwise the client must see them now.
    if (delay > 0 || last === 0) res.flushHeaders();
    for (let i = 0; i < last; i++) {
      if (i > 0 && i <= words && delay > 0 && !(await wait(delay, res))) return;
      if (res.destroyed) return;
      let event: string;
      if (i === 0 && words > 0)
        event = `${prefix}{"role":"assistant","content":${reply.chunkJson[0]}}${suffix}`;
      else if (i < words) event = `${prefix}{"content":${reply.chunkJson[i]}}${suffix}`;
      else if (i === words) event = stream.finalChunk;
      else if (i === words + 1 && stream.usageChunk) event = stream.usageChunk;
      else event = "data: [DONE]\n\n";
      if (i === events - 1 && resetAfter === undefined) res.end(event);
      else res.write(event);
    }
    if (resetAfter !== undefined) resetWhenFlushed(res);
  }

  let inFlight = 0;
  let peakInFlight = 0;
  const server = createServer((req, res) => {
    inFlight++;
    if (inFlight > peakInFlight) peakInFlight = inFlight;
    res.once("close", () => {
      inFlight--;
    });
    handle(req, res).catch((error: unknown) => {
      if (res.headersSent) res.destroy();
      else sendJson(res, 500, openAIErrorBody(500, `Mock upstream error: ${String(error)}`));
    });
  });

  const { port, origin } = await listenMock(server, options.port ?? 0, host);

  return {
    url: `${origin}/v1`,
    origin,
    port,
    requests,
    get inFlight() {
      return inFlight;
    },
    get peakInFlight() {
      return peakInFlight;
    },
    fail(fault: MockFault): void {
      faults.push({ ...fault, remaining: fault.times ?? 1 });
    },
    reset(): void {
      requests.length = 0;
      faults.length = 0;
      peakInFlight = inFlight;
    },
    close: mockCloser(server, timers),
  };
}

/** The error body of a fault without `body`, in the shape of the path's format. */
function faultErrorBody(
  pathname: string,
  status: number,
  message = `Mock upstream fault: HTTP ${status}`,
): unknown {
  if (isAnthropicPath(pathname)) return anthropicErrorBody(status, message);
  if (isGooglePath(pathname)) return googleErrorBody(status, message);
  return openAIErrorBody(status, message);
}

/** The SSE error event of an `errorEvent` fault, in the shape of the path's format. */
function faultErrorEvent(
  pathname: string,
  status: number,
  message = `Mock upstream fault: HTTP ${status}`,
): string {
  if (isAnthropicPath(pathname)) return sseEvent("error", anthropicErrorBody(status, message));
  if (isGooglePath(pathname)) return sseData(googleErrorBody(status, message));
  if (pathname.startsWith("/v1/responses"))
    return sseEvent("error", { type: "error", code: String(status), message, param: null });
  return sseData(openAIErrorBody(status, message));
}

/** The credential a request presented, the way each format's clients send it. */
function presentedCredential(req: IncomingMessage, path: string): string {
  const auth = req.headers.authorization;
  if (auth?.startsWith("Bearer ")) return auth.slice(7).trim();
  const k = req.headers["x-api-key"] ?? req.headers["x-goog-api-key"];
  if (typeof k === "string" && k !== "") return k;
  const q = path.indexOf("?");
  return (q < 0 ? null : new URLSearchParams(path.slice(q + 1)).get("key")) ?? "";
}

function checkAuth(
  header: string | undefined,
  apiKeys: ReadonlySet<string> | null,
  authorize: ((token: string) => boolean) | undefined,
): string | null {
  if (!header) {
    return (
      "You didn't provide an API key. You need to provide your API key in an Authorization " +
      "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    );
  }
  const key = header.startsWith("Bearer ") ? header.slice(7).trim() : "";
  if (apiKeys?.has(key) || (key !== "" && authorize?.(key))) return null;
  return `Incorrect API key provided: ${maskKey(key)}.`;
}

function flattenHeaders(req: IncomingMessage): Record<string, string> {
  const out: Record<string, string> = {};
  const headers = req.headers;
  for (const name in headers) {
    const value = headers[name];
    if (value !== undefined) out[name] = Array.isArray(value) ? value.join(", ") : value;
  }
  return out;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on("data", (chunk: Buffer) => parts.push(chunk));
    req.on("end", () => resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts)));
    req.on("error", reject);
  });
}
