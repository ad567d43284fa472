import type { Dispatcher } from "undici";
import { CredentialGate } from "../admission/credential-limits.js";
import { ZERO_USAGE } from "../billing/price.js";
import { hasCredentialLimits } from "../credentials/limits.js";
import { isOAuthRefreshError } from "../credentials/oauth.js";
import type { SecretMask } from "../credentials/secret-mask.js";
import { GatewayError } from "../errors.js";
import { openaiFormat } from "../formats/openai.js";
import type { WireFormatSpec } from "../formats/types.js";
import type { CredentialRecord } from "../store/types.js";
import { redactSecrets } from "../util/secrets.js";
import {
  type CallPlan,
  modelNotFound,
  pickOptions,
  planCall,
  providersFor,
  sessionKeyOf,
  type Translations,
} from "./plan.js";
import type { Settle } from "./settle.js";
import { sleep } from "./sleep.js";
import { endAttemptSpan, startAttemptSpan } from "./tracing.js";
import type { ProxyDeps, ProxyRequest, RequestContext } from "./types.js";

/** What the forward stage ends with. */
export type Forwarded =
  | {
      ok: true;
      /** The credential that answered (refreshed, maybe). */
      credential: CredentialRecord;
      plan: CallPlan;
      res: Dispatcher.ResponseData;
      /** The answer's body; for a stream, primed: its first chunk has arrived. */
      body: AsyncIterable<Buffer>;
    }
  | {
      ok: false;
      /** An upstream error to answer with: a client error passed through, or the last failure. */
      status: number;
      /** The error body (masked), in the format `upstream`. */
      body: string;
      upstream: WireFormatSpec;
      credential: CredentialRecord;
      /** The body for the request log (a client error's). */
      logged?: string;
    };

/**
 * The forward stage: picks credentials (strategy, session, cooldown) and sends the request
 * planned for each ({@link planCall}), failing over on rate limits, credential problems, server
 * errors and broken connections until an answer's first byte arrives; refreshes an OAuth
 * credential once on 401/403, switches a credential's project on 429
 * (`quota-exceeded/switch-project`), waits once for a cooling-down credential when that is
 * within `max-retry-interval`, and tries the model's preview fallback when every credential of
 * the model is out of quota (`quota-exceeded/switch-preview-model`).
 *
 * Throws `MODEL_NOT_FOUND` (404) when no credential serves the model (or its preview fallback)
 * in the request's group and providers, whatever their state; `NO_CREDENTIAL_AVAILABLE` (503,
 * with `Retry-After`: the first cooldown's end, else a few seconds) when some do but none could
 * be tried now; `RATE_LIMIT_EXCEEDED` (429, with `Retry-After`) when the credentials left were
 * skipped for their limits (`CredentialGate`: a credential at its rpm, tpm, concurrency or spend
 * cap is passed over like an excluded one, without using an attempt); and a 499 when the client
 * went away (settled first).
 */
export async function forward(
  deps: ProxyDeps,
  ctx: RequestContext,
  settle: Settle,
): Promise<Forwarded> {
  const { pool, settings } = deps;
  const { req, group, mask } = ctx;
  const retries = Math.max(0, settings.get("request-retry"));
  let sessionKey = sessionKeyOf(req);
  const providers = providersFor(req);
  const translations: Translations = new Map();
  let last: {
    status: number;
    body: string;
    credential: CredentialRecord;
    upstream: WireFormatSpec;
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
        // Credentials skipped for their limits stay out: waiting for a cooldown cannot help them.
        const any = pickOptions(
          ctx.credentialGate?.skipped ?? NONE,
          group || "default",
          sessionKey,
          providers,
        );
        const wait = pool.cooldownWait(model, any);
        const bound = Math.max(0, settings.get("max-retry-interval")) * 1000;
        if (wait !== undefined && wait > 0 && wait <= bound) {
          waited = true;
          if (!(await sleep(wait + 5, req.exchange.signal))) break;
          pick = pool.pick(model, any);
        }
      }
      if (!pick) break;
      // A credential at one of its limits is skipped: no attempt used, no failure, no cooldown.
      if (hasCredentialLimits(pick.credential.limits)) {
        ctx.credentialGate ??= new CredentialGate(deps, ctx);
        if (!(await ctx.credentialGate.admit(pick.credential))) {
          tried.add(pick.credential.id);
          // A session bound to it stays bound: it goes elsewhere for this request only.
          sessionKey = undefined;
          attempt--;
          continue;
        }
      }
      picked++;
      ctx.attempts++;
      tried.add(pick.credential.id);
      const upstreamModel = pick.upstreamModel;
      const plan = planCall(deps, ctx, pick.credential, upstreamModel, model, translations);
      if (!plan) {
        void ctx.credentialGate?.failed(pick.credential.id);
        continue;
      }
      let sends = 0;
      const span = startAttemptSpan(ctx.span, ctx, pick.credential, upstreamModel, picked);
      const out = await sendWith(deps, req, pick.credential, model, mask, (c) =>
        // An OAuth credential may have been refreshed before the send: plan with its new token.
        sends++ === 0 && c.kind === "api-key"
          ? plan
          : (planCall(deps, ctx, c, upstreamModel, model, translations) ?? plan),
      );
      if (out.aborted) {
        endAttemptSpan(span, 0, "aborted");
        settle(ZERO_USAGE, 499, out.credential, "client closed the request");
        throw new GatewayError("INVALID_REQUEST", "client closed the request", { status: 499 });
      }
      const { credential } = out;
      if (out.failure) {
        endAttemptSpan(span, 0, "unreachable");
        void ctx.credentialGate?.failed(credential.id);
        quotaOnly = false;
        // Our own error body (connection failed, refresh failed): OpenAI-shaped.
        last = { ...out.failure, credential, upstream: openaiFormat };
        continue;
      }
      const res = out.res;

      if (res.statusCode >= 400) {
        endAttemptSpan(span, res.statusCode, String(res.statusCode));
        const text = redactSecrets(mask.text(await res.body.text()));
        if (retriable(res.statusCode)) {
          if (res.statusCode !== 429) quotaOnly = false;
          const after = retryAfterMs(res.headers);
          pool.reportFailure(credential.id, model, res.statusCode, text, { retryAfterMs: after });
          void ctx.credentialGate?.failed(credential.id);
          last = { status: res.statusCode, body: text, credential, upstream: plan.upstream };
          continue;
        }
        // A client error: another credential would answer the same, so pass it through.
        return {
          ok: false,
          status: res.statusCode,
          body: text,
          upstream: plan.upstream,
          credential,
          logged: text,
        };
      }

      let body: AsyncIterable<Buffer> = res.body;
      if (req.stream) {
        // Nothing has reached the client until the first chunk arrives: a connection that
        // breaks before it fails over like one that never answered.
        const primed = await primeStream(res.body);
        if (!primed.ok) {
          endAttemptSpan(span, res.statusCode, "stream_failed");
          if (req.exchange.signal.aborted) {
            settle(ZERO_USAGE, 499, credential, "client closed the request");
            throw new GatewayError("INVALID_REQUEST", "client closed the request", {
              status: 499,
            });
          }
          const message = `upstream stream failed before its first byte: ${redactSecrets(mask.text(primed.error))}`;
          pool.reportFailure(credential.id, model, 0, message, { kind: "network" });
          void ctx.credentialGate?.failed(credential.id);
          quotaOnly = false;
          last = {
            status: 502,
            body: JSON.stringify(upstreamError(message)),
            credential,
            upstream: openaiFormat,
          };
          continue;
        }
        body = primed.stream;
      }
      endAttemptSpan(span, res.statusCode, null);
      ctx.firstByteAt = Date.now();
      pool.reportSuccess(credential.id, model);
      return { ok: true, credential, plan, res, body };
    }
    // quota-exceeded/switch-preview-model: every credential of the model is out of quota
    // (each answered 429, or none is available, e.g. all cooling down): try the fallback.
    const fallback =
      round === 0 && (picked === 0 || quotaOnly) ? previewFallback(deps, model) : null;
    if (!fallback) break;
    model = fallback;
  }

  // Some credential would serve but is at its limits: a 429 with the earliest time one has room.
  if (ctx.credentialGate?.refused) throw ctx.credentialGate.refusal(req.model);
  if (last) {
    // Masked again with every secret tried: a later credential's answer may quote an earlier one's.
    return {
      ok: false,
      status: last.status,
      body: mask.text(last.body),
      upstream: last.upstream,
      credential: last.credential,
    };
  }
  const scope = pickOptions(new Set(), group || "default", undefined, providers);
  if (!pool.isServed(req.model, scope) && (model === req.model || !pool.isServed(model, scope)))
    throw modelNotFound(deps, req.model, scope.group ?? "default", req.route);
  // Served, but not now (cooling down, disabled, or no adapter for this request).
  const wait = pool.cooldownWait(model, scope);
  const seconds = wait !== undefined && wait > 0 ? Math.ceil(wait / 1000) : RETRY_AFTER_DEFAULT_S;
  throw new GatewayError(
    "NO_CREDENTIAL_AVAILABLE",
    `No upstream credential is available for the model ${req.model} right now; retry in ${seconds} s.`,
    { headers: { "retry-after": String(seconds) } },
  );
}

const NONE: ReadonlySet<string> = new Set();

/** `Retry-After` (seconds) of a 503 when no credential of the model comes back by itself. */
const RETRY_AFTER_DEFAULT_S = 5;

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
type Sent =
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
async function sendWith(
  deps: ProxyDeps,
  req: ProxyRequest,
  picked: CredentialRecord,
  model: string,
  mask: SecretMask,
  plan: (c: CredentialRecord) => CallPlan,
): Promise<Sent> {
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
    const sentAt = deps.metrics ? performance.now() : 0;
    try {
      res = await deps.upstream.request(url, {
        method: "POST",
        headers,
        body,
        signal: req.exchange.signal,
        // A credential's own proxy wins over the global `proxy-url` setting.
        proxyUrl: credential.proxyUrl || deps.settings.get("proxy-url"),
      });
      deps.metrics?.upstream(credential.provider, res.statusCode, performance.now() - sentAt);
    } catch (error) {
      if (req.exchange.signal.aborted) return { aborted: true, credential };
      deps.metrics?.upstream(credential.provider, 0, performance.now() - sentAt);
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

function upstreamError(message: string) {
  return { error: { message, type: "upstream_error", param: null, code: "upstream_error" } };
}
