import type { GatewayEmitter } from "../events.js";
import { type Store, WINDOW_BUCKETS, type WindowHit, type WindowResult } from "../store/types.js";

/** How long (ms) units claimed ahead stay usable here at most, within their bucket. */
export const CLAIM_TTL_MS = 1_000;
/** The sweep returns expired claims and writes queued corrections this often (ms). */
export const CLAIM_SWEEP_MS = 250;
/** A claim ahead is at most this many requests' worth of units... */
const MAX_MULTIPLE = 64;
/** ... and at most this fraction of the limit. */
const LIMIT_SHARE = 16;
/**
 * Claims ahead only for a counter whose limit admits at least this many requests of the size at
 * hand (a 60-rpm key is always asked exactly), ...
 */
const MIN_REQUESTS_IN_LIMIT = 64;
/** ... and only while the store's count left at least this fraction of the limit free. */
const FREE_SHARE = 0.5;

/** Units of one counter claimed from the store and not used yet. */
interface Claim {
  key: string;
  windowMs: number;
  /** The bucket the units were counted in (its index), and when they stop being usable here. */
  bucket: number;
  bucketMs: number;
  validUntil: number;
  /** Units left to admit locally. */
  units: number;
  /** The store's `remaining` and `resetMs` after the last claim, and when it was made. */
  remaining: number;
  resetMs: number;
  at: number;
  /** Requests' worth of units the next claim takes (grows while claims are used up, shrinks when they expire unused). */
  multiple: number;
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
 *   limit free, and takes at most 1/{@link LIMIT_SHARE} of the limit (and at most
 *   {@link MAX_MULTIPLE} requests' worth). Otherwise a claim takes just the request's cost, so
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
  /** Claims by window length, then counter key (no string is built per request). */
  readonly #claims = new Map<number, Map<string, Claim>>();
  /** Corrections to write, by window length, counter key and bucket. */
  readonly #corrections = new Map<
    number,
    Map<string, Map<number, { atMs: number; delta: number }>>
  >();
  #timer: ReturnType<typeof setInterval> | null = null;
  #closed = false;

  constructor(store: Store, events: GatewayEmitter) {
    this.#store = store;
    this.#events = events;
  }

  /**
   * Admits `hits` (all or nothing), as `Store.hitWindows` would: from claims held here when they
   * cover every hit, else after claiming more. The answer's `remaining` counts the units this
   * instance still holds; `retryAfterMs` and refusals come from the store.
   */
  async hit(hits: WindowHit[], nowMs: number): Promise<WindowResult> {
    for (let round = 0; round < 4; round++) {
      const local = this.tryLocal(hits, nowMs);
      if (local) return local;
      const claimed = await this.#claim(hits, nowMs);
      // Refused, but a concurrent claim of this instance counted before the refusal may have
      // left units here: those were claimed for requests like this one.
      if (claimed && !claimed.ok) return this.tryLocal(hits, nowMs) ?? claimed;
      if (claimed) return claimed;
    }
    // Claims kept being used up by concurrent requests: ask for exactly this request's units.
    return this.#store.hitWindows(hits, nowMs);
  }

  /**
   * Corrects an earlier hit of counter (`key`, `windowMs`) made at `atMs` by `delta` units (a tpm
   * estimate settled to the real count). Summed per bucket and written within
   * {@link CLAIM_SWEEP_MS}.
   */
  adjust(key: string, windowMs: number, atMs: number, delta: number): void {
    if (delta === 0 || this.#closed) return;
    const bucket = Math.floor(atMs / Math.ceil(windowMs / WINDOW_BUCKETS));
    let byKey = this.#corrections.get(windowMs);
    if (!byKey) {
      byKey = new Map();
      this.#corrections.set(windowMs, byKey);
    }
    let byBucket = byKey.get(key);
    if (!byBucket) {
      byBucket = new Map();
      byKey.set(key, byBucket);
    }
    const c = byBucket.get(bucket);
    if (c) c.delta += delta;
    else byBucket.set(bucket, { atMs, delta });
    this.#start();
  }

  #claimOf(key: string, windowMs: number): Claim | undefined {
    return this.#claims.get(windowMs)?.get(key);
  }

  #setClaim(c: Claim): void {
    let byKey = this.#claims.get(c.windowMs);
    if (!byKey) {
      byKey = new Map();
      this.#claims.set(c.windowMs, byKey);
    }
    byKey.set(c.key, c);
  }

  /** Every claim held, with a way to forget it. */
  *#allClaims(): Generator<[Claim, () => void]> {
    for (const byKey of this.#claims.values())
      for (const c of byKey.values()) yield [c, () => byKey.delete(c.key)];
  }

  /** Gives back every unused claim and writes the queued corrections, now. */
  async flush(nowMs = Date.now()): Promise<void> {
    for (const [c, forget] of this.#allClaims()) {
      if (c.units > 0) {
        this.adjust(c.key, c.windowMs, c.bucket * c.bucketMs, -c.units);
        c.units = 0;
      }
      if (nowMs >= c.validUntil) forget();
    }
    await this.#writeCorrections(nowMs);
  }

  /** Stops the sweep and gives everything back. */
  async close(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.flush();
    this.#closed = true;
  }

  /**
   * Admits from the claims held here, synchronously, when they cover every hit; else null
   * (nothing taken: ask {@link hit}).
   */
  tryLocal(hits: WindowHit[], nowMs: number): WindowResult | null {
    const claims: Claim[] = [];
    for (let i = 0; i < hits.length; i++) {
      const hit = hits[i]!;
      const c = this.#claimOf(hit.key, hit.windowMs);
      if (!c || nowMs >= c.validUntil || c.units < hit.cost) return null;
      if (Math.floor(nowMs / c.bucketMs) !== c.bucket) return null;
      // Two hits of one call on the same counter: both must fit together.
      let need = hit.cost;
      for (let j = 0; j < i; j++) if (claims[j] === c) need += hits[j]!.cost;
      if (c.units < need) return null;
      claims.push(c);
    }
    const windows = hits.map((hit, i) => {
      const c = claims[i]!;
      c.units -= hit.cost;
      return {
        remaining: Math.max(0, c.remaining + c.units),
        resetMs: Math.max(0, c.resetMs - (nowMs - c.at)),
      };
    });
    return { ok: true, windows };
  }

  /**
   * Claims ahead for the hits whose counters lack units (one all-or-nothing store step), then
   * admits; when a claim ahead does not fit, claims exactly the request's units. Returns null
   * when the claimed units were taken by concurrent requests meanwhile (the caller tries again).
   */
  async #claim(hits: WindowHit[], nowMs: number): Promise<WindowResult | null> {
    const asks = hits.map((hit) => {
      const c = this.#claimOf(hit.key, hit.windowMs);
      const bucketMs = Math.ceil(hit.windowMs / WINDOW_BUCKETS);
      const bucket = Math.floor(nowMs / bucketMs);
      const usable = c && nowMs < c.validUntil && c.bucket === bucket ? c.units : 0;
      const short = Math.max(0, hit.cost - usable);
      const multiple = c?.multiple ?? 1;
      const roomy =
        hit.cost > 0 &&
        hit.limit >= hit.cost * MIN_REQUESTS_IN_LIMIT &&
        c !== undefined &&
        c.remaining >= hit.limit * FREE_SHARE;
      const ahead = roomy
        ? Math.min(hit.cost * multiple, Math.floor(hit.limit / LIMIT_SHARE))
        : short;
      return { hit, bucketMs, bucket, short, ahead: Math.max(short, ahead) };
    });
    const claimHits = (exact: boolean): WindowHit[] =>
      asks.map((a) => ({ ...a.hit, cost: exact ? a.short : a.ahead }));
    let result = await this.#store.hitWindows(claimHits(false), nowMs);
    let exact = false;
    if (!result.ok && asks.some((a) => a.ahead > a.short)) {
      exact = true;
      result = await this.#store.hitWindows(claimHits(true), nowMs);
    }
    if (!result.ok) return { ...result, key: hits[result.index]!.key };
    // The units are counted in the store: hold them here, then admit this request from them.
    const windows = result.windows;
    asks.forEach((a, i) => {
      const got = exact ? a.short : a.ahead;
      const before = this.#claimOf(a.hit.key, a.hit.windowMs);
      const sameBucket = before && before.bucket === a.bucket && nowMs < before.validUntil;
      if (before && !sameBucket && before.units > 0) {
        // Expired units go back to the bucket they were counted in.
        this.adjust(before.key, before.windowMs, before.bucket * before.bucketMs, -before.units);
      }
      const w = windows[i]!;
      this.#setClaim({
        key: a.hit.key,
        windowMs: a.hit.windowMs,
        bucket: a.bucket,
        bucketMs: a.bucketMs,
        validUntil: Math.min((a.bucket + 1) * a.bucketMs, nowMs + CLAIM_TTL_MS),
        units: (sameBucket ? before.units : 0) + got,
        remaining: w.remaining,
        resetMs: w.resetMs,
        at: nowMs,
        // Used up within its life: the next claim takes more; otherwise less.
        multiple: exact
          ? 1
          : Math.min(MAX_MULTIPLE, before && before.units === 0 ? before.multiple * 2 : 1),
      });
    });
    if (this.#claims.size > 0) this.#start();
    return this.tryLocal(hits, nowMs);
  }

  async #writeCorrections(nowMs: number): Promise<void> {
    if (this.#corrections.size === 0) return;
    const all: { key: string; windowMs: number; atMs: number; delta: number }[] = [];
    for (const [windowMs, byKey] of this.#corrections)
      for (const [key, byBucket] of byKey)
        for (const { atMs, delta } of byBucket.values())
          if (delta !== 0) all.push({ key, windowMs, atMs, delta });
    this.#corrections.clear();
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
    for (const [c, forget] of this.#allClaims()) {
      if (nowMs < c.validUntil) continue;
      if (c.units > 0) {
        this.adjust(c.key, c.windowMs, c.bucket * c.bucketMs, -c.units);
        c.units = 0;
        c.multiple = Math.max(1, c.multiple / 2);
      }
      // Kept one more period for its multiple, then forgotten.
      if (nowMs >= c.validUntil + CLAIM_TTL_MS) forget();
    }
    void this.#writeCorrections(nowMs);
  }

  #start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => this.#sweep(), CLAIM_SWEEP_MS);
    this.#timer.unref?.();
  }
}
