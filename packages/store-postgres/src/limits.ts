/** The admission steps of the PostgreSQL store (windows and leases). Internal to this package. */
import type { LeaseResult, Store, WindowResult, WindowStatus } from "@tokenpool/core";
import {
  assertLeaseAsk,
  assertWindowAdjust,
  assertWindowHit,
  bucketLeavesAt,
  windowId,
  windowSpan,
} from "@tokenpool/core/store-kernel";
import { type PgContext, quoteIdent } from "./context.js";

/** The admission steps of the Store contract. */
export type LimitSteps = Pick<
  Store,
  "hitWindows" | "adjustWindow" | "acquireLeases" | "renewLeases" | "releaseLeases"
>;

/** What `hit_windows` answers (see `limits-sql.ts`): bucket indices, turned into ms here. */
type HitAnswer =
  | { ok: true; count: number[]; first: (number | null)[] }
  | { ok: false; index: number; count: number; retry: number | null };

/** What `acquire_leases` answers. */
type LeaseAnswer = { ok: true; inUse: number[] } | { ok: false; index: number; earliest: number };

/**
 * Window counters and concurrency leases on the tables of migration 1 (`limit_windows`,
 * `limit_leases`).
 *
 * Every step is one round trip: one `SELECT` of a PL/pgSQL function of the schema
 * (`limits-sql.ts`), after the arguments were checked here. Several gateway processes share the
 * database, so a step's check and its write must be one atomic step across connections: the
 * function first takes a transaction-scoped advisory lock (`pg_advisory_xact_lock`) per counter
 * or pool it touches, in sorted order (two calls on overlapping counters cannot deadlock), and
 * only then reads; under READ COMMITTED each statement of the function sees what the previous
 * holder committed before its lock was released. The function runs in the implicit transaction
 * of its statement, so the locks are held only while it executes, never across a round trip.
 * Row locks would not do: a counter with no bucket yet has no row to lock. The locks are keyed
 * by the table's qualified name and the counter, so stores in other schemas of the same
 * database do not wait for each other.
 *
 * The judging follows `judgeWindows` and the memory store's leases; the millisecond arithmetic
 * stays here, with the shared helpers: this side passes each hit's buckets (`windowSpan`) and
 * turns the bucket indices the function answers into `resetMs` and `retryAfterMs`
 * (`bucketLeavesAt`).
 *
 * What needs no lock: a hit that only reads (cost 0) is judged in one statement, a consistent
 * snapshot; `releaseLeases` only deletes, which can only make a concurrent acquirer count a slot
 * too many for a moment, never too few. The periodic sweep of `postgresStore` likewise only
 * deletes expired rows. `renewLeases` does take the pools' locks: a renewal racing with an
 * acquirer that judged the same lease expired could otherwise revive it after its slot was
 * given away.
 */
export function limits(ctx: PgContext): LimitSteps {
  const s = quoteIdent(ctx.schema);
  const hit = `SELECT ${s}.hit_windows($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[]) AS r`;
  const adjust = `SELECT ${s}.adjust_window($1::text, $2::bigint, $3::bigint, $4::bigint)`;
  const acquire = `SELECT ${s}.acquire_leases($1::text[], $2::bigint[], $3::text, $4::bigint, $5::bigint) AS r`;
  const renew = `SELECT ${s}.renew_leases($1::text[], $2::text, $3::bigint, $4::bigint) AS n`;
  const release = `DELETE FROM ${ctx.t.limit_leases} WHERE pool = ANY($1::text[]) AND lease_id = $2`;

  return {
    async hitWindows(hits, nowMs) {
      for (const hit of hits) assertWindowHit(hit);
      if (hits.length === 0) return { ok: true, windows: [] };
      const spans = hits.map((h) => windowSpan(h.windowMs, nowMs));
      const leaveIn = (i: number, bucket: number) =>
        bucketLeavesAt(bucket, spans[i]!.bucketMs, hits[i]!.windowMs) - nowMs;
      const row = await ctx.one<{ r: HitAnswer }>(hit, [
        hits.map((h) => windowId(h.key, h.windowMs)),
        hits.map((h) => h.limit),
        hits.map((h) => h.cost),
        spans.map((span) => span.current),
        spans.map((span) => span.oldest),
        spans.map((span, i) => bucketLeavesAt(span.current, span.bucketMs, hits[i]!.windowMs)),
      ]);
      const r = row!.r;
      if (!r.ok) {
        const refused = hits[r.index]!;
        return {
          ok: false,
          index: r.index,
          key: refused.key,
          remaining: Math.max(0, refused.limit - r.count),
          retryAfterMs: r.retry === null ? null : leaveIn(r.index, r.retry),
        };
      }
      const windows: WindowStatus[] = hits.map((h, i) => {
        const first = r.first[i];
        return {
          remaining: h.limit - r.count[i]! - h.cost,
          resetMs: first === null || first === undefined ? 0 : leaveIn(i, first),
        };
      });
      return { ok: true, windows } satisfies WindowResult;
    },

    async adjustWindow(key, windowMs, atMs, delta, nowMs) {
      assertWindowAdjust(key, windowMs, delta);
      const { bucketMs, oldest } = windowSpan(windowMs, nowMs);
      const bucket = Math.floor(atMs / bucketMs);
      if (bucket < oldest || delta === 0) return;
      await ctx.run(adjust, [
        windowId(key, windowMs),
        bucket,
        delta,
        bucketLeavesAt(bucket, bucketMs, windowMs),
      ]);
    },

    async acquireLeases(asks, leaseId, expiresAt, nowMs): Promise<LeaseResult> {
      for (const ask of asks) assertLeaseAsk(ask);
      if (asks.length === 0) return { ok: true, inUse: [] };
      const row = await ctx.one<{ r: LeaseAnswer }>(acquire, [
        asks.map((a) => a.pool),
        asks.map((a) => a.limit),
        leaseId,
        expiresAt,
        nowMs,
      ]);
      const r = row!.r;
      if (r.ok) return { ok: true, inUse: r.inUse };
      return {
        ok: false,
        index: r.index,
        pool: asks[r.index]!.pool,
        retryAfterMs: r.earliest - nowMs,
      };
    },

    async renewLeases(leaseId, pools, expiresAt, nowMs) {
      const distinct = [...new Set(pools)];
      if (distinct.length === 0) return 0;
      const row = await ctx.one<{ n: number }>(renew, [distinct, leaseId, expiresAt, nowMs]);
      return row!.n;
    },

    async releaseLeases(leaseId, pools) {
      const distinct = [...new Set(pools)];
      if (distinct.length === 0) return 0;
      return (await ctx.run(release, [distinct, leaseId])).rowCount ?? 0;
    },
  };
}
