import { randomUUID } from "node:crypto";
import {
  type ApiKeyPatch,
  type ApiKeyRecord,
  addToRollup,
  assertUnits,
  type CredentialPatch,
  type CredentialRecord,
  emptyRollup,
  type KeyQuery,
  materializeCredential,
  type NewApiKey,
  type NewCredential,
  type NewUsageRecord,
  type NewUser,
  type Page,
  type Reservation,
  type ReservationMeta,
  type ReserveResult,
  type RollupQuery,
  recoveredRecord,
  reservationRow,
  rollupKey,
  type Settlement,
  type Store,
  type StoreChange,
  type UsageCommit,
  type UsageQuery,
  type UsageRecord,
  type UsageRollup,
  type UserPatch,
  type UserRecord,
} from "@tokenpool/core";
import { settleAmounts } from "@tokenpool/core/store-kernel";
import Database from "better-sqlite3";
import { migrate } from "./migrations.js";
import {
  type CredentialRow,
  credentialFromRow,
  credentialParams,
  type KeyRow,
  keyFromRow,
  keyParams,
  type ReservationDbRow,
  type RollupRow,
  reservationFromRow,
  reservationParams,
  rollupFromRow,
  rollupParams,
  type UserRow,
  usageFromRow,
  usageParams,
  userFromRow,
  userParams,
} from "./rows.js";

/** Options shared by both ways of opening a {@link sqliteStore}. */
export interface SqliteStoreBaseOptions {
  /**
   * How often `watch()` looks for changes committed by other processes (ms). The check is one
   * `PRAGMA data_version` while nothing changed, and runs only while there are listeners.
   * @default 200
   */
  pollIntervalMs?: number;
  /**
   * How long a write waits for another process's write lock before failing with SQLITE_BUSY (ms).
   * @default 5000
   */
  busyTimeoutMs?: number;
}

/**
 * Options of {@link sqliteStore}: a database file to open (`":memory:"` for a private
 * in-memory database), or an already open better-sqlite3 `Database`.
 */
export type SqliteStoreOptions = SqliteStoreBaseOptions &
  (
    | {
        /** Path of the database file (created when missing), or `":memory:"`. */
        filename: string;
      }
    | {
        /**
         * An open better-sqlite3 database. The store configures it (WAL, pragmas, migrations,
         * a `tokenpool_lower` SQL function) and does not close it.
         */
        database: Database.Database;
      }
  );

type Collection = StoreChange["collection"];
type Note = (collection: Collection, id: string | number, op: StoreChange["op"]) => void;

interface ChangeRow {
  seq: number;
  collection: Collection;
  record_id: string | null;
  op: StoreChange["op"];
  origin_id: string;
}

const COLLECTIONS: readonly Collection[] = ["keys", "users", "credentials", "settings"];
/** Change rows older than this are pruned; a watcher further behind resynchronises. */
const CHANGE_RETENTION_MS = 10 * 60_000;
/** Pruning of change rows, expired kv entries and locks runs at most this often. */
const MAINTENANCE_INTERVAL_MS = 60_000;

const KEY_COLUMNS =
  "user_id, name, key_hash, key_cipher, key_hint, status, remain_quota, used_quota, unlimited_quota, expired_time, model_limits_enabled, model_limits, allow_ips, key_group, created_time, accessed_time";
const KEY_VALUES =
  "@userId, @name, @keyHash, @keyCipher, @keyHint, @status, @remainQuota, @usedQuota, @unlimitedQuota, @expiredTime, @modelLimitsEnabled, @modelLimits, @allowIps, @group, @createdTime, @accessedTime";
const USER_COLUMNS =
  "username, display_name, role, status, user_group, quota, used_quota, access_token_hash, created_time";
const USER_VALUES =
  "@username, @displayName, @role, @status, @group, @quota, @usedQuota, @accessTokenHash, @createdTime";
const CREDENTIAL_COLUMNS =
  "id, provider, kind, label, base_url, secret, proxy_url, project_ids, models, excluded_models, priority, weight, enabled, group_names, headers, state, created_at, updated_at";
const CREDENTIAL_VALUES =
  "@id, @provider, @kind, @label, @baseUrl, @secret, @proxyUrl, @projectIds, @models, @excludedModels, @priority, @weight, @enabled, @groups, @headers, @state, @createdAt, @updatedAt";

/** `a = @a, b = @b` for an UPDATE, from the INSERT column and value lists. */
const assignments = (columns: string, values: string, skip: string[] = []): string => {
  const vs = values.split(", ");
  return columns
    .split(", ")
    .map((c, i) => [c, vs[i]] as const)
    .filter(([c]) => !skip.includes(c))
    .map(([c, v]) => `${c} = ${v}`)
    .join(", ");
};

/** The patch without `undefined` values, which mean "not given" rather than "set to undefined". */
function given<T extends object>(patch: T): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Turns a UNIQUE constraint failure into an error that says what was duplicated. */
function rethrowDuplicate(err: unknown, message: string): never {
  if ((err as { code?: unknown } | null)?.code === "SQLITE_CONSTRAINT_UNIQUE") {
    throw new Error(message, { cause: err });
  }
  throw err;
}

/** Runs `fn`, retrying on SQLITE_BUSY/SQLITE_LOCKED with a short sleep until `timeoutMs`. */
function withBusyRetry<T>(fn: () => T, timeoutMs: number): T {
  const deadline = Date.now() + timeoutMs;
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    try {
      return fn();
    } catch (err) {
      const code = (err as { code?: string }).code ?? "";
      if (!code.startsWith("SQLITE_BUSY") && !code.startsWith("SQLITE_LOCKED")) throw err;
      if (Date.now() >= deadline) throw err;
      // Start-up only: a synchronous sleep keeps the constructor synchronous.
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait);
    }
  }
}

/**
 * A Store on SQLite through better-sqlite3: one file, WAL mode, numbered migrations applied at
 * open. Every atomic step of the contract is a single SQL statement or one `BEGIN IMMEDIATE`
 * transaction, so several processes can share the file: quota reservations never overdraw,
 * locks are exclusive and `watch()` reports other processes' changes (origin `remote`) by
 * polling a change table.
 *
 * better-sqlite3 is synchronous: every call runs to completion on the calling thread (waiting
 * up to `busyTimeoutMs` when another process holds the write lock).
 *
 * @example
 * ```ts
 * import { createGateway } from "@tokenpool/core";
 * import { sqliteStore } from "@tokenpool/store-sqlite";
 *
 * const gateway = createGateway({
 *   store: sqliteStore({ filename: "data/tokenpool.db" }),
 *   secret: process.env.TOKENPOOL_SECRET,
 * });
 * ```
 */
export function sqliteStore(options: SqliteStoreOptions): Store {
  const pollIntervalMs = options.pollIntervalMs ?? 200;
  const busyTimeoutMs = options.busyTimeoutMs ?? 5_000;
  const owned = !("database" in options);
  const db = "database" in options ? options.database : new Database(options.filename);

  try {
    // busy_timeout first: switching a fresh file to WAL and migrating both need the write lock.
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(busyTimeoutMs))}`);
    // Several processes opening a fresh file at once: SQLite can answer SQLITE_BUSY for the switch
    // to WAL (and the first schema write) without waiting through busy_timeout, because the lock
    // escalation would deadlock. Retry those two steps until the timeout.
    withBusyRetry(() => db.pragma("journal_mode = WAL"), busyTimeoutMs);
    db.pragma("synchronous = NORMAL");
    // Overwritten and deleted content is zeroed, not left in free space: once a gateway has
    // sealed the plaintext secrets of an earlier version (or rotated the server secret), no
    // copy of the old form stays readable in the file.
    db.pragma("secure_delete = ON");
    db.function("tokenpool_lower", { deterministic: true }, (v: unknown) =>
      typeof v === "string" ? v.toLowerCase() : v,
    );
    withBusyRetry(() => migrate(db), busyTimeoutMs);
  } catch (err) {
    if (owned) db.close();
    throw err;
  }

  // Only a file can be shared with other connections; an in-memory database needs no feed.
  const shared = !db.memory;
  const instanceId = randomUUID();
  const listeners = new Set<(change: StoreChange) => void>();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let lastSeq = 0;
  let lastDataVersion = -1;
  let lastMaintenance = 0;

  const s = {
    keyById: db.prepare("SELECT * FROM keys WHERE id = ?"),
    keyByHash: db.prepare("SELECT * FROM keys WHERE key_hash = ?"),
    insertKey: db.prepare(`INSERT INTO keys (${KEY_COLUMNS}) VALUES (${KEY_VALUES})`),
    updateKey: db.prepare(
      `UPDATE keys SET ${assignments(KEY_COLUMNS, KEY_VALUES, ["key_hash"])} WHERE id = @id`,
    ),
    deleteKey: db.prepare("DELETE FROM keys WHERE id = ?"),
    rekey: db.prepare("UPDATE keys SET key_hash = ?, key_cipher = ? WHERE id = ?"),

    userById: db.prepare("SELECT * FROM users WHERE id = ?"),
    userByName: db.prepare("SELECT * FROM users WHERE username = ?"),
    userByToken: db.prepare("SELECT * FROM users WHERE access_token_hash = ? ORDER BY id LIMIT 1"),
    insertUser: db.prepare(`INSERT INTO users (${USER_COLUMNS}) VALUES (${USER_VALUES})`),
    updateUser: db.prepare(
      `UPDATE users SET ${assignments(USER_COLUMNS, USER_VALUES)} WHERE id = @id`,
    ),
    deleteUser: db.prepare("DELETE FROM users WHERE id = ?"),

    credentialById: db.prepare(`SELECT ${CREDENTIAL_COLUMNS} FROM credentials WHERE id = ?`),
    credentials: db.prepare(`SELECT ${CREDENTIAL_COLUMNS} FROM credentials ORDER BY seq`),
    insertCredential: db.prepare(
      `INSERT INTO credentials (${CREDENTIAL_COLUMNS}) VALUES (${CREDENTIAL_VALUES})`,
    ),
    updateCredential: db.prepare(
      `UPDATE credentials SET ${assignments(CREDENTIAL_COLUMNS, CREDENTIAL_VALUES, ["id", "created_at"])} WHERE id = @id`,
    ),
    deleteCredential: db.prepare("DELETE FROM credentials WHERE id = ?"),

    keyQuota: db.prepare("SELECT user_id, remain_quota, unlimited_quota FROM keys WHERE id = ?"),
    keyRemain: db.prepare("SELECT remain_quota FROM keys WHERE id = ?").pluck(),
    userQuota: db.prepare("SELECT quota FROM users WHERE id = ?").pluck(),
    reserveFast: db.prepare(
      "UPDATE keys SET remain_quota = remain_quota - ? WHERE id = ? AND user_id IS NULL AND unlimited_quota = 0 AND remain_quota >= ?",
    ),
    debitKey: db.prepare(
      "UPDATE keys SET remain_quota = remain_quota - ? WHERE id = ? AND remain_quota >= ?",
    ),
    debitUser: db.prepare("UPDATE users SET quota = quota - ? WHERE id = ? AND quota >= ?"),
    settleKey: db.prepare(
      "UPDATE keys SET remain_quota = remain_quota + ?, used_quota = used_quota + ?, accessed_time = ? WHERE id = ?",
    ),
    settleUser: db.prepare(
      "UPDATE users SET quota = quota + ?, used_quota = used_quota + ? WHERE id = ?",
    ),

    insertUsage: db.prepare(
      `INSERT INTO usage_records (timestamp, request_id, key_id, user_id, credential_id, provider, route, model, stream, status, success, input_tokens, output_tokens, reasoning_tokens, cached_tokens, total_tokens, quota, duration_ms, error, recovered)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertReservation: db.prepare(
      `INSERT INTO reservations (id, key_id, user_id, units, key_debited, expires_at, owner, request_id, route, model, timestamp)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    deleteReservation: db.prepare("DELETE FROM reservations WHERE id = ?"),
    keyInFlight: db
      .prepare("SELECT COALESCE(SUM(units), 0) FROM reservations WHERE key_id = ?")
      .pluck(),
    userInFlight: db
      .prepare("SELECT COALESCE(SUM(units), 0) FROM reservations WHERE user_id = ?")
      .pluck(),
    renewReservations: db.prepare(
      "UPDATE reservations SET expires_at = ? WHERE id IN (SELECT value FROM json_each(?))",
    ),
    expiredReservations: db.prepare(
      "SELECT * FROM reservations WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
    ),
    bumpRollup: db.prepare(
      `INSERT INTO usage_rollups (hour, route, model, key_id, requests, successes, failures, input_tokens, output_tokens, reasoning_tokens, cached_tokens, total_tokens, quota)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (hour, route, model, key_id) DO UPDATE SET
         requests = requests + excluded.requests,
         successes = successes + excluded.successes,
         failures = failures + excluded.failures,
         input_tokens = input_tokens + excluded.input_tokens,
         output_tokens = output_tokens + excluded.output_tokens,
         reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
         cached_tokens = cached_tokens + excluded.cached_tokens,
         total_tokens = total_tokens + excluded.total_tokens,
         quota = quota + excluded.quota`,
    ),
    pruneUsage: db.prepare("DELETE FROM usage_records WHERE timestamp < ?"),

    settings: db.prepare("SELECT name, value FROM settings ORDER BY name"),
    setting: db.prepare("SELECT value FROM settings WHERE name = ?").pluck(),
    putSetting: db.prepare(
      "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    ),
    deleteSetting: db.prepare("DELETE FROM settings WHERE name = ?"),

    kvGet: db
      .prepare("SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)")
      .pluck(),
    kvSet: db.prepare(
      "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
    ),
    kvDelete: db.prepare("DELETE FROM kv WHERE key = ? RETURNING expires_at").pluck(),
    // One statement, so atomic across processes. SET expressions all read the old row. The
    // casts matter: JS numbers bind as REAL, which the TEXT column would keep as "1.0".
    kvIncr: db
      .prepare(
        `INSERT INTO kv (key, value, expires_at) VALUES (@key, CAST(@by AS INTEGER), @expiresAt)
         ON CONFLICT (key) DO UPDATE SET
           value = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= @now
             THEN excluded.value ELSE CAST(kv.value AS INTEGER) + CAST(@by AS INTEGER) END,
           expires_at = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= @now
             THEN excluded.expires_at ELSE kv.expires_at END
         RETURNING value`,
      )
      .pluck(),
    purgeKv: db.prepare("DELETE FROM kv WHERE expires_at <= ?"),

    // Takes a free or expired lock in one statement; changes = 0 when a live lock is held.
    acquireLock: db.prepare(
      `INSERT INTO locks (name, token, expires_at) VALUES (?, ?, ?)
       ON CONFLICT (name) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
       WHERE locks.expires_at <= ?`,
    ),
    releaseLock: db
      .prepare("DELETE FROM locks WHERE name = ? AND token = ? RETURNING expires_at")
      .pluck(),
    purgeLocks: db.prepare("DELETE FROM locks WHERE expires_at <= ?"),

    insertChange: db.prepare(
      "INSERT INTO changes (collection, record_id, op, origin_id, at) VALUES (?, ?, ?, ?, ?)",
    ),
    changesSince: db.prepare(
      "SELECT seq, collection, record_id, op, origin_id FROM changes WHERE seq > ? ORDER BY seq",
    ),
    changeSeq: db.prepare("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").pluck(),
    pruneChanges: db.prepare("DELETE FROM changes WHERE at < ?"),
    dataVersion: db.prepare("PRAGMA data_version").pluck(),
  };

  /** Statements whose SQL depends on which filters a query uses, compiled once per shape. */
  const shapes = new Map<string, Database.Statement>();
  const shaped = (sql: string): Database.Statement => {
    let stmt = shapes.get(sql);
    if (!stmt) {
      stmt = db.prepare(sql);
      shapes.set(sql, stmt);
    }
    return stmt;
  };

  const page = <R, T>(
    table: string,
    where: string[],
    params: unknown[],
    order: string,
    offset: number,
    limit: number,
    map: (row: R) => T,
  ): Page<T> => {
    const clause = where.length ? ` WHERE ${where.join(" AND ")}` : "";
    const total = shaped(`SELECT COUNT(*) FROM ${table}${clause}`)
      .pluck()
      .get(...params) as number;
    const rows = shaped(`SELECT * FROM ${table}${clause} ORDER BY ${order} LIMIT ? OFFSET ?`).all(
      ...params,
      Math.max(0, limit),
      Math.max(0, offset),
    ) as R[];
    return { items: rows.map(map), total };
  };

  const transaction = db.transaction((fn: () => unknown) => fn());
  /** Runs `fn` in a BEGIN IMMEDIATE transaction: the write lock is taken before the first read. */
  const immediate = <T>(fn: () => T): T => transaction.immediate(fn) as T;

  const deliver = (changes: readonly StoreChange[]) => {
    for (const change of changes) {
      for (const listener of [...listeners]) {
        try {
          listener({ ...change });
        } catch (err) {
          // Surface the listener's bug without skipping the other listeners.
          queueMicrotask(() => {
            throw err;
          });
        }
      }
    }
  };

  /** Best-effort housekeeping; a busy database just postpones it. */
  const maintain = () => {
    const now = Date.now();
    if (now - lastMaintenance < MAINTENANCE_INTERVAL_MS || closed) return;
    lastMaintenance = now;
    try {
      s.purgeKv.run(now);
      s.purgeLocks.run(now);
      if (shared) s.pruneChanges.run(now - CHANGE_RETENTION_MS);
    } catch {
      // Retried at the next interval.
    }
  };

  /**
   * Runs a write of keys, users, credentials or settings as one immediate transaction. `note`
   * appends to the change feed inside that transaction; local listeners hear about the changes
   * after the commit.
   */
  const mutate = <T>(fn: (note: Note) => T): T => {
    const notes: StoreChange[] = [];
    const note: Note = (collection, id, op) => {
      if (shared) s.insertChange.run(collection, String(id), op, instanceId, Date.now());
      notes.push({ collection, id: String(id), op, origin: "local" });
    };
    const result = immediate(() => fn(note));
    if (notes.length) queueMicrotask(() => deliver(notes));
    maintain();
    return result;
  };

  const poll = () => {
    if (closed) return;
    try {
      // data_version changes only when another connection commits: the idle cost is this read.
      const version = s.dataVersion.get() as number;
      if (version === lastDataVersion) return;
      const rows = s.changesSince.all(lastSeq) as ChangeRow[];
      lastDataVersion = version;
      if (!rows.length) return;
      const out: StoreChange[] = [];
      if (rows[0]!.seq > lastSeq + 1) {
        // Rows we never saw were pruned: everything may have changed.
        for (const collection of COLLECTIONS)
          out.push({ collection, op: "upsert", origin: "remote" });
      }
      for (const r of rows) {
        if (r.origin_id === instanceId) continue;
        out.push({
          collection: r.collection,
          op: r.op,
          origin: "remote",
          ...(r.record_id === null ? {} : { id: r.record_id }),
        });
      }
      lastSeq = rows[rows.length - 1]!.seq;
      deliver(out);
      maintain();
    } catch {
      // A closed or busy database: the next tick tries again.
    }
  };

  const startPolling = () => {
    if (!shared || timer || closed) return;
    lastSeq = (s.changeSeq.get() as number | undefined) ?? 0;
    lastDataVersion = s.dataVersion.get() as number;
    timer = setInterval(poll, pollIntervalMs);
    timer.unref();
  };

  const stopPolling = () => {
    if (timer) clearInterval(timer);
    timer = undefined;
  };

  const getKey = (id: number): ApiKeyRecord | null => {
    const row = s.keyById.get(id) as KeyRow | undefined;
    return row ? keyFromRow(row) : null;
  };
  const getUser = (id: number): UserRecord | null => {
    const row = s.userById.get(id) as UserRow | undefined;
    return row ? userFromRow(row) : null;
  };
  const getCredential = (id: string): CredentialRecord | null => {
    const row = s.credentialById.get(id) as CredentialRow | undefined;
    return row ? credentialFromRow(row) : null;
  };

  /**
   * One reservation inside the caller's transaction: the guarded debit and the durable
   * reservation row commit together, so a process that dies leaves a row to recover.
   */
  const reserveIn = (keyId: number, units: number, meta?: ReservationMeta): ReserveResult => {
    // The common case, a limited key without an owner, is one guarded UPDATE; every other case
    // (owner, unlimited, refusal and its reason) takes the full path below.
    const result: ReserveResult =
      s.reserveFast.run(units, keyId, units).changes === 1
        ? {
            ok: true,
            reservation: { id: randomUUID(), keyId, userId: null, units, keyDebited: true },
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
        | Pick<KeyRow, "user_id" | "remain_quota" | "unlimited_quota">
        | undefined;
      if (!key) return { ok: false, reason: "key_not_found" };
      const debitKey = key.unlimited_quota === 0;
      if (debitKey && key.remain_quota < units)
        return { ok: false, reason: "key_quota", inFlight: s.keyInFlight.get(keyId) as number };
      const userQuota =
        key.user_id === null ? undefined : (s.userQuota.get(key.user_id) as number | undefined);
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
      };
      return { ok: true, reservation };
    }
  };

  /** Settles inside the caller's transaction. */
  const settleIn = (res: Reservation, actualUnits: number, nowSeconds: number): Settlement => {
    {
      // The row is gone when recoverReservations already charged it in full: nothing more.
      if (s.deleteReservation.run(res.id).changes === 0) return { charged: 0 };
      const keyRemain = s.keyRemain.get(res.keyId) as number | undefined;
      const userQuota =
        res.userId === null ? undefined : (s.userQuota.get(res.userId) as number | undefined);
      const { charged, delta } = settleAmounts(
        res.units,
        actualUnits,
        res.keyDebited ? keyRemain : undefined,
        userQuota,
      );
      if (keyRemain !== undefined) {
        s.settleKey.run(res.keyDebited ? delta : 0, charged, nowSeconds, res.keyId);
      }
      if (userQuota !== undefined) s.settleUser.run(delta, charged, res.userId);
      return { charged };
    }
  };
  const settle = (res: Reservation, actualUnits: number, nowSeconds: number): Settlement =>
    immediate(() => settleIn(res, actualUnits, nowSeconds));

  /** Appends records and bumps their roll-ups inside the caller's transaction. */
  const recordIn = (records: NewUsageRecord[]): UsageRecord[] => {
    {
      const out: UsageRecord[] = new Array(records.length);
      const buckets = new Map<string, UsageRollup>();
      for (let i = 0; i < records.length; i++) {
        const r = records[i]!;
        const id = Number(s.insertUsage.run(usageParams(r)).lastInsertRowid);
        out[i] = { ...r, id };
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
    immediate(() =>
      recordIn(
        commits.map((c) => ({
          ...c.record,
          quota: c.reservation
            ? settleIn(c.reservation, c.actualUnits, nowSeconds).charged
            : c.actualUnits,
        })),
      ),
    );

  const recover = (nowMs: number, limit: number): UsageRecord[] =>
    immediate(() => {
      const rows = (s.expiredReservations.all(nowMs, limit) as ReservationDbRow[]).map(
        reservationFromRow,
      );
      const nowSeconds = Math.floor(nowMs / 1000);
      for (const row of rows) settleIn(row, row.units, nowSeconds);
      return recordIn(rows.map(recoveredRecord));
    });

  return {
    name: "sqlite",
    capabilities: { multiProcess: shared },

    keys: {
      async create(input: NewApiKey) {
        return mutate((note) => {
          let id: number;
          try {
            id = Number(s.insertKey.run(keyParams(input)).lastInsertRowid);
          } catch (err) {
            rethrowDuplicate(err, "a key with this hash already exists");
          }
          note("keys", id, "upsert");
          return getKey(id)!;
        });
      },
      async get(id) {
        return getKey(id);
      },
      async getByHash(keyHash) {
        const row = s.keyByHash.get(keyHash) as KeyRow | undefined;
        return row ? keyFromRow(row) : null;
      },
      async list(q: KeyQuery = {}) {
        const where: string[] = [];
        const params: unknown[] = [];
        if (q.userId !== undefined) {
          where.push("user_id IS ?");
          params.push(q.userId);
        }
        if (q.keyword) {
          where.push("instr(tokenpool_lower(name), ?) > 0");
          params.push(q.keyword.toLowerCase());
        }
        if (q.hint) {
          where.push("instr(key_hint, ?) > 0");
          params.push(q.hint);
        }
        return page("keys", where, params, "id DESC", q.offset ?? 0, q.limit ?? 20, keyFromRow);
      },
      async update(id, patch: ApiKeyPatch) {
        return mutate((note) => {
          const current = getKey(id);
          if (!current) return null;
          const {
            id: _id,
            keyHash: _hash,
            ...rest
          } = given(patch) as ApiKeyPatch & {
            id?: number;
            keyHash?: string;
          };
          s.updateKey.run({ ...keyParams({ ...current, ...rest }), id });
          note("keys", id, "upsert");
          return getKey(id);
        });
      },
      async rekey(id, keyHash, keyCipher) {
        return mutate((note) => {
          let changed: number;
          try {
            // The unique index on key_hash moves the lookup with the row, or refuses a hash
            // another key holds.
            changed = s.rekey.run(keyHash, keyCipher, id).changes;
          } catch (err) {
            rethrowDuplicate(err, "a key with this hash already exists");
          }
          if (changed === 0) return null;
          note("keys", id, "upsert");
          return getKey(id);
        });
      },
      async delete(ids) {
        return mutate((note) => {
          let n = 0;
          for (const id of new Set(ids)) {
            if (s.deleteKey.run(id).changes === 0) continue;
            n++;
            note("keys", id, "delete");
          }
          return n;
        });
      },
    },

    users: {
      async create(input: NewUser) {
        return mutate((note) => {
          let id: number;
          try {
            id = Number(s.insertUser.run(userParams(input)).lastInsertRowid);
          } catch (err) {
            rethrowDuplicate(err, `username "${input.username}" already exists`);
          }
          note("users", id, "upsert");
          return getUser(id)!;
        });
      },
      async get(id) {
        return getUser(id);
      },
      async getByUsername(username) {
        const row = s.userByName.get(username) as UserRow | undefined;
        return row ? userFromRow(row) : null;
      },
      async getByAccessTokenHash(hash) {
        const row = s.userByToken.get(hash) as UserRow | undefined;
        return row ? userFromRow(row) : null;
      },
      async list(q = {}) {
        const where: string[] = [];
        const params: unknown[] = [];
        if (q.keyword) {
          where.push(
            "(instr(tokenpool_lower(username), ?) > 0 OR instr(tokenpool_lower(display_name), ?) > 0)",
          );
          const kw = q.keyword.toLowerCase();
          params.push(kw, kw);
        }
        return page("users", where, params, "id", q.offset ?? 0, q.limit ?? 20, userFromRow);
      },
      async update(id, patch: UserPatch) {
        return mutate((note) => {
          const current = getUser(id);
          if (!current) return null;
          const { id: _id, ...rest } = given(patch) as UserPatch & { id?: number };
          const next = { ...current, ...rest };
          try {
            s.updateUser.run({ ...userParams(next), id });
          } catch (err) {
            rethrowDuplicate(err, `username "${next.username}" already exists`);
          }
          note("users", id, "upsert");
          return getUser(id);
        });
      },
      async delete(id) {
        return mutate((note) => {
          if (s.deleteUser.run(id).changes === 0) return false;
          note("users", id, "delete");
          return true;
        });
      },
    },

    credentials: {
      async create(input: NewCredential) {
        return mutate((note) => {
          const rec = materializeCredential(input, Date.now());
          try {
            s.insertCredential.run(credentialParams(rec));
          } catch (err) {
            rethrowDuplicate(err, `credential "${rec.id}" already exists`);
          }
          note("credentials", rec.id, "upsert");
          return rec;
        });
      },
      async get(id) {
        return getCredential(id);
      },
      async list() {
        return (s.credentials.all() as CredentialRow[]).map(credentialFromRow);
      },
      async update(id, patch: CredentialPatch) {
        return mutate((note) => {
          const current = getCredential(id);
          if (!current) return null;
          const {
            id: _id,
            createdAt: _createdAt,
            ...rest
          } = given(patch) as CredentialPatch & {
            id?: string;
            createdAt?: number;
          };
          s.updateCredential.run(
            credentialParams({ ...current, ...rest, id, updatedAt: Date.now() }),
          );
          note("credentials", id, "upsert");
          return getCredential(id);
        });
      },
      async delete(id) {
        return mutate((note) => {
          if (s.deleteCredential.run(id).changes === 0) return false;
          note("credentials", id, "delete");
          return true;
        });
      },
    },

    usage: {
      async list(q: UsageQuery = {}) {
        const where: string[] = [];
        const params: unknown[] = [];
        if (q.from !== undefined) {
          where.push("timestamp >= ?");
          params.push(q.from);
        }
        if (q.to !== undefined) {
          where.push("timestamp < ?");
          params.push(q.to);
        }
        if (q.keyId !== undefined) {
          where.push("key_id = ?");
          params.push(q.keyId);
        }
        if (q.userId !== undefined) {
          where.push("user_id = ?");
          params.push(q.userId);
        }
        return page(
          "usage_records",
          where,
          params,
          "timestamp DESC, id DESC",
          q.offset ?? 0,
          q.limit ?? 100,
          usageFromRow,
        );
      },
      async rollups(q: RollupQuery = {}) {
        const where: string[] = [];
        const params: unknown[] = [];
        if (q.fromHour !== undefined) {
          where.push("hour >= ?");
          params.push(q.fromHour);
        }
        if (q.toHour !== undefined) {
          where.push("hour < ?");
          params.push(q.toHour);
        }
        if (q.keyId !== undefined) {
          where.push("key_id = ?");
          params.push(q.keyId);
        }
        const clause = where.length ? ` WHERE ${where.join(" AND ")}` : "";
        const rows = shaped(
          `SELECT * FROM usage_rollups${clause} ORDER BY hour, route, model, key_id`,
        ).all(...params) as RollupRow[];
        return rows.map(rollupFromRow);
      },
      async prune(before) {
        return s.pruneUsage.run(before).changes;
      },
    },

    settings: {
      async all() {
        const rows = s.settings.all() as { name: string; value: string }[];
        return Object.fromEntries(rows.map((r) => [r.name, JSON.parse(r.value)]));
      },
      async get(name) {
        const value = s.setting.get(name) as string | undefined;
        return value === undefined ? undefined : JSON.parse(value);
      },
      async set(values) {
        mutate((note) => {
          for (const [name, value] of Object.entries(values)) {
            s.putSetting.run(name, JSON.stringify(value) ?? "null");
            note("settings", name, "upsert");
          }
        });
      },
      async delete(name) {
        return mutate((note) => {
          if (s.deleteSetting.run(name).changes === 0) return false;
          note("settings", name, "delete");
          return true;
        });
      },
    },

    kv: {
      async get(key) {
        return (s.kvGet.get(key, Date.now()) as string | undefined) ?? null;
      },
      async set(key, value, ttlMs) {
        s.kvSet.run(key, value, ttlMs === undefined ? null : Date.now() + ttlMs);
        maintain();
      },
      async delete(key) {
        const expiresAt = s.kvDelete.get(key) as number | null | undefined;
        return expiresAt === null || (expiresAt !== undefined && expiresAt > Date.now());
      },
      async incr(key, by, ttlMs) {
        const now = Date.now();
        const value = s.kvIncr.get({
          key,
          by,
          expiresAt: ttlMs === undefined ? null : now + ttlMs,
          now,
        });
        maintain();
        return Number(value);
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

    async settleQuota(reservation, actualUnits, nowSeconds) {
      assertUnits(actualUnits, "actualUnits");
      return settle(reservation, actualUnits, nowSeconds);
    },

    async commitUsage(commits, nowSeconds) {
      for (const c of commits) assertUnits(c.actualUnits, "actualUnits");
      return commits.length ? commit(commits, nowSeconds) : [];
    },

    async acquireLock(name, ttlMs) {
      const now = Date.now();
      const token = randomUUID();
      const { changes } = s.acquireLock.run(name, token, now + ttlMs, now);
      maintain();
      return changes === 1 ? token : null;
    },

    async releaseLock(name, token) {
      const expiresAt = s.releaseLock.get(name, token) as number | undefined;
      return expiresAt !== undefined && expiresAt > Date.now();
    },

    watch(listener) {
      listeners.add(listener);
      startPolling();
      return () => {
        listeners.delete(listener);
        if (!listeners.size) stopPolling();
      };
    },

    async close() {
      if (closed) return;
      closed = true;
      // Reservations already asked for are answered before the database goes away.
      if (reserveQueue.length > 0) flushReserves();
      stopPolling();
      listeners.clear();
      if (owned) db.close();
    },
  };
}
