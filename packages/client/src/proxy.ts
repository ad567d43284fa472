import { errorFromBody, TokenpoolError } from "./error.js";
import { type Auth, parseBody, type Transport } from "./http.js";
import { parseSse } from "./sse.js";
import type {
  BillingSubscriptionResponse,
  BillingUsageResponse,
  KeyInfoData,
  KeyInfoResponse,
  TokenUsageData,
  TokenUsageResponse,
  TokenUsageSummaryQuery,
  TokenUsageSummaryResponse,
  TokenUsageSummaryRow,
} from "./wire.js";

/** A JSON object of a provider's API (request, response or stream chunk). */
export type ProviderJson = Record<string, any>;

/** Per-call options of the proxy helper. */
export interface ProxyCallOptions {
  /** Cancels the request (and a stream in progress). */
  signal?: AbortSignal;
}

/**
 * `client.proxy(apiKey)`: the proxy routes with a downstream key, in each provider's format.
 * Streams are async iterables of parsed chunk objects, read as they arrive; an error event in
 * the stream throws a {@link TokenpoolError}.
 */
export interface ProxyApi {
  /** `POST /v1/chat/completions` (OpenAI). */
  chat<T = ProviderJson>(body: ProviderJson, options?: ProxyCallOptions): Promise<T>;
  /** `POST /v1/chat/completions` with `stream: true`: the chunks, until `[DONE]`. */
  chatStream<T = ProviderJson>(body: ProviderJson, options?: ProxyCallOptions): AsyncIterable<T>;
  /** `POST /v1/messages` (Anthropic). */
  messages<T = ProviderJson>(body: ProviderJson, options?: ProxyCallOptions): Promise<T>;
  /** `POST /v1/messages` with `stream: true`: the events' data objects (`message_start` ... `message_stop`). */
  messagesStream<T = ProviderJson>(
    body: ProviderJson,
    options?: ProxyCallOptions,
  ): AsyncIterable<T>;
  /** `POST /v1beta/models/{model}:generateContent` (Gemini). */
  generateContent<T = ProviderJson>(
    model: string,
    body: ProviderJson,
    options?: ProxyCallOptions,
  ): Promise<T>;
  /** `POST /v1beta/models/{model}:streamGenerateContent?alt=sse`. */
  streamGenerateContent<T = ProviderJson>(
    model: string,
    body: ProviderJson,
    options?: ProxyCallOptions,
  ): AsyncIterable<T>;
  /** `POST /v1/responses` (OpenAI Responses API). */
  responses<T = ProviderJson>(body: ProviderJson, options?: ProxyCallOptions): Promise<T>;
  /** `POST /v1/responses` with `stream: true`: the events' data objects (`response.created` ... `response.completed`). */
  responsesStream<T = ProviderJson>(
    body: ProviderJson,
    options?: ProxyCallOptions,
  ): AsyncIterable<T>;
  /** `POST /v1/embeddings` (OpenAI). */
  embeddings<T = ProviderJson>(body: ProviderJson, options?: ProxyCallOptions): Promise<T>;
  /** `POST /v1/messages/count_tokens` (Anthropic): `{ input_tokens }`. */
  countTokens<T = ProviderJson>(body: ProviderJson, options?: ProxyCallOptions): Promise<T>;
  /** `GET /v1/models` (OpenAI's list: `{ object: "list", data: [{ id, ... }] }`). */
  models<T = ProviderJson>(options?: ProxyCallOptions): Promise<T>;
  /**
   * `GET /api/usage/token` (new-api): the key's own balance in quota units, the `data` of
   * `{ code: true, message: "ok", data }`. An expired or exhausted key may still read it.
   */
  tokenUsage(options?: ProxyCallOptions): Promise<TokenUsageData>;
  /**
   * `GET /api/usage/token/summary` (tokenpool's): the key's own usage and cost per UTC day
   * (default), model or UTC hour; `from` / `to` in Unix seconds (default: the last 30 days). The
   * key is sent in the `Authorization` header, never in the URL.
   * @example `await client.proxy(key).tokenUsageSummary({ by: "hour" })`
   */
  tokenUsageSummary(
    query?: TokenUsageSummaryQuery,
    options?: ProxyCallOptions,
  ): Promise<TokenUsageSummaryRow[]>;
  /** `GET /v1/dashboard/billing/subscription` (one-api/new-api): the key's grant in USD. */
  billingSubscription(options?: ProxyCallOptions): Promise<BillingSubscriptionResponse>;
  /** `GET /v1/dashboard/billing/usage`: what the key used, in US cents. */
  billingUsage(options?: ProxyCallOptions): Promise<BillingUsageResponse>;
  /** `GET /v1/key` (OpenRouter's shape): limit, balance, usage, rate limits and next refill. */
  keyInfo(options?: ProxyCallOptions): Promise<KeyInfoData>;
}

/** The version header Anthropic's API requires. */
const ANTHROPIC_VERSION = "2023-06-01";

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The parsed data of each event of an SSE answer. `[DONE]` ends it; an `error` event, or a data
 * object whose `error` is an object (OpenAI's and Gemini's mid-stream errors), throws.
 */
async function* streamChunks<T>(res: Response): AsyncGenerator<T> {
  const type = res.headers.get("content-type") ?? "";
  if (!/text\/event-stream/i.test(type) || !res.body) {
    // Not a stream (e.g. a JSON error with a 2xx status): one object, or an error.
    const body = parseBody(await res.text());
    if (isObject(body) && (body.error !== undefined || body.success === false))
      throw errorFromBody(res.status, body);
    if (body !== undefined) yield body as T;
    return;
  }
  for await (const ev of parseSse(res.body)) {
    const data = ev.data.trim();
    if (data === "[DONE]") return;
    if (data === "") continue;
    const parsed = parseBody(data);
    if (ev.event === "error" || (isObject(parsed) && isObject(parsed.error))) {
      // The gateway ends a broken stream with its format's error event and status 502.
      const code = isObject(parsed) && isObject(parsed.error) ? parsed.error.code : undefined;
      throw errorFromBody(typeof code === "number" ? code : 502, parsed, "stream error");
    }
    if (!isObject(parsed) && !Array.isArray(parsed))
      throw new TokenpoolError("stream event is not JSON", { status: res.status, body: ev.data });
    yield parsed as T;
  }
}

/** An async iterable that sends its request when iteration starts. */
function lazyStream<T>(open: () => Promise<Response>): AsyncIterable<T> {
  return {
    async *[Symbol.asyncIterator]() {
      yield* streamChunks<T>(await open());
    },
  };
}

/** `client.proxy(apiKey)` on a transport. */
export function proxyApi(t: Transport, apiKey: string): ProxyApi {
  const openai = { header: "authorization", value: `Bearer ${apiKey}` };
  const anthropic = {
    header: "x-api-key",
    value: apiKey,
    extra: { "anthropic-version": ANTHROPIC_VERSION },
  };
  const gemini = { header: "x-goog-api-key", value: apiKey };
  const stream = { accept: "text/event-stream" };
  const modelPath = (model: string, method: string) =>
    `v1beta/models/${encodeURIComponent(model)}:${method}`;
  /** A JSON call whose body gets `stream: false`. */
  const whole =
    (path: string, auth: Auth) =>
    <T>(body: ProviderJson, o?: ProxyCallOptions) =>
      t.request<T>("POST", path, { auth, json: { ...body, stream: false }, signal: o?.signal });
  /** The same call with `stream: true`, read as an SSE stream. */
  const streamed =
    (path: string, auth: Auth) =>
    <T>(body: ProviderJson, o?: ProxyCallOptions) =>
      lazyStream<T>(() =>
        t.send("POST", path, {
          auth,
          json: { ...body, stream: true },
          headers: stream,
          signal: o?.signal,
        }),
      );
  return {
    chat: whole("v1/chat/completions", openai),
    chatStream: streamed("v1/chat/completions", openai),
    messages: whole("v1/messages", anthropic),
    messagesStream: streamed("v1/messages", anthropic),
    generateContent: (model, body, o) =>
      t.request("POST", modelPath(model, "generateContent"), {
        auth: gemini,
        json: body,
        signal: o?.signal,
      }),
    streamGenerateContent: (model, body, o) =>
      lazyStream(() =>
        t.send("POST", modelPath(model, "streamGenerateContent"), {
          auth: gemini,
          query: { alt: "sse" },
          json: body,
          headers: stream,
          signal: o?.signal,
        }),
      ),
    responses: whole("v1/responses", openai),
    responsesStream: streamed("v1/responses", openai),
    embeddings: (body, o) =>
      t.request("POST", "v1/embeddings", { auth: openai, json: body, signal: o?.signal }),
    countTokens: (body, o) =>
      t.request("POST", "v1/messages/count_tokens", {
        auth: anthropic,
        json: body,
        signal: o?.signal,
      }),
    models: (o) => t.request("GET", "v1/models", { auth: openai, signal: o?.signal }),
    tokenUsage: async (o) =>
      (
        await t.request<TokenUsageResponse>("GET", "api/usage/token", {
          auth: openai,
          signal: o?.signal,
        })
      ).data,
    tokenUsageSummary: async (query, o) =>
      (
        await t.request<TokenUsageSummaryResponse>("GET", "api/usage/token/summary", {
          auth: openai,
          query: { ...query },
          signal: o?.signal,
        })
      ).data,
    billingSubscription: (o) =>
      t.request("GET", "v1/dashboard/billing/subscription", { auth: openai, signal: o?.signal }),
    billingUsage: (o) =>
      t.request("GET", "v1/dashboard/billing/usage", { auth: openai, signal: o?.signal }),
    keyInfo: async (o) =>
      (await t.request<KeyInfoResponse>("GET", "v1/key", { auth: openai, signal: o?.signal })).data,
  };
}
