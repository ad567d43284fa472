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
} from "@tokenpool/core";
import type { StoreLedger } from "@tokenpool/core/store-kernel";
import {
  assertRefill,
  assertUnits,
  type ReservationRow,
  recoveredRecord,
  reservationRow,
  rollupKey,
} from "@tokenpool/core/store-kernel";
import { type Hash, page, type RedisContext, type ScriptArg } from "./context.js";

const PRUNE_BATCH = 1_000;

const rollupFields = [
  "requests",
  "successes",
  "failures",
  "inputTokens",
  "outputTokens",
  "reasoningTokens",
  "cachedTokens",
  "totalTokens",
  "quota",
] as const;

/** The quota and usage steps of the Store contract. */
export type Ledger = StoreLedger;

/**
 * The ledger: each reservation, settlement, batch commit and recovery is one Lua script; usage
 * details are hashes indexed by sorted sets, roll-ups one hash per (hour, route, model, key).
 * `detailsLimit` bounds the details kept (0 = no bound).
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

  return {
    usage: {
      async list(q: UsageQuery = {}) {
        const offset = q.offset ?? 0;
        const limit = q.limit ?? 100;
        const index =
          q.keyId !== undefined
            ? k.usageByKey(q.keyId)
            : q.userId !== undefined
              ? k.usageByUser(q.userId)
              : k.usage;
        const min = q.from === undefined ? "-inf" : String(q.from);
        const max = q.to === undefined ? "+inf" : `(${q.to}`;
        if (q.keyId !== undefined && q.userId !== undefined) {
          const members = await client.zrevrangebyscore(index, max, min);
          const all = (await readUsage(members)).filter((r) => r.userId === q.userId);
          return page(all, offset, limit);
        }
        const res = await client
          .multi()
          .zcount(index, min, max)
          .zrevrangebyscore(index, max, min, "LIMIT", offset, limit)
          .exec();
        const total = Number(res?.[0]?.[1] ?? 0);
        const items = await readUsage((res?.[1]?.[1] as string[]) ?? []);
        return { items, total };
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
        ids.forEach((id, i) => {
          const [hour, route, model, keyId] = JSON.parse(id) as [
            string,
            string,
            string,
            number | null,
          ];
          if (q.keyId !== undefined && keyId !== q.keyId) return;
          const h = (hashes[i]?.[1] ?? {}) as Hash;
          const row = { hour, route, model, keyId } as UsageRollup;
          for (const f of rollupFields) row[f] = Number(h[f] ?? 0);
          rows.push(row);
        });
        return rows.sort((a, b) => (a.hour < b.hour ? -1 : a.hour > b.hour ? 1 : 0));
      },
      async prune(before) {
        let total = 0;
        for (;;) {
          const n = (await run("tpPrune", [k.usage], [base, before, PRUNE_BATCH])) as number;
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
