/**
 * Limits of upstream credentials ({@link CredentialLimits}: rpm, tpm, concurrency, spend per
 * calendar day and month), applied when selection picks a credential. A credential at one of its
 * limits is skipped (the request goes to the next credential: no error, no cooldown, no failure
 * counted); only when no credential is left and one was skipped for its limits is the answer a
 * 429 `RATE_LIMIT_EXCEEDED` with the earliest `Retry-After`.
 *
 * Every check is one atomic store step, so that the limits hold across every gateway sharing
 * the store: `Store.acquireLeases` for the concurrency cap (a lease that the gateway's
 * {@link LeaseKeeper} renews while the request runs and that expires by itself when the process
 * dies) and one `Store.hitWindows` for all the window limits of the credential.
 *
 * @module
 */
import { nextPeriodStart, periodStart } from "../billing/refill.js";
import { limitOf } from "../credentials/limits.js";
import { GatewayError } from "../errors.js";
import type { GatewayEmitter } from "../events.js";
import type { CredentialRecord, Store, WindowHit } from "../store/types.js";
import type { LeaseKeeper } from "./leases.js";
import { DAY_MS, emitRefused, type LimitName, MINUTE_MS, retryHeaders } from "./rate-limits.js";

/**
 * Window length of a spend-per-day counter: twice the longest calendar day (25 h with a
 * daylight-saving change), so that every hit made since the day began is still counted when the
 * day ends. See {@link CredentialGate} for why a calendar period is a rolling window.
 */
export const SPEND_DAY_WINDOW_MS = 2 * DAY_MS;
/** Window length of a spend-per-month counter: twice the longest month (31 days). */
export const SPEND_MONTH_WINDOW_MS = 62 * DAY_MS;

/** What the gate needs of the gateway (the proxy engine's dependencies fit). */
export interface CredentialGateDeps {
  store: Pick<Store, "hitWindows" | "adjustWindow">;
  events: GatewayEmitter;
  /** Reads the `quota-refill-time-zone` setting (the calendar of the spend caps). */
  settings: { get(name: "quota-refill-time-zone"): string };
  leases: Pick<LeaseKeeper, "acquire" | "release">;
}

/** What the gate needs of the request (the proxy engine's request context fits). */
export interface CredentialGateRequest {
  /** The request's id: the id of its concurrency leases. */
  requestId: string;
  /** What the request is expected to cost: tokens (tpm) and quota units (spend caps). */
  estimate: { tokens: number; units: number };
}

/** A window counter the gate hit with an estimate, corrected when the actual amount is known. */
interface EstimatedWindow {
  key: string;
  windowMs: number;
  /** What it was hit with. */
  cost: number;
  /** Corrected by tokens (tpm) or by quota units (spend). */
  by: "tokens" | "units";
}

/** What an admitted credential holds for the request. */
interface Held {
  /** Its concurrency pool, when it has a cap. */
  pool: string | null;
  /** When its windows were hit (ms). */
  atMs: number;
  windows: EstimatedWindow[];
}

const LIMIT_WORDS: Record<LimitName, string> = {
  rpm: "requests per minute",
  tpm: "tokens per minute",
  rpd: "requests per day",
  concurrency: "concurrent requests",
  "spend-day": "spend per day",
  "spend-month": "spend per month",
};

/**
 * The credential limits of one request, created by the forward stage only when a picked
 * credential has limits (a request whose credentials have none pays nothing). It admits
 * credentials ({@link CredentialGate.admit}), gives back what a failed attempt took
 * ({@link CredentialGate.failed}), and settles what the answering credential took
 * ({@link CredentialGate.settle}).
 *
 * Counters, per credential `<id>`: `rpm:cred:<id>` (cost 1) and `tpm:cred:<id>` (cost: the
 * request's token estimate) over a rolling minute; `spend-day:cred:<id>:<start>` and
 * `spend-month:cred:<id>:<start>` (cost: the reserved quota units) for the calendar day and
 * month that began at `<start>` (ms) in the `quota-refill-time-zone` setting; concurrency in the
 * lease pool `conc:cred:<id>` (the request id is the lease id).
 *
 * Why a calendar period is a rolling window: the store counts rolling windows only. Naming the
 * counter after its period's start makes each period a new counter (it starts at 0 at midnight,
 * whatever the previous one holds), and a window of twice the longest period
 * ({@link SPEND_DAY_WINDOW_MS}, {@link SPEND_MONTH_WINDOW_MS}) keeps every hit of the period
 * counted until the period is over; the store drops the counter by itself once its window has
 * passed. A refused spend cap is retried at the next period's start.
 */
export class CredentialGate {
  readonly #deps: CredentialGateDeps;
  readonly #ctx: CredentialGateRequest;
  readonly #held = new Map<string, Held>();
  /** Credentials skipped for their limits in this request. */
  readonly skipped = new Set<string>();
  readonly #refusedBy = new Set<LimitName>();
  /** The earliest retry-after (ms) of the refusals; null while none said when. */
  #retryAfterMs: number | null = null;

  constructor(deps: CredentialGateDeps, ctx: CredentialGateRequest) {
    this.#deps = deps;
    this.#ctx = ctx;
  }

  /** Whether a credential was skipped for its limits. */
  get refused(): boolean {
    return this.skipped.size > 0;
  }

  /** The earliest retry-after (ms) among the refusals, or null when none can tell. */
  get retryAfterMs(): number | null {
    return this.#retryAfterMs;
  }

  /**
   * Takes a slot of `c`'s concurrency cap (when it has one) and hits every window limit it has,
   * each in one atomic store step. True: admitted, the request may use `c`. False: `c` is at a
   * limit; nothing is kept (a lease taken is released), the refusal is remembered for the 429
   * and reported as a `limit.refused` event.
   */
  async admit(c: CredentialRecord, nowMs = Date.now()): Promise<boolean> {
    const { store, leases, settings } = this.#deps;
    const { requestId, estimate } = this.#ctx;
    const l = c.limits ?? {};
    const id = c.id;
    const cap = limitOf(l.maxConcurrency);
    let pool: string | null = null;
    if (cap > 0) {
      pool = `conc:cred:${id}`;
      const r = await leases.acquire([{ pool, limit: cap }], requestId, nowMs);
      if (!r.ok) {
        this.#refuse(id, "concurrency", r.retryAfterMs);
        return false;
      }
    }
    const hits: WindowHit[] = [];
    const names: LimitName[] = [];
    const ends: number[] = [];
    const windows: EstimatedWindow[] = [];
    const tokens = Math.max(0, Math.ceil(estimate.tokens));
    const units = Math.max(0, Math.ceil(estimate.units));
    const add = (name: LimitName, hit: WindowHit, end: number, by?: "tokens" | "units") => {
      hits.push(hit);
      names.push(name);
      ends.push(end);
      if (by) windows.push({ key: hit.key, windowMs: hit.windowMs, cost: hit.cost, by });
    };
    const rpm = limitOf(l.rpm);
    if (rpm > 0) add("rpm", { key: `rpm:cred:${id}`, limit: rpm, windowMs: MINUTE_MS, cost: 1 }, 0);
    const tpm = limitOf(l.tpm);
    if (tpm > 0)
      add(
        "tpm",
        { key: `tpm:cred:${id}`, limit: tpm, windowMs: MINUTE_MS, cost: tokens },
        0,
        "tokens",
      );
    const perDay = limitOf(l.spendPerDay);
    const perMonth = limitOf(l.spendPerMonth);
    if (perDay > 0 || perMonth > 0) {
      const tz = settings.get("quota-refill-time-zone");
      if (perDay > 0) {
        const start = periodStart("1d", nowMs, tz);
        const key = `spend-day:cred:${id}:${start}`;
        const hit = { key, limit: perDay, windowMs: SPEND_DAY_WINDOW_MS, cost: units };
        add("spend-day", hit, nextPeriodStart("1d", start, tz), "units");
      }
      if (perMonth > 0) {
        const start = periodStart("month", nowMs, tz);
        const key = `spend-month:cred:${id}:${start}`;
        const hit = { key, limit: perMonth, windowMs: SPEND_MONTH_WINDOW_MS, cost: units };
        add("spend-month", hit, nextPeriodStart("month", start, tz), "units");
      }
    }
    if (hits.length > 0) {
      let r: Awaited<ReturnType<typeof store.hitWindows>>;
      try {
        r = await store.hitWindows(hits, nowMs);
      } catch (error) {
        if (pool) await leases.release(requestId, [pool]);
        throw error;
      }
      if (!r.ok) {
        if (pool) await leases.release(requestId, [pool]);
        const name = names[r.index]!;
        const end = ends[r.index]!;
        // A spend cap has room again when its period ends (unless the cost alone is above it).
        const after = end > 0 && r.retryAfterMs !== null ? end - nowMs : r.retryAfterMs;
        this.#refuse(id, name, after);
        return false;
      }
    }
    this.#held.set(id, { pool, atMs: nowMs, windows });
    return true;
  }

  /**
   * The upstream call with credential `id` failed (the request fails over): its lease is
   * released at once and its token and spend estimates are given back (it produced nothing);
   * its rpm hit stays, as the upstream did get a request. Never rejects.
   */
  async failed(id: string): Promise<void> {
    const held = this.#held.get(id);
    if (!held) return;
    this.#held.delete(id);
    await Promise.all([
      held.pool ? this.#deps.leases.release(this.#ctx.requestId, [held.pool]) : undefined,
      ...held.windows.map((w) => this.#adjust(w, held.atMs, -w.cost)),
    ]);
  }

  /**
   * The request ended (the settle stage): the credential `answeredBy` had its windows corrected
   * to the actual amounts (`tokens` for tpm, quota `units` for the spend caps); any other
   * credential still held gives its estimates back; every lease of the gate is released. Never
   * rejects; the store steps run in the background.
   */
  settle(answeredBy: string | null, tokens: number, units: number): Promise<void> {
    if (this.#held.size === 0) return Promise.resolve();
    const pools: string[] = [];
    const steps: Promise<void>[] = [];
    for (const [id, held] of this.#held) {
      if (held.pool) pools.push(held.pool);
      for (const w of held.windows) {
        const actual =
          id === answeredBy ? Math.max(0, Math.round(w.by === "tokens" ? tokens : units)) : 0;
        if (actual !== w.cost) steps.push(this.#adjust(w, held.atMs, actual - w.cost));
      }
    }
    this.#held.clear();
    if (pools.length > 0) steps.push(this.#deps.leases.release(this.#ctx.requestId, pools));
    return Promise.all(steps).then(() => {});
  }

  /**
   * The 429 when no credential is left and some were skipped for their limits: the route renders
   * it (OpenAI `rate_limit_exceeded`, Anthropic `rate_limit_error`, Google `RESOURCE_EXHAUSTED`),
   * with `Retry-After` (seconds, rounded up) = the earliest retry-after among the refusals (a
   * concurrency cap counts as at most a second: slots come free when requests end).
   */
  refusal(model: string): GatewayError {
    const what = [...this.#refusedBy].map((n) => LIMIT_WORDS[n]).join(", ");
    const name = model.length > 200 ? `${model.slice(0, 200)}…` : model;
    const ms = this.#retryAfterMs;
    if (ms === null)
      return new GatewayError(
        "RATE_LIMIT_EXCEEDED",
        `Every upstream credential available for the model ${name} is at its limit (${what}), and this request is larger than the limit.`,
      );
    const headers = retryHeaders(ms);
    return new GatewayError(
      "RATE_LIMIT_EXCEEDED",
      `Every upstream credential available for the model ${name} is at its limit (${what}); retry in ${headers["retry-after"]} s.`,
      { headers },
    );
  }

  #refuse(id: string, limit: LimitName, retryAfterMs: number | null): void {
    this.skipped.add(id);
    this.#refusedBy.add(limit);
    // A lease's expiry is only the latest a slot comes free: most end with their request, so a
    // concurrency refusal suggests a retry within a second (as the key's concurrency cap does).
    const hint =
      limit === "concurrency" && retryAfterMs !== null
        ? Math.min(retryAfterMs, 1000)
        : retryAfterMs;
    if (hint !== null && (this.#retryAfterMs === null || hint < this.#retryAfterMs))
      this.#retryAfterMs = hint;
    emitRefused(this.#deps, () => ({ scope: "credential", id, limit, retryAfterMs }));
  }

  async #adjust(w: EstimatedWindow, atMs: number, delta: number): Promise<void> {
    if (delta === 0) return;
    try {
      await this.#deps.store.adjustWindow(w.key, w.windowMs, atMs, delta, Date.now());
    } catch (error) {
      this.#deps.events.emit("error", {
        where: "credential limit settlement",
        error: error as Error,
      });
    }
  }
}
