/** Quota reservations, settlements and usage of the SQLite store. Internal to this package. */
import { randomUUID } from "node:crypto";
import type {
  NewUsageRecord,
  Reservation,
  ReservationMeta,
  ReserveResult,
  RollupQuery,
  Settlement,
  UsageCommit,
  UsageQuery,
  UsageRecord,
  UsageRollup,
  UsageStat,
} from "@tokenpool/core";
import {
  addToRollup,
  assertRefill,
  assertUnits,
  emptyRollup,
  type KeyRow,
  type ReservationDbRow,
  type RollupRow,
  recoveredRecord,
  reservationFromRow,
  reservationParams,
  reservationRow,
  rollupFromRow,
  rollupKey,
  rollupParams,
  type StoreLedger,
  settleAmounts,
  usageFromRow,
  usageParams,
} from "@tokenpool/core/store-kernel";
import type { ChangeFeed } from "./change-feed.js";
import { type QueryShapes, type Statements, Where } from "./statements.js";

/**
 * The ids a key name or a username was recorded with (`usage_key_names`, `usage_user_names`):
 * their filters read the id's index. Absent when the query does not filter by that name (or
 * filters by `""`, which no id carries).
 */
interface NameIds {
  keyIds?: readonly number[];
  userIds?: readonly number[];
}

/** The id the name tables hold for a record without a key (or without an owner). */
const NO_ID = -1;

/**
 * `col = ?` for one id, `col IN (?, ...)` for several, with `col IS NULL` for {@link NO_ID};
 * the parameters are the ids other than it.
 */
function idsIn(col: string, ids: readonly number[]): [string, number[]] {
  const real = ids.filter((id) => id !== NO_ID);
  const cond =
    real.length === 0
      ? "0"
      : real.length === 1
        ? `${col} = ?`
        : `${col} IN (${real.map(() => "?").join(", ")})`;
  return [real.length < ids.length ? `(${col} IS NULL OR ${cond})` : cond, real];
}

/**
 * The filters of a usage query as SQL: the table with the index to read and the WHERE clause,
 * with the reference semantics of `usageMatches`. The names hold '' when absent, so `""` finds
 * the records without a name too. `success` is a literal, not a parameter, so that the partial
 * index of failures applies.
 *
 * Every filter's index is (column, timestamp): it selects the matches in the page's order (then
 * by rowid, the id), and counts them without reading the table. A key name or a username has no
 * index of its own (one per record would cost the proxy path as much as the key's and the
 * owner's together): it reads the index of the ids it was recorded with (`names`), and checks
 * the name row by row. With several filters, the index of the one that selects the fewest
 * records in a typical gateway is read and the others checked row by row. That ranking is fixed
 * (INDEXED BY) rather than left to the planner: without statistics all these indexes look alike
 * to it (it read an 80 % group's index for a 1 % user's records), and the statistics a bounded
 * ANALYZE gathers on a million rows tell them apart no better. A key's records are a subset of
 * its owner's; key names repeat across owners; credentials and models are shared by everyone;
 * failures are a few per cent; a group, or a missing name, can be most records.
 */
function usageSql(q: UsageQuery, names: NameIds = {}): { table: string; where: Where } {
  const { keyIds, userIds } = names;
  const [keySql, keyParams] = idsIn("key_id", keyIds ?? []);
  const [userSql, userParams] = idsIn("user_id", userIds ?? []);
  // A name recorded without an id (a record of no key) is found by a scan, not the id's index.
  const keyIndexed = keyIds !== undefined && !keyIds.includes(NO_ID);
  const userIndexed = userIds !== undefined && !userIds.includes(NO_ID);
  const where = new Where()
    .and(q.from !== undefined, "timestamp >= ?", q.from)
    .and(q.to !== undefined, "timestamp < ?", q.to)
    .and(q.keyId !== undefined, "key_id = ?", q.keyId)
    .and(q.userId !== undefined, "user_id = ?", q.userId)
    .and(keyIds !== undefined, keySql, ...keyParams)
    .and(userIds !== undefined, userSql, ...userParams)
    .and(q.model !== undefined, "model = ?", q.model)
    .and(q.keyName !== undefined, "key_name = ?", q.keyName)
    .and(q.username !== undefined, "username = ?", q.username)
    .and(q.credentialId !== undefined, "credential_id = ?", q.credentialId)
    .and(q.group !== undefined, "usage_group = ?", q.group)
    .and(q.success !== undefined, q.success ? "success = 1" : "success = 0");
  const ranked: [applies: boolean, index: string][] = [
    [q.keyId !== undefined, "key_id"],
    [q.userId !== undefined, "user_id"],
    [userIndexed, "user_id"],
    [keyIndexed, "key_id"],
    [q.credentialId !== undefined, "credential_id"],
    [q.model !== undefined, "model"],
    [q.success === false, "failures"],
    [q.group !== undefined, "group"],
  ];
  const index = ranked.find(([applies]) => applies)?.[1];
  // Without an equality the planner's choice stands: the timestamp index (range or order).
  const table = index ? `usage_records INDEXED BY usage_records_${index}` : "usage_records";
  return { table, where };
}

/** Bound of the (name, id) pairs a ledger remembers having written. */
const NAMES_SEEN_MAX = 100_000;

/** What the ledger needs of the store. */
export interface LedgerContext {
  s: Statements;
  immediate: <T>(fn: () => T) => T;
  /** Runs a write of keys or users whose change other processes hear of (the change feed). */
  mutate: ChangeFeed["mutate"];
  shapes: QueryShapes;
}

/** A user's balance and refill period, as the ledger reads them. */
interface Balance {
  quota: number;
  quota_period: number;
}

/** A key's balance and refill period. */
interface KeyBalance {
  remain_quota: number;
  quota_period: number;
}

/** The quota and usage steps of the Store contract, plus `flush` for the reservations still queued. */
export type Ledger = StoreLedger & {
  /** `Store.reservationUnits`: this store shares reservations (`quotaShares`). */
  reservationUnits(id: string): Promise<number | null>;
  /** Answers the reservations asked for but not yet run (before the database closes). */
  flush(): void;
};

/**
 * The ledger: quota reservations (group-committed per event-loop turn), settlements, usage
 * records with their roll-ups and the recovery of expired reservations, each one transaction.
 */
export function ledger({ s, immediate, mutate, shapes }: LedgerContext): Ledger {
  /**
   * One reservation inside the caller's transaction: the guarded debit and the durable
   * reservation row commit together, so a process that dies leaves a row to recover.
   */
  const reserveIn = (keyId: number, units: number, meta?: ReservationMeta): ReserveResult => {
    // The common case, a limited key without an owner, is one guarded UPDATE; every other case
    // (owner, unlimited, refusal and its reason) takes the full path below.
    const keyPeriod = s.reserveFast.get(units, keyId, units) as number | undefined;
    const result: ReserveResult =
      keyPeriod !== undefined
        ? {
            ok: true,
            reservation: {
              id: randomUUID(),
              keyId,
              userId: null,
              units,
              keyDebited: true,
              keyPeriod,
              userPeriod: 0,
            },
          }
        : reserveFull(keyId, units);
    if (result.ok) {
      s.insertReservation.run(
        reservationParams(reservationRow(result.reservation, meta, Date.now())),
      );
    }
    return result;
  };

  /**
   * Group commit: reservations asked for in the same event-loop turn run in one BEGIN IMMEDIATE
   * transaction, one after the other, each with its own guarded update, so each is exactly as
   * atomic as alone; only the commit (the WAL write, the locks) is shared. Under concurrency this
   * turns one write transaction per request into one per loop turn.
   */
  let reserveQueue: {
    keyId: number;
    units: number;
    meta: ReservationMeta | undefined;
    resolve: (r: ReserveResult) => void;
    reject: (e: unknown) => void;
  }[] = [];
  const flushReserves = () => {
    const batch = reserveQueue;
    reserveQueue = [];
    let results: ReserveResult[];
    try {
      results = immediate(() => batch.map((r) => reserveIn(r.keyId, r.units, r.meta)));
    } catch (error) {
      for (const r of batch) r.reject(error);
      return;
    }
    for (let i = 0; i < batch.length; i++) batch[i]!.resolve(results[i]!);
  };
  const reserve = (
    keyId: number,
    units: number,
    meta: ReservationMeta | undefined,
  ): Promise<ReserveResult> =>
    new Promise((resolve, reject) => {
      if (reserveQueue.push({ keyId, units, meta, resolve, reject }) === 1)
        setImmediate(flushReserves);
    });

  const reserveFull = (keyId: number, units: number): ReserveResult => {
    {
      const key = s.keyQuota.get(keyId) as
        | (Pick<KeyRow, "user_id" | "remain_quota" | "unlimited_quota"> & { quota_period: number })
        | undefined;
      if (!key) return { ok: false, reason: "key_not_found" };
      const debitKey = key.unlimited_quota === 0;
      if (debitKey && key.remain_quota < units)
        return { ok: false, reason: "key_quota", inFlight: s.keyInFlight.get(keyId) as number };
      const user =
        key.user_id === null ? undefined : (s.userBalance.get(key.user_id) as Balance | undefined);
      const userQuota = user?.quota;
      if (userQuota !== undefined && userQuota < units)
        return {
          ok: false,
          reason: "user_quota",
          inFlight: s.userInFlight.get(key.user_id) as number,
        };
      // Guarded debits: the WHERE clause re-checks the balance the SELECT above saw.
      if (debitKey && s.debitKey.run(units, keyId, units).changes !== 1) {
        throw new Error(`reserveQuota: key ${keyId} changed inside its transaction`);
      }
      if (userQuota !== undefined && s.debitUser.run(units, key.user_id, units).changes !== 1) {
        throw new Error(`reserveQuota: user ${key.user_id} changed inside its transaction`);
      }
      const reservation: Reservation = {
        id: randomUUID(),
        keyId,
        userId: userQuota === undefined ? null : key.user_id,
        units,
        keyDebited: debitKey,
        keyPeriod: key.quota_period,
        userPeriod: user ? user.quota_period : 0,
      };
      return { ok: true, reservation };
    }
  };

  /** Settles one whole reservation, in its own transaction. */
  const settle = (res: Reservation, actualUnits: number, nowSeconds: number): Settlement =>
    immediate(() => {
      const one = new BatchSettlement(s);
      const charged = one.settle(res, undefined, actualUnits);
      one.write(nowSeconds);
      return { charged };
    });

  /**
   * The (name, id) pairs this process wrote to the name tables (or found there): a record of a
   * known pair costs no statement. Emptied when it grows past its bound.
   */
  const namesSeen = new Set<string>();
  /** Pairs written by the transaction in progress: seen once it commits. */
  let namesWritten: string[] = [];
  const noteName = (kind: "k" | "u", name: string | undefined, id: number | null) => {
    if (!name) return;
    const seen = `${kind}${id ?? NO_ID}\u0000${name}`;
    if (namesSeen.has(seen)) return;
    (kind === "k" ? s.noteKeyName : s.noteUsername).run(name, id ?? NO_ID);
    namesWritten.push(seen);
  };
  /** Runs a transaction that records usage; its name pairs count as seen once it committed. */
  const recording = <T>(fn: () => T): T => {
    namesWritten = [];
    try {
      const out = immediate(fn);
      if (namesSeen.size + namesWritten.length > NAMES_SEEN_MAX) namesSeen.clear();
      for (const seen of namesWritten) namesSeen.add(seen);
      return out;
    } finally {
      namesWritten = [];
    }
  };
  /**
   * The ids a query's key name and username were recorded with; null when a name was never
   * recorded (nothing matches).
   */
  const nameIds = (q: UsageQuery): NameIds | null => {
    const names: NameIds = {};
    if (q.keyName) {
      names.keyIds = s.keyIdsOfName.all(q.keyName) as number[];
      if (names.keyIds.length === 0) return null;
    }
    if (q.username) {
      names.userIds = s.userIdsOfName.all(q.username) as number[];
      if (names.userIds.length === 0) return null;
    }
    return names;
  };

  /** Appends records and bumps their roll-ups inside the caller's transaction. */
  const recordIn = (records: NewUsageRecord[]): UsageRecord[] => {
    {
      const out: UsageRecord[] = new Array(records.length);
      const buckets = new Map<string, UsageRollup>();
      for (let i = 0; i < records.length; i++) {
        const r = records[i]!;
        const id = Number(s.insertUsage.run(usageParams(r)).lastInsertRowid);
        noteName("k", r.keyName, r.keyId);
        noteName("u", r.username, r.userId);
        // The caller's records are copies of its own: the id is added in place.
        (r as UsageRecord).id = id;
        out[i] = r as UsageRecord;
        // Sum the batch per bucket first: one upsert per bucket, not per record.
        const k = rollupKey(r);
        let bucket = buckets.get(k);
        if (!bucket) {
          bucket = emptyRollup(r);
          buckets.set(k, bucket);
        }
        addToRollup(bucket, r);
      }
      for (const bucket of buckets.values()) s.bumpRollup.run(rollupParams(bucket));
      return out;
    }
  };
  const commit = (commits: UsageCommit[], nowSeconds: number): UsageRecord[] =>
    recording(() => {
      const batch = new BatchSettlement(s);
      const records = commits.map((c) => ({
        ...c.record,
        quota: !c.reservation ? c.actualUnits : batch.settle(c.reservation, c.share, c.actualUnits),
      }));
      batch.write(nowSeconds);
      return recordIn(records);
    });

  const recover = (nowMs: number, limit: number): UsageRecord[] =>
    recording(() => {
      const rows = (s.expiredReservations.all(nowMs, limit) as ReservationDbRow[]).map(
        reservationFromRow,
      );
      const settlements = new BatchSettlement(s);
      for (const row of rows) settlements.settle(row, undefined, row.units);
      settlements.write(Math.floor(nowMs / 1000));
      return recordIn(rows.map(recoveredRecord));
    });

  return {
    usage: {
      async list(q: UsageQuery = {}) {
        const names = nameIds(q);
        if (!names) return { items: [], total: 0 };
        const { table, where } = usageSql(q, names);
        // Successes are most records: counting them would read every row for its flag, while
        // all matches minus the failures reads two indexes only.
        const count = (sql: ReturnType<typeof usageSql>) => shapes.count(sql.table, sql.where);
        const total =
          q.success === true
            ? count(usageSql({ ...q, success: undefined }, names)) -
              count(usageSql({ ...q, success: false }, names))
            : shapes.count(table, where);
        const items = shapes.rows(
          table,
          where,
          "timestamp DESC, id DESC",
          q.offset ?? 0,
          q.limit ?? 100,
          usageFromRow,
        );
        return { items, total };
      },
      async stat(q: UsageQuery = {}) {
        const names = nameIds(q);
        if (!names) return { requests: 0, quota: 0, totalTokens: 0 };
        const { table, where } = usageSql(q, names);
        return shapes
          .of(
            `SELECT COUNT(*) AS requests, COALESCE(SUM(quota), 0) AS quota, COALESCE(SUM(total_tokens), 0) AS totalTokens FROM ${table}${where.clause}`,
          )
          .get(...where.params) as UsageStat;
      },
      async rollups(q: RollupQuery = {}) {
        const where = new Where()
          .and(q.fromHour !== undefined, "hour >= ?", q.fromHour)
          .and(q.toHour !== undefined, "hour < ?", q.toHour)
          .and(q.keyId !== undefined, "key_id = ?", q.keyId)
          .and(q.userId !== undefined, "user_id = ?", q.userId)
          .and(q.credentialId !== undefined, "credential_id = ?", q.credentialId);
        const rows = shapes
          .of(
            `SELECT * FROM usage_rollups${where.clause} ORDER BY hour, route, model, key_id, user_id, credential_id`,
          )
          .all(...where.params) as RollupRow[];
        return rows.map(rollupFromRow);
      },
      async prune(before, keep) {
        return immediate(() => {
          let n = s.pruneUsage.run(before).changes;
          if (keep !== undefined) {
            // The newest detail beyond the `keep` newest; it and every older one go.
            const edge = s.usageKeepEdge.get(Math.max(0, keep)) as
              | { timestamp: number; id: number }
              | undefined;
            if (edge) n += s.pruneUsageUpTo.run(edge.timestamp, edge.timestamp, edge.id).changes;
          }
          return n;
        });
      },
    },

    async reserveQuota(keyId, units, meta) {
      assertUnits(units);
      return reserve(keyId, units, meta);
    },

    async renewReservations(ids, expiresAt) {
      if (ids.length === 0) return 0;
      return s.renewReservations.run(expiresAt, JSON.stringify(ids)).changes;
    },

    async recoverReservations(nowMs, limit) {
      return limit > 0 ? recover(nowMs, limit) : [];
    },

    async refillQuota(target, id, period, amount) {
      assertRefill(target, period, amount);
      return mutate((note) => {
        const refill = target === "key" ? s.refillKey : s.refillUser;
        if (refill.run(amount, period, id, period).changes === 0) return false;
        note(target === "key" ? "keys" : "users", id, "upsert");
        return true;
      });
    },

    async settleQuota(reservation, actualUnits, nowSeconds) {
      assertUnits(actualUnits, "actualUnits");
      return settle(reservation, actualUnits, nowSeconds);
    },

    async commitUsage(commits, nowSeconds) {
      // Checked before the transaction: a bad commit rejects the whole batch.
      for (const c of commits) {
        assertUnits(c.actualUnits, "actualUnits");
        if (c.share !== undefined) assertUnits(c.share, "share");
      }
      return commits.length ? commit(commits, nowSeconds) : [];
    },

    async reservationUnits(id) {
      return (s.reservationUnits.get(id) as number | undefined) ?? null;
    },

    flush() {
      if (reserveQueue.length > 0) flushReserves();
    },
  };
}

/** A key's or an owner's balance as a batch's settlements leave it (see {@link BatchSettlement}). */
interface BalanceState {
  /** The balance (`remain_quota` or `quota`), with the batch's deltas applied. */
  balance: number;
  period: number;
  /** What the batch adds to the balance and to `used_quota`. */
  delta: number;
  used: number;
  /** Settled at least once (written with its deltas); else only touched, or not at all. */
  settled: boolean;
  touched: boolean;
}

/**
 * Settlements inside the caller's transaction (a `commitUsage` batch, a `settleQuota`, a
 * recovery): each row (a reservation, a key, an owner) is read once, the settlements are
 * applied to it in memory one after the other in order, and each row is written once at the
 * end. The result is what settling them one by one gives (nothing else writes these rows inside
 * the transaction), with one read and one write per row rather than two statements of each per
 * settlement: a batch of 256 requests sharing a few quota blocks of one key makes a dozen
 * statements for its settlements, not a thousand.
 *
 * A settlement charges the actual cost, the extra beyond what was reserved capped by what the
 * debited key and the owner still have (`settleAmounts`); a balance whose refill period is no
 * longer the reservation's was refilled since the debit and is neither settled nor a cap (a
 * key's is only touched: `accessed_time`).
 */
class BatchSettlement {
  readonly #s: Statements;
  /** Units left per reservation row (undefined: no row, or removed by this batch). */
  readonly #left = new Map<string, number | undefined>();
  /** Rows this batch removes, and the units it takes from the rows it keeps. */
  readonly #removed = new Set<string>();
  readonly #shrunk = new Map<string, number>();
  readonly #keys = new Map<number, BalanceState | undefined>();
  readonly #users = new Map<number, BalanceState | undefined>();

  constructor(s: Statements) {
    this.#s = s;
  }

  /**
   * Settles a whole reservation (`share` undefined) or a share of it; returns what is charged
   * (0 when the row is gone: recovered already).
   */
  settle(res: Reservation, share: number | undefined, actualUnits: number): number {
    const left = this.#unitsLeft(res.id);
    if (left === undefined) return 0;
    if (share === undefined || share >= left) {
      // The whole row, or its rest: removed, settled for what it held.
      this.#left.set(res.id, undefined);
      this.#removed.add(res.id);
      return this.#charge(res, share === undefined ? res.units : left, actualUnits);
    }
    this.#left.set(res.id, left - share);
    this.#shrunk.set(res.id, (this.#shrunk.get(res.id) ?? 0) + share);
    return this.#charge(res, share, actualUnits);
  }

  /** Writes every row the batch changed. */
  write(nowSeconds: number): void {
    const s = this.#s;
    for (const id of this.#removed) s.deleteReservation.run(id);
    for (const [id, units] of this.#shrunk) {
      if (!this.#removed.has(id)) s.shrinkReservation.run(units, id);
    }
    for (const [id, key] of this.#keys) {
      if (key?.settled) s.settleKey.run(key.delta, key.used, nowSeconds, id);
      else if (key?.touched) s.touchKey.run(nowSeconds, id);
    }
    for (const [id, user] of this.#users) {
      if (user?.settled) s.settleUser.run(user.delta, user.used, id);
    }
  }

  #unitsLeft(id: string): number | undefined {
    if (this.#left.has(id)) return this.#left.get(id);
    const units = this.#s.reservationUnits.get(id) as number | undefined;
    this.#left.set(id, units);
    return units;
  }

  #balance(
    cache: Map<number, BalanceState | undefined>,
    id: number,
    read: Statements["keyBalance"],
  ): BalanceState | undefined {
    if (cache.has(id)) return cache.get(id);
    const row = read.get(id) as Partial<Balance & KeyBalance> | undefined;
    const state =
      row === undefined
        ? undefined
        : {
            balance: row.remain_quota ?? row.quota ?? 0,
            period: row.quota_period ?? 0,
            delta: 0,
            used: 0,
            settled: false,
            touched: false,
          };
    cache.set(id, state);
    return state;
  }

  /** Charges `units` of `res` to `actualUnits` on the batch's view of the key and the owner. */
  #charge(res: Reservation, units: number, actualUnits: number): number {
    const s = this.#s;
    const key = this.#balance(this.#keys, res.keyId, s.keyBalance);
    const user =
      res.userId === null ? undefined : this.#balance(this.#users, res.userId, s.userBalance);
    // A balance refilled since the debit belongs to a later period: neither settled nor a cap.
    const keyOpen = key !== undefined && key.period === (res.keyPeriod ?? 0);
    const userOpen = user !== undefined && user.period === (res.userPeriod ?? 0);
    const { charged, delta } = settleAmounts(
      units,
      actualUnits,
      keyOpen && res.keyDebited ? key.balance : undefined,
      userOpen ? user.balance : undefined,
    );
    if (keyOpen) {
      const d = res.keyDebited ? delta : 0;
      key.balance += d;
      key.delta += d;
      key.used += charged;
      key.settled = true;
    } else if (key) key.touched = true;
    if (userOpen) {
      user.balance += delta;
      user.delta += delta;
      user.used += charged;
      user.settled = true;
    }
    return charged;
  }
}
