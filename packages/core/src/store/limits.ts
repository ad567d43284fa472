/**
 * The arithmetic of the admission steps ({@link Store.hitWindows}, {@link Store.acquireLeases}),
 * shared by the stores that run it in TypeScript (memory, file, SQLite); the Redis store's Lua
 * scripts follow the same rules.
 *
 * @module
 */
import {
  type LeaseAsk,
  type Store,
  WINDOW_BUCKETS,
  type WindowHit,
  type WindowResult,
  type WindowStatus,
} from "./types.js";

const isPositiveInt = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) > 0;

/** Throws unless the hit is well formed (see {@link Store.hitWindows}). */
export function assertWindowHit(hit: WindowHit): void {
  if (typeof hit.key !== "string") throw new TypeError("a window hit's key must be a string");
  if (!isPositiveInt(hit.limit))
    throw new RangeError(
      `window "${hit.key}": limit must be a positive integer, got ${hit.limit} (a limit of 0 means none: do not ask the store)`,
    );
  if (!isPositiveInt(hit.windowMs))
    throw new RangeError(
      `window "${hit.key}": windowMs must be a positive integer, got ${hit.windowMs}`,
    );
  if (!Number.isSafeInteger(hit.cost) || hit.cost < 0)
    throw new RangeError(
      `window "${hit.key}": cost must be a non-negative integer, got ${hit.cost}`,
    );
}

/** Throws unless the ask is well formed (see {@link Store.acquireLeases}). */
export function assertLeaseAsk(ask: LeaseAsk): void {
  if (typeof ask.pool !== "string") throw new TypeError("a lease pool's name must be a string");
  if (!isPositiveInt(ask.limit))
    throw new RangeError(
      `pool "${ask.pool}": limit must be a positive integer, got ${ask.limit} (a limit of 0 means none: do not ask the store)`,
    );
}

/** Throws unless `delta` and the window of an {@link Store.adjustWindow} call are well formed. */
export function assertWindowAdjust(key: string, windowMs: number, delta: number): void {
  if (!isPositiveInt(windowMs))
    throw new RangeError(`window "${key}": windowMs must be a positive integer, got ${windowMs}`);
  if (!Number.isSafeInteger(delta))
    throw new RangeError(`window "${key}": delta must be an integer, got ${delta}`);
}

/** Where a window stands at one moment: its bucket size and the buckets it counts. */
export interface WindowSpan {
  /** Length of one bucket (ms). */
  bucketMs: number;
  /** The bucket holding `nowMs` (bucket `i` covers `[i * bucketMs, (i + 1) * bucketMs)`). */
  current: number;
  /** The oldest bucket the window counts: the first that overlaps `(nowMs - windowMs, nowMs]`. */
  oldest: number;
}

/** The buckets a window of `windowMs` counts at `nowMs` (see {@link Store.hitWindows}). */
export function windowSpan(windowMs: number, nowMs: number): WindowSpan {
  const bucketMs = Math.ceil(windowMs / WINDOW_BUCKETS);
  return {
    bucketMs,
    current: Math.floor(nowMs / bucketMs),
    oldest: Math.floor((nowMs - windowMs) / bucketMs),
  };
}

/** When bucket `index` of a window leaves it (ms since the epoch). */
export const bucketLeavesAt = (index: number, bucketMs: number, windowMs: number): number =>
  (index + 1) * bucketMs + windowMs;

/** What {@link judgeWindow} decides for one hit. */
export interface WindowJudgement {
  /** Units the window counts before this hit (including earlier hits of the same call). */
  count: number;
  /** Whether `count + cost <= limit`. */
  fits: boolean;
  /** After the hit when it fits, before it otherwise; never below 0. */
  remaining: number;
  /** When it fits: ms until the oldest counted bucket leaves (after adding the hit); 0 when none. */
  resetMs: number;
  /** When it does not fit: ms until it would, or null when its cost is above its limit. */
  retryAfterMs: number | null;
}

/**
 * Judges one hit against the stored buckets of its counter.
 *
 * @param buckets the counter's stored buckets (index → units); buckets older than the span's
 *   `oldest` are ignored, buckets after `current` (a peer whose clock runs ahead) are counted.
 * @param pending units earlier hits of the same call put into the current bucket.
 */
export function judgeWindow(
  buckets: Iterable<readonly [number, number]>,
  hit: WindowHit,
  nowMs: number,
  pending = 0,
): WindowJudgement {
  const span = windowSpan(hit.windowMs, nowMs);
  const leaveIn = (index: number) => bucketLeavesAt(index, span.bucketMs, hit.windowMs) - nowMs;
  // The admitting path (the common one) is one pass without allocations.
  let count = pending;
  let first = pending > 0 ? span.current : Number.POSITIVE_INFINITY;
  for (const [index, units] of buckets) {
    if (index < span.oldest || units <= 0) continue;
    count += units;
    if (index < first) first = index;
  }
  if (count + hit.cost <= hit.limit) {
    if (hit.cost > 0 && span.current < first) first = span.current;
    return {
      count,
      fits: true,
      remaining: hit.limit - count - hit.cost,
      resetMs: Number.isFinite(first) ? leaveIn(first) : 0,
      retryAfterMs: null,
    };
  }
  let retryAfterMs: number | null = null;
  if (hit.cost <= hit.limit) {
    const counted = new Map<number, number>();
    for (const [index, units] of buckets)
      if (index >= span.oldest && units > 0) counted.set(index, (counted.get(index) ?? 0) + units);
    if (pending > 0) counted.set(span.current, (counted.get(span.current) ?? 0) + pending);
    let left = count;
    for (const index of [...counted.keys()].sort((a, b) => a - b)) {
      left -= counted.get(index)!;
      if (left + hit.cost <= hit.limit) {
        retryAfterMs = leaveIn(index);
        break;
      }
    }
  }
  return {
    count,
    fits: false,
    remaining: Math.max(0, hit.limit - count),
    resetMs: 0,
    retryAfterMs,
  };
}

/** The key under which the stores keep a counter: its window and its name. */
export const windowId = (key: string, windowMs: number): string => `${windowMs}:${key}`;

/**
 * One {@link Store.hitWindows} call over a store's buckets, all or nothing: every hit is judged
 * ({@link judgeWindow}, earlier hits of the call on the same counter included) before any is
 * added; then `add` puts each hit's cost into its counter's current bucket. The caller runs it
 * inside its own atomic step (a transaction, or synchronous code) after checking the hits.
 *
 * @param bucketsOf the stored buckets of a counter (`id` from {@link windowId}) that the window
 *   counts at `nowMs`.
 * @param add adds `cost` units to bucket `current` of counter `id`.
 */
export function judgeWindows(
  hits: readonly WindowHit[],
  nowMs: number,
  bucketsOf: (id: string, hit: WindowHit) => Iterable<readonly [number, number]>,
  add: (id: string, hit: WindowHit, span: WindowSpan) => void,
): WindowResult {
  const pending = new Map<string, number>();
  const windows: WindowStatus[] = [];
  for (const [index, hit] of hits.entries()) {
    const id = windowId(hit.key, hit.windowMs);
    const v = judgeWindow(bucketsOf(id, hit), hit, nowMs, pending.get(id) ?? 0);
    if (!v.fits) {
      return {
        ok: false,
        index,
        key: hit.key,
        remaining: v.remaining,
        retryAfterMs: v.retryAfterMs,
      };
    }
    pending.set(id, (pending.get(id) ?? 0) + hit.cost);
    windows.push({ remaining: v.remaining, resetMs: v.resetMs });
  }
  for (const hit of hits) {
    if (hit.cost > 0) add(windowId(hit.key, hit.windowMs), hit, windowSpan(hit.windowMs, nowMs));
  }
  return { ok: true, windows };
}
