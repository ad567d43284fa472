/**
 * Rate limits and concurrency caps of downstream keys, their owners and their groups: what the
 * admission stage of the proxy engine checks before a request reserves quota.
 *
 * Every check is one atomic step of the store (window counters for rpm / tpm / rpd, leases with an
 * expiry for concurrency), so limits hold across every instance sharing the store, and a killed
 * instance's slots come back by themselves when their leases expire.
 *
 * @module
 */
import { promptTokenBound } from "../billing/tokens.js";
import { GatewayError } from "../errors.js";
import type { GatewayEvents } from "../events.js";
import type { ProxyDeps, RequestContext } from "../proxy/types.js";
import type { LeaseAsk, RateLimits, WindowHit, WindowStatus } from "../store/types.js";

/** A minute and a day, the windows of rpm / tpm and rpd (ms). */
export const MINUTE_MS = 60_000;
export const DAY_MS = 86_400_000;

/** Whose limit: a key, or a user (all its keys together). */
export type LimitScope = "key" | "user";

/** What the `limit.refused` event names as the limit reached. */
export type LimitName = "rpm" | "tpm" | "rpd" | "concurrency" | "spend-day" | "spend-month";

/** One limited subject of a request: a key or its owner, with the limits in force for it. */
export interface Subject {
  scope: LimitScope;
  id: number;
  limits: RateLimits;
}

/** The window hit of one limit of one subject. */
interface LimitHit extends WindowHit {
  scope: LimitScope;
  id: number;
  limit: number;
  name: "rpm" | "tpm" | "rpd";
}

const has = (n: number | undefined): n is number => n !== undefined && n > 0;

function anyLimit(l: RateLimits | undefined): boolean {
  return l !== undefined && (has(l.rpm) || has(l.tpm) || has(l.rpd) || has(l.maxConcurrency));
}

/** `own` with its unset limits filled from `group`'s defaults. */
function withDefaults(own: RateLimits | undefined, group: RateLimits | undefined): RateLimits {
  if (!group) return own ?? {};
  if (!own) return group;
  return {
    rpm: has(own.rpm) ? own.rpm : group.rpm,
    tpm: has(own.tpm) ? own.tpm : group.tpm,
    rpd: has(own.rpd) ? own.rpd : group.rpd,
    maxConcurrency: has(own.maxConcurrency) ? own.maxConcurrency : group.maxConcurrency,
    queueTimeoutMs: has(own.queueTimeoutMs) ? own.queueTimeoutMs : group.queueTimeoutMs,
  };
}

/**
 * The limited subjects of a request: its key and its owner, each with its own limits, the
 * defaults of the `group-limits` setting for the request's group filling the unset ones of the
 * owner (of the key, for a key without an owner). Empty (and allocation-free) when nothing is
 * limited, the common case.
 */
export function limitedSubjects(deps: ProxyDeps, ctx: RequestContext): Subject[] | null {
  const { key, user } = ctx.req.auth;
  const groups = deps.settings.get("group-limits");
  const group = groups[ctx.group];
  const groupLimited = anyLimit(group);
  if (!anyLimit(key.limits) && !(user && anyLimit(user.limits)) && !groupLimited) return null;
  const subjects: Subject[] = [];
  const keyLimits = user ? (key.limits ?? {}) : withDefaults(key.limits, group);
  if (anyLimit(keyLimits)) subjects.push({ scope: "key", id: key.id, limits: keyLimits });
  if (user) {
    const userLimits = withDefaults(user.limits, group);
    if (anyLimit(userLimits)) subjects.push({ scope: "user", id: user.id, limits: userLimits });
  }
  return subjects.length > 0 ? subjects : null;
}

/** OpenAI's form of a duration in its `x-ratelimit-reset-*` headers: `17ms`, `1s`, `6m0s`, `1h2m3s`. */
export function resetDuration(ms: number): string {
  if (ms <= 0) return "0s";
  if (ms < 1000) return `${Math.ceil(ms)}ms`;
  const total = Math.ceil(ms / 1000);
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/** `Retry-After` (whole seconds, at least 1) and `retry-after-ms` for a wait of `ms`. */
export function retryHeaders(ms: number): Record<string, string> {
  return {
    "retry-after": String(Math.max(1, Math.ceil(ms / 1000))),
    "retry-after-ms": String(Math.max(0, Math.ceil(ms))),
  };
}

const SCOPE_TEXT: Record<LimitScope, string> = {
  key: "this API key",
  user: "the owner of this API key",
};

const LIMIT_TEXT: Record<LimitHit["name"], string> = {
  rpm: "requests per minute (rpm)",
  tpm: "tokens per minute (tpm)",
  rpd: "requests per day (rpd)",
};

/** Emits `limit.refused`, building the payload only when someone listens. */
export function emitRefused(
  deps: Pick<ProxyDeps, "events">,
  info: () => Parameters<GatewayEvents["limit.refused"]>[0],
): void {
  if (deps.events.listenerCount("limit.refused") > 0) deps.events.emit("limit.refused", info());
}

/**
 * What the admission stage admitted for one request: the leases it holds and the window hits to
 * correct once the actual usage is known, plus the `x-ratelimit-*` headers of its answer.
 */
export class Admission {
  /** `x-ratelimit-*` headers for every answer of the request (empty without rpm / rpd / tpm). */
  readonly headers: Record<string, string>;
  readonly #deps: ProxyDeps;
  readonly #leaseId: string;
  readonly #pools: string[];
  readonly #tpm: { key: string; atMs: number; cost: number }[];
  #done = false;

  constructor(
    deps: ProxyDeps,
    leaseId: string,
    pools: string[],
    tpm: { key: string; atMs: number; cost: number }[],
    headers: Record<string, string>,
  ) {
    this.#deps = deps;
    this.#leaseId = leaseId;
    this.#pools = pools;
    this.#tpm = tpm;
    this.headers = headers;
  }

  /**
   * Ends the request's admission, once: frees its concurrency slots and corrects its tpm hits
   * from the estimate to `totalTokens` (the actual usage; 0 for a request that never reached an
   * upstream). Never throws (store errors become `error` events).
   */
  finish(totalTokens: number): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#pools.length > 0) void this.#deps.leases.release(this.#leaseId, this.#pools);
    const nowMs = Date.now();
    for (const t of this.#tpm) {
      const delta = totalTokens - t.cost;
      if (delta === 0) continue;
      this.#deps.store
        .adjustWindow(t.key, MINUTE_MS, t.atMs, delta, nowMs)
        .catch((error: unknown) =>
          this.#deps.events.emit("error", { where: "tpm settlement", error: error as Error }),
        );
    }
  }
}

/**
 * The admission stage for a request's limited `subjects` ({@link limitedSubjects}): concurrency
 * first (a slot in each limited pool, waiting in a queue up to `queueTimeoutMs` when asked), then
 * every rpm / tpm / rpd window in one all-or-nothing hit, so that a refused request uses up no
 * window and a queued one no rpm. Returns what to finish at settlement. Refuses with `RATE_LIMIT_EXCEEDED` (429,
 * `Retry-After`) and a `limit.refused` event.
 *
 * tpm is hit with an estimate (the prompt's byte bound, or its tokenizer count when the bound
 * does not fit, plus the completion allowance) and corrected to the actual tokens by
 * {@link Admission.finish}, as quota is reserved then settled.
 */
export async function admitRequest(
  deps: ProxyDeps,
  ctx: RequestContext,
  subjects: Subject[],
): Promise<Admission> {
  const { req, requestId } = ctx;

  // 1. Concurrency: one lease per limited subject, all or nothing.
  const asks: LeaseAsk[] = [];
  let queueMs = 0;
  for (const s of subjects) {
    if (!has(s.limits.maxConcurrency)) continue;
    asks.push({ pool: `conc:${s.scope}:${s.id}`, limit: s.limits.maxConcurrency });
    if (has(s.limits.queueTimeoutMs)) queueMs = Math.max(queueMs, s.limits.queueTimeoutMs);
  }
  if (asks.length > 0) {
    const got =
      queueMs > 0
        ? await deps.leases.acquireWaiting(asks, requestId, queueMs, req.exchange.signal)
        : await deps.leases.acquire(asks, requestId);
    if (!got.ok) {
      const s = subjects.find((x) => `conc:${x.scope}:${x.id}` === got.pool) ?? subjects[0]!;
      emitRefused(deps, () => ({
        scope: s.scope,
        id: s.id,
        limit: "concurrency",
        retryAfterMs: got.retryAfterMs,
      }));
      throw new GatewayError(
        "RATE_LIMIT_EXCEEDED",
        `Too many concurrent requests for ${SCOPE_TEXT[s.scope]}: at most ${asks[got.index]?.limit} at once.${
          queueMs > 0 ? ` No slot came free within ${queueMs} ms.` : ""
        }`,
        { headers: retryHeaders(Math.min(got.retryAfterMs, 1000)) },
      );
    }
  }
  const pools = asks.map((a) => a.pool);

  // 2. Windows: rpm, tpm, rpd of every subject, in one atomic hit.
  try {
    const allowance = deps.billing.completionAllowance(ctx.client.maxTokens(req.body));
    let tokens = promptTokenBound(req.rawBody) + allowance;
    let counted = false;
    const nowMs = Date.now();
    const hitsFor = (cost: number): LimitHit[] => {
      const hits: LimitHit[] = [];
      for (const s of subjects) {
        const l = s.limits;
        const { scope, id } = s;
        const at = `${scope}:${id}`;
        if (has(l.rpm))
          hits.push({
            scope,
            id,
            name: "rpm",
            key: `rpm:${at}`,
            limit: l.rpm,
            windowMs: MINUTE_MS,
            cost: 1,
          });
        if (has(l.tpm))
          hits.push({
            scope,
            id,
            name: "tpm",
            key: `tpm:${at}`,
            limit: l.tpm,
            windowMs: MINUTE_MS,
            cost,
          });
        if (has(l.rpd))
          hits.push({
            scope,
            id,
            name: "rpd",
            key: `rpd:${at}`,
            limit: l.rpd,
            windowMs: DAY_MS,
            cost: 1,
          });
      }
      return hits;
    };
    let hits = hitsFor(tokens);
    if (hits.length === 0) return new Admission(deps, requestId, pools, [], {});
    let result = await deps.store.hitWindows(hits, nowMs);
    if (!result.ok && hits[result.index]?.name === "tpm" && !counted) {
      // The byte bound did not fit: the tokenizer's count may.
      const exact = (await ctx.local.promptTokens()) + allowance;
      counted = true;
      if (exact < tokens) {
        tokens = exact;
        hits = hitsFor(tokens);
        result = await deps.store.hitWindows(hits, nowMs);
      }
    }
    if (!result.ok) {
      const hit = hits[result.index]!;
      const wait = result.retryAfterMs;
      emitRefused(deps, () => ({
        scope: hit.scope,
        id: hit.id,
        limit: hit.name,
        retryAfterMs: wait,
      }));
      const retry = wait === null ? "" : ` Please try again in ${resetDuration(wait)}.`;
      const message =
        hit.name === "tpm" && wait === null
          ? `Request too large for the tokens per minute (tpm) limit of ${SCOPE_TEXT[hit.scope]}: limit ${hit.limit}, requested ${hit.cost}.`
          : `Rate limit reached for ${LIMIT_TEXT[hit.name]} of ${SCOPE_TEXT[hit.scope]}: limit ${hit.limit}, remaining ${result.remaining}.${retry}`;
      throw new GatewayError("RATE_LIMIT_EXCEEDED", message, {
        headers: {
          ...rateHeaders(
            hits,
            hits.map((_, i) =>
              i === result.index ? { remaining: result.remaining, resetMs: wait ?? 0 } : undefined,
            ),
          ),
          ...(wait === null ? {} : retryHeaders(wait)),
        },
      });
    }
    const tpm = hits
      .filter((h) => h.name === "tpm")
      .map((h) => ({ key: h.key, atMs: nowMs, cost: h.cost }));
    return new Admission(deps, requestId, pools, tpm, rateHeaders(hits, result.windows));
  } catch (error) {
    if (pools.length > 0) void deps.leases.release(requestId, pools);
    throw error;
  }
}

/**
 * OpenAI's `x-ratelimit-*` headers: for requests the tightest rpm window of the key and its
 * owner (rpd when neither has an rpm), for tokens the tightest tpm window. On a refusal only the
 * refused window has a status (the others report their limit alone).
 */
function rateHeaders(
  hits: LimitHit[],
  windows: readonly (WindowStatus | undefined)[],
): Record<string, string> {
  const headers: Record<string, string> = {};
  const put = (kind: "requests" | "tokens", names: LimitHit["name"][]) => {
    for (const name of names) {
      let best: { hit: LimitHit; w: WindowStatus | undefined } | null = null;
      hits.forEach((hit, i) => {
        if (hit.name !== name) return;
        const w = windows[i];
        if (!best || (w && (!best.w || w.remaining < best.w.remaining))) best = { hit, w };
      });
      if (!best) continue;
      const { hit, w } = best as { hit: LimitHit; w: WindowStatus | undefined };
      headers[`x-ratelimit-limit-${kind}`] = String(hit.limit);
      if (w) {
        headers[`x-ratelimit-remaining-${kind}`] = String(w.remaining);
        headers[`x-ratelimit-reset-${kind}`] = resetDuration(w.resetMs);
      }
      return;
    }
  };
  put("requests", ["rpm", "rpd"]);
  put("tokens", ["tpm"]);
  return headers;
}
