import { randomUUID } from "node:crypto";
import type { Dispatcher } from "undici";
import type { Billing, TokenUsage } from "../billing/price.js";
import { ZERO_USAGE } from "../billing/price.js";
import { countPromptTokens, promptTokenBound, tokenCounter } from "../billing/tokens.js";
import { isOAuthRefreshError, type OAuthRefresher } from "../credentials/oauth.js";
import type { CredentialPool, PickOptions } from "../credentials/pool.js";
import { SecretMask } from "../credentials/secret-mask.js";
import { GatewayError } from "../errors.js";
import type { GatewayEmitter } from "../events.js";
import { type ClientSignal, type Exchange, header, type Reply } from "../exchange.js";
import type { AuthorizedKey } from "../keys/service.js";
import type { Logger } from "../logger.js";
import type { UpstreamClient } from "../net/upstream.js";
import { adapterFor, GENERATION_PROVIDERS, OPENAI_API_PROVIDERS } from "../providers/index.js";
import { findUsageObject, openaiHeaders, openaiProvider } from "../providers/openai.js";
import type { UpstreamAdapter } from "../providers/types.js";
import type { SettingsService } from "../settings/service.js";
import type {
  CredentialRecord,
  Reservation,
  ReservationMeta,
  ReserveResult,
  Store,
} from "../store/types.js";
import {
  errorBody,
  errorMessageOf,
  type Json,
  streamTranslator,
  translateRequest,
  translateResponse,
  unwrapResponse,
  usageOf,
  type WireFormat,
} from "../translate/index.js";
import type { UsageWriter } from "../usage/writer.js";
import { redactSecrets } from "../util/secrets.js";
import {
  AnthropicInspector,
  GeminiInspector,
  OpenAIInspector,
  ResponsesInspector,
  relayStream,
  relayTranslated,
  type StreamInspector,
  textOfEvents,
} from "./relay.js";
import { replyText, type StreamedText, streamedText } from "./sse.js";

/** What the proxy engine needs from the gateway. */
export interface ProxyDeps {
  store: Store;
  pool: CredentialPool;
  /** Refreshes OAuth credentials (single flight, cross-instance lock). */
  oauth: OAuthRefresher;
  upstream: UpstreamClient;
  billing: Billing;
  usage: UsageWriter;
  settings: SettingsService;
  events: GatewayEmitter;
  logger: Logger;
}

/** A parsed, authorised chat request. */
export interface ChatRequest {
  exchange: Exchange;
  /** `METHOD /path`, for usage records. */
  route: string;
  auth: AuthorizedKey;
  body: Record<string, unknown>;
  rawBody: Buffer;
  model: string;
  stream: boolean;
  /** The client's wire format (the body's and the answer's). */
  format: WireFormat;
  /**
   * OpenAI routes other than chat completions: the upstream path. These are passed through to
   * upstreams that speak the OpenAI API itself, never translated.
   */
  openaiPath?: "completions" | "embeddings";
  /** Gemini clients: `false` = a stream as one JSON array (no `alt=sse`). */
  sse?: boolean;
}

/** Upstream statuses worth another credential: rate limits, credential problems, server errors. */
function retriable(status: number): boolean {
  return status === 429 || status === 401 || status === 403 || status === 408 || status >= 500;
}

/** `Retry-After` in ms (seconds or an HTTP date), bounded to an hour. */
function retryAfterMs(h: Dispatcher.ResponseData["headers"]): number | undefined {
  const v = h["retry-after"];
  const s = Array.isArray(v) ? v[0] : v;
  if (!s) return undefined;
  const secs = Number(s);
  const ms = Number.isFinite(secs) ? secs * 1000 : Date.parse(s) - Date.now();
  return Number.isFinite(ms) && ms >= 0 ? Math.min(ms, 3_600_000) : undefined;
}

/** Spliced in after a body's opening brace when a streaming client did not ask for usage itself. */
const INCLUDE_USAGE = Buffer.from('{"stream_options":{"include_usage":true},');

/**
 * The body of an OpenAI client sent to an OpenAI-API upstream. The client's bytes go as they
 * are when nothing must change; asking for usage in a stream (chat and legacy completions: the
 * Responses API always reports it) is a byte splice (no re-serialisation) when the client sent
 * no `stream_options`; anything else is re-serialised.
 */
function openaiBody(
  req: ChatRequest,
  upstreamModel: string,
  includeUsage: boolean,
): Buffer | string {
  const askUsage = req.stream && !includeUsage && req.openaiPath !== "embeddings";
  if (upstreamModel === req.model && !askUsage) return req.rawBody;
  if (upstreamModel === req.model && req.body.stream_options === undefined) {
    const open = req.rawBody.indexOf(0x7b);
    if (open >= 0) return Buffer.concat([INCLUDE_USAGE, req.rawBody.subarray(open + 1)]);
  }
  return JSON.stringify({
    ...req.body,
    model: upstreamModel,
    ...(askUsage
      ? { stream_options: { ...(req.body.stream_options as object), include_usage: true } }
      : {}),
  });
}

/** How one attempt talks to its upstream. */
interface CallPlan {
  url: URL;
  headers: Record<string, string>;
  body: Buffer | string;
  /** The upstream's wire format. */
  format: WireFormat;
  /** Answers arrive wrapped in `{ response }` (Cloud Code Assist). */
  wrapped: boolean;
  /** Client and upstream speak the same format with no envelope: bytes are relayed as they are. */
  passthrough: boolean;
}

/** Request bodies already translated for this request, by target format and upstream model. */
type Translations = Map<string, Json>;

/**
 * The call for one credential: its adapter's URL and headers, and the body in its format
 * (passed through, spliced, or translated from the client's format and cached for failover).
 */
function planCall(
  deps: ProxyDeps,
  req: ChatRequest,
  c: CredentialRecord,
  upstreamModel: string,
  model: string,
  includeUsage: boolean,
  translations: Translations,
): CallPlan | null {
  if (req.openaiPath) {
    return {
      url: openaiProvider.url(c.baseUrl, req.openaiPath),
      headers: openaiHeaders(c, req.stream),
      body: openaiBody(req, upstreamModel, includeUsage),
      format: "openai",
      wrapped: false,
      passthrough: true,
    };
  }
  const adapter: UpstreamAdapter | null = adapterFor(c, req.format);
  if (!adapter) return null;
  const { url, headers } = adapter.call(c, upstreamModel, req.stream);
  const wrapped = adapter.wrapped === true;
  const same = adapter.format === req.format;
  let body: Buffer | string;
  if (same && !wrapped && req.format === "openai")
    body = openaiBody(req, upstreamModel, includeUsage);
  else if (same && !wrapped && req.format === "gemini") body = req.rawBody;
  else if (same && !wrapped) {
    body =
      upstreamModel === req.model
        ? req.rawBody
        : JSON.stringify({ ...req.body, model: upstreamModel });
  } else {
    const k = `${adapter.format}\n${upstreamModel}`;
    let translated = translations.get(k);
    if (!translated) {
      translated = translateRequest(req.format, adapter.format, req.body, {
        model: upstreamModel,
        stream: req.stream,
      });
      translations.set(k, translated);
    }
    const project = deps.pool.projectFor(c.id, model) ?? c.secret.extra?.project_id;
    body = JSON.stringify(
      adapter.wrap ? adapter.wrap(translated, c, upstreamModel, project) : translated,
    );
  }
  if (same && req.format === "anthropic") {
    // The client chose its API version and betas; a credential's own beta flag is kept too.
    const v = header(req.exchange.headers, "anthropic-version");
    if (v) headers["anthropic-version"] = v;
    const b = header(req.exchange.headers, "anthropic-beta");
    if (b)
      headers["anthropic-beta"] = headers["anthropic-beta"]
        ? `${headers["anthropic-beta"]},${b}`
        : b;
  }
  const passthrough =
    same && !wrapped && (req.format !== "gemini" || !req.stream || req.sse !== false);
  return { url, headers, body, format: adapter.format, wrapped, passthrough };
}

/** The providers that can serve a request. */
function providersFor(req: ChatRequest): readonly string[] {
  if (req.openaiPath) return OPENAI_API_PROVIDERS;
  return GENERATION_PROVIDERS;
}

/** The most output tokens the client allows, in its format's field. */
function maxTokensOf(req: ChatRequest): number | undefined {
  const b = req.body;
  let m: unknown;
  if (req.format === "gemini") m = (b.generationConfig as Json | undefined)?.maxOutputTokens;
  else if (req.format === "responses") m = b.max_output_tokens;
  else m = b.max_completion_tokens ?? b.max_tokens;
  return typeof m === "number" && m >= 0 ? m : undefined;
}

/** The request as an OpenAI chat body, for counting its prompt. */
function openaiView(req: ChatRequest): Json {
  if (req.format === "openai") {
    if (req.openaiPath === "completions" || req.openaiPath === "embeddings") {
      const p = req.openaiPath === "completions" ? req.body.prompt : req.body.input;
      const text = Array.isArray(p) ? p.filter((x) => typeof x === "string").join("\n") : p;
      return {
        model: req.model,
        messages: [{ role: "user", content: typeof text === "string" ? text : "" }],
      };
    }
    return req.body;
  }
  return translateRequest(req.format, "openai", req.body, { model: req.model, stream: false });
}

const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
};

/**
 * Before forwarding, a request's prompt is tokenized only when its upper-bound price is more
 * than 1/TOKENIZE_WITHIN of what the key (or its owner) has left.
 */
export const TOKENIZE_WITHIN = 64;

/** Units held by this process's unsettled reservations, per gateway (by its Billing) and key. */
const heldByGateway = new WeakMap<Billing, Map<number, number>>();

function heldUnits(billing: Billing): Map<number, number> {
  let m = heldByGateway.get(billing);
  if (!m) {
    m = new Map();
    heldByGateway.set(billing, m);
  }
  return m;
}

/** The lazily counted usage of a request, for when the upstream reports none. */
interface LocalCount {
  /** Prompt tokens by the tokenizer; counted once, on first call. */
  promptTokens(): Promise<number>;
  /** Tokens of a model's output text (per choice), reasoning apart. */
  usage(text: StreamedText): Promise<TokenUsage>;
}

function localCount(req: ChatRequest): LocalCount {
  let prompt: Promise<number> | null = null;
  const promptTokens = () => {
    prompt ??= countPromptTokens(req.model, openaiView(req));
    return prompt;
  };
  return {
    promptTokens,
    async usage(text) {
      const count = await tokenCounter(req.model);
      const inputTokens = await promptTokens();
      let reasoningTokens = 0;
      for (const t of text.reasoning) reasoningTokens += count(t);
      let outputTokens = reasoningTokens;
      for (const t of text.output) outputTokens += count(t);
      return {
        inputTokens,
        outputTokens,
        reasoningTokens,
        cachedTokens: 0,
        totalTokens: inputTokens + outputTokens,
      };
    },
  };
}

/**
 * Reserves quota for a request before it is forwarded; the atomic `store.reserveQuota` decides.
 *
 * How much: the prompt tokens plus `max_completion_tokens` / `max_tokens` (else the configured
 * default), priced by {@link Billing.estimate}. Counting the prompt with the tokenizer costs
 * 100-300 µs of CPU for a 2 KB prompt and milliseconds for a long one, as much as the whole
 * rest of the proxy path, and the count only matters when the quota is nearly used up: an
 * over-reservation is given back at settlement. So:
 *
 * 1. The common case tokenizes nothing. The prompt is bounded by the body's size in bytes
 *    ({@link promptTokenBound}: a BPE token is at least one byte), and that upper bound is
 *    reserved when it is under 1/{@link TOKENIZE_WITHIN} of the balance hint: the cached key
 *    record's `remainQuota` (ignored for unlimited keys), or its owner's `quota` if lower, minus
 *    what this process's unsettled reservations of the key hold. Over-reserving then holds back
 *    a sliver of the balance while the request runs, and never decides between serving and
 *    refusing.
 * 2. Otherwise (a key near the end of its quota, or a prompt large for it) the prompt is counted
 *    with the tokenizer and that estimate is reserved, so a request is refused only when its
 *    real estimate does not fit.
 * 3. A refused upper bound is retried once with the tokenizer's estimate (the hint is a cached
 *    record and may be stale), then, as before, once more after queued settlements are written.
 * 4. A request still refused while reservations of the key (or its owner) are in flight, here or
 *    in another instance, is not refused yet: those settlements give back what their requests
 *    did not use, so "quota exhausted" would be premature. It waits for them (own queue
 *    flushed, backing off, at most `usage.reserveWaitMs`, not after the client left) and asks
 *    again, until granted, nothing is in flight any more, or the time is up.
 *
 * The reservation is a durable row of the store (written with the debit, same round-trip),
 * carrying `meta()`, and is held by the usage writer, which renews it until its commit is written.
 */
async function reserveFor(
  deps: ProxyDeps,
  req: ChatRequest,
  group: string,
  local: LocalCount,
  meta: () => ReservationMeta,
): Promise<{ result: ReserveResult; units: number }> {
  const { store, billing } = deps;
  const { key, user } = req.auth;
  const maxTokens = maxTokensOf(req);
  const exact = async () =>
    billing.estimate(req.model, group, await local.promptTokens(), maxTokens);

  const held = heldUnits(billing);
  // Held from before the store is asked, so that concurrent requests of the key see it at once.
  const attempt = async (units: number) => {
    held.set(key.id, (held.get(key.id) ?? 0) + units);
    // Meta per attempt: a row granted after a wait still gets a full lifetime.
    const r = await store.reserveQuota(key.id, units, meta());
    if (r.ok) deps.usage.hold(r.reservation);
    else release(held, key.id, units);
    return r;
  };

  let units = billing.estimate(req.model, group, promptTokenBound(req.rawBody), maxTokens);
  let counted = false;
  let hint = key.unlimitedQuota ? Number.POSITIVE_INFINITY : key.remainQuota;
  if (user && user.quota < hint) hint = user.quota;
  hint -= held.get(key.id) ?? 0;
  if (units * TOKENIZE_WITHIN > hint) {
    units = await exact();
    counted = true;
  }
  let result = await attempt(units);
  if (!result.ok && result.reason !== "key_not_found" && !counted) {
    const e = await exact();
    if (e < units) {
      units = e;
      result = await attempt(units);
    }
  }
  if (!result.ok && result.reason !== "key_not_found" && deps.usage.pending > 0) {
    // Settlements still queued may give quota back: write them, then ask once more.
    await deps.usage.flush();
    result = await attempt(units);
  }
  const deadline = Date.now() + deps.usage.reserveWaitMs;
  let pause = 10;
  while (
    !result.ok &&
    result.reason !== "key_not_found" &&
    (result.inFlight ?? 0) > 0 &&
    Date.now() < deadline
  ) {
    if (deps.usage.pending > 0) await deps.usage.flush();
    else {
      // Jittered so that many waiting requests do not ask the store in lockstep.
      const ms = Math.min(pause * (0.5 + Math.random()), deadline - Date.now());
      if (!(await sleep(Math.max(1, ms), req.exchange.signal))) break;
      pause = Math.min(pause * 2, 200);
    }
    result = await attempt(units);
  }
  return { result, units };
}

function release(held: Map<number, number>, keyId: number, units: number): void {
  const left = (held.get(keyId) ?? 0) - units;
  if (left > 0) held.set(keyId, left);
  else held.delete(keyId);
}

/**
 * Proxies one OpenAI-format chat completion: reserve quota, pick a credential, forward with
 * failover until bytes reach the client, stream the answer back as it arrives, then settle the
 * reservation to the actual usage and queue a usage record. When the upstream reports no usage
 * (a stream cut by the client or the upstream, or an upstream that never sends it), the usage is
 * counted locally: the prompt and the text the client actually received, with the tokenizer.
 */
export async function proxyChat(deps: ProxyDeps, req: ChatRequest): Promise<Reply> {
  const { pool, billing, settings, events } = deps;
  const { key, user } = req.auth;
  const group = user?.group ?? key.group;
  const started = Date.now();
  const requestId = randomUUID();
  const local = localCount(req);
  /** The secrets of every credential this request tried: masked in whatever an upstream answers. */
  const mask = new SecretMask();

  const { result: reserved, units: estimate } = await reserveFor(deps, req, group, local, () =>
    deps.usage.reservationMeta({
      requestId,
      route: req.route,
      model: req.model,
      timestamp: started,
    }),
  );
  if (!reserved.ok) {
    if (reserved.reason === "key_not_found")
      throw new GatewayError("INVALID_API_KEY", "This API key no longer exists.");
    events.emit("key.exhausted", { keyId: key.id, reason: reserved.reason });
    throw reserved.reason === "user_quota"
      ? new GatewayError(
          "USER_QUOTA_EXHAUSTED",
          "The owner of this API key has used up their quota.",
        )
      : new GatewayError(
          "QUOTA_EXHAUSTED",
          `This API key's remaining quota does not cover this request (${estimate} quota units estimated).`,
        );
  }
  const reservation: Reservation = reserved.reservation;
  let finished = false;
  /** Settles the reservation and records usage, exactly once per request. */
  const finish = (
    usage: TokenUsage,
    status: number,
    credential: CredentialRecord | null,
    error: string | null,
    responseBody?: Buffer | string,
  ) => {
    if (finished) return;
    finished = true;
    if (settings.get("request-log") === true) {
      logRequest(deps, req, { requestId, status, usage, credential, error, started, responseBody });
    }
    release(heldUnits(billing), key.id, reservation.units);
    const cost = status < 400 || usage.totalTokens > 0 ? billing.cost(req.model, group, usage) : 0;
    deps.usage.push({
      reservation,
      actualUnits: cost,
      record: {
        timestamp: started,
        requestId,
        keyId: key.id,
        userId: key.userId,
        credentialId: credential?.id ?? null,
        provider: credential?.provider ?? "",
        route: req.route,
        model: req.model,
        stream: req.stream,
        status,
        success: status < 400 && error === null,
        ...usage,
        quota: cost,
        durationMs: Date.now() - started,
        error,
      },
    });
  };

  try {
    const retries = Math.max(0, settings.get("request-retry"));
    const includeUsage =
      (req.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const sessionKey = sessionKeyOf(req);
    const providers = providersFor(req);
    const translations: Translations = new Map();
    let last: {
      status: number;
      body: string;
      credential: CredentialRecord;
      format: WireFormat;
    } | null = null;
    /** The model asked for: the client's, then possibly its configured fallback. */
    let model = req.model;

    for (let round = 0; round < 2; round++) {
      const tried = new Set<string>();
      // Whether every credential tried for this model answered 429 (quota or rate limit).
      let quotaOnly = true;
      let picked = 0;
      let waited = false;
      for (let attempt = 0; attempt <= retries; attempt++) {
        let pick = pool.pick(model, pickOptions(tried, group || "default", sessionKey, providers));
        if (
          !pick &&
          !waited &&
          (picked === 0 || attempt < retries) &&
          // A configured preview-model fallback serves at once rather than after a wait (asked
          // only here: the settings are not read on the path of a request that found a credential).
          !(round === 0 && previewFallback(deps, model) !== null)
        ) {
          // Every credential that could serve is cooling down, after a 429 this request saw or
          // one another request saw: cooling down is not failing, so wait once for the first to
          // come back (its `Retry-After`), when that is within `max-retry-interval`.
          const any = pickOptions(new Set(), group || "default", sessionKey, providers);
          const wait = pool.cooldownWait(model, any);
          const bound = Math.max(0, settings.get("max-retry-interval")) * 1000;
          if (wait !== undefined && wait > 0 && wait <= bound) {
            waited = true;
            if (!(await sleep(wait + 5, req.exchange.signal))) break;
            pick = pool.pick(model, any);
          }
        }
        if (!pick) break;
        picked++;
        tried.add(pick.credential.id);
        const upstreamModel = pick.upstreamModel;
        const plan = planCall(
          deps,
          req,
          pick.credential,
          upstreamModel,
          model,
          includeUsage,
          translations,
        );
        if (!plan) continue;
        let sends = 0;
        const out = await forward(deps, req, pick.credential, model, mask, (c) =>
          // An OAuth credential may have been refreshed before the send: plan with its new token.
          sends++ === 0 && c.kind === "api-key"
            ? plan
            : (planCall(deps, req, c, upstreamModel, model, includeUsage, translations) ?? plan),
        );
        if (out.aborted) {
          finish(ZERO_USAGE, 499, out.credential, "client closed the request");
          throw new GatewayError("INVALID_REQUEST", "client closed the request", { status: 499 });
        }
        const { credential } = out;
        if (out.failure) {
          quotaOnly = false;
          // Our own error body (connection failed, refresh failed): OpenAI-shaped.
          last = { ...out.failure, credential, format: "openai" };
          continue;
        }
        const res = out.res;

        if (res.statusCode >= 400) {
          const text = redactSecrets(mask.text(await res.body.text()));
          if (retriable(res.statusCode)) {
            if (res.statusCode !== 429) quotaOnly = false;
            const after = retryAfterMs(res.headers);
            pool.reportFailure(credential.id, model, res.statusCode, text, { retryAfterMs: after });
            last = { status: res.statusCode, body: text, credential, format: plan.format };
            continue;
          }
          // A client error: another credential would answer the same, so pass it through.
          finish(ZERO_USAGE, res.statusCode, credential, `upstream ${res.statusCode}`, text);
          return errorReply(req, res.statusCode, text, plan.format);
        }

        let stream: AsyncIterable<Buffer> = res.body;
        if (req.stream) {
          // Nothing has reached the client until the first chunk arrives: a connection that
          // breaks before it fails over like one that never answered.
          const primed = await primeStream(res.body);
          if (!primed.ok) {
            if (req.exchange.signal.aborted) {
              finish(ZERO_USAGE, 499, credential, "client closed the request");
              throw new GatewayError("INVALID_REQUEST", "client closed the request", {
                status: 499,
              });
            }
            const message = `upstream stream failed before its first byte: ${redactSecrets(mask.text(primed.error))}`;
            pool.reportFailure(credential.id, model, 0, message, { kind: "network" });
            quotaOnly = false;
            last = {
              status: 502,
              body: JSON.stringify(upstreamError(message)),
              credential,
              format: "openai",
            };
            continue;
          }
          stream = primed.stream;
        }
        pool.reportSuccess(credential.id, model);
        if (!req.stream) {
          const buf = Buffer.from(await res.body.arrayBuffer());
          return jsonAnswer(req, plan, mask.body(buf), local, requestId, (usage, responseBody) =>
            finish(usage, res.statusCode, credential, null, responseBody),
          );
        }
        const onEnd = (usage: TokenUsage, error: string | null) =>
          finish(
            usage,
            error ? (req.exchange.signal.aborted ? 499 : 502) : res.statusCode,
            credential,
            error,
          );
        const gemArray = req.format === "gemini" && req.sse === false;
        const headers = gemArray
          ? { "content-type": "application/json; charset=utf-8", "x-request-id": requestId }
          : { ...SSE_HEADERS, "x-request-id": requestId };
        const common = {
          clientFormat: req.format,
          signal: req.exchange.signal,
          mask,
          onEnd,
          countUsage: async (sent: Buffer[]) =>
            local.usage(
              plan.format === "openai" && !plan.wrapped
                ? streamedText(sent)
                : textOfEvents(plan.format, sent, plan.wrapped),
            ),
        };
        if (plan.passthrough) {
          return {
            status: res.statusCode,
            headers,
            body: relayStream(stream, inspectorFor(plan.format, !includeUsage), common),
          };
        }
        const translator = streamTranslator(
          plan.format,
          req.format,
          { model: req.model, id: requestId, includeUsage },
          // A Gemini SSE stream re-framed as one JSON array for a Gemini client is not translated
          // but still goes through a translator: the unwrapping one (a no-op on bare events).
          plan.wrapped || gemArray,
        );
        return {
          status: res.statusCode,
          headers,
          body: relayTranslated(stream, {
            ...common,
            // Only a passthrough has no translator; a plan that is not one always gets one.
            translator: translator!,
            stripUsage: req.format === "openai" && !includeUsage,
            jsonArray: gemArray,
          }),
        };
      }
      // quota-exceeded/switch-preview-model: every credential of the model is out of quota
      // (each answered 429, or none is available, e.g. all cooling down): try the fallback.
      const fallback =
        round === 0 && (picked === 0 || quotaOnly) ? previewFallback(deps, model) : null;
      if (!fallback) break;
      model = fallback;
    }

    if (last) {
      finish(ZERO_USAGE, last.status, last.credential, `upstream ${last.status}`);
      // Masked again with every secret tried: a later credential's answer may quote an earlier one's.
      return errorReply(req, last.status, mask.text(last.body), last.format);
    }
    throw new GatewayError(
      "NO_CREDENTIAL_AVAILABLE",
      `No upstream credential is available for the model ${req.model}.`,
    );
  } catch (error) {
    finish(ZERO_USAGE, (error as GatewayError).status ?? 500, null, (error as Error).message);
    throw error;
  }
}

/**
 * Waits for the first chunk of a streamed body. Resolves with an iterable that yields that chunk
 * and then the rest (the same iterator: no extra generator layer per chunk), or with the error
 * when the body broke or ended before any byte.
 */
async function primeStream(
  body: AsyncIterable<Buffer>,
): Promise<{ ok: true; stream: AsyncIterable<Buffer> } | { ok: false; error: string }> {
  const it = body[Symbol.asyncIterator]();
  let first: IteratorResult<Buffer>;
  try {
    first = await it.next();
  } catch (error) {
    return { ok: false, error: (error as Error).message };
  }
  if (first.done) return { ok: false, error: "the upstream closed the stream without a byte" };
  let pending: IteratorResult<Buffer> | null = first;
  const primed: AsyncIterator<Buffer> = {
    next() {
      if (pending) {
        const r = pending;
        pending = null;
        return Promise.resolve(r);
      }
      return it.next();
    },
    return(value?: unknown) {
      pending = null;
      return it.return ? it.return(value) : Promise.resolve({ done: true, value: undefined });
    },
  };
  return { ok: true, stream: { [Symbol.asyncIterator]: () => primed } };
}

/** Resolves true after `ms`, or false as soon as the client goes away. */
function sleep(ms: number, signal: ClientSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      (signal as EventTarget).removeEventListener?.("abort", onAbort);
      (signal as import("node:events").EventEmitter).off?.("abort", onAbort);
      resolve(true);
    }, ms);
    if ("addEventListener" in signal) signal.addEventListener("abort", onAbort, { once: true });
    else signal.once("abort", onAbort);
  });
}

/** The inspector of a stream relayed as it is. */
function inspectorFor(format: WireFormat, stripUsage: boolean): StreamInspector {
  if (format === "anthropic") return new AnthropicInspector();
  if (format === "gemini") return new GeminiInspector();
  if (format === "responses") return new ResponsesInspector();
  return new OpenAIInspector(stripUsage);
}

/**
 * An upstream error answer for the client: as it is when the client speaks the upstream's
 * format, else its message in the client's error format with the same status.
 */
function errorReply(req: ChatRequest, status: number, text: string, format: WireFormat): Reply {
  if (format === req.format) {
    return { status, headers: { "content-type": "application/json" }, body: text };
  }
  const message =
    errorMessageOf(text) ?? (text.slice(0, 500) || `upstream answered HTTP ${status}`);
  return {
    status,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(errorBody(req.format, status, message)),
  };
}

/**
 * A non-streamed answer: relayed as it is when the formats match (usage read without a full
 * parse for OpenAI), else parsed, unwrapped and translated. An answer without usage is billed
 * by counting it locally.
 */
async function jsonAnswer(
  req: ChatRequest,
  plan: CallPlan,
  buf: Buffer,
  local: LocalCount,
  requestId: string,
  done: (usage: TokenUsage, responseBody: Buffer | string) => void,
): Promise<Reply> {
  const headers = { "content-type": "application/json", "x-request-id": requestId };
  if (plan.passthrough && plan.format === "openai") {
    const usage = openaiProvider.usage(findUsageObject(buf)) ?? (await local.usage(replyText(buf)));
    done(usage, buf);
    return { status: 200, headers, body: buf };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.toString("utf8"));
  } catch {
    parsed = undefined;
  }
  if (plan.wrapped) parsed = unwrapResponse(parsed);
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
    done(await local.usage({ output: [], reasoning: [] }), buf);
    const message = "the upstream answered with a body that is not a JSON object";
    return {
      status: 502,
      headers,
      body: JSON.stringify(errorBody(req.format, 502, message)),
    };
  }
  const upstream = parsed as Json;
  const asOpenAI =
    plan.format === "openai"
      ? upstream
      : translateResponse(plan.format, "openai", upstream, { model: req.model, id: requestId });
  const usage =
    usageOf(plan.format, upstream) ??
    (await local.usage(replyText(Buffer.from(JSON.stringify(asOpenAI)))));
  let body: Buffer | string;
  if (plan.passthrough) body = buf;
  // Same format in an envelope (Code Assist to a Gemini client): only unwrapped, as streams are;
  // a trip through OpenAI's format would drop what it cannot say (thought signatures ...).
  else if (plan.format === req.format) body = JSON.stringify(upstream);
  else
    body = JSON.stringify(
      req.format === "openai"
        ? asOpenAI
        : translateResponse("openai", req.format, asOpenAI, { model: req.model, id: requestId }),
    );
  done(usage, body);
  return { status: 200, headers, body };
}

/**
 * The session key a client sent (header `x-session-id`, else the OpenAI body field `user`):
 * the pool keeps a session on the same credential while it is healthy.
 */
function sessionKeyOf(req: ChatRequest): string | undefined {
  const h = header(req.exchange.headers, "x-session-id");
  if (h) return h.slice(0, 200);
  const u = req.body.user ?? (req.body.metadata as Json | undefined)?.user_id;
  return typeof u === "string" && u !== "" ? u.slice(0, 200) : undefined;
}

function pickOptions(
  exclude: ReadonlySet<string>,
  group: string,
  sessionKey: string | undefined,
  providers: readonly string[],
): PickOptions {
  const opts: PickOptions = { exclude, group, providers };
  if (sessionKey !== undefined) opts.sessionKey = sessionKey;
  return opts;
}

/**
 * Providers whose requests carry a project id (Gemini CLI, Antigravity). None of them is served
 * by this OpenAI-format route yet: an OpenAI-format upstream has no project id to switch.
 */
const PROJECT_PROVIDERS: ReadonlySet<string> = new Set(["gemini", "gemini-cli", "antigravity"]);

/**
 * quota-exceeded/switch-project: after a 429, a credential of a provider that sends a project id
 * and has several moves to its next project, and the request is sent again with the same
 * credential. True when it should be; false = report the failure and fail over as usual.
 */
function switchProject(deps: ProxyDeps, credential: CredentialRecord, model: string): boolean {
  if (credential.projectIds.length < 2 || !PROJECT_PROVIDERS.has(credential.provider)) return false;
  const q = deps.settings.get("quota-exceeded");
  if (q?.["switch-project"] !== true) return false;
  return deps.pool.rotateProject(credential.id, model);
}

/**
 * quota-exceeded/switch-preview-model: the configured fallback of `model` (setting
 * `preview-model-fallbacks`, `{ [model]: fallback }`), or null when it is off or there is none.
 */
function previewFallback(deps: ProxyDeps, model: string): string | null {
  const q = deps.settings.get("quota-exceeded");
  if (q?.["switch-preview-model"] !== true) return null;
  const table = deps.settings.get(PREVIEW_FALLBACKS);
  const fb = table && Object.hasOwn(table, model) ? table[model] : undefined;
  return typeof fb === "string" && fb !== "" && fb !== model ? fb : null;
}

/** The runtime setting mapping a model to the model tried when every credential of it is out of quota. */
export const PREVIEW_FALLBACKS = "preview-model-fallbacks";

/** The outcome of sending a request with one credential. */
type Forwarded =
  | { aborted: true; credential: CredentialRecord; failure?: undefined; res?: undefined }
  | {
      aborted: false;
      credential: CredentialRecord;
      /** Already reported to the pool; fail over. */
      failure: { status: number; body: string };
      res?: undefined;
    }
  | {
      aborted: false;
      credential: CredentialRecord;
      failure?: undefined;
      res: Dispatcher.ResponseData;
    };

/**
 * Sends the request upstream with one credential. An OAuth credential is made fresh first
 * (refreshed when it expires within the margin), and after a 401/403 it is refreshed once and
 * the request sent again with the same credential. API-key credentials pay one property check.
 */
async function forward(
  deps: ProxyDeps,
  req: ChatRequest,
  picked: CredentialRecord,
  model: string,
  mask: SecretMask,
  plan: (c: CredentialRecord) => CallPlan,
): Promise<Forwarded> {
  const { pool, oauth } = deps;
  let credential = picked;
  let refreshed = false;
  mask.add(credential);
  if (credential.kind === "oauth") {
    try {
      const fresh = await oauth.ensureFresh(credential, model);
      refreshed = fresh !== credential;
      credential = fresh;
      mask.add(credential);
    } catch (error) {
      // The refresher reported the failure (event, state) already.
      return {
        aborted: false,
        credential,
        failure: {
          status: 502,
          body: JSON.stringify(upstreamError(mask.text(refreshMessage(error)))),
        },
      };
    }
  }
  for (;;) {
    let res: Dispatcher.ResponseData;
    // Planned per send: a refresh changes the token, a project switch the body.
    const { url, headers, body } = plan(credential);
    try {
      res = await deps.upstream.request(url, {
        method: "POST",
        headers,
        body,
        signal: req.exchange.signal,
        // A credential's own proxy wins over the global `proxy-url` setting.
        proxyUrl: credential.proxyUrl || deps.settings.get("proxy-url"),
      });
    } catch (error) {
      if (req.exchange.signal.aborted) return { aborted: true, credential };
      const message = redactSecrets(mask.text((error as Error).message));
      pool.reportFailure(credential.id, model, 0, message, { kind: "network" });
      return {
        aborted: false,
        credential,
        failure: {
          status: 502,
          body: JSON.stringify(upstreamError(`upstream connection failed: ${message}`)),
        },
      };
    }
    if (res.statusCode === 429 && switchProject(deps, credential, model)) {
      await res.body.dump();
      continue;
    }
    if (
      (res.statusCode === 401 || res.statusCode === 403) &&
      credential.kind === "oauth" &&
      !refreshed
    ) {
      const text = redactSecrets(mask.text(await res.body.text()));
      refreshed = true;
      try {
        credential = await oauth.refresh(credential, {
          reason: "unauthorized",
          model,
          failedToken: credential.secret.accessToken ?? "",
        });
        mask.add(credential);
        continue;
      } catch {
        // Reported by the refresher (auth failure, refresh failed): fail over.
        return { aborted: false, credential, failure: { status: res.statusCode, body: text } };
      }
    }
    return { aborted: false, credential, res };
  }
}

function refreshMessage(error: unknown): string {
  const detail = isOAuthRefreshError(error) ? error.message : "internal error";
  return `the upstream credential could not be refreshed: ${detail}`;
}

/** Bodies in the request log are cut to this many bytes. */
const REQUEST_LOG_BODY_MAX = 4096;

function logBody(body: Buffer | string | undefined): string | undefined {
  if (body === undefined) return undefined;
  const text =
    typeof body === "string" ? body : body.subarray(0, REQUEST_LOG_BODY_MAX).toString("utf8");
  const cut = text.length > REQUEST_LOG_BODY_MAX ? `${text.slice(0, REQUEST_LOG_BODY_MAX)}…` : text;
  return redactSecrets(cut);
}

/**
 * The `request-log` setting: one log line per proxied request with its request body and, for
 * JSON answers, the response body, both size-capped and redacted. Headers are not logged (they
 * carry the client's key); streamed answers are summarised by their usage.
 */
function logRequest(
  deps: ProxyDeps,
  req: ChatRequest,
  r: {
    requestId: string;
    status: number;
    usage: TokenUsage;
    credential: CredentialRecord | null;
    error: string | null;
    started: number;
    responseBody: Buffer | string | undefined;
  },
): void {
  deps.logger.info("request", {
    requestId: r.requestId,
    route: req.route,
    model: req.model,
    stream: req.stream,
    keyId: req.auth.key.id,
    credentialId: r.credential?.id ?? null,
    status: r.status,
    durationMs: Date.now() - r.started,
    usage: r.usage,
    error: r.error,
    request: logBody(req.rawBody),
    response: logBody(r.responseBody),
  });
}

function upstreamError(message: string) {
  return { error: { message, type: "upstream_error", param: null, code: "upstream_error" } };
}
