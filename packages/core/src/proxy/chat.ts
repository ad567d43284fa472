import { randomUUID } from "node:crypto";
import type { Dispatcher } from "undici";
import type { Billing, TokenUsage } from "../billing/price.js";
import { ZERO_USAGE } from "../billing/price.js";
import { countPromptTokens, promptTokenBound, tokenCounter } from "../billing/tokens.js";
import { isOAuthRefreshError, type OAuthRefresher } from "../credentials/oauth.js";
import type { CredentialPool, PickOptions } from "../credentials/pool.js";
import { GatewayError } from "../errors.js";
import type { GatewayEmitter } from "../events.js";
import { type ClientSignal, type Exchange, header, type Reply } from "../http/exchange.js";
import type { AuthorizedKey } from "../keys/service.js";
import type { Logger } from "../logger.js";
import { findUsageObject, openaiProvider } from "../providers/openai.js";
import type { SettingsService } from "../settings/service.js";
import type { CredentialRecord, Reservation, ReserveResult, Store } from "../store/types.js";
import type { UsageWriter } from "../usage/writer.js";
import { redactSecrets } from "../util/secrets.js";
import { eventData, replyText, SseFramer, type StreamedText, streamedText } from "./sse.js";
import type { UpstreamClient } from "./upstream.js";

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

const USAGE_NEEDLE = Buffer.from('"usage":{');
const DONE_NEEDLE = Buffer.from("[DONE]");
/** Spliced in after a body's opening brace when a streaming client did not ask for usage itself. */
const INCLUDE_USAGE = Buffer.from('{"stream_options":{"include_usage":true},');

/**
 * The body to send upstream. The client's bytes go as they are when nothing must change; asking
 * for usage in a stream is a byte splice (no re-serialisation) when the client sent no
 * `stream_options`; anything else is re-serialised.
 */
function upstreamBody(
  req: ChatRequest,
  upstreamModel: string,
  includeUsage: boolean,
): Buffer | string {
  const askUsage = req.stream && !includeUsage;
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
    prompt ??= countPromptTokens(req.model, req.body);
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
 */
async function reserveFor(
  deps: ProxyDeps,
  req: ChatRequest,
  group: string,
  local: LocalCount,
): Promise<{ result: ReserveResult; units: number }> {
  const { store, billing } = deps;
  const { key, user } = req.auth;
  const m = req.body.max_completion_tokens ?? req.body.max_tokens;
  const maxTokens = typeof m === "number" ? m : undefined;
  const exact = async () =>
    billing.estimate(req.model, group, await local.promptTokens(), maxTokens);

  const held = heldUnits(billing);
  // Held from before the store is asked, so that concurrent requests of the key see it at once.
  const attempt = async (units: number) => {
    held.set(key.id, (held.get(key.id) ?? 0) + units);
    const r = await store.reserveQuota(key.id, units);
    if (!r.ok) release(held, key.id, units);
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

  const { result: reserved, units: estimate } = await reserveFor(deps, req, group, local);
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
    const retries = Math.max(0, Number(settings.get("request-retry")) || 0);
    const includeUsage =
      (req.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true;
    const sessionKey = sessionKeyOf(req);
    let last: { status: number; body: string; credential: CredentialRecord } | null = null;
    /** The model asked for: the client's, then possibly its configured fallback. */
    let model = req.model;

    for (let round = 0; round < 2; round++) {
      const tried = new Set<string>();
      // Whether every credential tried for this model answered 429 (quota or rate limit).
      let quotaOnly = true;
      let picked = 0;
      for (let attempt = 0; attempt <= retries; attempt++) {
        const pick = pool.pick(model, pickOptions(tried, group || "default", sessionKey));
        if (!pick) break;
        picked++;
        tried.add(pick.credential.id);
        const body = upstreamBody(req, pick.upstreamModel, includeUsage);
        const out = await forward(deps, req, pick.credential, model, body);
        if (out.aborted) {
          finish(ZERO_USAGE, 499, out.credential, "client closed the request");
          throw new GatewayError("INVALID_REQUEST", "client closed the request", { status: 499 });
        }
        const { credential } = out;
        if (out.failure) {
          quotaOnly = false;
          last = { ...out.failure, credential };
          continue;
        }
        const res = out.res;

        if (res.statusCode >= 400) {
          const text = redactSecrets(await res.body.text());
          if (retriable(res.statusCode)) {
            if (res.statusCode !== 429) quotaOnly = false;
            pool.reportFailure(credential.id, model, res.statusCode, text, {
              retryAfterMs: retryAfterMs(res.headers),
            });
            last = { status: res.statusCode, body: text, credential };
            continue;
          }
          // A client error: another credential would answer the same, so pass it through.
          finish(ZERO_USAGE, res.statusCode, credential, `upstream ${res.statusCode}`, text);
          return {
            status: res.statusCode,
            headers: { "content-type": "application/json" },
            body: text,
          };
        }

        pool.reportSuccess(credential.id, model);
        if (!req.stream) {
          const buf = Buffer.from(await res.body.arrayBuffer());
          // An upstream that reports no usage is billed by counting its answer locally.
          const usage =
            openaiProvider.usage(findUsageObject(buf)) ?? (await local.usage(replyText(buf)));
          finish(usage, res.statusCode, credential, null, buf);
          return {
            status: res.statusCode,
            headers: { "content-type": "application/json", "x-request-id": requestId },
            body: buf,
          };
        }
        return {
          status: res.statusCode,
          headers: { ...SSE_HEADERS, "x-request-id": requestId },
          body: relayStream(res.body, {
            stripUsage: !includeUsage,
            signal: req.exchange.signal,
            onEnd: (usage, error) =>
              finish(
                usage,
                error ? (req.exchange.signal.aborted ? 499 : 502) : res.statusCode,
                credential,
                error,
              ),
            countUsage: (sent) => local.usage(streamedText(sent)),
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
      return {
        status: last.status,
        headers: { "content-type": "application/json" },
        body: last.body,
      };
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

/** The wire formats this proxy route can forward to. */
const OPENAI_PROVIDERS: readonly string[] = ["openai"];

/**
 * The session key a client sent (header `x-session-id`, else the OpenAI body field `user`):
 * the pool keeps a session on the same credential while it is healthy.
 */
function sessionKeyOf(req: ChatRequest): string | undefined {
  const h = header(req.exchange.headers, "x-session-id");
  if (h) return h.slice(0, 200);
  const u = req.body.user;
  return typeof u === "string" && u !== "" ? u.slice(0, 200) : undefined;
}

function pickOptions(
  exclude: ReadonlySet<string>,
  group: string,
  sessionKey: string | undefined,
): PickOptions {
  const opts: PickOptions = { exclude, group, providers: OPENAI_PROVIDERS };
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
  const q = deps.settings.get<{ "switch-project"?: unknown } | undefined>("quota-exceeded");
  if (q?.["switch-project"] !== true) return false;
  return deps.pool.rotateProject(credential.id, model);
}

/**
 * quota-exceeded/switch-preview-model: the configured fallback of `model` (setting
 * `preview-model-fallbacks`, `{ [model]: fallback }`), or null when it is off or there is none.
 */
function previewFallback(deps: ProxyDeps, model: string): string | null {
  const q = deps.settings.get<{ "switch-preview-model"?: unknown } | undefined>("quota-exceeded");
  if (q?.["switch-preview-model"] !== true) return null;
  const table = deps.settings.get<Record<string, unknown> | undefined>(PREVIEW_FALLBACKS);
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
  body: Buffer | string,
): Promise<Forwarded> {
  const { pool, oauth } = deps;
  let credential = picked;
  let refreshed = false;
  if (credential.kind === "oauth") {
    try {
      const fresh = await oauth.ensureFresh(credential, model);
      refreshed = fresh !== credential;
      credential = fresh;
    } catch (error) {
      // The refresher reported the failure (event, state) already.
      return {
        aborted: false,
        credential,
        failure: { status: 502, body: JSON.stringify(upstreamError(refreshMessage(error))) },
      };
    }
  }
  for (;;) {
    let res: Dispatcher.ResponseData;
    try {
      res = await deps.upstream.request(
        openaiProvider.url(credential.baseUrl, "chat/completions"),
        {
          method: "POST",
          headers: {
            "content-type": "application/json",
            accept: req.stream ? "text/event-stream" : "application/json",
            ...credential.headers,
            ...openaiProvider.authHeaders(credential),
          },
          body,
          signal: req.exchange.signal,
          // A credential's own proxy wins over the global `proxy-url` setting.
          proxyUrl: credential.proxyUrl || String(deps.settings.get("proxy-url") ?? ""),
        },
      );
    } catch (error) {
      if (req.exchange.signal.aborted) return { aborted: true, credential };
      const message = redactSecrets((error as Error).message);
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
      const text = redactSecrets(await res.body.text());
      refreshed = true;
      try {
        credential = await oauth.refresh(credential, {
          reason: "unauthorized",
          model,
          failedToken: credential.secret.accessToken ?? "",
        });
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

interface RelayOptions {
  /** Drop the usage-only chunk (the client did not ask for it; we did). */
  stripUsage: boolean;
  signal: ClientSignal;
  /** The usage of a stream that ended without a usage block, from the events the client took. */
  countUsage: (sent: Buffer[]) => Promise<TokenUsage>;
  /** Called once when the stream ends, cleanly or not. */
  onEnd: (usage: TokenUsage, error: string | null) => void;
}

/**
 * Relays an upstream SSE body chunk by chunk. Only event boundaries are looked at; an event is
 * decoded only when it carries a usage object. If the upstream breaks after bytes were sent,
 * the client gets an explicit error event and no `[DONE]`, so the stream reads as truncated.
 *
 * Until a usage block arrives, the relay keeps references to the events the client has taken
 * (the framer's own buffers: no copy, no decoding), one array push per chunk. A chunk counts as
 * taken when the consumer asks for the next one, so a chunk pulled by a writer that then found
 * the client gone is not billed. Only a stream that ends without usage has them parsed and its
 * text counted ({@link RelayOptions.countUsage}); once usage arrives they are dropped.
 */
async function* relayStream(
  src: AsyncIterable<Buffer>,
  opts: RelayOptions,
): AsyncGenerator<Uint8Array> {
  const framer = new SseFramer();
  let usage: TokenUsage | null = null;
  let sent: Buffer[][] | null = [];
  let error: string | null = null;
  let done = false;
  let completed = false;
  try {
    for await (const chunk of src) {
      const events = framer.push(chunk);
      if (events.length === 0) continue;
      let kept: Buffer[] | null = null;
      for (let i = 0; i < events.length; i++) {
        const ev = events[i]!;
        let drop = false;
        if (ev.indexOf(USAGE_NEEDLE) >= 0) {
          const data = eventData(ev);
          if (data !== undefined) {
            try {
              const parsed = JSON.parse(data) as { usage?: unknown; choices?: unknown[] };
              usage = openaiProvider.usage(parsed.usage) ?? usage;
              drop =
                opts.stripUsage && Array.isArray(parsed.choices) && parsed.choices.length === 0;
            } catch {
              // not JSON: relay as is
            }
          }
        } else if (ev.length <= 16 && ev.indexOf(DONE_NEEDLE) >= 0) done = true;
        if (drop && !kept) kept = events.slice(0, i);
        else if (!drop && kept) kept.push(ev);
      }
      const out = kept ?? events;
      if (out.length === 0) continue;
      yield out.length === 1 ? out[0]! : Buffer.concat(out);
      // The consumer asked for more: it has taken `out`.
      if (usage) sent = null;
      else sent?.push(out);
    }
    const rest = framer.rest();
    if (rest) yield rest;
    if (!done && !usage) error = "upstream stream ended without [DONE]";
    completed = true;
  } catch (e) {
    if (!opts.signal.aborted) {
      error = `upstream stream interrupted: ${redactSecrets((e as Error).message)}`;
      yield Buffer.from(
        `data: ${JSON.stringify({ error: { message: error, type: "upstream_error", param: null, code: "stream_interrupted" } })}\n\n`,
      );
    } else error = "client closed the stream";
    completed = true;
  } finally {
    // The consumer stopped iterating (the client went away) without an error reaching us.
    if (!completed) error = "client closed the stream";
    if (!usage) {
      // No usage block arrived: bill the prompt and the text the client took, counted locally.
      try {
        usage = await opts.countUsage(sent?.flat() ?? []);
      } catch {
        usage = ZERO_USAGE;
      }
    }
    opts.onEnd(usage, error);
  }
}
