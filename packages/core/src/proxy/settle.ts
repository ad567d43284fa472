import type { TokenUsage } from "../billing/price.js";
import type { CredentialRecord, Reservation } from "../store/types.js";
import { redactSecrets } from "../util/secrets.js";
import { endRequestSpan } from "./tracing.js";
import type { ProxyDeps, ProxyRequest, RequestContext } from "./types.js";

/**
 * Ends a request's accounting: settles its reservation to the cost of `usage` and queues its
 * usage record (and, with the `request-log` setting, its request log line). Called exactly once
 * per request (later calls do nothing), by whichever stage ends it: an error reply, a JSON
 * answer, the end of a relayed stream, or an exception.
 */
export type Settle = (
  usage: TokenUsage,
  status: number,
  credential: CredentialRecord | null,
  error: string | null,
  responseBody?: Buffer | string,
) => void;

/**
 * The settle stage of one request: a {@link Settle} bound to its reservation. The reservation's
 * hold is released at once; the store settles it when the usage writer's batch is written.
 */
export function settlement(deps: ProxyDeps, ctx: RequestContext, reservation: Reservation): Settle {
  const { billing, settings } = deps;
  const { req, requestId, started, group } = ctx;
  const { key } = req.auth;
  let finished = false;
  return (usage, status, credential, error, responseBody) => {
    if (finished) return;
    finished = true;
    if (settings.get("request-log") === true) {
      logRequest(deps, req, { requestId, status, usage, credential, error, started, responseBody });
    }
    deps.holds.release(key.id, reservation.units);
    const endedAt = Date.now();
    ctx.admission?.finish(usage.totalTokens, endedAt);
    const cost = status < 400 || usage.totalTokens > 0 ? billing.cost(req.model, group, usage) : 0;
    void ctx.credentialGate?.settle(credential?.id ?? null, usage.totalTokens, cost);
    if (ctx.span) endRequestSpan(ctx.span, status, usage, cost, error === null ? null : "failed");
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
        durationMs: endedAt - started,
        error,
      },
    });
  };
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
  req: ProxyRequest,
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
