/** The admission steps of the SQLite store (windows and leases). Internal to this package. */
import type { LeaseResult, Store } from "@tokenpool/core";
import {
  assertLeaseAsk,
  assertWindowAdjust,
  assertWindowHit,
  bucketLeavesAt,
  judgeWindows,
  windowId,
  windowSpan,
} from "@tokenpool/core/store-kernel";
import type Database from "better-sqlite3";

/** The admission steps of the Store contract, plus `flush` for the steps still queued. */
export type LimitSteps = Pick<
  Store,
  "hitWindows" | "adjustWindow" | "acquireLeases" | "renewLeases" | "releaseLeases"
> & {
  /** Runs the steps asked for but not yet run (before the database closes). */
  flush(): void;
};

/** Expired buckets and leases of counters and pools nobody asks about are swept this often (calls). */
const SWEEP_EVERY = 1_000;

/**
 * Window counters and concurrency leases on the tables of migration 3. Each step runs inside a
 * `BEGIN IMMEDIATE` transaction (the write lock is taken before the first read, so the check
 * and the write are one atomic step across processes), and the steps asked for in one turn of
 * the event loop share one transaction (group commit, as the ledger's reservations do): they run
 * in it one after the other, each exactly as atomic as alone; only the commit is shared. Under
 * concurrency this turns the admission steps of every request in flight into one write
 * transaction per loop turn.
 */
export function limits(db: Database.Database, immediate: <T>(fn: () => T) => T): LimitSteps {
  let queue: { run: () => unknown; resolve: (v: unknown) => void; reject: (e: unknown) => void }[] =
    [];
  const flush = () => {
    const batch = queue;
    queue = [];
    if (batch.length === 0) return;
    let results: unknown[];
    try {
      results = immediate(() => batch.map((b) => b.run()));
    } catch (error) {
      for (const b of batch) b.reject(error);
      return;
    }
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]);
  };
  /** Runs `fn` in the next group transaction. */
  const batched = <T>(fn: () => T): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      const entry = { run: fn, resolve: resolve as (v: unknown) => void, reject };
      if (queue.push(entry) === 1) setImmediate(flush);
    });

  const buckets = db.prepare(
    "SELECT bucket, units FROM limit_windows WHERE window_key = ? AND bucket >= ?",
  );
  const addUnits = db.prepare(
    `INSERT INTO limit_windows (window_key, bucket, units, expires_at) VALUES (?, ?, ?, ?)
     ON CONFLICT (window_key, bucket) DO UPDATE SET units = units + excluded.units`,
  );
  const bucketUnits = db
    .prepare("SELECT units FROM limit_windows WHERE window_key = ? AND bucket = ?")
    .pluck();
  const setUnits = db.prepare(
    "UPDATE limit_windows SET units = ? WHERE window_key = ? AND bucket = ?",
  );
  const deleteBucket = db.prepare("DELETE FROM limit_windows WHERE window_key = ? AND bucket = ?");
  const sweepWindows = db.prepare("DELETE FROM limit_windows WHERE expires_at <= ?");

  const dropExpired = db.prepare("DELETE FROM limit_leases WHERE pool = ? AND expires_at <= ?");
  const poolState = db.prepare(
    `SELECT count(*) AS n, min(expires_at) AS earliest, sum(lease_id = ?) AS mine
     FROM limit_leases WHERE pool = ?`,
  );
  const putLease = db.prepare(
    `INSERT INTO limit_leases (pool, lease_id, expires_at) VALUES (?, ?, ?)
     ON CONFLICT (pool, lease_id) DO UPDATE SET expires_at = excluded.expires_at`,
  );
  const renewLease = db.prepare(
    "UPDATE limit_leases SET expires_at = ? WHERE pool = ? AND lease_id = ? AND expires_at > ?",
  );
  const deleteLease = db.prepare("DELETE FROM limit_leases WHERE pool = ? AND lease_id = ?");
  const sweepLeases = db.prepare("DELETE FROM limit_leases WHERE expires_at <= ?");

  let callsSinceSweep = 0;
  const maybeSweep = (nowMs: number) => {
    if (++callsSinceSweep < SWEEP_EVERY) return;
    callsSinceSweep = 0;
    sweepWindows.run(nowMs);
    sweepLeases.run(nowMs);
  };

  return {
    flush,
    async hitWindows(hits, nowMs) {
      for (const hit of hits) assertWindowHit(hit);
      return batched(() => {
        maybeSweep(nowMs);
        return judgeWindows(
          hits,
          nowMs,
          (id, hit) => {
            const { oldest } = windowSpan(hit.windowMs, nowMs);
            const rows = buckets.all(id, oldest) as { bucket: number; units: number }[];
            return rows.map((r) => [r.bucket, r.units] as const);
          },
          (id, hit, { bucketMs, current }) =>
            addUnits.run(id, current, hit.cost, bucketLeavesAt(current, bucketMs, hit.windowMs)),
        );
      });
    },

    async adjustWindow(key, windowMs, atMs, delta, nowMs) {
      assertWindowAdjust(key, windowMs, delta);
      const { bucketMs, oldest } = windowSpan(windowMs, nowMs);
      const bucket = Math.floor(atMs / bucketMs);
      if (bucket < oldest || delta === 0) return;
      const id = windowId(key, windowMs);
      await batched(() => {
        const units = bucketUnits.get(id, bucket) as number | undefined;
        if (units === undefined) {
          if (delta > 0)
            addUnits.run(id, bucket, delta, bucketLeavesAt(bucket, bucketMs, windowMs));
          return;
        }
        const next = units + delta;
        if (next > 0) setUnits.run(next, id, bucket);
        else deleteBucket.run(id, bucket);
      });
    },

    async acquireLeases(asks, leaseId, expiresAt, nowMs) {
      for (const ask of asks) assertLeaseAsk(ask);
      return batched((): LeaseResult => {
        maybeSweep(nowMs);
        const inUse: number[] = [];
        const adding = new Set<string>();
        for (const [index, ask] of asks.entries()) {
          dropExpired.run(ask.pool, nowMs);
          const state = poolState.get(leaseId, ask.pool) as {
            n: number;
            earliest: number | null;
            mine: number | null;
          };
          const mine = (state.mine ?? 0) > 0 || adding.has(ask.pool);
          const count = state.n + (adding.has(ask.pool) && !(state.mine ?? 0) ? 1 : 0);
          if (!mine && count >= ask.limit) {
            return {
              ok: false,
              index,
              pool: ask.pool,
              retryAfterMs: (state.earliest ?? nowMs) - nowMs,
            };
          }
          adding.add(ask.pool);
          inUse.push(mine ? count : count + 1);
        }
        for (const pool of adding) putLease.run(pool, leaseId, expiresAt);
        return { ok: true, inUse };
      });
    },

    async renewLeases(leaseId, pools, expiresAt, nowMs) {
      return batched(() => {
        let n = 0;
        for (const pool of new Set(pools))
          n += renewLease.run(expiresAt, pool, leaseId, nowMs).changes;
        return n;
      });
    },

    async releaseLeases(leaseId, pools) {
      return batched(() => {
        let n = 0;
        for (const pool of new Set(pools)) n += deleteLease.run(pool, leaseId).changes;
        return n;
      });
    },
  };
}
