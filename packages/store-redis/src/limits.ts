/** The admission steps of the Redis store (windows and leases), one Lua script each. Internal. */
import { type LeaseResult, type Store, WINDOW_BUCKETS, type WindowResult } from "@tokenpool/core";
import { assertLeaseAsk, assertWindowAdjust, assertWindowHit } from "@tokenpool/core/store-kernel";
import type { RedisContext } from "./context.js";

/** The admission steps of the Store contract. */
export type LimitSteps = Pick<
  Store,
  "hitWindows" | "adjustWindow" | "acquireLeases" | "renewLeases" | "releaseLeases"
>;

/**
 * Window counters and concurrency leases. Every key is under the store's hash tag, so each
 * script's keys share one hash slot (Redis Cluster). The caller's `nowMs` picks the buckets and
 * judges expiry; Redis TTLs (relative, from the same `nowMs`) only reclaim memory.
 */
export function limits({ k, run }: Pick<RedisContext, "k" | "run">): LimitSteps {
  return {
    async hitWindows(hits, nowMs) {
      for (const hit of hits) assertWindowHit(hit);
      if (hits.length === 0) return { ok: true, windows: [] };
      const reply = (await run(
        "tpHitWindows",
        hits.map((h) => k.window(h.key, h.windowMs)),
        [nowMs, WINDOW_BUCKETS, ...hits.flatMap((h) => [h.limit, h.windowMs, h.cost])],
      )) as number[];
      if (reply[0] === 0) {
        const index = reply[1]!;
        const result: WindowResult = {
          ok: false,
          index,
          key: hits[index]!.key,
          remaining: reply[2]!,
          retryAfterMs: reply[3]! < 0 ? null : reply[3]!,
        };
        return result;
      }
      return {
        ok: true,
        windows: hits.map((_, i) => ({ remaining: reply[1 + 2 * i]!, resetMs: reply[2 + 2 * i]! })),
      };
    },

    async adjustWindow(key, windowMs, atMs, delta, nowMs) {
      assertWindowAdjust(key, windowMs, delta);
      if (delta === 0) return;
      await run(
        "tpAdjustWindow",
        [k.window(key, windowMs)],
        [windowMs, atMs, delta, nowMs, WINDOW_BUCKETS],
      );
    },

    async acquireLeases(asks, leaseId, expiresAt, nowMs) {
      for (const ask of asks) assertLeaseAsk(ask);
      if (asks.length === 0) return { ok: true, inUse: [] };
      const reply = (await run(
        "tpAcquireLeases",
        asks.map((a) => k.lease(a.pool)),
        [leaseId, expiresAt, nowMs, ...asks.map((a) => a.limit)],
      )) as number[];
      if (reply[0] === 0) {
        const index = reply[1]!;
        const result: LeaseResult = {
          ok: false,
          index,
          pool: asks[index]!.pool,
          retryAfterMs: reply[2]!,
        };
        return result;
      }
      return { ok: true, inUse: reply.slice(1) };
    },

    async renewLeases(leaseId, pools, expiresAt, nowMs) {
      const keys = [...new Set(pools)].map(k.lease);
      if (keys.length === 0) return 0;
      return (await run("tpRenewLeases", keys, [leaseId, expiresAt, nowMs])) as number;
    },

    async releaseLeases(leaseId, pools) {
      const keys = [...new Set(pools)].map(k.lease);
      if (keys.length === 0) return 0;
      return (await run("tpReleaseLeases", keys, [leaseId])) as number;
    },
  };
}
