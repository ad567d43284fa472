import type { GatewayEmitter } from "../events.js";
import {
  type Store,
  WINDOW_BUCKETS,
  type WindowHit,
  type WindowResult,
  type WindowStatus,
} from "../store/types.js";

/** How long (ms) units claimed ahead stay usable here at most, within their bucket. */
export const CLAIM_TTL_MS = 1_000;
/** The sweep returns expired claims and writes queued corrections this often (ms). */
export const CLAIM_SWEEP_MS = 250;
/** A counter unused this long (ms) after its last claim expired is forgotten. */
const COUNTER_IDLE_MS = 60_000;
const ignore = (): void => {};
/**
 * A claim ahead is at most this many requests' worth of units (the size doubles while claims
 * are used up, so a busy counter reaches the demand of a whole bucket in a few claims)...
 */
const MAX_MULTIPLE = 16_384;
/**
 * When the units held fall below this share of the last claim ahead, the next one is made in
 * the background (one at a time), so that requests keep being admitted locally meanwhile.
 */
const TOP_UP_SHARE = 0.25;
/** ... and at most this fraction of the limit. */
const LIMIT_SHARE = 16;
/**
 * Claims ahead only for a counter whose limit admits at least this many requests of the size at
 * hand (a 60-rpm key is always asked exactly), ...
 */
const MIN_REQUESTS_IN_LIMIT = 64;
/** ... and only while the store's count left at least this fraction of the limit free. */
const FREE_SHARE = 0.5;

/**
 * One window counter as this instance sees it: the units it claimed from the store and has not
 * used yet, and the corrections it has not written yet. One object per counter for as long as
 * the counter is in use, so that an admission plan can hold it and admit without a lookup.
 */
export class Counter {
  readonly key: string;
  readonly windowMs: number;
  /** The length of one bucket of the window (ms). */
  readonly bucketMs: number;
  /** The bucket the held units were counted in (its index; -1 before the first claim). */
  bucket = -1;
  /** When the held units stop being usable here. */
  validUntil = 0;
  /** Units left to admit locally. */
  units = 0;
  /** The store's `remaining` and `resetMs` after the last claim, and when it was made. */
  remaining = 0;
  resetMs = 0;
  at = 0;
  /** Requests' worth of units the next claim takes (grows while claims are used up, shrinks when they expire unused). */
  multiple = 1;
  /** Below this many units the next claim ahead is made in the background (0: none; see {@link TOP_UP_SHARE}). */
  lowWater = 0;
  /** A claim ahead in flight: concurrent requests wait for it rather than claim again. */
  claiming: Promise<unknown> | null = null;
  /** The correction not written yet for bucket `fixBucket` (hit at `fixAtMs`). */
  fixBucket = -1;
  fixAtMs = 0;
  fixDelta = 0;
  /** Whether it is in the list of counters with corrections to write. */
  dirty = false;
  /** Forgotten by its {@link WindowClaims} (unused for a while): ask it for the counter again. */
  dropped = false;

  constructor(key: string, windowMs: number) {
    this.key = key;
    this.windowMs = windowMs;
    this.bucketMs = Math.ceil(windowMs / WINDOW_BUCKETS);
  }

  /** Whether `cost` units can be taken here at `nowMs` without asking the store. */
  covers(cost: number, nowMs: number): boolean {
    return (
      this.units >= cost &&
      nowMs < this.validUntil &&
      Math.floor(nowMs / this.bucketMs) === this.bucket
    );
  }

  /** The window's status after a local take: the store's count less what this instance holds. */
  status(nowMs: number): WindowStatus {
    return { remaining: this.remainingNow(), resetMs: this.resetAt(nowMs) };
  }

  /** Units the window still admits, counting the units held here as free. */
  remainingNow(): number {
    return Math.max(0, this.remaining + this.units);
  }

  /** When the window gets room back (ms from `nowMs`). */
  resetAt(nowMs: number): number {
    return Math.max(0, this.resetMs - (nowMs - this.at));
  }
}

/**
 * Window counters with claims ahead: the store's counters stay the one truth across instances,
 * but an instance under load does not ask the store for every request. When a counter has no
 * units left here, it claims several requests' worth at once (one `hitWindows`, all or nothing,
 * as a direct hit would be), then admits the next requests from them locally; unused units are
 * given back (`adjustWindow`) when they expire.
 *
 * Why this keeps the guarantees of `Store.hitWindows`:
 * - Claimed units are counted in the store before any request uses them, so every instance
 *   together never admits more than the limit.
 * - A claimed unit is used only in the bucket it was counted in (and within
 *   {@link CLAIM_TTL_MS}), so each admitted request is counted exactly where a direct hit at that
 *   moment would have counted it: the rolling window's bound is unchanged.
 * - A claim ahead is made only for a counter whose limit admits at least
 *   {@link MIN_REQUESTS_IN_LIMIT} such requests, while the store's count left at least half the
 *   limit free, and leaves this instance holding at most 1/{@link LIMIT_SHARE} of the limit
 *   (and takes at most {@link MAX_MULTIPLE} requests' worth). A counter running low claims the
 *   next units in the background ({@link TOP_UP_SHARE}), so that a busy instance's requests do
 *   not wait for the store mid-bucket. Otherwise a claim takes just the request's cost, so
 *   near the limit (and always for small limits) a refusal is decided by the store exactly as a
 *   direct hit: 500 parallel requests on a 60-per-minute counter admit exactly 60.
 *
 * The price, for large limits only: another instance may be refused while this one holds
 * claimed units it has not used yet — at most 1/16 of the limit per instance, for at most a
 * second and a quarter. Corrections of estimated hits (tpm settled to the real token count) are
 * summed here and written every {@link CLAIM_SWEEP_MS}.
 */
export class WindowClaims {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  /** Counters by window length, then counter key (no string is built per request). */
  readonly #counters = new Map<number, Map<string, Counter>>();
  /** Counters with a correction to write. */
  #dirty: Counter[] = [];
  /** Corrections of older buckets, pushed out of their counter by a newer one. */
  #older: { key: string; windowMs: number; atMs: number; delta: number }[] = [];
  #timer: ReturnType<typeof setInterval> | null = null;
  /** Top-ups on their way (a flush waits for them, so that their units go back too). */
  readonly #topUps = new Set<Promise<unknown>>();
  #closing = false;
  #closed = false;

  constructor(store: Store, events: GatewayEmitter) {
    this.#store = store;
    this.#events = events;
  }

  /** The counter (`key`, `windowMs`) of this instance, made when first asked for. */
  counter(key: string, windowMs: number): Counter {
    let byKey = this.#counters.get(windowMs);
    if (!byKey) {
      byKey = new Map();
      this.#counters.set(windowMs, byKey);
    }
    let c = byKey.get(key);
    if (!c) {
      c = new Counter(key, windowMs);
      byKey.set(key, c);
    }
    return c;
  }

  /**
   * Admits `hits` (all or nothing), as `Store.hitWindows` would: from claims held here when they
   * cover every hit, else after claiming more. The answer's `remaining` counts the units this
   * instance still holds; `retryAfterMs` and refusals come from the store.
   */
  async hit(hits: WindowHit[], nowMs: number): Promise<WindowResult> {
    const counters = hits.map((h) => this.counter(h.key, h.windowMs));
    let waits = 0;
    for (let round = 0; round < 4; ) {
      const local = this.#take(hits, counters, nowMs);
      if (local) return local;
      // A claim ahead of one of these counters is on its way: its units are for this request too.
      const pending = counters.find((c) => c.claiming)?.claiming;
      if (pending && waits++ < 8) {
        await pending.then(ignore, ignore);
        continue;
      }
      round++;
      const claimed = await this.#claim(hits, counters, nowMs);
      // Refused, but a concurrent claim of this instance counted before the refusal may have
      // left units here: those were claimed for requests like this one.
      if (claimed && !claimed.ok) return this.#take(hits, counters, nowMs) ?? claimed;
      if (claimed) return claimed;
    }
    // Claims kept being used up by concurrent requests: ask for exactly this request's units.
    return this.#store.hitWindows(hits, nowMs);
  }

  /**
   * Takes the units of a request from claims held here: `costs[i]` of `counters[i]` for
   * `hits[i]` (each counter at most once), all or none. The admission stage's fast path: no
   * allocation, no lookup. Returns whether it took them. A counter running low claims ahead
   * again in the background ({@link TOP_UP_SHARE}).
   */
  takeLocal(
    hits: readonly WindowHit[],
    counters: readonly Counter[],
    costs: readonly number[],
    nowMs: number,
  ): boolean {
    for (let i = 0; i < counters.length; i++) {
      if (!counters[i]!.covers(costs[i]!, nowMs)) return false;
    }
    for (let i = 0; i < counters.length; i++) {
      const c = counters[i]!;
      c.units -= costs[i]!;
      if (c.units < c.lowWater && !c.claiming) this.#topUp(hits[i]!, c, costs[i]!, nowMs);
    }
    return true;
  }

  /**
   * Admits from the claims held here, synchronously, when they cover every hit; else null
   * (nothing taken: ask {@link hit}).
   */
  tryLocal(hits: WindowHit[], nowMs: number): WindowResult | null {
    return this.#take(
      hits,
      hits.map((h) => this.counter(h.key, h.windowMs)),
      nowMs,
    );
  }

  #take(hits: WindowHit[], counters: Counter[], nowMs: number): WindowResult | null {
    for (let i = 0; i < hits.length; i++) {
      const c = counters[i]!;
      // Two hits of one call on the same counter: both must fit together.
      let need = hits[i]!.cost;
      for (let j = 0; j < i; j++) if (counters[j] === c) need += hits[j]!.cost;
      if (!c.covers(need, nowMs)) return null;
    }
    for (let i = 0; i < hits.length; i++) {
      const c = counters[i]!;
      c.units -= hits[i]!.cost;
      if (c.units < c.lowWater && !c.claiming) this.#topUp(hits[i]!, c, hits[i]!.cost, nowMs);
    }
    return { ok: true, windows: counters.map((c) => c.status(nowMs)) };
  }

  /**
   * Claims ahead for counter `c` of `hit` (requests of `cost` units) in the background, while
   * it still holds units for the next requests. Refused or failed: nothing happens (the
   * requests then claim for themselves, as without a top-up).
   */
  #topUp(hit: WindowHit, c: Counter, cost: number, nowMs: number): void {
    if (this.#closing) return;
    c.lowWater = 0;
    const claim = this.#claim(
      [{ key: hit.key, windowMs: hit.windowMs, limit: hit.limit, cost }],
      [c],
      nowMs,
      true,
    )
      .catch((error: unknown) =>
        this.#events.emit("error", { where: "window claim", error: error as Error }),
      )
      .finally(() => this.#topUps.delete(claim));
    this.#topUps.add(claim);
  }

  /**
   * Corrects an earlier hit of counter (`key`, `windowMs`) made at `atMs` by `delta` units (a tpm
   * estimate settled to the real count). Summed per bucket and written within
   * {@link CLAIM_SWEEP_MS}.
   */
  adjust(key: string, windowMs: number, atMs: number, delta: number): void {
    this.correct(this.counter(key, windowMs), atMs, delta);
  }

  /** {@link adjust} of a counter at hand. */
  correct(c: Counter, atMs: number, delta: number): void {
    if (delta === 0 || this.#closed) return;
    const bucket = Math.floor(atMs / c.bucketMs);
    if (c.fixBucket === bucket) {
      c.fixDelta += delta;
      return;
    }
    if (c.fixDelta !== 0) {
      this.#older.push({ key: c.key, windowMs: c.windowMs, atMs: c.fixAtMs, delta: c.fixDelta });
    }
    c.fixBucket = bucket;
    c.fixAtMs = atMs;
    c.fixDelta = delta;
    if (!c.dirty) {
      c.dirty = true;
      this.#dirty.push(c);
    }
    this.#start();
  }

  /** Gives back every unused claim and writes the queued corrections, now. */
  async flush(nowMs = Date.now()): Promise<void> {
    while (this.#topUps.size > 0) await Promise.all(this.#topUps);
    for (const byKey of this.#counters.values()) {
      for (const c of byKey.values()) {
        if (c.units > 0) {
          this.correct(c, c.bucket * c.bucketMs, -c.units);
          c.units = 0;
        }
      }
    }
    await this.#writeCorrections(nowMs);
  }

  /** Stops the sweep and gives everything back. */
  async close(): Promise<void> {
    this.#closing = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.flush();
    this.#closed = true;
  }

  /**
   * Claims ahead for the hits whose counters lack units (one all-or-nothing store step), then
   * admits; when a claim ahead does not fit, claims exactly the request's units. Returns null
   * when the claimed units were taken by concurrent requests meanwhile (the caller tries again).
   */
  async #claim(
    hits: WindowHit[],
    counters: Counter[],
    nowMs: number,
    topUp = false,
  ): Promise<WindowResult | null> {
    const asks = hits.map((hit, i) => {
      const c = counters[i]!;
      const bucket = Math.floor(nowMs / c.bucketMs);
      const usable = nowMs < c.validUntil && c.bucket === bucket ? c.units : 0;
      const short = Math.max(0, hit.cost - usable);
      // Only a counter that cannot cover the request (or is topped up) claims ahead.
      const needs = topUp || short > 0;
      const roomy =
        needs &&
        hit.cost > 0 &&
        hit.limit >= hit.cost * MIN_REQUESTS_IN_LIMIT &&
        c.at > 0 &&
        c.remaining >= hit.limit * FREE_SHARE;
      // Held here at most: 1/LIMIT_SHARE of the limit, the units left included.
      const ahead = roomy
        ? Math.min(hit.cost * c.multiple, Math.floor(hit.limit / LIMIT_SHARE) - usable)
        : short;
      return { hit, c, bucket, short, roomy, ahead: Math.max(short, ahead) };
    });
    const claimHits = (exact: boolean): WindowHit[] =>
      asks.map((a) => ({ ...a.hit, cost: exact ? a.short : a.ahead }));
    const ahead = asks.some((a) => a.ahead > a.short);
    // A top-up is worth it only ahead of the requests; else they claim for themselves.
    if (topUp && !ahead) return null;
    const run = (async (): Promise<WindowResult | null> => {
      let result = await this.#store.hitWindows(claimHits(false), nowMs);
      let exact = false;
      if (topUp && !result.ok) return null;
      if (!result.ok && ahead) {
        exact = true;
        result = await this.#store.hitWindows(claimHits(true), nowMs);
      }
      if (!result.ok) return { ...result, key: hits[result.index]!.key };
      // The units are counted in the store: hold them here, then admit this request from them
      // (in the same turn, before a concurrent request can take them).
      asks.forEach((a, i) => {
        const { c } = a;
        const got = exact ? a.short : a.ahead;
        const w = result.windows[i]!;
        c.remaining = w.remaining;
        c.resetMs = w.resetMs;
        c.at = nowMs;
        if (got === 0) return;
        const sameBucket = c.bucket === a.bucket && nowMs < c.validUntil;
        // Expired units go back to the bucket they were counted in.
        if (!sameBucket && c.units > 0) this.correct(c, c.bucket * c.bucketMs, -c.units);
        c.units = (sameBucket ? c.units : 0) + got;
        c.bucket = a.bucket;
        c.validUntil = Math.min((a.bucket + 1) * c.bucketMs, nowMs + CLAIM_TTL_MS);
        // Used up (or running low) within its life: the next claim takes more. Left over when
        // its bucket ended: as much again (the demand did not drop; the sweep halves it when
        // units go back). Near the limit: one request's worth, and no top-up.
        c.multiple = exact ? 1 : sameBucket ? Math.min(MAX_MULTIPLE, c.multiple * 2) : c.multiple;
        c.lowWater = !exact && a.roomy ? got * TOP_UP_SHARE : 0;
      });
      this.#start();
      return topUp ? null : this.#take(hits, counters, nowMs);
    })();
    if (!ahead) return run;
    for (const a of asks) if (a.ahead > a.short) a.c.claiming ??= run;
    try {
      return await run;
    } finally {
      for (const a of asks) if (a.c.claiming === run) a.c.claiming = null;
    }
  }

  async #writeCorrections(nowMs: number): Promise<void> {
    if (this.#dirty.length === 0 && this.#older.length === 0) return;
    const all = this.#older;
    this.#older = [];
    for (const c of this.#dirty) {
      c.dirty = false;
      if (c.fixDelta !== 0)
        all.push({ key: c.key, windowMs: c.windowMs, atMs: c.fixAtMs, delta: c.fixDelta });
      c.fixBucket = -1;
      c.fixDelta = 0;
    }
    this.#dirty = [];
    await Promise.all(
      all.map(({ key, windowMs, atMs, delta }) =>
        this.#store
          .adjustWindow(key, windowMs, atMs, delta, nowMs)
          .catch((error: unknown) =>
            this.#events.emit("error", { where: "window correction", error: error as Error }),
          ),
      ),
    );
  }

  /** The sweep: expired claims go back, idle counters are forgotten, corrections are written. */
  #sweep(): void {
    const nowMs = Date.now();
    for (const byKey of this.#counters.values()) {
      for (const c of byKey.values()) {
        if (nowMs < c.validUntil) continue;
        if (c.units > 0) {
          this.correct(c, c.bucket * c.bucketMs, -c.units);
          c.units = 0;
          c.multiple = Math.max(1, c.multiple / 2);
        }
        // Unused for a while: the next claim starts small again; later the counter is forgotten.
        if (nowMs >= c.validUntil + CLAIM_TTL_MS) c.multiple = 1;
        if (nowMs >= c.validUntil + COUNTER_IDLE_MS && !c.dirty && !c.claiming) {
          c.dropped = true;
          byKey.delete(c.key);
        }
      }
    }
    void this.#writeCorrections(nowMs);
  }

  #start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => this.#sweep(), CLAIM_SWEEP_MS);
    this.#timer.unref?.();
  }
}
