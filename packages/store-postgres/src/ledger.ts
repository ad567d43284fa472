/**
 * Quota reservations, settlements, refills and usage of the PostgreSQL store. Internal to this
 * package.
 *
 * Several gateway instances share the database, so every step is one statement or one
 * transaction that takes row locks before it reads what it decides on. Transactions that lock
 * several rows take them in one global order, so that none waits for another in a cycle:
 * reservation rows (deleted first; recovery skips the locked ones and never waits for them),
 * then keys in ascending id, then users in ascending id, then roll-up rows in one sorted order.
 */
import { randomUUID } from "node:crypto";
import type { NewUsageRecord, Reservation, ReservationMeta, ReserveResult } from "@tokenpool/core";
import {
  assertRefill,
  assertUnits,
  type ReservationDbRow,
  type ReservationRow,
  recoveredRecord,
  reservationFromRow,
  reservationParams,
  reservationRow,
  type StoreLedger,
  settleAmounts,
} from "@tokenpool/core/store-kernel";
import type { PgContext, Tx } from "./context.js";
import { usageCollection, usageWriter } from "./usage.js";

/** A key's balance as settlement reads it (locked). */
interface KeyBalance {
  id: number;
  remain_quota: number;
  quota_period: number;
}

/** A user's balance as settlement reads it (locked). */
interface UserBalance {
  id: number;
  quota: number;
  quota_period: number;
}

/** One settlement of a batch: a reservation whose row this transaction deleted, and its cost. */
interface Due {
  reservation: Reservation;
  actualUnits: number;
}

const RESERVATION_COLUMNS =
  "id, key_id, user_id, units, key_debited, expires_at, owner, request_id, route, model, timestamp, key_period, user_period";

/** The ids, distinct and ascending: the order in which rows are locked. */
const ascending = (ids: Iterable<number>): number[] => [...new Set(ids)].sort((a, b) => a - b);

/**
 * The ledger: quota reservations, settlements, usage records with their roll-ups, refills and
 * the recovery of expired reservations, each one statement or one transaction.
 */
export function ledger(ctx: PgContext): StoreLedger {
  const { t } = ctx;
  const usage = usageWriter(t);

  // The common case, a limited key without an owner, in one statement: the guarded debit
  // (re-checked on the newest row version under concurrent updates) and the durable reservation
  // row commit together, and nothing is written when the key does not qualify.
  const reserveFastSql = `WITH k AS (
      UPDATE ${t.keys} SET remain_quota = remain_quota - $2
      WHERE id = $1 AND user_id IS NULL AND unlimited_quota = 0 AND remain_quota >= $2
      RETURNING COALESCE(quota_period, 0) AS quota_period
    )
    INSERT INTO ${t.reservations} (${RESERVATION_COLUMNS})
    SELECT $3::text, $1::bigint, NULL, $2::bigint, 1, $4::bigint, $5::text, $6::text, $7::text,
      $8::text, $9::bigint, k.quota_period, 0 FROM k
    RETURNING key_period`;

  // The debits of a granted reservation (rows locked already) and its row, in one statement.
  const reserveWriteSql = `WITH k AS (
      UPDATE ${t.keys} SET remain_quota = remain_quota - $4 WHERE id = $2 AND $5::smallint = 1
    ), u AS (
      UPDATE ${t.users} SET quota = quota - $4 WHERE id = $3
    )
    INSERT INTO ${t.reservations} (${RESERVATION_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)`;

  /** The full path: key and owner locked (in that order), checked, debited both or neither. */
  const reserveLocked = (
    keyId: number,
    units: number,
    meta: ReservationMeta | undefined,
  ): Promise<ReserveResult> =>
    ctx.tx(async (tx) => {
      const key = await tx.one<{
        user_id: number | null;
        remain_quota: number;
        unlimited_quota: number;
        quota_period: number;
      }>(
        `SELECT user_id, remain_quota, unlimited_quota, COALESCE(quota_period, 0) AS quota_period
         FROM ${t.keys} WHERE id = $1 FOR UPDATE`,
        [keyId],
      );
      if (!key) return { ok: false, reason: "key_not_found" };
      const debitKey = key.unlimited_quota === 0;
      if (debitKey && key.remain_quota < units) {
        return { ok: false, reason: "key_quota", inFlight: await inFlight(tx, "key_id", keyId) };
      }
      const user =
        key.user_id === null
          ? undefined
          : await tx.one<{ quota: number; quota_period: number }>(
              `SELECT quota, COALESCE(quota_period, 0) AS quota_period
               FROM ${t.users} WHERE id = $1 FOR UPDATE`,
              [key.user_id],
            );
      if (user && user.quota < units) {
        return {
          ok: false,
          reason: "user_quota",
          inFlight: await inFlight(tx, "user_id", key.user_id!),
        };
      }
      const reservation: Reservation = {
        id: randomUUID(),
        keyId,
        userId: user ? key.user_id : null,
        units,
        keyDebited: debitKey,
        keyPeriod: key.quota_period,
        userPeriod: user ? user.quota_period : 0,
      };
      await tx.run(
        reserveWriteSql,
        reservationParams(reservationRow(reservation, meta, Date.now())),
      );
      return { ok: true, reservation };
    });

  /** Units held by the unsettled reservation rows of a key (`key_id`) or an owner (`user_id`). */
  const inFlight = async (tx: Tx, column: "key_id" | "user_id", id: number): Promise<number> =>
    (
      await tx.one<{ n: number }>(
        `SELECT COALESCE(SUM(units), 0) AS n FROM ${t.reservations} WHERE ${column} = $1`,
        [id],
      )
    )?.n ?? 0;

  /**
   * Settles, inside the caller's transaction, reservations whose rows it has just deleted (so no
   * other settlement or recovery can apply them): locks their keys, then their owners, each in
   * ascending id, applies each settlement in order on the running balances (as `settleQuota`
   * would one after the other) and writes every balance once. Returns the amounts charged.
   */
  const settleIn = async (tx: Tx, due: Due[], nowSeconds: number): Promise<number[]> => {
    if (due.length === 0) return [];
    const keyIds = ascending(due.map((d) => d.reservation.keyId));
    const userIds = ascending(
      due.flatMap((d) => (d.reservation.userId === null ? [] : [d.reservation.userId])),
    );
    // ORDER BY runs before the row locks are taken: they are taken in ascending id.
    const keys = new Map(
      (
        await tx.rows<KeyBalance>(
          `SELECT id, remain_quota, COALESCE(quota_period, 0) AS quota_period FROM ${t.keys}
           WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE`,
          [keyIds],
        )
      ).map((k) => [k.id, k]),
    );
    const users = new Map(
      userIds.length === 0
        ? []
        : (
            await tx.rows<UserBalance>(
              `SELECT id, quota, COALESCE(quota_period, 0) AS quota_period FROM ${t.users}
               WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE`,
              [userIds],
            )
          ).map((u) => [u.id, u]),
    );
    const keyDelta = new Map<number, { delta: number; used: number }>();
    const userDelta = new Map<number, { delta: number; used: number }>();
    for (const id of keys.keys()) keyDelta.set(id, { delta: 0, used: 0 });
    const charged = due.map(({ reservation: res, actualUnits }) => {
      const key = keys.get(res.keyId);
      const user = res.userId === null ? undefined : users.get(res.userId);
      // A balance refilled since the debit belongs to a later period: neither settled nor a cap.
      const keyOpen = key !== undefined && key.quota_period === (res.keyPeriod ?? 0);
      const userOpen = user !== undefined && user.quota_period === (res.userPeriod ?? 0);
      const { charged, delta } = settleAmounts(
        res.units,
        actualUnits,
        keyOpen && res.keyDebited ? key.remain_quota : undefined,
        userOpen ? user.quota : undefined,
      );
      if (keyOpen) {
        const d = keyDelta.get(key.id)!;
        if (res.keyDebited) {
          key.remain_quota += delta;
          d.delta += delta;
        }
        d.used += charged;
      }
      if (userOpen) {
        user.quota += delta;
        const d = userDelta.get(user.id) ?? { delta: 0, used: 0 };
        d.delta += delta;
        d.used += charged;
        userDelta.set(user.id, d);
      }
      return charged;
    });
    // Every key still there is stamped (a closed period's too); increments, on locked rows.
    if (keyDelta.size > 0) {
      const ids = [...keyDelta.keys()];
      await tx.run(
        `UPDATE ${t.keys} AS k SET remain_quota = k.remain_quota + v.delta,
           used_quota = k.used_quota + v.used, accessed_time = $4
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, delta, used)
         WHERE k.id = v.id`,
        [
          ids,
          ids.map((id) => keyDelta.get(id)!.delta),
          ids.map((id) => keyDelta.get(id)!.used),
          nowSeconds,
        ],
      );
    }
    if (userDelta.size > 0) {
      const ids = [...userDelta.keys()];
      await tx.run(
        `UPDATE ${t.users} AS u SET quota = u.quota + v.delta, used_quota = u.used_quota + v.used
         FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, delta, used)
         WHERE u.id = v.id`,
        [ids, ids.map((id) => userDelta.get(id)!.delta), ids.map((id) => userDelta.get(id)!.used)],
      );
    }
    return charged;
  };

  return {
    usage: usageCollection(ctx),

    async reserveQuota(keyId, units, meta) {
      assertUnits(units);
      const row = reservationRow(
        { id: randomUUID(), keyId, userId: null, units, keyDebited: true },
        meta,
        Date.now(),
      );
      const fast = await ctx.one<{ key_period: number }>(reserveFastSql, [
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
      if (fast) {
        return {
          ok: true,
          reservation: {
            id: row.id,
            keyId,
            userId: null,
            units,
            keyDebited: true,
            keyPeriod: fast.key_period,
            userPeriod: 0,
          },
        };
      }
      // An owner, an unlimited key, too little left or no such key: the full path says which.
      return reserveLocked(keyId, units, meta);
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
      return ctx.tx(async (tx) => {
        // Exactly once across callers and instances: each expired row is claimed by the one
        // transaction that locks and deletes it; rows another caller (or a settlement) holds are
        // skipped, not waited for, and a row a settlement deleted first is no longer there.
        const claimed = await tx.rows<ReservationDbRow>(
          `DELETE FROM ${t.reservations} WHERE id IN (
             SELECT id FROM ${t.reservations} WHERE expires_at <= $1
             ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED
           ) RETURNING *`,
          // LIMIT NULL: no limit (an Infinity `limit`).
          [nowMs, Number.isFinite(limit) ? Math.floor(limit) : null],
        );
        if (claimed.length === 0) return [];
        const rows: ReservationRow[] = claimed
          .map(reservationFromRow)
          .sort((a, b) => a.expiresAt - b.expiresAt || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
        // Charged in full: the request may have been answered.
        await settleIn(
          tx,
          rows.map((row) => ({ reservation: row, actualUnits: row.units })),
          Math.floor(nowMs / 1000),
        );
        return usage.append(tx, rows.map(recoveredRecord));
      });
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
      return ctx.tx(async (tx) => {
        // The row is gone when recoverReservations already charged it in full: nothing more.
        const deleted = await tx.run(`DELETE FROM ${t.reservations} WHERE id = $1`, [
          reservation.id,
        ]);
        if (deleted.rowCount !== 1) return { charged: 0 };
        const [charged] = await settleIn(tx, [{ reservation, actualUnits }], nowSeconds);
        return { charged: charged! };
      });
    },

    async commitUsage(commits, nowSeconds) {
      for (const c of commits) assertUnits(c.actualUnits, "actualUnits");
      if (commits.length === 0) return [];
      return ctx.tx(async (tx) => {
        // Every reservation row of the batch first (before any key is locked): a row gone was
        // recovered, and its commit is charged 0.
        const ids = commits.flatMap((c) => (c.reservation ? [c.reservation.id] : []));
        const live = new Set(
          ids.length === 0
            ? []
            : (
                await tx.rows<{ id: string }>(
                  `DELETE FROM ${t.reservations} WHERE id = ANY($1::text[]) RETURNING id`,
                  [ids],
                )
              ).map((r) => r.id),
        );
        const due: Due[] = [];
        const settled: (number | undefined)[] = commits.map((c) => {
          // A reservation listed twice settles once, as two settleQuota calls would.
          if (!c.reservation || !live.delete(c.reservation.id)) return undefined;
          due.push({ reservation: c.reservation, actualUnits: c.actualUnits });
          return due.length - 1;
        });
        const charged = await settleIn(tx, due, nowSeconds);
        const records: NewUsageRecord[] = commits.map((c, i) => {
          const d = settled[i];
          const quota = d !== undefined ? charged[d]! : c.reservation ? 0 : c.actualUnits;
          return { ...c.record, quota };
        });
        return usage.append(tx, records);
      });
    },
  };
}
