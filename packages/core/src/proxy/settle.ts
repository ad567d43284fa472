import { type TokenUsage, ZERO_USAGE } from "../billing/price.js";
import { isGatewayError } from "../errors.js";
import type {
  CredentialRecord,
  NewUsageRecord,
  RequestErrorType,
  Reservation,
} from "../store/types.js";
import type { BlockShare } from "../usage/quota-blocks.js";
import { redactSecrets } from "../util/secrets.js";
import { userLine } from "./quota-line.js";
import { endRequestSpan } from "./tracing.js";
import type { ProxyDeps, RequestContext } from "./types.js";

/**
 * Ends a request's accounting: settles its reservation to the cost of `usage` and queues its
 * usage record, which is also its request log record (and, with the `request-log` setting, its
 * log line, and its bodies in the record). Called exactly once per request (later calls do
 * nothing), by whichever stage ends it: an error reply, a JSON answer, the end of a relayed
 * stream, or an exception. `errorType` classifies a failure the caller knows better than the
 * status does (see {@link errorTypeOf}).
 */
export type Settle = (
  usage: TokenUsage,
  status: number,
  credential: CredentialRecord | null,
  error: string | null,
  responseBody?: Buffer | string,
  errorType?: RequestErrorType,
) => void;

/**
 * The settle stage of one request: a {@link Settle} bound to its reservation. The reservation's
 * hold is released at once; the store settles it when the usage writer's batch is written.
 */
export function settlement(
  deps: ProxyDeps,
  ctx: RequestContext,
  reservation: Reservation | BlockShare,
): Settle {
  const { billing, settings } = deps;
  const { req, group } = ctx;
  const { key } = req.auth;
  let finished = false;
  return (usage, status, credential, error, responseBody, errorType) => {
    if (finished) return;
    finished = true;
    const bodies = settings.get("request-log") === true;
    if (bodies) logRequest(deps, ctx, { status, usage, credential, error, responseBody });
    const share = "block" in reservation ? reservation : null;
    if (!share) deps.holds.release(key.id, reservation.units);
    const endedAt = Date.now();
    ctx.admission?.finish(usage.totalTokens, endedAt);
    const cost = status < 400 || usage.totalTokens > 0 ? billing.cost(req.model, group, usage) : 0;
    void ctx.credentialGate?.settle(credential?.id ?? null, usage.totalTokens, cost);
    if (ctx.span) endRequestSpan(ctx.span, status, usage, cost, error === null ? null : "failed");
    const record = requestRecord(ctx, status, credential, error, endedAt, usage, cost, errorType);
    if (bodies) record.bodies = recordBodies(req.rawBody, responseBody);
    deps.metrics?.settled(record, true);
    if (share) {
      // The request's part of the block is settled with its record; the block keeps the rest.
      deps.usage.blocks?.finish(share, cost, record);
      deps.usage.push({
        reservation: share.block.reservation,
        share: share.units,
        actualUnits: cost,
        record,
      });
    } else {
      deps.usage.push({ reservation: reservation as Reservation, actualUnits: cost, record });
      // What the reservation did not use goes back with the next flush: a request of the key
      // waiting for quota may flush now and be served.
      deps.waiting.settled(key.id);
      if (req.auth.user) deps.waiting.settled(userLine(req.auth.user.id));
    }
  };
}

/**
 * The request log record of a request refused after it was authorised (a rate limit, a
 * concurrency cap, its quota): no reservation to settle, nothing charged. Rate-limited floods
 * cost one queued record each, written in the usage writer's batches.
 */
export function recordRefusal(deps: ProxyDeps, ctx: RequestContext, error: unknown): void {
  const status = isGatewayError(error) ? error.status : 500;
  const message = error instanceof Error ? redactSecrets(error.message) : "internal error";
  const record = requestRecord(
    ctx,
    status,
    null,
    message,
    Date.now(),
    ZERO_USAGE,
    0,
    errorTypeOf(error),
  );
  if (deps.settings.get("request-log") === true) record.bodies = recordBodies(ctx.req.rawBody);
  deps.metrics?.settled(record, false);
  deps.usage.push({ reservation: null, actualUnits: 0, record });
}

/** A request's usage record: what it used and cost, and what the request log shows of it. */
function requestRecord(
  ctx: RequestContext,
  status: number,
  credential: CredentialRecord | null,
  error: string | null,
  endedAt: number,
  usage: TokenUsage,
  cost: number,
  errorType: RequestErrorType | undefined,
): NewUsageRecord {
  const { req, started } = ctx;
  const { key, user } = req.auth;
  const success = status < 400 && error === null;
  return {
    timestamp: started,
    requestId: ctx.requestId,
    keyId: key.id,
    userId: key.userId,
    credentialId: credential?.id ?? null,
    provider: credential?.provider ?? "",
    route: req.route,
    model: req.model,
    stream: req.stream,
    status,
    success,
    inputTokens: usage.inputTokens,
    outputTokens: usage.outputTokens,
    reasoningTokens: usage.reasoningTokens,
    cachedTokens: usage.cachedTokens,
    totalTokens: usage.totalTokens,
    quota: cost,
    durationMs: endedAt - started,
    error,
    keyName: key.name,
    username: user?.username ?? "",
    group: ctx.group,
    format: req.format,
    firstTokenMs: ctx.firstByteAt > 0 ? ctx.firstByteAt - started : null,
    retries: ctx.attempts > 1 ? ctx.attempts - 1 : 0,
    errorType: success ? null : (errorType ?? failureType(status, error)),
  };
}

/** The failure kind of a request that ended with an error status or message, from those. */
function failureType(status: number, error: string | null): RequestErrorType {
  if (status === 499 || error === "client closed the stream") return "client_closed";
  if (error?.startsWith("upstream stream") || error?.startsWith("upstream error event"))
    return "stream_interrupted";
  if (status === 429) return "rate_limited";
  return status >= 500 || status === 0 ? "upstream_error" : "invalid_request";
}

/** The failure kind of an error a stage threw. */
export function errorTypeOf(error: unknown): RequestErrorType {
  if (!isGatewayError(error)) return "internal";
  switch (error.code) {
    case "RATE_LIMIT_EXCEEDED":
      return "rate_limited";
    case "KEY_EXHAUSTED":
    case "QUOTA_EXHAUSTED":
    case "USER_QUOTA_EXHAUSTED":
      return "quota_exhausted";
    case "NO_CREDENTIAL_AVAILABLE":
      return "no_credential";
    case "UPSTREAM_ERROR":
    case "UPSTREAM_TIMEOUT":
      return "upstream_error";
    case "INTERNAL":
    case "STORE_ERROR":
      return "internal";
    default:
      return error.status === 499 ? "client_closed" : "invalid_request";
  }
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

/** The bodies kept in a request log record with the `request-log` setting. */
function recordBodies(
  request: Buffer,
  response?: Buffer | string,
): NonNullable<NewUsageRecord["bodies"]> {
  const bodies: NonNullable<NewUsageRecord["bodies"]> = { request: logBody(request) ?? "" };
  const answer = logBody(response);
  if (answer !== undefined) bodies.response = answer;
  return bodies;
}

/**
 * The `request-log` setting: one log line per proxied request with its request body and, for
 * JSON answers, the response body, both size-capped and redacted. Headers are not logged (they
 * carry the client's key); streamed answers are summarised by their usage.
 */
function logRequest(
  deps: ProxyDeps,
  ctx: RequestContext,
  r: {
    status: number;
    usage: TokenUsage;
    credential: CredentialRecord | null;
    error: string | null;
    responseBody: Buffer | string | undefined;
  },
): void {
  const { req } = ctx;
  deps.logger.info("request", {
    requestId: ctx.requestId,
    route: req.route,
    model: req.model,
    stream: req.stream,
    keyId: req.auth.key.id,
    credentialId: r.credential?.id ?? null,
    status: r.status,
    durationMs: Date.now() - ctx.started,
    usage: r.usage,
    error: r.error,
    request: logBody(req.rawBody),
    response: logBody(r.responseBody),
  });
}
