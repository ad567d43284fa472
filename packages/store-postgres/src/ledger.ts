/**
 * Quota reservations, settlements, refills and usage of the PostgreSQL store. Internal to this
 * package.
 *
 * Several gateway instances share the database, and the proxy's hot path puts every request of a
 * key on that key's row. So each step of that path is ONE round trip: one call of a server-side
 * function of `ledger-sql.ts` (`SELECT <schema>.ledger_reserve(...)`, `ledger_settle_quota`,
 * `ledger_commit`, `ledger_recover`), a single statement that runs as its own transaction. Its
 * row locks are taken before it reads what it decides on and are held only while the function
 * runs, never across client round trips. Every function takes them in one global order, so that
 * none waits for another in a cycle: reservation rows (deleted first; recovery skips the locked
 * ones and never waits for them), then keys in ascending id, then users in ascending id, then
 * roll-up rows in their sorted order, and `usage_totals` last. Refills stay one guarded
 * statement in a transaction (with its change notification); they are rare.
 */
import { randomUUID } from "node:crypto";
import type { NewUsageRecord, ReserveResult, UsageRecord } from "@tokenpool/core";
import {
  assertRefill,
  assertUnits,
  hourBucket,
  type ReservationDbRow,
  recoveredRecord,
  reservationFromRow,
  reservationRow,
  type StoreLedger,
  usageParams,
} from "@tokenpool/core/store-kernel";
import { type PgContext, quoteIdent } from "./context.js";
import { USAGE_COLUMNS } from "./ledger-sql.js";
import { usageCollection } from "./usage.js";

/** SQLSTATEs of a statement that lost a race (deadlock, serialization) and may simply run again. */
const RETRYABLE = new Set(["40001", "40P01"]);

/** `$from::type[], ...`: the placeholders of a batch's usage columns, from `$from` on. */
const usagePlaceholders = (from: number): string =>
  USAGE_COLUMNS.map(([, type], i) => `$${from + i}::${type}[]`).join(", ");

/**
 * A batch of usage records as `ledger_append` takes it: each record's roll-up hour, then one
 * array per usage column (in the order of `usageParams`, the kernel's row mapping).
 */
function usageArrays(records: NewUsageRecord[]): unknown[][] {
  const out: unknown[][] = Array.from(
    { length: USAGE_COLUMNS.length + 1 },
    () => new Array(records.length),
  );
  for (let i = 0; i < records.length; i++) {
    const record = records[i]!;
    const row = usageParams(record);
    out[0]![i] = hourBucket(record.timestamp);
    for (let j = 0; j < USAGE_COLUMNS.length; j++) out[j + 1]![i] = row[j];
  }
  return out;
}

/** What `ledger_reserve` answers. */
type ReserveAnswer =
  | {
      ok: true;
      userId: number | null;
      keyDebited: boolean;
      keyPeriod: number;
      userPeriod: number;
    }
  | Extract<ReserveResult, { ok: false }>;

/**
 * The ledger: quota reservations, settlements, usage records with their roll-ups, refills and
 * the recovery of expired reservations, each one statement.
 */
export function ledger(ctx: PgContext): StoreLedger {
  const { t } = ctx;
  const s = quoteIdent(ctx.schema);

  const reserveSql = `SELECT ${s}.ledger_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9) AS r`;
  const settleSql = `SELECT ${s}.ledger_settle_quota($1, $2, $3, $4, $5, $6, $7, $8, $9) AS r`;
  const commitSql = `SELECT ${s}.ledger_commit($1::text[], $2::bigint[], $3::bigint[],
    $4::bigint[], $5::boolean[], $6::bigint[], $7::bigint[], $8::bigint[], $9, $10::text[],
    ${usagePlaceholders(11)}) AS r`;
  const recoverSql = `SELECT ${s}.ledger_recover($1, $2, $3) AS r`;

  /**
   * The one-statement call `sql` (a function answering in column `r`). A statement that loses a
   * race (a deadlock with a transaction that locks in another order, e.g. an admin's) rolled
   * back entirely, so it runs again, as `ctx.tx` does with a transaction.
   */
  async function call<R>(sql: string, values: unknown[]): Promise<R> {
    for (let attempt = 0; ; attempt++) {
      try {
        return (await ctx.one<{ r: R }>(sql, values))!.r;
      } catch (err) {
        const code = (err as { code?: string }).code;
        if (code === undefined || !RETRYABLE.has(code) || attempt >= 5) throw err;
        await new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
      }
    }
  }

  return {
    usage: usageCollection(ctx),

    async reserveQuota(keyId, units, meta) {
      assertUnits(units);
      const row = reservationRow(
        { id: randomUUID(), keyId, userId: null, units, keyDebited: true },
        meta,
        Date.now(),
      );
      const r = await call<ReserveAnswer>(reserveSql, [
        keyId,
        units,
        row.id,
        row.expiresAt,
        row.owner,
        row.requestId,
        row.route,
        row.model,
        row.timestamp,
      ]);
      if (!r.ok) return r;
      return {
        ok: true,
        reservation: {
          id: row.id,
          keyId,
          userId: r.userId,
          units,
          keyDebited: r.keyDebited,
          keyPeriod: r.keyPeriod,
          userPeriod: r.userPeriod,
        },
      };
    },

    async renewReservations(ids, expiresAt) {
      if (ids.length === 0) return 0;
      const r = await ctx.run(
        `UPDATE ${t.reservations} SET expires_at = $1 WHERE id = ANY($2::text[])`,
        [expiresAt, ids],
      );
      return r.rowCount ?? 0;
    },

    async recoverReservations(nowMs, limit) {
      if (!(limit > 0)) return [];
      const r = await call<{ rows: ReservationDbRow[]; ids: number[] }>(recoverSql, [
        nowMs,
        // NULL: no limit (an Infinity `limit`).
        Number.isFinite(limit) ? Math.floor(limit) : null,
        Math.floor(nowMs / 1000),
      ]);
      return r.rows.map(
        (row, i): UsageRecord => ({ ...recoveredRecord(reservationFromRow(row)), id: r.ids[i]! }),
      );
    },

    async refillQuota(target, id, period, amount) {
      assertRefill(target, period, amount);
      const [table, balance, collection] =
        target === "key"
          ? ([t.keys, "remain_quota", "keys"] as const)
          : ([t.users, "quota", "users"] as const);
      return ctx.tx(async (tx) => {
        // One guarded statement: the compare-and-set that lets one caller per period through.
        const r = await tx.run(
          `UPDATE ${table} SET ${balance} = $1, used_quota = 0, quota_period = $2
           WHERE id = $3 AND COALESCE(quota_period, 0) < $2`,
          [amount, period, id],
        );
        if (r.rowCount !== 1) return false;
        await tx.changed(collection, id, "upsert");
        return true;
      });
    },

    async settleQuota(reservation, actualUnits, nowSeconds) {
      assertUnits(actualUnits, "actualUnits");
      const charged = await call<number>(settleSql, [
        reservation.id,
        reservation.keyId,
        reservation.userId,
        reservation.units,
        reservation.keyDebited,
        reservation.keyPeriod ?? 0,
        reservation.userPeriod ?? 0,
        actualUnits,
        nowSeconds,
      ]);
      return { charged };
    },

    async commitUsage(commits, nowSeconds) {
      for (const c of commits) assertUnits(c.actualUnits, "actualUnits");
      if (commits.length === 0) return [];
      const n = commits.length;
      const ids: (string | null)[] = new Array(n);
      const keys: (number | null)[] = new Array(n);
      const users: (number | null)[] = new Array(n);
      const units: (number | null)[] = new Array(n);
      const debited: (boolean | null)[] = new Array(n);
      const keyPeriods: (number | null)[] = new Array(n);
      const userPeriods: (number | null)[] = new Array(n);
      const actual: number[] = new Array(n);
      const records: NewUsageRecord[] = new Array(n);
      for (let i = 0; i < n; i++) {
        const { reservation: res, actualUnits, record } = commits[i]!;
        ids[i] = res ? res.id : null;
        keys[i] = res ? res.keyId : null;
        users[i] = res ? res.userId : null;
        units[i] = res ? res.units : null;
        debited[i] = res ? res.keyDebited : null;
        keyPeriods[i] = res ? (res.keyPeriod ?? 0) : null;
        userPeriods[i] = res ? (res.userPeriod ?? 0) : null;
        actual[i] = actualUnits;
        records[i] = record;
      }
      const r = await call<{ quota: number[]; ids: number[] }>(commitSql, [
        ids,
        keys,
        users,
        units,
        debited,
        keyPeriods,
        userPeriods,
        actual,
        nowSeconds,
        ...usageArrays(records),
      ]);
      if (r.ids.length !== n) {
        throw new Error(`commitUsage: ${r.ids.length} of ${n} usage records inserted`);
      }
      return records.map((record, i) => ({ ...record, quota: r.quota[i]!, id: r.ids[i]! }));
    },
  };
}
