/** Quota reservations, settlements and usage of the Redis store. Internal to this package. */
import { randomUUID } from "node:crypto";
import type {
  NewUsageRecord,
  Reservation,
  ReservationMeta,
  ReserveDenial,
  ReserveResult,
  UsageCommit,
  UsageQuery,
  UsageRecord,
  UsageRollup,
  UsageStat,
} from "@tokenpool/core";
import type { StoreLedger } from "@tokenpool/core/store-kernel";
import {
  assertRefill,
  assertUnits,
  type ReservationRow,
  ROLLUP_SUMS,
  recoveredRecord,
  reservationRow,
  rollupKey,
} from "@tokenpool/core/store-kernel";
import type { Hash, RedisContext, ScriptArg } from "./context.js";

const PRUNE_BATCH = 1_000;
/** Index entries one `tpUsageScan` call looks at: a few milliseconds of Redis time. */
const SCAN_CHUNK = 4_000;

const rollupFields = ROLLUP_SUMS;

/** The quota and usage steps of the Store contract. */
export type Ledger = StoreLedger;

/**
 * The ledger: each reservation, settlement, batch commit and recovery is one Lua script; usage
 * details are hashes indexed by sorted sets (one per filter value, see `APPEND_FN` in
 * `lua/scripts.ts`), roll-ups one hash per (hour, route, model, key, user, credential).
 * `detailsLimit` bounds the details kept (0 = no bound).
 *
 * How `usage.list` answers (see {@link planUsageQuery}):
 * - no filter, or one indexed filter (key, user, model, credential, key name, username, a
 *   non-empty group, `success: false`), with or without a time range: ZCOUNT and
 *   ZREVRANGEBYSCORE LIMIT on that index, O(log n + offset + limit);
 * - `success: true` or `group: ""` alone: the total is ZCOUNT(`usage`) minus the ZCOUNTs of the
 *   complement indexes (`usage:fail`, the `usage:group:*` sets), and the page walks `usage` until
 *   it is full, O(offset + limit + the complement's entries passed);
 * - several filters: `tpUsageScan` steps of {@link SCAN_CHUNK} entries walk the index with the
 *   fewest entries in the time range and check the other filters on each detail's hash:
 *   O(entries of that index in the range), whatever the page, because the total is exact.
 * `usage.stat` always walks (the sums need every matching detail): O(entries of the smallest
 * index in the range), in bounded steps.
 *
 * Details written before the request log (no `x` field, in
 * `usage`, `usage:key:*` and `usage:user:*` only, never in the newer indexes) are listed
 * unfiltered and by key, user and time, pruned like the others, and a walk of those three
 * indexes decodes their JSON so that `success: true`, `group: ""` and empty names hold for them.
 * A query naming a model, credential, key name, username, non-empty group or `success: false`
 * reads that filter's index and does not find them; `success: true` alone counts an old failed
 * detail in its total (it is in no `usage:fail`) but does not list it.
 */
export function ledger(
  { client, k, base, run, write, emitLocal }: RedisContext,
  detailsLimit: number,
): Ledger {
  const toReservation = (
    id: string,
    keyId: number,
    units: number,
    reply: unknown[],
  ): ReserveResult => {
    if (reply[0] !== 1) {
      const reason = reply[1] as ReserveDenial;
      return reason === "key_not_found"
        ? { ok: false, reason }
        : { ok: false, reason, inFlight: Number(reply[2] ?? 0) };
    }
    const uid = reply[1] as string;
    return {
      ok: true,
      reservation: {
        id,
        keyId,
        userId: uid === "" ? null : Number(uid),
        units,
        keyDebited: reply[2] === 1,
        keyPeriod: Number(reply[3]),
        userPeriod: Number(reply[4]),
      },
    };
  };

  const commitArgs = (c: UsageCommit): ScriptArg[] => {
    const res = c.reservation;
    return [
      res ? 1 : 0,
      res ? res.id : "",
      res ? res.keyId : "",
      res && res.userId !== null ? res.userId : "",
      res ? res.units : 0,
      res?.keyDebited ? 1 : 0,
      c.actualUnits,
      res?.keyPeriod ?? 0,
      res?.userPeriod ?? 0,
      ...recordArgs(c.record),
    ];
  };

  /** The `RECORD_STRIDE` script values of one usage record (see `lua/scripts.ts`). */
  const recordArgs = (r: NewUsageRecord): ScriptArg[] => {
    const { quota: _q, ...rest } = r;
    return [
      JSON.stringify(rest),
      r.timestamp,
      r.keyId === null ? "" : r.keyId,
      r.userId === null ? "" : r.userId,
      rollupKey(r),
      r.inputTokens,
      r.outputTokens,
      r.reasoningTokens,
      r.cachedTokens,
      r.totalTokens,
      r.success ? 1 : 0,
      r.model,
      r.credentialId ?? "",
      r.keyName ?? "",
      r.username ?? "",
      r.group ?? "",
    ];
  };

  const commit = async (commits: UsageCommit[], nowSeconds: number): Promise<UsageRecord[]> => {
    if (commits.length === 0) return [];
    for (const c of commits) assertUnits(c.actualUnits, "actualUnits");
    const args: ScriptArg[] = [base, nowSeconds, detailsLimit, commits.length];
    for (const c of commits) args.push(...commitArgs(c));
    const out = (await run("tpCommit", [k.usageSeq, k.usage, k.rollups], args)) as number[];
    return commits.map((c, i) => ({
      ...structuredClone(c.record),
      id: Number(out[2 * i]),
      quota: Number(out[2 * i + 1]),
    }));
  };

  /**
   * Parses a reservation row (`keyId|userId|units|keyDebited|metaJSON`). The meta JSON carries
   * the refill periods (`keyPeriod`, `userPeriod`); a row written before they existed lacks them:
   * period 0.
   */
  const parseReservation = (id: string, value: string): ReservationRow => {
    const parts = value.split("|", 4);
    const meta = JSON.parse(value.slice(parts.join("|").length + 1)) as Required<ReservationMeta> &
      Pick<Reservation, "keyPeriod" | "userPeriod">;
    return {
      ...meta,
      id,
      keyId: Number(parts[0]),
      userId: parts[1] === "" ? null : Number(parts[1]),
      units: Number(parts[2]),
      keyDebited: parts[3] === "1",
      keyPeriod: meta.keyPeriod ?? 0,
      userPeriod: meta.userPeriod ?? 0,
    };
  };

  const recover = async (nowMs: number, limit: number): Promise<UsageRecord[]> => {
    if (limit <= 0) return [];
    const ids = await client.zrangebyscore(k.reservations, "-inf", nowMs, "LIMIT", 0, limit);
    if (ids.length === 0) return [];
    const values = await client.hmget(k.reservationRows, ...ids);
    const rows: ReservationRow[] = [];
    ids.forEach((id, i) => {
      const v = values[i];
      if (v != null) rows.push(parseReservation(id, v)); // settled meanwhile
    });
    if (rows.length === 0) return [];
    // The script re-checks each row under its atomicity: only the caller that still finds it
    // (expired, not renewed, not settled, not recovered by another instance) recovers it.
    const args: ScriptArg[] = [base, Math.floor(nowMs / 1000), nowMs, rows.length];
    const records = rows.map(recoveredRecord);
    rows.forEach((r, i) => {
      args.push(r.id, r.keyId, r.userId ?? "", r.units, r.keyDebited ? 1 : 0);
      args.push(r.keyPeriod ?? 0, r.userPeriod ?? 0);
      args.push(...recordArgs(records[i]!));
    });
    const out = (await run("tpRecover", [k.reservations], args)) as number[];
    const done: UsageRecord[] = [];
    records.forEach((r, i) => {
      const id = Number(out[2 * i]);
      if (id > 0) done.push({ ...r, id });
    });
    return done;
  };

  const readUsage = async (members: string[]): Promise<UsageRecord[]> => {
    if (members.length === 0) return [];
    const pipe = client.pipeline();
    for (const m of members) pipe.hmget(k.usageRec(m), "r", "id", "quota");
    const res = (await pipe.exec()) ?? [];
    const out: UsageRecord[] = [];
    for (const [err, v] of res) {
      if (err) throw err;
      const [r, id, quota] = v as (string | null)[];
      if (r == null) continue; // pruned meanwhile
      out.push({ ...JSON.parse(r), id: Number(id), quota: Number(quota) });
    }
    return out;
  };

  /**
   * Which index answers a usage query, and what is left to check on each detail: the index with
   * the fewest entries in the time range among those the filters name (else `usage`), the other
   * filters as checks of each detail's values (`k`, `u` and the values of `x`, see APPEND_FN). `total` is set when counts alone
   * give it (`success: true` or `group: ""` as the only filter); `empty` when an index the query
   * needs has no entry in the range.
   */
  const planUsageQuery = async (q: UsageQuery): Promise<UsagePlan> => {
    const from = q.from === undefined ? "-inf" : String(q.from);
    const to = q.to === undefined ? "+inf" : `(${q.to}`;
    const indexed: { key: string; check: [string, string] }[] = [];
    const checks: [string, string][] = [];
    const filter = (key: string | null, field: string, value: string) => {
      if (key === null) checks.push([field, value]);
      else indexed.push({ key, check: [field, value] });
    };
    const named = (make: (v: string) => string, v: string) => (v === "" ? null : make(v));
    if (q.keyId !== undefined) filter(k.usageByKey(q.keyId), "k", String(q.keyId));
    if (q.userId !== undefined) filter(k.usageByUser(q.userId), "u", String(q.userId));
    if (q.model !== undefined) filter(named(k.usageByModel, q.model), "m", q.model);
    if (q.credentialId !== undefined)
      filter(named(k.usageByCred, q.credentialId), "c", q.credentialId);
    if (q.keyName !== undefined) filter(named(k.usageByKeyName, q.keyName), "kn", q.keyName);
    if (q.username !== undefined) filter(named(k.usageByUsername, q.username), "un", q.username);
    if (q.group !== undefined) filter(named(k.usageByGroup, q.group), "g", q.group);
    if (q.success !== undefined) filter(q.success ? null : k.usageFail, "s", q.success ? "1" : "0");
    const plan: UsagePlan = { index: k.usage, from, to, checks, empty: false };
    if (indexed.length === 0) {
      // One complement filter alone: total = all - the complement, counted on the indexes.
      const only = checks.length === 1 ? checks[0]! : null;
      if (only && ((only[0] === "s" && only[1] === "1") || (only[0] === "g" && only[1] === ""))) {
        const minus =
          only[0] === "s"
            ? [k.usageFail]
            : (await client.smembers(k.usageGroups)).map(k.usageByGroup);
        const pipe = client.pipeline().zcount(k.usage, from, to);
        for (const key of minus) pipe.zcount(key, from, to);
        const counts = ((await pipe.exec()) ?? []).map(([err, v]) => {
          if (err) throw err;
          return Number(v);
        });
        plan.total = Math.max(0, counts[0]! - counts.slice(1).reduce((a, b) => a + b, 0));
        plan.empty = plan.total === 0;
      }
      return plan;
    }
    let counts = [0];
    if (indexed.length > 1 || checks.length > 0) {
      const pipe = client.pipeline();
      for (const i of indexed) pipe.zcount(i.key, from, to);
      counts = ((await pipe.exec()) ?? []).map(([err, v]) => {
        if (err) throw err;
        return Number(v);
      });
    }
    let best = 0;
    counts.forEach((n, i) => {
      if (n < counts[best]!) best = i;
    });
    if (indexed.length > 1 || checks.length > 0) plan.empty = counts[best] === 0;
    plan.index = indexed[best]!.key;
    indexed.forEach((i, n) => {
      if (n !== best) checks.push(i.check);
    });
    return plan;
  };

  /**
   * Walks a plan's index newest first in `tpUsageScan` steps: skips `offset` matches, collects
   * `limit`, and (unless `stopWhenFull`) counts and sums every match in the range.
   */
  const walk = async (
    plan: UsagePlan,
    offset: number,
    limit: number,
    stopWhenFull: boolean,
    sums = false,
  ) => {
    const scoreArg = (s: string) => (s === "-inf" || s === "+inf" ? "" : s.replace("(", ""));
    const from = scoreArg(plan.from);
    const to = scoreArg(plan.to);
    const flat = plan.checks.flat();
    const members: string[] = [];
    let skip = Math.max(0, offset);
    let want = Math.max(0, limit);
    let matched = 0;
    let quota = 0;
    let tokens = 0;
    let cursor: [string, string] = ["", ""];
    // A walk that stops at a full page starts with a step about its size and doubles it.
    let chunk = stopWhenFull ? Math.min(SCAN_CHUNK, 2 * (skip + want) + 32) : SCAN_CHUNK;
    for (;;) {
      const out = (await run(
        "tpUsageScan",
        [plan.index],
        [base, from, to, ...cursor, chunk, skip, want, stopWhenFull ? 1 : sums ? 2 : 0, ...flat],
      )) as (string | number)[];
      const n = Number(out[3]);
      const page = out.slice(6) as string[];
      members.push(...page);
      skip = Math.max(0, skip - n); // matches are skipped before any is collected
      want -= page.length;
      matched += n;
      quota += Number(out[4]);
      tokens += Number(out[5]);
      cursor = [String(out[1]), String(out[2])];
      if (Number(out[0]) === 1 || (stopWhenFull && want === 0)) break;
      chunk = Math.min(SCAN_CHUNK, chunk * 2);
    }
    return { members, matched, quota, tokens };
  };

  return {
    usage: {
      async list(q: UsageQuery = {}) {
        const offset = q.offset ?? 0;
        const limit = q.limit ?? 100;
        const plan = await planUsageQuery(q);
        if (plan.empty) return { items: [], total: 0 };
        const { from, to } = plan;
        if (plan.checks.length === 0) {
          const res = await client
            .multi()
            .zcount(plan.index, from, to)
            .zrevrangebyscore(plan.index, to, from, "LIMIT", offset, limit)
            .exec();
          const total = Number(res?.[0]?.[1] ?? 0);
          const items = await readUsage((res?.[1]?.[1] as string[]) ?? []);
          return { items, total };
        }
        if (plan.total !== undefined) {
          if (limit <= 0 || offset >= plan.total) return { items: [], total: plan.total };
          const { members } = await walk(plan, offset, limit, true);
          return { items: await readUsage(members), total: plan.total };
        }
        const { members, matched } = await walk(plan, offset, limit, false);
        return { items: await readUsage(members), total: matched };
      },
      async stat(q: UsageQuery = {}) {
        const stat: UsageStat = { requests: 0, quota: 0, totalTokens: 0 };
        const plan = await planUsageQuery(q);
        if (plan.empty) return stat;
        const res = await walk(plan, 0, 0, false, true);
        return { requests: res.matched, quota: res.quota, totalTokens: res.tokens };
      },
      async rollups(q = {}) {
        const min =
          q.fromHour === undefined ? "-" : `[${JSON.stringify([q.fromHour]).slice(0, -1)}`;
        const max = q.toHour === undefined ? "+" : `(${JSON.stringify([q.toHour]).slice(0, -1)}`;
        const ids = await client.zrangebylex(k.rollups, min, max);
        const rows: UsageRollup[] = [];
        const hashes = ids.length
          ? ((await ids.reduce((p, id) => p.hgetall(k.rollup(id)), client.pipeline()).exec()) ?? [])
          : [];
        // Rows written before roll-ups had owners and credentials have 4-element ids; one and
        // a new row of the same identity (null user, null credential) are summed into one row.
        const merged = new Map<string, UsageRollup>();
        ids.forEach((id, i) => {
          const [hour, route, model, keyId, userId = null, credentialId = null] = JSON.parse(
            id,
          ) as [string, string, string, number | null, (number | null)?, (string | null)?];
          if (q.keyId !== undefined && keyId !== q.keyId) return;
          if (q.userId !== undefined && userId !== q.userId) return;
          if (q.credentialId !== undefined && credentialId !== q.credentialId) return;
          const h = (hashes[i]?.[1] ?? {}) as Hash;
          const identity = JSON.stringify([hour, route, model, keyId, userId, credentialId]);
          let row = merged.get(identity);
          if (!row) {
            row = { hour, route, model, keyId, userId, credentialId } as UsageRollup;
            for (const f of rollupFields) row[f] = 0;
            merged.set(identity, row);
            rows.push(row);
          }
          for (const f of rollupFields) row[f] += Number(h[f] ?? 0);
        });
        return rows.sort((a, b) => (a.hour < b.hour ? -1 : a.hour > b.hour ? 1 : 0));
      },
      async prune(before, keep) {
        const bound = keep === undefined ? "" : Math.max(0, Math.floor(keep));
        let total = 0;
        for (;;) {
          const n = (await run("tpPrune", [k.usage], [base, before, PRUNE_BATCH, bound])) as number;
          total += n;
          if (n < PRUNE_BATCH) return total;
        }
      },
    },

    async reserveQuota(keyId, units, meta) {
      assertUnits(units);
      const id = randomUUID();
      const row = reservationRow(
        { id, keyId, userId: null, units, keyDebited: false },
        meta,
        Date.now(),
      );
      // What the row keeps besides the debit (the script adds keyId, userId, units, keyDebited).
      const rest = JSON.stringify({
        owner: row.owner,
        requestId: row.requestId,
        route: row.route,
        model: row.model,
        timestamp: row.timestamp,
      });
      const reply = (await run(
        "tpReserve",
        [k.key(keyId), k.reservations, k.reservationRows, k.inFlight],
        [base, units, id, row.expiresAt, rest, keyId],
      )) as unknown[];
      return toReservation(id, keyId, units, reply);
    },

    async renewReservations(ids, expiresAt) {
      if (ids.length === 0) return 0;
      const args: (string | number)[] = [];
      for (const id of ids) args.push(expiresAt, id);
      // XX: only rows that still exist; CH: count the ones whose expiry moved.
      return Number(await client.zadd(k.reservations, "XX", "CH", ...args));
    },

    recoverReservations: recover,

    async settleQuota(res: Reservation, actualUnits, nowSeconds) {
      assertUnits(actualUnits, "actualUnits");
      const charged = await run(
        "tpSettle",
        [k.key(res.keyId)],
        [
          base,
          res.keyId,
          res.userId ?? "",
          res.units,
          res.keyDebited ? 1 : 0,
          actualUnits,
          nowSeconds,
          res.id,
          res.keyPeriod ?? 0,
          res.userPeriod ?? 0,
        ],
      );
      return { charged: Number(charged) };
    },

    async refillQuota(target, id, period, amount) {
      assertRefill(target, period, amount);
      const collection = target === "key" ? "keys" : "users";
      const refilled =
        (await write(
          "tpRefill",
          [target === "key" ? k.key(id) : k.user(id)],
          [collection, id, target === "key" ? "remainQuota" : "quota", period, amount],
        )) === 1;
      if (refilled) emitLocal(collection, id, "upsert");
      return refilled;
    },

    commitUsage: commit,
  };
}

/** How a usage query is answered (see `planUsageQuery` in {@link ledger}). */
interface UsagePlan {
  /** The sorted set walked or read. */
  index: string;
  /** ZRANGEBYSCORE bounds: `-inf` or the inclusive `from`; `+inf` or `(to`. */
  from: string;
  to: string;
  /** Field/value pairs each detail must have besides being in `index`. */
  checks: [string, string][];
  /** The exact total when the counts give it. */
  total?: number;
  /** Nothing can match. */
  empty: boolean;
}
