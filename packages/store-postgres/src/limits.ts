/** The admission steps of the PostgreSQL store (windows and leases). Internal to this package. */
import type { LeaseResult, Store, WindowResult } from "@tokenpool/core";
import {
  assertLeaseAsk,
  assertWindowAdjust,
  assertWindowHit,
  bucketLeavesAt,
  judgeWindows,
  windowId,
  windowSpan,
} from "@tokenpool/core/store-kernel";
import type { PgContext, Runner } from "./context.js";

/** The admission steps of the Store contract. */
export type LimitSteps = Pick<
  Store,
  "hitWindows" | "adjustWindow" | "acquireLeases" | "renewLeases" | "releaseLeases"
>;

/** The live leases of one pool, as the acquiring transaction reads them. */
interface PoolRow {
  pool: string;
  n: number;
  earliest: number;
  mine: boolean;
}

/**
 * Window counters and concurrency leases on the tables of migration 1 (`limit_windows`,
 * `limit_leases`).
 *
 * Several gateway processes share the database, so a step's check and its write must be one
 * atomic step across connections. Each step that judges runs in one transaction that first takes
 * a transaction-scoped advisory lock (`pg_advisory_xact_lock`) per counter or pool it touches,
 * in sorted order (two calls on overlapping counters cannot deadlock), and only then reads:
 * under READ COMMITTED every statement sees what the previous holder committed before its lock
 * was released. Row locks would not do: a counter with no bucket yet has no row to lock. The
 * locks are keyed by the table's qualified name and the counter, so stores in other schemas of
 * the same database do not wait for each other.
 *
 * What needs no lock: a hit that only reads (cost 0) is one statement, a consistent snapshot;
 * `releaseLeases` only deletes, which can only make a concurrent acquirer count a slot too many
 * for a moment, never too few. The periodic sweep of `postgresStore` likewise only deletes
 * expired rows. `renewLeases` does take the pools' locks: a renewal racing with an acquirer that
 * judged the same lease expired could otherwise revive it after its slot was given away.
 *
 * A granted hit costs five round trips (BEGIN, lock, read, write, COMMIT), a refusal four; the
 * buckets of all counters of a call are read in one query and written in one statement.
 */
export function limits(ctx: PgContext): LimitSteps {
  const { t } = ctx;
  const lockAll = `SELECT pg_advisory_xact_lock(hashtextextended(k, 0)) FROM unnest($1::text[]) AS k`;
  /** Takes the advisory locks of `names` (in `table`'s namespace), sorted, in the transaction. */
  const lock = async (tx: Runner, table: string, names: Iterable<string>) => {
    const keys = [...new Set(names)].sort().map((name) => `${table}:${name}`);
    await tx.run(lockAll, [keys]);
  };

  const readBuckets = `SELECT w.window_key AS id, w.bucket, w.units
    FROM unnest($1::text[], $2::bigint[]) AS q(id, oldest)
    JOIN ${t.limit_windows} AS w ON w.window_key = q.id AND w.bucket >= q.oldest`;
  const addBuckets = `INSERT INTO ${t.limit_windows} AS w (window_key, bucket, units, expires_at)
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[])
    ON CONFLICT (window_key, bucket) DO UPDATE SET units = w.units + EXCLUDED.units`;
  // Under the counter's lock the two parts of the statement see the same row and exactly one
  // of them matches it.
  const lowerBucket = `WITH gone AS (
      DELETE FROM ${t.limit_windows} WHERE window_key = $1 AND bucket = $2 AND units + $3 <= 0
    )
    UPDATE ${t.limit_windows} SET units = units + $3
    WHERE window_key = $1 AND bucket = $2 AND units + $3 > 0`;

  // The expired leases go, and the live ones are counted in the same snapshot (a row the DELETE
  // removes is one the count already leaves out).
  const poolsState = `WITH gone AS (
      DELETE FROM ${t.limit_leases} WHERE pool = ANY($1::text[]) AND expires_at <= $2
    )
    SELECT pool, count(*) AS n, min(expires_at) AS earliest, bool_or(lease_id = $3) AS mine
    FROM ${t.limit_leases} WHERE pool = ANY($1::text[]) AND expires_at > $2
    GROUP BY pool`;
  const putLeases = `INSERT INTO ${t.limit_leases} AS l (pool, lease_id, expires_at)
    SELECT unnest($1::text[]), $2, $3
    ON CONFLICT (pool, lease_id) DO UPDATE SET expires_at = EXCLUDED.expires_at`;
  const renew = `UPDATE ${t.limit_leases} SET expires_at = $3
    WHERE pool = ANY($1::text[]) AND lease_id = $2 AND expires_at > $4`;
  const release = `DELETE FROM ${t.limit_leases} WHERE pool = ANY($1::text[]) AND lease_id = $2`;

  return {
    async hitWindows(hits, nowMs) {
      for (const hit of hits) assertWindowHit(hit);
      if (hits.length === 0) return { ok: true, windows: [] };
      const oldestOf = new Map<string, number>();
      for (const hit of hits)
        oldestOf.set(windowId(hit.key, hit.windowMs), windowSpan(hit.windowMs, nowMs).oldest);
      const ids = [...oldestOf.keys()];
      const params = [ids, ids.map((id) => oldestOf.get(id)!)];

      const judge = async (db: Runner, write: boolean): Promise<WindowResult> => {
        const rows = await db.rows<{ id: string; bucket: number; units: number }>(
          readBuckets,
          params,
        );
        const stored = new Map<string, [number, number][]>();
        for (const r of rows) {
          const list = stored.get(r.id);
          if (list) list.push([r.bucket, r.units]);
          else stored.set(r.id, [[r.bucket, r.units]]);
        }
        // Hits of one call on one counter go into the same bucket: summed here, since one
        // INSERT … ON CONFLICT cannot update a row twice.
        const adds = new Map<string, { bucket: number; units: number; expiresAt: number }>();
        const result = judgeWindows(
          hits,
          nowMs,
          (id) => stored.get(id) ?? [],
          (id, hit, { bucketMs, current }) => {
            const add = adds.get(id);
            if (add) add.units += hit.cost;
            else
              adds.set(id, {
                bucket: current,
                units: hit.cost,
                expiresAt: bucketLeavesAt(current, bucketMs, hit.windowMs),
              });
          },
        );
        if (result.ok && write && adds.size > 0) {
          const list = [...adds];
          await db.run(addBuckets, [
            list.map(([id]) => id),
            list.map(([, a]) => a.bucket),
            list.map(([, a]) => a.units),
            list.map(([, a]) => a.expiresAt),
          ]);
        }
        return result;
      };

      if (hits.every((hit) => hit.cost === 0)) return judge(ctx, false);
      return ctx.tx(async (tx) => {
        await lock(tx, t.limit_windows, ids);
        return judge(tx, true);
      });
    },

    async adjustWindow(key, windowMs, atMs, delta, nowMs) {
      assertWindowAdjust(key, windowMs, delta);
      const { bucketMs, oldest } = windowSpan(windowMs, nowMs);
      const bucket = Math.floor(atMs / bucketMs);
      if (bucket < oldest || delta === 0) return;
      const id = windowId(key, windowMs);
      await ctx.tx(async (tx) => {
        await lock(tx, t.limit_windows, [id]);
        if (delta > 0)
          await tx.run(addBuckets, [
            [id],
            [bucket],
            [delta],
            [bucketLeavesAt(bucket, bucketMs, windowMs)],
          ]);
        else await tx.run(lowerBucket, [id, bucket, delta]);
      });
    },

    async acquireLeases(asks, leaseId, expiresAt, nowMs) {
      for (const ask of asks) assertLeaseAsk(ask);
      if (asks.length === 0) return { ok: true, inUse: [] };
      const pools = [...new Set(asks.map((a) => a.pool))];
      return ctx.tx(async (tx): Promise<LeaseResult> => {
        await lock(tx, t.limit_leases, pools);
        const rows = await tx.rows<PoolRow>(poolsState, [pools, nowMs, leaseId]);
        const state = new Map(rows.map((r) => [r.pool, r]));
        const inUse: number[] = [];
        const adding = new Set<string>();
        for (const [index, ask] of asks.entries()) {
          const held = state.get(ask.pool);
          const already = held?.mine === true;
          // A pool named twice in one call: its lease counts once.
          const count = (held?.n ?? 0) + (adding.has(ask.pool) && !already ? 1 : 0);
          const mine = already || adding.has(ask.pool);
          if (!mine && count >= ask.limit) {
            // A full pool holds at least one live lease, so `held` is there.
            return { ok: false, index, pool: ask.pool, retryAfterMs: held!.earliest - nowMs };
          }
          adding.add(ask.pool);
          inUse.push(mine ? count : count + 1);
        }
        await tx.run(putLeases, [[...adding], leaseId, expiresAt]);
        return { ok: true, inUse };
      });
    },

    async renewLeases(leaseId, pools, expiresAt, nowMs) {
      const distinct = [...new Set(pools)];
      if (distinct.length === 0) return 0;
      return ctx.tx(async (tx) => {
        await lock(tx, t.limit_leases, distinct);
        return (await tx.run(renew, [distinct, leaseId, expiresAt, nowMs])).rowCount ?? 0;
      });
    },

    async releaseLeases(leaseId, pools) {
      const distinct = [...new Set(pools)];
      if (distinct.length === 0) return 0;
      return (await ctx.run(release, [distinct, leaseId])).rowCount ?? 0;
    },
  };
}
