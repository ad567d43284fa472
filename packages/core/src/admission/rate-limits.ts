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

import type { Billing } from "../billing/price.js";
import { GatewayError } from "../errors.js";
import type { GatewayEmitter, GatewayEvents } from "../events.js";
import type { ClientSignal } from "../exchange.js";
import type { AuthorizedKey } from "../keys/service.js";
import type { SettingsService } from "../settings/service.js";
import type { LeaseAsk, RateLimits, Store, WindowHit, WindowStatus } from "../store/types.js";
import { goDuration } from "../util/duration.js";
import { type IdlePool, type Lease, type LeaseKeeper, leaseSignature } from "./leases.js";
import type { Counter, WindowClaims } from "./window-claims.js";

/** What admission needs from the gateway (the proxy engine's deps have all of it). */
export interface AdmissionDeps {
  store: Store;
  settings: SettingsService;
  events: GatewayEmitter;
  billing: Billing;
  leases: LeaseKeeper;
  claims: WindowClaims;
}

/** What admission needs to know of one request. */
export interface AdmissionRequest {
  /** The request's id: the name of its leases. */
  requestId: string;
  /** The client going away ends a wait in the queue. */
  signal: ClientSignal;
  /**
   * The request's token estimate for tpm: an upper bound of its prompt (cheap), the completion
   * allowance, and the prompt counted by the tokenizer (asked for only when the bound does not fit).
   */
  promptBound: number;
  completionAllowance: number;
  promptTokens(): Promise<number>;
  /** When the request was taken (ms): the fast path's clock (a clock read costs a cold cache line). */
  nowMs: number;
}

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
  /** `limit` as a header value. */
  limitText: string;
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
 * What admission does for one key (with its owner and group): the limited subjects, the lease
 * asks and the window hits, worked out once per key record (cached until the key's, its owner's
 * or the `group-limits` setting's record changes) so that a request pays for none of it.
 */
export interface AdmissionPlan {
  subjects: Subject[];
  /** One concurrency pool per subject with `maxConcurrency`. */
  asks: LeaseAsk[];
  pools: string[];
  /** The asks' identity, for the lease keeper's idle leases. */
  signature: string;
  /** The longest `queueTimeoutMs` of the subjects whose pools are asked (0 = refuse at once). */
  queueMs: number;
  /** rpm, tpm and rpd hits of every subject; tpm's cost is set per request. */
  hits: LimitHit[];
  /** The fast path's handles (see {@link admitRequest}): the idle leases of the asks, ... */
  idle: IdlePool | null;
  /** ... this instance's counter of each hit, ... */
  counters: Counter[];
  /** ... each hit's cost for the request at hand (tpm's set per request; used synchronously), ... */
  costs: number[];
  /** ... the indexes of the tpm hits (the `x-ratelimit-*-tokens` headers choose from them), ... */
  tpm: number[];
  /** ... and of the hits the `x-ratelimit-*-requests` headers choose from. */
  requestHeader: number[];
}

const plans = new WeakMap<
  object,
  { user: object | null; groups: object; group: string; plan: AdmissionPlan | null }
>();

/**
 * The admission plan of a request's key: its key and its owner, each with its own limits, the
 * defaults of the `group-limits` setting for the request's group filling the unset ones of the
 * owner (of the key, for a key without an owner). Null when nothing is limited (the common
 * case: no store call, no allocation).
 */
export function admissionPlan(
  settings: SettingsService,
  auth: AuthorizedKey,
  requestGroup: string,
): AdmissionPlan | null {
  const { key, user } = auth;
  const groups = settings.get("group-limits");
  const cached = plans.get(key);
  if (cached && cached.user === user && cached.groups === groups && cached.group === requestGroup)
    return cached.plan;
  const plan = buildPlan(auth, groups[requestGroup]);
  plans.set(key, { user, groups, group: requestGroup, plan });
  return plan;
}

/** The plan's handles of `deps` (idle leases, counters), taken anew when one was forgotten. */
function attach(deps: AdmissionDeps, plan: AdmissionPlan): void {
  if (plan.asks.length > 0 && (!plan.idle || plan.idle.dropped))
    plan.idle = deps.leases.idlePool(plan.signature);
  for (let i = 0; i < plan.hits.length; i++) {
    const c = plan.counters[i];
    if (!c || c.dropped) {
      const h = plan.hits[i]!;
      plan.counters[i] = deps.claims.counter(h.key, h.windowMs);
    }
  }
}

function buildPlan(auth: AuthorizedKey, group: RateLimits | undefined): AdmissionPlan | null {
  const { key, user } = auth;
  if (!anyLimit(key.limits) && !(user && anyLimit(user.limits)) && !anyLimit(group)) return null;
  const subjects: Subject[] = [];
  const keyLimits = user ? (key.limits ?? {}) : withDefaults(key.limits, group);
  if (anyLimit(keyLimits)) subjects.push({ scope: "key", id: key.id, limits: keyLimits });
  if (user) {
    const userLimits = withDefaults(user.limits, group);
    if (anyLimit(userLimits)) subjects.push({ scope: "user", id: user.id, limits: userLimits });
  }
  if (subjects.length === 0) return null;
  const asks: LeaseAsk[] = [];
  const hits: LimitHit[] = [];
  let queueMs = 0;
  for (const { scope, id, limits: l } of subjects) {
    const at = `${scope}:${id}`;
    if (has(l.maxConcurrency)) {
      asks.push({ pool: `conc:${at}`, limit: l.maxConcurrency });
      if (has(l.queueTimeoutMs)) queueMs = Math.max(queueMs, l.queueTimeoutMs);
    }
    const hit = (name: LimitHit["name"], limit: number, windowMs: number): LimitHit => ({
      scope,
      id,
      name,
      key: `${name}:${at}`,
      limit,
      windowMs,
      cost: 1,
      limitText: String(limit),
    });
    if (has(l.rpm)) hits.push(hit("rpm", l.rpm, MINUTE_MS));
    if (has(l.tpm)) hits.push(hit("tpm", l.tpm, MINUTE_MS));
    if (has(l.rpd)) hits.push(hit("rpd", l.rpd, DAY_MS));
  }
  const indexes = (names: LimitHit["name"][]) =>
    hits.flatMap((h, i) => (names.includes(h.name) ? [i] : []));
  const rpm = indexes(["rpm"]);
  return {
    subjects,
    asks,
    pools: asks.map((a) => a.pool),
    signature: leaseSignature(asks),
    queueMs,
    hits,
    idle: null,
    counters: [],
    costs: hits.map((h) => h.cost),
    tpm: indexes(["tpm"]),
    requestHeader: rpm.length > 0 ? rpm : indexes(["rpd"]),
  };
}

/** OpenAI's form of a duration in its `x-ratelimit-reset-*` headers: `17ms`, `1s`, `6m0s`, `1h2m3s`. */
export function resetDuration(ms: number): string {
  if (ms <= 0) return "0s";
  if (ms < 1000) return `${Math.ceil(ms)}ms`;
  const total = Math.ceil(ms / 1000);
  // Minute windows answer 1-61 s on every request: those texts are made once.
  if (total <= 120) {
    let text = SECONDS_TEXT[total];
    if (text === undefined) {
      text = goDuration(total);
      SECONDS_TEXT[total] = text;
    }
    return text;
  }
  return goDuration(total);
}

const SECONDS_TEXT: string[] = [];

const ZEROS = ["", "0", "00", "000", "0000", "00000", "000000", "0000000", "00000000"];

/**
 * `String(n)` of a non-negative integer, faster for the large ones (a tpm window's remaining
 * tokens): V8 formats a number past the small-integer range as a double, ~3× slower than two
 * small integers.
 */
export function intText(n: number): string {
  if (n < 1e9 || n > Number.MAX_SAFE_INTEGER || !Number.isInteger(n)) return String(n);
  const hi = Math.floor(n / 1e9);
  const lo = String(n - hi * 1e9);
  return String(hi) + ZEROS[9 - lo.length] + lo;
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
  deps: { events: GatewayEmitter },
  info: () => Parameters<GatewayEvents["limit.refused"]>[0],
): void {
  if (deps.events.listenerCount("limit.refused") > 0) deps.events.emit("limit.refused", info());
}

/**
 * What the admission stage admitted for one request: the leases it holds and the tpm hits to
 * correct once the actual usage is known, plus the `x-ratelimit-*` headers of its answer.
 */
export class Admission {
  /** `x-ratelimit-*` headers for every answer of the request (empty without rpm / rpd / tpm). */
  readonly headers: Readonly<Record<string, string>>;
  readonly #deps: AdmissionDeps;
  readonly #plan: AdmissionPlan;
  readonly #leaseId: string;
  /** A lease handed over from this instance's idle ones (else the keeper knows it by `leaseId`). */
  readonly #lease: Lease | null;
  /** The tokens the tpm hits were charged (0: none), and when. */
  readonly #tokens: number;
  readonly #atMs: number;
  #done = false;

  constructor(
    deps: AdmissionDeps,
    plan: AdmissionPlan,
    leaseId: string,
    lease: Lease | null,
    tokens: number,
    atMs: number,
    headers: Readonly<Record<string, string>>,
  ) {
    this.#deps = deps;
    this.#plan = plan;
    this.#leaseId = leaseId;
    this.#lease = lease;
    this.#tokens = tokens;
    this.#atMs = atMs;
    this.headers = headers;
  }

  /**
   * Ends the request's admission, once: frees its concurrency slots and corrects its tpm hits
   * from the estimate to `totalTokens` (the actual usage; 0 for a request that never reached an
   * upstream). Never throws (store errors become `error` events); the corrections are written
   * within a quarter of a second ({@link WindowClaims.correct}).
   */
  finish(totalTokens: number, nowMs = Date.now()): void {
    if (this.#done) return;
    this.#done = true;
    const deps = this.#deps;
    const plan = this.#plan;
    if (this.#lease) deps.leases.freeLease(this.#lease, nowMs);
    else if (plan.pools.length > 0) void deps.leases.release(this.#leaseId, plan.pools);
    if (this.#tokens > 0) {
      for (const i of plan.tpm) {
        deps.claims.correct(plan.counters[i]!, this.#atMs, totalTokens - this.#tokens);
      }
    }
  }
}

/** No headers: shared by every admission without windows. */
const NO_HEADERS: Readonly<Record<string, string>> = Object.freeze({});

/** The hits of a request: the plan's, with tpm's cost set to `tokens`. */
function hitsWith(plan: AdmissionPlan, tokens: number): LimitHit[] {
  return plan.tpm.length > 0
    ? plan.hits.map((h) => (h.name === "tpm" ? { ...h, cost: tokens } : h))
    : plan.hits;
}

/**
 * The admission stage for a request's {@link AdmissionPlan}: concurrency first (a slot in each
 * limited pool, waiting in a queue up to `queueTimeoutMs` when asked), then every rpm / tpm / rpd
 * window in one all-or-nothing hit, so that a refused request uses up no window and a queued one
 * no rpm. Returns what to finish at settlement — synchronously when an idle lease of this
 * instance and its window claims cover the request (the common case under load: no store call,
 * no promise, no lookup: the plan holds the idle pool and the counters), else a promise. Refuses
 * with `RATE_LIMIT_EXCEEDED` (429, `Retry-After`) and a `limit.refused` event.
 *
 * tpm is hit with an estimate (the prompt's byte bound, or its tokenizer count when the bound
 * does not fit, plus the completion allowance) and corrected to the actual tokens by
 * {@link Admission.finish}, as quota is reserved then settled.
 */
export function admitRequest(
  deps: AdmissionDeps,
  request: AdmissionRequest,
  plan: AdmissionPlan,
): Admission | Promise<Admission> {
  attach(deps, plan);
  let lease: Lease | null = null;
  if (plan.idle) {
    lease = plan.idle.leases.pop() ?? null;
    if (!lease) return admitSlowly(deps, request, plan, null);
  }
  if (plan.hits.length === 0)
    return new Admission(deps, plan, request.requestId, lease, 0, 0, NO_HEADERS);
  const { nowMs } = request;
  const tokens = request.promptBound + request.completionAllowance;
  const { costs, tpm } = plan;
  for (let i = 0; i < tpm.length; i++) costs[tpm[i]!] = tokens;
  if (!deps.claims.takeLocal(plan.hits, plan.counters, costs, nowMs))
    return admitSlowly(deps, request, plan, lease);
  return new Admission(
    deps,
    plan,
    request.requestId,
    lease,
    plan.tpm.length > 0 ? tokens : 0,
    nowMs,
    localHeaders(plan, nowMs),
  );
}

/**
 * {@link admitRequest} through the store: the leases (unless `lease` was handed over already),
 * then the windows.
 */
async function admitSlowly(
  deps: AdmissionDeps,
  request: AdmissionRequest,
  plan: AdmissionPlan,
  lease: Lease | null,
): Promise<Admission> {
  const { requestId } = request;
  const { asks, subjects, queueMs, pools } = plan;
  if (asks.length > 0 && !lease) {
    const got =
      queueMs > 0
        ? await deps.leases.acquireWaiting(asks, requestId, queueMs, request.signal)
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
  if (plan.hits.length === 0) return new Admission(deps, plan, requestId, lease, 0, 0, NO_HEADERS);

  // Windows: rpm, tpm, rpd of every subject, in one atomic hit.
  try {
    const allowance = request.completionAllowance;
    let tokens = request.promptBound + allowance;
    const nowMs = Date.now();
    let hits = hitsWith(plan, tokens);
    let result = await deps.claims.hit(hits, nowMs);
    if (!result.ok && hits[result.index]?.name === "tpm") {
      // The byte bound did not fit: the tokenizer's count may.
      const exact = (await request.promptTokens()) + allowance;
      if (exact < tokens) {
        tokens = exact;
        hits = hitsWith(plan, tokens);
        result = await deps.claims.hit(hits, nowMs);
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
    return new Admission(
      deps,
      plan,
      requestId,
      lease,
      plan.tpm.length > 0 ? tokens : 0,
      nowMs,
      rateHeaders(hits, result.windows),
    );
  } catch (error) {
    if (lease) deps.leases.freeLease(lease);
    else if (pools.length > 0) void deps.leases.release(requestId, pools);
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
  // The tightest hit per kind: rpm (else rpd) for requests, tpm for tokens.
  let requests = -1;
  let requestsRank = 0;
  let tokens = -1;
  for (let i = 0; i < hits.length; i++) {
    const name = hits[i]!.name;
    const w = windows[i];
    if (name === "tpm") {
      if (tokens < 0 || (w && (!windows[tokens] || w.remaining < windows[tokens]!.remaining)))
        tokens = i;
      continue;
    }
    const rank = name === "rpm" ? 2 : 1;
    if (
      requests < 0 ||
      rank > requestsRank ||
      (rank === requestsRank &&
        w &&
        (!windows[requests] || w.remaining < windows[requests]!.remaining))
    ) {
      requests = i;
      requestsRank = rank;
    }
  }
  const rw = requests >= 0 ? windows[requests] : undefined;
  const tw = tokens >= 0 ? windows[tokens] : undefined;
  if (rw && tw) {
    // The common case as one literal: an object of one shape, no key added one by one.
    return {
      "x-ratelimit-limit-requests": hits[requests]!.limitText,
      "x-ratelimit-remaining-requests": String(rw.remaining),
      "x-ratelimit-reset-requests": resetDuration(rw.resetMs),
      "x-ratelimit-limit-tokens": hits[tokens]!.limitText,
      "x-ratelimit-remaining-tokens": String(tw.remaining),
      "x-ratelimit-reset-tokens": resetDuration(tw.resetMs),
    };
  }
  const headers: Record<string, string> = {};
  if (requests >= 0) {
    headers["x-ratelimit-limit-requests"] = hits[requests]!.limitText;
    const w = windows[requests];
    if (w) {
      headers["x-ratelimit-remaining-requests"] = String(w.remaining);
      headers["x-ratelimit-reset-requests"] = resetDuration(w.resetMs);
    }
  }
  if (tokens >= 0) {
    headers["x-ratelimit-limit-tokens"] = hits[tokens]!.limitText;
    const w = windows[tokens];
    if (w) {
      headers["x-ratelimit-remaining-tokens"] = String(w.remaining);
      headers["x-ratelimit-reset-tokens"] = resetDuration(w.resetMs);
    }
  }
  return headers;
}

/** Of the hits at `indexes`, the one whose counter has the least room (-1: none). */
function tightest(plan: AdmissionPlan, indexes: number[]): number {
  let best = indexes.length > 0 ? indexes[0]! : -1;
  for (let k = 1; k < indexes.length; k++) {
    const i = indexes[k]!;
    if (plan.counters[i]!.remainingNow() < plan.counters[best]!.remainingNow()) best = i;
  }
  return best;
}

/** {@link rateHeaders} of a request admitted from this instance's claims, read off the counters. */
function localHeaders(plan: AdmissionPlan, nowMs: number): Record<string, string> {
  const r = tightest(plan, plan.requestHeader);
  const t = tightest(plan, plan.tpm);
  if (r >= 0 && t >= 0) {
    const rc = plan.counters[r]!;
    const tc = plan.counters[t]!;
    return {
      "x-ratelimit-limit-requests": plan.hits[r]!.limitText,
      "x-ratelimit-remaining-requests": intText(rc.remainingNow()),
      "x-ratelimit-reset-requests": resetDuration(rc.resetAt(nowMs)),
      "x-ratelimit-limit-tokens": plan.hits[t]!.limitText,
      "x-ratelimit-remaining-tokens": intText(tc.remainingNow()),
      "x-ratelimit-reset-tokens": resetDuration(tc.resetAt(nowMs)),
    };
  }
  const i = r >= 0 ? r : t;
  const c = plan.counters[i]!;
  return r >= 0
    ? {
        "x-ratelimit-limit-requests": plan.hits[i]!.limitText,
        "x-ratelimit-remaining-requests": intText(c.remainingNow()),
        "x-ratelimit-reset-requests": resetDuration(c.resetAt(nowMs)),
      }
    : {
        "x-ratelimit-limit-tokens": plan.hits[i]!.limitText,
        "x-ratelimit-remaining-tokens": intText(c.remainingNow()),
        "x-ratelimit-reset-tokens": resetDuration(c.resetAt(nowMs)),
      };
}
