import { randomUUID } from "node:crypto";
import type { Admission } from "../admission/rate-limits.js";
import { ZERO_USAGE } from "../billing/price.js";
import { promptTokenBound } from "../billing/tokens.js";
import { SecretMask } from "../credentials/secret-mask.js";
import { GatewayError, isGatewayError } from "../errors.js";
import type { Reply } from "../exchange.js";
import { formatOf } from "../formats/registry.js";
import type { Reservation } from "../store/types.js";
import type { BlockShare } from "../usage/quota-blocks.js";
import { admit, refillDue } from "./admission.js";
import { errorReply, jsonAnswer, streamAnswer } from "./answer.js";
import { localCount } from "./count.js";
import { forward } from "./forward.js";
import { reserve } from "./reserve.js";
import { errorTypeOf, recordRefusal, type Settle, settlement } from "./settle.js";
import { endRequestSpan, startRequestSpan } from "./tracing.js";
import type { ProxyDeps, ProxyRequest, RequestContext } from "./types.js";

export { type AuthorizeDeps, authorizeClient, LocalhostKey } from "./authorize.js";
export { PREVIEW_FALLBACKS } from "./forward.js";
export { requireServed } from "./plan.js";
export { QuotaLine } from "./quota-line.js";
export { QuotaHolds, TOKENIZE_WITHIN } from "./reserve.js";
export type { ProxyDeps, ProxyRequest } from "./types.js";

/**
 * The proxy engine: serves one generation request of any wire format (chat, completions,
 * embeddings, Responses, Anthropic Messages, Gemini) through its stages:
 *
 * 1. authorize — done by the dialect route before it reads the body (`authorizeClient`);
 * 2. admit — rate limits and concurrency of the key, its owner and their group, and the due
 *    quota refills (`admission.ts`, `../admission/`);
 * 3. reserve — quota, against the key and its owner (`reserve.ts`);
 * 4. plan + forward — pick a credential, build the call from the wire-format registry, send it,
 *    failing over until the first byte (`plan.ts`, `forward.ts`);
 * 5. answer / relay — a JSON answer, or the stream as it arrives (`answer.ts`, `relay.ts`);
 * 6. settle — the reservation settled to the actual usage, the usage record and request log
 *    queued, exactly once (`settle.ts`).
 *
 * When the upstream reports no usage (a stream cut by the client or the upstream, or an upstream
 * that never sends it), the usage is counted locally: the prompt and the text the client
 * actually received, with the tokenizer.
 */
export async function proxyRequest(deps: ProxyDeps, req: ProxyRequest): Promise<Reply> {
  const ctx = requestContext(req);
  ctx.span = startRequestSpan(ctx);
  let admission: Admission | null;
  try {
    const admitting = admit(deps, ctx);
    admission = admitting instanceof Promise ? await admitting : admitting;
  } catch (error) {
    spanFailed(ctx, error);
    recordRefusal(deps, ctx, error);
    throw error;
  }
  ctx.admission = admission;
  let reservation: Reservation | BlockShare;
  try {
    const refilling = refillDue(deps, ctx);
    if (refilling) await refilling;
    reservation = await reserve(deps, ctx, refilling !== null);
  } catch (error) {
    admission?.finish(0);
    spanFailed(ctx, error);
    recordRefusal(deps, ctx, error);
    throw withHeaders(error, admission);
  }
  const settle = settlement(deps, ctx, reservation);
  try {
    const reply = await answer(deps, ctx, settle);
    if (admission) Object.assign(reply.headers, admission.headers);
    return reply;
  } catch (error) {
    settle(
      ZERO_USAGE,
      (error as GatewayError).status ?? 500,
      null,
      (error as Error).message,
      undefined,
      errorTypeOf(error),
    );
    throw withHeaders(error, admission);
  }
}

/** Stages 4-5: forward, then the answer (an upstream's error, a JSON answer or a stream). */
async function answer(deps: ProxyDeps, ctx: RequestContext, settle: Settle): Promise<Reply> {
  const { req } = ctx;
  const sent = await forward(deps, ctx, settle);
  if (!sent.ok) {
    settle(
      ZERO_USAGE,
      sent.status,
      sent.credential,
      `upstream ${sent.status}`,
      sent.logged,
      CLIENT_ERRORS.has(sent.status) ? "invalid_request" : "upstream_error",
    );
    return errorReply(ctx.client, sent.status, sent.body, sent.upstream);
  }
  const { res, credential, plan } = sent;
  if (!req.stream) {
    const buf = Buffer.from(await res.body.arrayBuffer());
    return jsonAnswer(ctx, plan, ctx.mask.body(buf), (usage, responseBody) =>
      settle(usage, res.statusCode, credential, null, responseBody),
    );
  }
  return streamAnswer(ctx, plan, res.statusCode, sent.body, (usage, error) =>
    settle(
      usage,
      error ? (req.exchange.signal.aborted ? 499 : 502) : res.statusCode,
      credential,
      error,
    ),
  );
}

/** Upstream statuses that blame the request itself, when passed through to the client. */
const CLIENT_ERRORS: ReadonlySet<number> = new Set([400, 404, 413, 415, 422]);

/** Ends the request's span for a request refused before it was forwarded (no usage, no settle). */
function spanFailed(ctx: RequestContext, error: unknown): void {
  if (!ctx.span) return;
  const status = isGatewayError(error) ? error.status : 500;
  endRequestSpan(ctx.span, status, null, 0, isGatewayError(error) ? error.code : "INTERNAL");
}

/**
 * A gateway error of a request with rate limits, carrying the `x-ratelimit-*` headers too (every
 * answer of a limited key has them); anything else as it is.
 */
function withHeaders(error: unknown, admission: Admission | null): unknown {
  if (!admission || !isGatewayError(error) || Object.keys(admission.headers).length === 0)
    return error;
  return new GatewayError(error.code, error.message, {
    cause: error.cause,
    status: error.status,
    headers: { ...admission.headers, ...error.headers },
  });
}

/** What the stages share about one request. */
function requestContext(req: ProxyRequest): RequestContext {
  const { key, user } = req.auth;
  const client = formatOf(req.format);
  return {
    req,
    client,
    requestId: randomUUID(),
    started: Date.now(),
    includeUsage:
      (req.body.stream_options as { include_usage?: unknown } | undefined)?.include_usage === true,
    group: user?.group ?? key.group,
    local: localCount(req, client),
    promptBound: promptTokenBound(req.rawBody),
    maxTokens: client.maxTokens(req.body),
    mask: new SecretMask(),
    estimate: { tokens: 0, units: 0 },
    admission: null,
    attempts: 0,
    firstByteAt: 0,
    span: null,
  };
}
