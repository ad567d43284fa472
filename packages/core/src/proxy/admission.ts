import { type Admission, admissionPlan, admitRequest } from "../admission/rate-limits.js";
import { dueRefill, refillIfDue } from "../billing/refill.js";
import type { GatewayMetrics } from "../metrics/metrics.js";
import type { ProxyDeps, RequestContext } from "./types.js";

/**
 * The admission stage, between authorize and reserve: the rate limits (rpm / tpm / rpd) and
 * concurrency caps of the key, its owner and their group (`admission/rate-limits.ts`). Returns
 * what the settle stage finishes (the leases to free, the tpm hits to correct), or null when
 * nothing limits the request — then it costs no store call.
 */
export function admit(deps: ProxyDeps, ctx: RequestContext): Admission | Promise<Admission> | null {
  const { req } = ctx;
  const plan = admissionPlan(deps.settings, req.auth, ctx.group);
  if (!plan) return null;
  const admitted = admitRequest(
    deps,
    {
      requestId: ctx.requestId,
      signal: req.exchange.signal,
      promptBound: ctx.promptBound,
      completionAllowance: deps.billing.completionAllowance(ctx.maxTokens),
      promptTokens: ctx.local.promptTokens,
      nowMs: ctx.started,
    },
    plan,
  );
  return plan.queueMs > 0 && deps.metrics ? timedQueue(deps.metrics, admitted) : admitted;
}

/**
 * The queue wait of a request whose concurrency limit queues (`queueTimeoutMs`), for the
 * metrics: 0 when a slot was at hand, else the time until it was admitted or refused.
 */
function timedQueue(
  metrics: GatewayMetrics,
  admitted: Admission | Promise<Admission>,
): Admission | Promise<Admission> {
  if (!(admitted instanceof Promise)) {
    metrics.queueWait(0, true);
    return admitted;
  }
  const from = performance.now();
  return admitted.then(
    (a) => {
      metrics.queueWait(performance.now() - from, true);
      return a;
    },
    (error: unknown) => {
      metrics.queueWait(performance.now() - from, false);
      throw error;
    },
  );
}

/**
 * Starts the due refill period of the key's and the owner's quota before the reserve stage asks
 * for quota (refills are lazy: the first request after a boundary starts the new period; list
 * and get answers of the management APIs do the same). A no-op without a refill.
 */
export function refillDue(deps: ProxyDeps, ctx: RequestContext): Promise<void> | null {
  const { key, user } = ctx.req.auth;
  if (!key.quotaRefill && !user?.quotaRefill) return null;
  const nowMs = Date.now();
  const tz = deps.settings.get("quota-refill-time-zone");
  // Nothing due (every request but the first of a period): no store call, no promise.
  const keyDue = key.quotaRefill ? dueRefill(key.quotaRefill, key.quotaPeriod, nowMs, tz) : null;
  const userDue = user?.quotaRefill
    ? dueRefill(user.quotaRefill, user.quotaPeriod, nowMs, tz)
    : null;
  if (keyDue === null && userDue === null) return null;
  return (async () => {
    const done: [
      "key" | "user",
      { id: number; quotaRefill?: { amount: number } | null },
      number,
    ][] = [];
    if (keyDue !== null) {
      const p = await refillIfDue(deps.store, "key", key, nowMs, tz);
      if (p !== null) done.push(["key", key, p]);
    }
    if (user && userDue !== null) {
      const p = await refillIfDue(deps.store, "user", user, nowMs, tz);
      if (p !== null) done.push(["user", user, p]);
    }
    for (const [target, r, period] of done) {
      deps.events.emit("quota.refilled", {
        target,
        id: r.id,
        period,
        amount: r.quotaRefill?.amount ?? 0,
      });
    }
  })();
}
