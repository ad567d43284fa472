/** The prepared statements of the SQLite store, one per table operation. Internal to this package. */

import type { Page } from "@tokenpool/core";
import type Database from "better-sqlite3";

const KEY_COLUMNS =
  "user_id, name, key_hash, key_cipher, key_hint, status, remain_quota, used_quota, unlimited_quota, expired_time, model_limits_enabled, model_limits, allow_ips, key_group, created_time, accessed_time, limits, quota_refill, quota_period";
const KEY_VALUES =
  "@userId, @name, @keyHash, @keyCipher, @keyHint, @status, @remainQuota, @usedQuota, @unlimitedQuota, @expiredTime, @modelLimitsEnabled, @modelLimits, @allowIps, @group, @createdTime, @accessedTime, @limits, @quotaRefill, @quotaPeriod";
const USER_COLUMNS =
  "username, display_name, role, status, user_group, quota, used_quota, access_token_hash, created_time, limits, quota_refill, quota_period";
const USER_VALUES =
  "@username, @displayName, @role, @status, @group, @quota, @usedQuota, @accessTokenHash, @createdTime, @limits, @quotaRefill, @quotaPeriod";
const CREDENTIAL_COLUMNS =
  "id, provider, kind, label, base_url, secret, proxy_url, project_ids, models, excluded_models, priority, weight, enabled, group_names, headers, state, created_at, updated_at, limits";
const CREDENTIAL_VALUES =
  "@id, @provider, @kind, @label, @baseUrl, @secret, @proxyUrl, @projectIds, @models, @excludedModels, @priority, @weight, @enabled, @groups, @headers, @state, @createdAt, @updatedAt, @limits";

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

/**
 * The part of a better-sqlite3 statement the store uses. (Its own type lives in a namespace
 * that declarations cannot name, so the statement table is typed with this one.)
 */
export interface Statement {
  run(...params: unknown[]): Database.RunResult;
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  /** Makes `get` and `all` return the first column's value instead of the row. */
  pluck(): Statement;
}

/** Prepares every fixed statement of the store once, at open. */
export function prepareStatements(db: Database.Database) {
  const prepare = (sql: string): Statement => db.prepare(sql);
  return {
    keyById: prepare("SELECT * FROM keys WHERE id = ?"),
    keyByHash: prepare("SELECT * FROM keys WHERE key_hash = ?"),
    insertKey: prepare(`INSERT INTO keys (${KEY_COLUMNS}) VALUES (${KEY_VALUES})`),
    updateKey: prepare(
      `UPDATE keys SET ${assignments(KEY_COLUMNS, KEY_VALUES, ["key_hash"])} WHERE id = @id`,
    ),
    deleteKey: prepare("DELETE FROM keys WHERE id = ?"),
    rekey: prepare("UPDATE keys SET key_hash = ?, key_cipher = ? WHERE id = ?"),

    userById: prepare("SELECT * FROM users WHERE id = ?"),
    userByName: prepare("SELECT * FROM users WHERE username = ?"),
    userByToken: prepare("SELECT * FROM users WHERE access_token_hash = ? ORDER BY id LIMIT 1"),
    insertUser: prepare(`INSERT INTO users (${USER_COLUMNS}) VALUES (${USER_VALUES})`),
    updateUser: prepare(
      `UPDATE users SET ${assignments(USER_COLUMNS, USER_VALUES)} WHERE id = @id`,
    ),
    deleteUser: prepare("DELETE FROM users WHERE id = ?"),

    credentialById: prepare(`SELECT ${CREDENTIAL_COLUMNS} FROM credentials WHERE id = ?`),
    credentials: prepare(`SELECT ${CREDENTIAL_COLUMNS} FROM credentials ORDER BY seq`),
    insertCredential: prepare(
      `INSERT INTO credentials (${CREDENTIAL_COLUMNS}) VALUES (${CREDENTIAL_VALUES})`,
    ),
    updateCredential: prepare(
      `UPDATE credentials SET ${assignments(CREDENTIAL_COLUMNS, CREDENTIAL_VALUES, ["id", "created_at"])} WHERE id = @id`,
    ),
    deleteCredential: prepare("DELETE FROM credentials WHERE id = ?"),

    keyQuota: prepare(
      "SELECT user_id, remain_quota, unlimited_quota, COALESCE(quota_period, 0) AS quota_period FROM keys WHERE id = ?",
    ),
    keyBalance: prepare(
      "SELECT remain_quota, COALESCE(quota_period, 0) AS quota_period FROM keys WHERE id = ?",
    ),
    userBalance: prepare(
      "SELECT quota, COALESCE(quota_period, 0) AS quota_period FROM users WHERE id = ?",
    ),
    // RETURNING the key's refill period: the reservation carries it (same statement, same step).
    reserveFast: prepare(
      "UPDATE keys SET remain_quota = remain_quota - ? WHERE id = ? AND user_id IS NULL AND unlimited_quota = 0 AND remain_quota >= ? RETURNING COALESCE(quota_period, 0)",
    ).pluck(),
    debitKey: prepare(
      "UPDATE keys SET remain_quota = remain_quota - ? WHERE id = ? AND remain_quota >= ?",
    ),
    debitUser: prepare("UPDATE users SET quota = quota - ? WHERE id = ? AND quota >= ?"),
    settleKey: prepare(
      "UPDATE keys SET remain_quota = remain_quota + ?, used_quota = used_quota + ?, accessed_time = ? WHERE id = ?",
    ),
    settleUser: prepare(
      "UPDATE users SET quota = quota + ?, used_quota = used_quota + ? WHERE id = ?",
    ),
    touchKey: prepare("UPDATE keys SET accessed_time = ? WHERE id = ?"),
    // One guarded statement: the compare-and-set of refillQuota, atomic across processes.
    refillKey: prepare(
      "UPDATE keys SET remain_quota = ?, used_quota = 0, quota_period = ? WHERE id = ? AND COALESCE(quota_period, 0) < ?",
    ),
    refillUser: prepare(
      "UPDATE users SET quota = ?, used_quota = 0, quota_period = ? WHERE id = ? AND COALESCE(quota_period, 0) < ?",
    ),

    insertUsage: prepare(
      `INSERT INTO usage_records (timestamp, request_id, key_id, user_id, credential_id, provider, route, model, stream, status, success, input_tokens, output_tokens, reasoning_tokens, cached_tokens, total_tokens, quota, duration_ms, error, recovered, log_fields, key_name, username, usage_group, format, first_token_ms, retries, error_type, bodies)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    insertReservation: prepare(
      `INSERT INTO reservations (id, key_id, user_id, units, key_debited, expires_at, owner, request_id, route, model, timestamp, key_period, user_period)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    deleteReservation: prepare("DELETE FROM reservations WHERE id = ?"),
    reservationUnits: prepare("SELECT units FROM reservations WHERE id = ?").pluck(),
    shrinkReservation: prepare("UPDATE reservations SET units = units - ? WHERE id = ?"),
    keyInFlight: prepare(
      "SELECT COALESCE(SUM(units), 0) FROM reservations WHERE key_id = ?",
    ).pluck(),
    userInFlight: prepare(
      "SELECT COALESCE(SUM(units), 0) FROM reservations WHERE user_id = ?",
    ).pluck(),
    renewReservations: prepare(
      "UPDATE reservations SET expires_at = ? WHERE id IN (SELECT value FROM json_each(?))",
    ),
    expiredReservations: prepare(
      "SELECT * FROM reservations WHERE expires_at <= ? ORDER BY expires_at LIMIT ?",
    ),
    bumpRollup: prepare(
      `INSERT INTO usage_rollups (hour, route, model, key_id, user_id, credential_id, requests, successes, failures, input_tokens, output_tokens, reasoning_tokens, cached_tokens, total_tokens, quota)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (hour, route, model, key_id, user_id, credential_id) DO UPDATE SET
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
    pruneUsage: prepare("DELETE FROM usage_records WHERE timestamp < ?"),
    noteKeyName: prepare("INSERT OR IGNORE INTO usage_key_names (key_name, key_id) VALUES (?, ?)"),
    noteUsername: prepare(
      "INSERT OR IGNORE INTO usage_user_names (username, user_id) VALUES (?, ?)",
    ),
    keyIdsOfName: prepare("SELECT key_id FROM usage_key_names WHERE key_name = ?").pluck(),
    userIdsOfName: prepare("SELECT user_id FROM usage_user_names WHERE username = ?").pluck(),
    usageKeepEdge: prepare(
      "SELECT timestamp, id FROM usage_records ORDER BY timestamp DESC, id DESC LIMIT 1 OFFSET ?",
    ),
    pruneUsageUpTo: prepare(
      "DELETE FROM usage_records WHERE timestamp < ? OR (timestamp = ? AND id <= ?)",
    ),

    settings: prepare("SELECT name, value FROM settings ORDER BY name"),
    setting: prepare("SELECT value FROM settings WHERE name = ?").pluck(),
    putSetting: prepare(
      "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
    ),
    deleteSetting: prepare("DELETE FROM settings WHERE name = ?"),

    kvGet: prepare(
      "SELECT value FROM kv WHERE key = ? AND (expires_at IS NULL OR expires_at > ?)",
    ).pluck(),
    kvSet: prepare(
      "INSERT INTO kv (key, value, expires_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
    ),
    kvDelete: prepare("DELETE FROM kv WHERE key = ? RETURNING expires_at").pluck(),
    // One statement, so atomic across processes. SET expressions all read the old row. The
    // casts matter: JS numbers bind as REAL, which the TEXT column would keep as "1.0".
    kvIncr: prepare(
      `INSERT INTO kv (key, value, expires_at) VALUES (@key, CAST(@by AS INTEGER), @expiresAt)
       ON CONFLICT (key) DO UPDATE SET
         value = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= @now
           THEN excluded.value ELSE CAST(kv.value AS INTEGER) + CAST(@by AS INTEGER) END,
         expires_at = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= @now
           THEN excluded.expires_at ELSE kv.expires_at END
       RETURNING value`,
    ).pluck(),
    purgeKv: prepare("DELETE FROM kv WHERE expires_at <= ?"),

    // Takes a free or expired lock in one statement; changes = 0 when a live lock is held.
    acquireLock: prepare(
      `INSERT INTO locks (name, token, expires_at) VALUES (?, ?, ?)
     ON CONFLICT (name) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
     WHERE locks.expires_at <= ?`,
    ),
    releaseLock: prepare(
      "DELETE FROM locks WHERE name = ? AND token = ? RETURNING expires_at",
    ).pluck(),
    purgeLocks: prepare("DELETE FROM locks WHERE expires_at <= ?"),

    insertChange: prepare(
      "INSERT INTO changes (collection, record_id, op, origin_id, at) VALUES (?, ?, ?, ?, ?)",
    ),
    changesSince: prepare(
      "SELECT seq, collection, record_id, op, origin_id FROM changes WHERE seq > ? ORDER BY seq",
    ),
    changeSeq: prepare("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").pluck(),
    pruneChanges: prepare("DELETE FROM changes WHERE at < ?"),
    dataVersion: prepare("PRAGMA data_version").pluck(),
  };
}

/** The store's prepared statements. */
export type Statements = ReturnType<typeof prepareStatements>;

/** The conditions of a WHERE clause and their parameters, added filter by filter. */
export class Where {
  readonly #conditions: string[] = [];
  /** The parameters, in the order of their `?`. */
  readonly params: unknown[] = [];

  /** Adds the condition `sql` with its parameters when `applies`. */
  and(applies: boolean, sql: string, ...params: unknown[]): this {
    if (applies) {
      this.#conditions.push(sql);
      this.params.push(...params);
    }
    return this;
  }

  /** ` WHERE a AND b`, or `""` without conditions. */
  get clause(): string {
    return this.#conditions.length ? ` WHERE ${this.#conditions.join(" AND ")}` : "";
  }
}

/**
 * Statements whose SQL depends on which filters a query uses, each distinct SQL compiled once.
 */
export class QueryShapes {
  readonly #db: Database.Database;
  readonly #shapes = new Map<string, Database.Statement>();

  constructor(db: Database.Database) {
    this.#db = db;
  }

  /** The statement of `sql`, compiled on its first use. */
  of(sql: string): Database.Statement {
    let stmt = this.#shapes.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#shapes.set(sql, stmt);
    }
    return stmt;
  }

  /** How many `table` rows match `where`. */
  count(table: string, where: Where): number {
    return this.of(`SELECT COUNT(*) FROM ${table}${where.clause}`)
      .pluck()
      .get(...where.params) as number;
  }

  /** One page of the `table` rows matching `where`, in `order`, as records. */
  rows<R, T>(
    table: string,
    where: Where,
    order: string,
    offset: number,
    limit: number,
    map: (row: R) => T,
  ): T[] {
    const rows = this.of(
      `SELECT * FROM ${table}${where.clause} ORDER BY ${order} LIMIT ? OFFSET ?`,
    ).all(...where.params, Math.max(0, limit), Math.max(0, offset)) as R[];
    return rows.map(map);
  }

  /** The total count of the `table` rows matching `where`, and one page of them as records. */
  page<R, T>(
    table: string,
    where: Where,
    order: string,
    offset: number,
    limit: number,
    map: (row: R) => T,
  ): Page<T> {
    const total = this.count(table, where);
    return { items: this.rows(table, where, order, offset, limit, map), total };
  }
}
