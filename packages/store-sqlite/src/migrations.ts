import type BetterSqlite3 from "better-sqlite3";

/** One numbered schema step. Applied once, in order, inside the opening transaction. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/**
 * The schema history. Never edit an applied migration: append a new one.
 *
 * Arrays and objects are JSON text columns; booleans are 0/1 integers.
 */
/**
 * The token and quota columns of `usage_records` and `usage_rollups`, exactly as version 1
 * wrote them (interpolated, so the SQL stays byte for byte what was shipped).
 */
const TOKEN_COLUMNS = `        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        reasoning_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        total_tokens INTEGER NOT NULL,
        quota INTEGER NOT NULL,
`;

export const migrations: readonly Migration[] = [
  {
    version: 1,
    name: "initial schema",
    sql: `
      CREATE TABLE keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user_id INTEGER,
        name TEXT NOT NULL,
        key_hash TEXT NOT NULL,
        key_cipher TEXT,
        key_hint TEXT NOT NULL,
        status INTEGER NOT NULL,
        remain_quota INTEGER NOT NULL,
        used_quota INTEGER NOT NULL,
        unlimited_quota INTEGER NOT NULL,
        expired_time INTEGER NOT NULL,
        model_limits_enabled INTEGER NOT NULL,
        model_limits TEXT NOT NULL,
        allow_ips TEXT NOT NULL,
        key_group TEXT NOT NULL,
        created_time INTEGER NOT NULL,
        accessed_time INTEGER NOT NULL
      );
      CREATE UNIQUE INDEX keys_key_hash ON keys (key_hash);
      CREATE INDEX keys_user_id ON keys (user_id);

      CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        display_name TEXT NOT NULL,
        role TEXT NOT NULL,
        status INTEGER NOT NULL,
        user_group TEXT NOT NULL,
        quota INTEGER NOT NULL,
        used_quota INTEGER NOT NULL,
        access_token_hash TEXT,
        created_time INTEGER NOT NULL
      );
      CREATE INDEX users_access_token_hash ON users (access_token_hash);

      -- seq keeps creation order (VACUUM may renumber implicit rowids).
      CREATE TABLE credentials (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        provider TEXT NOT NULL,
        kind TEXT NOT NULL,
        label TEXT NOT NULL,
        base_url TEXT NOT NULL,
        secret TEXT NOT NULL,
        proxy_url TEXT NOT NULL,
        project_ids TEXT NOT NULL,
        models TEXT NOT NULL,
        excluded_models TEXT NOT NULL,
        priority REAL NOT NULL,
        weight REAL NOT NULL,
        enabled INTEGER NOT NULL,
        group_names TEXT NOT NULL,
        headers TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
      );

      CREATE TABLE usage_records (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp INTEGER NOT NULL,
        request_id TEXT NOT NULL,
        key_id INTEGER,
        user_id INTEGER,
        credential_id TEXT,
        provider TEXT NOT NULL,
        route TEXT NOT NULL,
        model TEXT NOT NULL,
        stream INTEGER NOT NULL,
        status INTEGER NOT NULL,
        success INTEGER NOT NULL,
${TOKEN_COLUMNS}        duration_ms INTEGER NOT NULL,
        error TEXT
      );
      CREATE INDEX usage_records_timestamp ON usage_records (timestamp);
      CREATE INDEX usage_records_key_id ON usage_records (key_id, timestamp);
      CREATE INDEX usage_records_user_id ON usage_records (user_id, timestamp);

      -- key_id is -1 for usage without a key: NULLs never conflict in a primary key, so they
      -- would defeat the ON CONFLICT upsert.
      CREATE TABLE usage_rollups (
        hour TEXT NOT NULL,
        route TEXT NOT NULL,
        model TEXT NOT NULL,
        key_id INTEGER NOT NULL,
        requests INTEGER NOT NULL,
        successes INTEGER NOT NULL,
        failures INTEGER NOT NULL,
${TOKEN_COLUMNS}        PRIMARY KEY (hour, route, model, key_id)
      ) WITHOUT ROWID;
      CREATE INDEX usage_rollups_key_id ON usage_rollups (key_id, hour);

      CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value TEXT NOT NULL
      ) WITHOUT ROWID;

      CREATE TABLE kv (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        expires_at INTEGER
      ) WITHOUT ROWID;
      CREATE INDEX kv_expires_at ON kv (expires_at) WHERE expires_at IS NOT NULL;

      CREATE TABLE locks (
        name TEXT PRIMARY KEY,
        token TEXT NOT NULL,
        expires_at INTEGER NOT NULL
      ) WITHOUT ROWID;

      -- The change feed read by other processes' watch(). AUTOINCREMENT: a seq is never
      -- reused after pruning, so a reader's high-water mark stays valid.
      CREATE TABLE changes (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        collection TEXT NOT NULL,
        record_id TEXT,
        op TEXT NOT NULL,
        origin_id TEXT NOT NULL,
        at INTEGER NOT NULL
      );
    `,
  },
  {
    version: 2,
    name: "durable reservations and recovered usage records",
    sql: `
      -- One row per unsettled quota reservation, written in the same transaction as the debit
      -- and deleted in the same transaction as its settlement; a row left past expires_at
      -- belongs to a process that died and is settled by recoverReservations.
      CREATE TABLE reservations (
        id TEXT PRIMARY KEY,
        key_id INTEGER NOT NULL,
        user_id INTEGER,
        units INTEGER NOT NULL,
        key_debited INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        owner TEXT NOT NULL,
        request_id TEXT NOT NULL,
        route TEXT NOT NULL,
        model TEXT NOT NULL,
        timestamp INTEGER NOT NULL
      ) WITHOUT ROWID;
      -- No secondary index: the table holds only the requests in flight (a few hundred rows), so
      -- the rare readers (recovery, the in-flight sum of a denial) scan it cheaply, while every
      -- index would cost each request's insert and delete more pages to write.

      ALTER TABLE usage_records ADD COLUMN recovered INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 3,
    name: "admission: rolling-window counters and concurrency leases",
    sql: `
      -- One row per non-empty bucket of a hitWindows counter; window_key is <windowMs>:<key>.
      -- expires_at is when the bucket leaves its window: rows past it are swept now and then.
      CREATE TABLE limit_windows (
        window_key TEXT NOT NULL,
        bucket INTEGER NOT NULL,
        units INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (window_key, bucket)
      ) WITHOUT ROWID;

      -- One row per concurrency lease; expired rows are dropped by the next acquire on the pool
      -- (and by the sweep). No secondary index, as for reservations: few rows, many writes.
      CREATE TABLE limit_leases (
        pool TEXT NOT NULL,
        lease_id TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (pool, lease_id)
      ) WITHOUT ROWID;
    `,
  },
  {
    version: 4,
    name: "admission: limit and refill fields, refill periods of reservations",
    sql: `
      -- NULL = never set: the record comes back without the field. limits and quota_refill are
      -- JSON text ('null' is a quota_refill set to null).
      ALTER TABLE keys ADD COLUMN limits TEXT;
      ALTER TABLE keys ADD COLUMN quota_refill TEXT;
      ALTER TABLE keys ADD COLUMN quota_period INTEGER;
      ALTER TABLE users ADD COLUMN limits TEXT;
      ALTER TABLE users ADD COLUMN quota_refill TEXT;
      ALTER TABLE users ADD COLUMN quota_period INTEGER;
      ALTER TABLE credentials ADD COLUMN limits TEXT;

      -- The key's and the owner's quota_period when the reservation debited them; rows written
      -- before this migration belong to period 0.
      ALTER TABLE reservations ADD COLUMN key_period INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE reservations ADD COLUMN user_period INTEGER NOT NULL DEFAULT 0;
    `,
  },
  {
    version: 5,
    name: "request log: log fields and filter indexes of usage records, roll-ups by owner and credential",
    sql: `
      -- log_fields is a bit set of the optional request log fields a record has (LOG_FIELD in
      -- rows.ts); 0 on the rows written before, which come back without them. The three names
      -- the log filters by hold '' when absent, so that one index equality finds the default
      -- group (and a name-less record) too; the others are NULL when absent or null.
      ALTER TABLE usage_records ADD COLUMN log_fields INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE usage_records ADD COLUMN key_name TEXT NOT NULL DEFAULT '';
      ALTER TABLE usage_records ADD COLUMN username TEXT NOT NULL DEFAULT '';
      ALTER TABLE usage_records ADD COLUMN usage_group TEXT NOT NULL DEFAULT '';
      ALTER TABLE usage_records ADD COLUMN format TEXT;
      ALTER TABLE usage_records ADD COLUMN first_token_ms INTEGER;
      ALTER TABLE usage_records ADD COLUMN retries INTEGER;
      ALTER TABLE usage_records ADD COLUMN error_type TEXT;
      -- JSON {request?, response?}.
      ALTER TABLE usage_records ADD COLUMN bodies TEXT;

      -- An index per filter of the request log, each ending in timestamp: the equality selects,
      -- the index order (timestamp, then rowid = id) is the page's order, and the COUNT of the
      -- total reads the index alone. Failures are few: a partial index holds only them.
      CREATE INDEX usage_records_model ON usage_records (model, timestamp);
      CREATE INDEX usage_records_credential_id ON usage_records (credential_id, timestamp);
      -- A key name or a username has no index: its filter reads the index of the ids it was
      -- recorded with, from these small tables (one row per (name, id) pair ever recorded).
      CREATE TABLE usage_key_names (
        key_name TEXT NOT NULL,
        key_id INTEGER NOT NULL,
        PRIMARY KEY (key_name, key_id)
      ) WITHOUT ROWID;
      CREATE TABLE usage_user_names (
        username TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        PRIMARY KEY (username, user_id)
      ) WITHOUT ROWID;
      CREATE INDEX usage_records_group ON usage_records (usage_group, timestamp);
      CREATE INDEX usage_records_failures ON usage_records (timestamp) WHERE success = 0;

      -- Roll-ups gain the owner and the credential in their primary key: a new table, the old
      -- rows copied with the sentinels of "none" (user_id -1, credential_id ''; as key_id -1),
      -- which also read back as null for the rows written before owners and credentials.
      CREATE TABLE usage_rollups_v5 (
        hour TEXT NOT NULL,
        route TEXT NOT NULL,
        model TEXT NOT NULL,
        key_id INTEGER NOT NULL,
        user_id INTEGER NOT NULL,
        credential_id TEXT NOT NULL,
        requests INTEGER NOT NULL,
        successes INTEGER NOT NULL,
        failures INTEGER NOT NULL,
${TOKEN_COLUMNS}        PRIMARY KEY (hour, route, model, key_id, user_id, credential_id)
      ) WITHOUT ROWID;
      INSERT INTO usage_rollups_v5 (hour, route, model, key_id, user_id, credential_id, requests,
          successes, failures, input_tokens, output_tokens, reasoning_tokens, cached_tokens,
          total_tokens, quota)
        SELECT hour, route, model, key_id, -1, '', requests, successes, failures, input_tokens,
          output_tokens, reasoning_tokens, cached_tokens, total_tokens, quota
        FROM usage_rollups;
      DROP TABLE usage_rollups;
      ALTER TABLE usage_rollups_v5 RENAME TO usage_rollups;
      CREATE INDEX usage_rollups_key_id ON usage_rollups (key_id, hour);
      CREATE INDEX usage_rollups_user_id ON usage_rollups (user_id, hour);
      CREATE INDEX usage_rollups_credential_id ON usage_rollups (credential_id, hour);
    `,
  },
];

/** The table that records which migrations were applied. */
export const MIGRATIONS_TABLE = "tokenpool_migrations";

/**
 * Brings the schema up to date. Runs as one `BEGIN IMMEDIATE` transaction, so two processes
 * opening the same fresh file at once serialise here: the second one waits (busy_timeout),
 * then sees the migrations already applied.
 */
export function migrate(db: BetterSqlite3.Database): void {
  const run = db.transaction(() => {
    db.exec(`CREATE TABLE IF NOT EXISTS ${MIGRATIONS_TABLE} (
      version INTEGER PRIMARY KEY,
      name TEXT NOT NULL,
      applied_at INTEGER NOT NULL
    )`);
    const applied = new Set(
      db.prepare(`SELECT version FROM ${MIGRATIONS_TABLE}`).pluck().all() as number[],
    );
    const latest = migrations[migrations.length - 1]!.version;
    const newest = Math.max(0, ...applied);
    if (newest > latest) {
      throw new Error(
        `This SQLite database has schema version ${newest}, but this @tokenpool/store-sqlite only knows versions up to ${latest}. Upgrade @tokenpool/store-sqlite.`,
      );
    }
    const record = db.prepare(
      `INSERT INTO ${MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, ?)`,
    );
    for (const m of migrations) {
      if (applied.has(m.version)) continue;
      db.exec(m.sql);
      record.run(m.version, m.name, Date.now());
    }
  });
  run.immediate();
}
