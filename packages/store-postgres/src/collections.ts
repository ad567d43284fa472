/** Keys, users, credentials, settings and kv of the PostgreSQL store. Internal to this package. */
import type {
  CredentialCollection,
  KeyCollection,
  KvCollection,
  Page,
  SettingsCollection,
  UserCollection,
} from "@tokenpool/core";
import {
  type CollectionFactories,
  type CredentialRow,
  changeable,
  credentialFromRow,
  credentialParams,
  type KeyRow,
  keyFromRow,
  keyParams,
  materializeCredential,
  type UserRow,
  userFromRow,
  userParams,
} from "@tokenpool/core/store-kernel";
import type { PgContext, Runner } from "./context.js";

/**
 * The columns of a table the store writes, each with the name of its parameter in the row
 * mapping of `@tokenpool/core/store-kernel` (`keyParams` ...), which is also the record field it
 * comes from.
 */
type Columns = readonly (readonly [column: string, param: string])[];

const KEY_COLUMNS: Columns = [
  ["user_id", "userId"],
  ["name", "name"],
  ["key_hash", "keyHash"],
  ["key_cipher", "keyCipher"],
  ["key_hint", "keyHint"],
  ["status", "status"],
  ["remain_quota", "remainQuota"],
  ["used_quota", "usedQuota"],
  ["unlimited_quota", "unlimitedQuota"],
  ["expired_time", "expiredTime"],
  ["model_limits_enabled", "modelLimitsEnabled"],
  ["model_limits", "modelLimits"],
  ["allow_ips", "allowIps"],
  ["key_group", "group"],
  ["created_time", "createdTime"],
  ["accessed_time", "accessedTime"],
  ["limits", "limits"],
  ["quota_refill", "quotaRefill"],
  ["quota_period", "quotaPeriod"],
];

const USER_COLUMNS: Columns = [
  ["username", "username"],
  ["display_name", "displayName"],
  ["role", "role"],
  ["status", "status"],
  ["user_group", "group"],
  ["quota", "quota"],
  ["used_quota", "usedQuota"],
  ["access_token_hash", "accessTokenHash"],
  ["created_time", "createdTime"],
  ["limits", "limits"],
  ["quota_refill", "quotaRefill"],
  ["quota_period", "quotaPeriod"],
];

const CREDENTIAL_COLUMNS: Columns = [
  ["id", "id"],
  ["provider", "provider"],
  ["kind", "kind"],
  ["label", "label"],
  ["base_url", "baseUrl"],
  ["secret", "secret"],
  ["proxy_url", "proxyUrl"],
  ["project_ids", "projectIds"],
  ["models", "models"],
  ["excluded_models", "excludedModels"],
  ["priority", "priority"],
  ["weight", "weight"],
  ["enabled", "enabled"],
  ["group_names", "groups"],
  ["headers", "headers"],
  ["state", "state"],
  ["created_at", "createdAt"],
  ["updated_at", "updatedAt"],
  ["limits", "limits"],
];

/** `INSERT INTO table (every column) VALUES ($1 …) RETURNING *`, with its values from `params`. */
function insertSql(
  table: string,
  columns: Columns,
  params: Record<string, unknown>,
): [string, unknown[]] {
  const names = columns.map(([c]) => c).join(", ");
  const slots = columns.map((_, i) => `$${i + 1}`).join(", ");
  return [
    `INSERT INTO ${table} (${names}) VALUES (${slots}) RETURNING *`,
    columns.map(([, p]) => params[p]),
  ];
}

/**
 * `UPDATE table SET … WHERE <key> = $1 RETURNING *` that sets only the columns whose record
 * field the patch names (`params` is the row mapping of the patch alone: each parameter depends
 * on its own field only). One statement, so a concurrent write of another field (a quota debit,
 * another instance's patch) is never lost. A patch that names no column still updates the row
 * (each column set to itself) so that the change is reported, as every store does.
 */
function patchSql(
  table: string,
  key: string,
  columns: Columns,
  patch: object,
  params: Record<string, unknown>,
): [string, unknown[]] {
  const values: unknown[] = [];
  const sets: string[] = [];
  for (const [column, param] of columns) {
    if (!Object.hasOwn(patch, param)) continue;
    values.push(params[param]);
    sets.push(`${column} = $${values.length + 1}`);
  }
  if (sets.length === 0) sets.push(`${columns[0]![0]} = ${columns[0]![0]}`);
  return [`UPDATE ${table} SET ${sets.join(", ")} WHERE ${key} = $1 RETURNING *`, values];
}

/** The columns an update may write: every column but those that never change. */
const updatable = (columns: Columns, ...fixed: string[]): Columns =>
  columns.filter(([c]) => !fixed.includes(c));

/** The SQLSTATE of a unique violation. */
const UNIQUE_VIOLATION = "23505";

/** Runs a write a UNIQUE index may refuse; a refusal becomes an error that says what was duplicated. */
async function unique<T>(write: () => Promise<T>, message: string): Promise<T> {
  try {
    return await write();
  } catch (err) {
    if ((err as { code?: unknown } | null)?.code === UNIQUE_VIOLATION) {
      throw new Error(message, { cause: err });
    }
    throw err;
  }
}

/**
 * Whether `id` can be a row id: keys and users have BIGINT ids, and PostgreSQL rejects anything
 * else as a parameter, where the contract answers "not found".
 */
const isRowId = (id: unknown): id is number => Number.isSafeInteger(id);

/** A LIMIT or OFFSET parameter: a non-negative integer, `null` (no limit) for an infinite one. */
function bound(n: number): number | null {
  if (n === Number.POSITIVE_INFINITY) return null;
  return Number.isFinite(n) ? Math.max(0, Math.floor(n)) : 0;
}

/**
 * How the database lowercases text for the case-insensitive searches: its own `lower()` when its
 * locale knows more than ASCII, else with the ICU root collation when the server has one (a
 * cluster made with the C locale lowercases ASCII only, where the other stores fold every
 * letter), else `lower()` as it is. Asked once per store, at its first search.
 */
function lowering(db: Runner): () => Promise<(sql: string) => string> {
  let probe: Promise<(sql: string) => string> | undefined;
  const plain = (sql: string) => `lower(${sql})`;
  const icu = (sql: string) => `lower(${sql} COLLATE "und-x-icu")`;
  return () => {
    probe ??= db
      .one<{ unicode: boolean; icu: boolean }>(
        `SELECT lower('\u00C4') = '\u00E4' AS unicode,
           EXISTS (SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu') AS icu`,
      )
      .then((r) => (r && !r.unicode && r.icu ? icu : plain))
      .catch((err) => {
        probe = undefined;
        throw err;
      });
    return probe;
  };
}

/** The conditions of a WHERE clause and their values, numbered `$1 …` in the order added. */
class Where {
  readonly #conditions: string[] = [];
  /** The values of the placeholders. */
  readonly values: unknown[] = [];

  /** The placeholder of a new value. */
  param(value: unknown): string {
    this.values.push(value);
    return `$${this.values.length}`;
  }

  /** Adds a condition (built with {@link Where.param}). */
  and(sql: string): this {
    this.#conditions.push(sql);
    return this;
  }

  /** ` WHERE a AND b`, or `""` without conditions. */
  get clause(): string {
    return this.#conditions.length ? ` WHERE ${this.#conditions.join(" AND ")}` : "";
  }
}

/** The total count of the `table` rows matching `where`, and one page of them in `order`, as records. */
async function page<R, T>(
  db: Runner,
  table: string,
  where: Where,
  order: string,
  offset: number,
  limit: number,
  map: (row: R) => T,
): Promise<Page<T>> {
  const n = where.values.length;
  const [count, rows] = await Promise.all([
    db.one<{ n: number }>(`SELECT count(*) AS n FROM ${table}${where.clause}`, where.values),
    db.rows<R>(
      `SELECT * FROM ${table}${where.clause} ORDER BY ${order} LIMIT $${n + 1} OFFSET $${n + 2}`,
      [...where.values, bound(limit), bound(offset) ?? 0],
    ),
  ]);
  return { items: rows.map(map), total: count?.n ?? 0 };
}

/** The `keys` table. */
export function keys(ctx: PgContext): KeyCollection {
  const { t } = ctx;
  const lower = lowering(ctx);
  const duplicate = "a key with this hash already exists";
  const columns = updatable(KEY_COLUMNS, "key_hash");
  return {
    async create(input) {
      const [sql, values] = insertSql(t.keys, KEY_COLUMNS, keyParams(input));
      return unique(
        () =>
          ctx.tx(async (tx) => {
            const row = (await tx.one<KeyRow>(sql, values))!;
            await tx.changed("keys", row.id, "upsert");
            return keyFromRow(row);
          }),
        duplicate,
      );
    },
    async get(id) {
      if (!isRowId(id)) return null;
      const row = await ctx.one<KeyRow>(`SELECT * FROM ${t.keys} WHERE id = $1`, [id]);
      return row ? keyFromRow(row) : null;
    },
    async getByHash(keyHash) {
      const row = await ctx.one<KeyRow>(`SELECT * FROM ${t.keys} WHERE key_hash = $1`, [keyHash]);
      return row ? keyFromRow(row) : null;
    },
    async list(q = {}) {
      const where = new Where();
      if (q.userId === null) where.and("user_id IS NULL");
      else if (q.userId !== undefined) where.and(`user_id = ${where.param(q.userId)}`);
      // strpos, not LIKE: the keyword and the hint are plain text, `%` and `_` included.
      if (q.keyword) {
        const fold = await lower();
        where.and(`strpos(${fold("name")}, ${fold(where.param(q.keyword))}) > 0`);
      }
      if (q.hint) where.and(`strpos(key_hint, ${where.param(q.hint)}) > 0`);
      return page(ctx, t.keys, where, "id DESC", q.offset ?? 0, q.limit ?? 20, keyFromRow);
    },
    async update(id, patch) {
      if (!isRowId(id)) return null;
      const rest = changeable(patch, "id", "keyHash");
      const params = keyParams(rest as Parameters<typeof keyParams>[0]);
      const [sql, values] = patchSql(t.keys, "id", columns, rest, params);
      return ctx.tx(async (tx) => {
        const row = await tx.one<KeyRow>(sql, [id, ...values]);
        if (!row) return null;
        await tx.changed("keys", id, "upsert");
        return keyFromRow(row);
      });
    },
    async rekey(id, keyHash, keyCipher) {
      if (!isRowId(id)) return null;
      // The unique index on key_hash moves the lookup with the row, or refuses a hash another
      // key holds.
      return unique(
        () =>
          ctx.tx(async (tx) => {
            const row = await tx.one<KeyRow>(
              `UPDATE ${t.keys} SET key_hash = $1, key_cipher = $2 WHERE id = $3 RETURNING *`,
              [keyHash, keyCipher, id],
            );
            if (!row) return null;
            await tx.changed("keys", id, "upsert");
            return keyFromRow(row);
          }),
        duplicate,
      );
    },
    async delete(ids) {
      const wanted = [...new Set(ids)].filter(isRowId);
      if (wanted.length === 0) return 0;
      return ctx.tx(async (tx) => {
        const rows = await tx.rows<{ id: number }>(
          `DELETE FROM ${t.keys} WHERE id = ANY($1::bigint[]) RETURNING id`,
          [wanted],
        );
        const gone = new Set(rows.map((r) => r.id));
        // Reported in the order asked, as the other stores do.
        for (const id of wanted) if (gone.has(id)) await tx.changed("keys", id, "delete");
        return gone.size;
      });
    },
  };
}

/** The `users` table. */
export function users(ctx: PgContext): UserCollection {
  const { t } = ctx;
  const lower = lowering(ctx);
  const byColumn = async (column: string, value: unknown) => {
    const row = await ctx.one<UserRow>(
      `SELECT * FROM ${t.users} WHERE ${column} = $1 ORDER BY id LIMIT 1`,
      [value],
    );
    return row ? userFromRow(row) : null;
  };
  return {
    async create(input) {
      const [sql, values] = insertSql(t.users, USER_COLUMNS, userParams(input));
      return unique(
        () =>
          ctx.tx(async (tx) => {
            const row = (await tx.one<UserRow>(sql, values))!;
            await tx.changed("users", row.id, "upsert");
            return userFromRow(row);
          }),
        `username "${input.username}" already exists`,
      );
    },
    async get(id) {
      return isRowId(id) ? byColumn("id", id) : null;
    },
    async getByUsername(username) {
      return byColumn("username", username);
    },
    async getByAccessTokenHash(hash) {
      return byColumn("access_token_hash", hash);
    },
    async list(q = {}) {
      const where = new Where();
      if (q.keyword) {
        const fold = await lower();
        const kw = fold(where.param(q.keyword));
        where.and(
          `(strpos(${fold("username")}, ${kw}) > 0 OR strpos(${fold("display_name")}, ${kw}) > 0)`,
        );
      }
      return page(ctx, t.users, where, "id", q.offset ?? 0, q.limit ?? 20, userFromRow);
    },
    async update(id, patch) {
      if (!isRowId(id)) return null;
      const rest = changeable(patch, "id");
      const params = userParams(rest as Parameters<typeof userParams>[0]);
      const [sql, values] = patchSql(t.users, "id", USER_COLUMNS, rest, params);
      return unique(
        () =>
          ctx.tx(async (tx) => {
            const row = await tx.one<UserRow>(sql, [id, ...values]);
            if (!row) return null;
            await tx.changed("users", id, "upsert");
            return userFromRow(row);
          }),
        `username "${rest.username}" already exists`,
      );
    },
    async delete(id) {
      if (!isRowId(id)) return false;
      return ctx.tx(async (tx) => {
        const { rowCount } = await tx.run(`DELETE FROM ${t.users} WHERE id = $1`, [id]);
        if (!rowCount) return false;
        await tx.changed("users", id, "delete");
        return true;
      });
    },
  };
}

/** The `credentials` table (creation order: its `seq` column). */
export function credentials(ctx: PgContext): CredentialCollection {
  const { t } = ctx;
  const columns = updatable(CREDENTIAL_COLUMNS, "id", "created_at");
  return {
    async create(input) {
      const rec = materializeCredential(input, Date.now());
      const [sql, values] = insertSql(t.credentials, CREDENTIAL_COLUMNS, credentialParams(rec));
      return unique(
        () =>
          ctx.tx(async (tx) => {
            const row = (await tx.one<CredentialRow>(sql, values))!;
            await tx.changed("credentials", rec.id, "upsert");
            return credentialFromRow(row);
          }),
        `credential "${rec.id}" already exists`,
      );
    },
    async get(id) {
      const row = await ctx.one<CredentialRow>(`SELECT * FROM ${t.credentials} WHERE id = $1`, [
        id,
      ]);
      return row ? credentialFromRow(row) : null;
    },
    async list() {
      const rows = await ctx.rows<CredentialRow>(`SELECT * FROM ${t.credentials} ORDER BY seq`);
      return rows.map(credentialFromRow);
    },
    async update(id, patch) {
      // A `state` in the patch is one column: it replaces the stored state whole.
      const rest = { ...changeable(patch, "id", "createdAt"), updatedAt: Date.now() };
      const params = credentialParams(rest as Parameters<typeof credentialParams>[0]);
      const [sql, values] = patchSql(t.credentials, "id", columns, rest, params);
      return ctx.tx(async (tx) => {
        const row = await tx.one<CredentialRow>(sql, [id, ...values]);
        if (!row) return null;
        await tx.changed("credentials", id, "upsert");
        return credentialFromRow(row);
      });
    },
    async delete(id) {
      return ctx.tx(async (tx) => {
        const { rowCount } = await tx.run(`DELETE FROM ${t.credentials} WHERE id = $1`, [id]);
        if (!rowCount) return false;
        await tx.changed("credentials", id, "delete");
        return true;
      });
    },
  };
}

/** The `settings` table: JSON values by name. */
export function settings(ctx: PgContext): SettingsCollection {
  const { t } = ctx;
  return {
    async all() {
      const rows = await ctx.rows<{ name: string; value: string }>(
        `SELECT name, value FROM ${t.settings} ORDER BY name`,
      );
      return Object.fromEntries(rows.map((r) => [r.name, JSON.parse(r.value)]));
    },
    async get(name) {
      const row = await ctx.one<{ value: string }>(
        `SELECT value FROM ${t.settings} WHERE name = $1`,
        [name],
      );
      return row === undefined ? undefined : JSON.parse(row.value);
    },
    async set(values) {
      const entries = Object.entries(values);
      if (entries.length === 0) return;
      await ctx.tx(async (tx) => {
        await tx.run(
          `INSERT INTO ${t.settings} (name, value) SELECT * FROM unnest($1::text[], $2::text[])
           ON CONFLICT (name) DO UPDATE SET value = EXCLUDED.value`,
          [entries.map(([name]) => name), entries.map(([, v]) => JSON.stringify(v) ?? "null")],
        );
        for (const [name] of entries) await tx.changed("settings", name, "upsert");
      });
    },
    async delete(name) {
      return ctx.tx(async (tx) => {
        const { rowCount } = await tx.run(`DELETE FROM ${t.settings} WHERE name = $1`, [name]);
        if (!rowCount) return false;
        await tx.changed("settings", name, "delete");
        return true;
      });
    },
  };
}

/**
 * The `kv` table: values with an optional expiry, and atomic counters. An expired row counts as
 * missing until the store's maintenance deletes it. Not watched: no change notifications.
 */
export function kv(ctx: PgContext): KvCollection {
  const { t } = ctx;
  // One statement, so atomic across instances: ON CONFLICT locks the row, and the SET
  // expressions read the row as it was. An expired counter starts again (with a new TTL); a
  // live one keeps its expiry.
  const incr = `INSERT INTO ${t.kv} AS kv (key, value, expires_at) VALUES ($1, $2::bigint::text, $3)
    ON CONFLICT (key) DO UPDATE SET
      value = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= $4
        THEN EXCLUDED.value ELSE (kv.value::bigint + $2::bigint)::text END,
      expires_at = CASE WHEN kv.expires_at IS NOT NULL AND kv.expires_at <= $4
        THEN EXCLUDED.expires_at ELSE kv.expires_at END
    RETURNING value`;
  return {
    async get(key) {
      const row = await ctx.one<{ value: string }>(
        `SELECT value FROM ${t.kv} WHERE key = $1 AND (expires_at IS NULL OR expires_at > $2)`,
        [key, Date.now()],
      );
      return row?.value ?? null;
    },
    async set(key, value, ttlMs) {
      await ctx.run(
        `INSERT INTO ${t.kv} (key, value, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, expires_at = EXCLUDED.expires_at`,
        [key, value, ttlMs === undefined ? null : Math.ceil(Date.now() + ttlMs)],
      );
    },
    async delete(key) {
      const row = await ctx.one<{ expires_at: number | null }>(
        `DELETE FROM ${t.kv} WHERE key = $1 RETURNING expires_at`,
        [key],
      );
      return row !== undefined && (row.expires_at === null || row.expires_at > Date.now());
    },
    async incr(key, by, ttlMs) {
      const now = Date.now();
      const row = await ctx.one<{ value: string }>(incr, [
        key,
        by,
        ttlMs === undefined ? null : Math.ceil(now + ttlMs),
        now,
      ]);
      return Number(row!.value);
    },
  };
}

/** The collection factories of the PostgreSQL store, each given the store's context. */
export const collections: CollectionFactories<PgContext> = {
  keys,
  users,
  credentials,
  settings,
  kv,
};
