import { createHash, randomUUID } from "node:crypto";
import type { Store } from "@tokenpool/core";
import { storeCollections } from "@tokenpool/core/store-kernel";
import pg from "pg";
import { changeFeed } from "./change-feed.js";
import { collections } from "./collections.js";
import { pgContext, quoteIdent, SCHEMA_NAME } from "./context.js";
import { ledger } from "./ledger.js";
import { limits } from "./limits.js";
import { migrate } from "./migrations.js";

/** Options of {@link postgresStore}. Give `connectionString` (or `poolConfig`), or `pool`. */
export interface PostgresStoreOptions {
  /**
   * `postgres://user:password@host:5432/database`; node-postgres reads `sslmode` and the other
   * libpq parameters from it. The store makes its own pool and closes it in `close()`.
   */
  connectionString?: string;
  /**
   * Everything else node-postgres' `Pool` takes when the store makes its pool (`host`, `user`,
   * `password`, `ssl` with its TLS options, `idleTimeoutMillis`, `connectionTimeoutMillis` ...).
   * `connectionString`, `max` and `ssl` given beside it win.
   */
  poolConfig?: pg.PoolConfig;
  /**
   * An open pool of the application's to use instead (its queries keep their own type parsers:
   * the store passes its own with every query). The store does not end it.
   */
  pool?: pg.Pool;
  /**
   * Connections of the store's own pool. One of them stays checked out for LISTEN while the
   * store is open; the others serve queries, at most one per atomic step at a time.
   * @default 10
   */
  max?: number;
  /** TLS options, passed through to node-postgres (`true`, or `{ ca, cert, key, rejectUnauthorized ... }`). */
  ssl?: pg.PoolConfig["ssl"];
  /**
   * The PostgreSQL schema holding the store's tables, created when missing: an application's
   * own database keeps them apart from its tables. Several stores may share a database in
   * different schemas. A plain identifier (letters, digits, `_`; at most 63 characters).
   * @default "tokenpool"
   */
  schema?: string;
  /**
   * How often the store compares the collections' change versions with the notifications it
   * heard (ms): a change whose notification was lost (a dropped connection) is reported then, as
   * a change of its whole collection.
   * @default 5000
   */
  resyncIntervalMs?: number;
  /** Reports background failures (the listening connection, maintenance). @default console.warn */
  onError?: (err: unknown) => void;
}

/** A {@link Store} on PostgreSQL, with the promise of its start-up. */
export interface PostgresStore extends Store {
  /**
   * Resolves once the schema is migrated and the store listens for other instances' changes;
   * rejects with the reason when it cannot (every call of the store rejects likewise).
   */
  readonly ready: Promise<void>;
}

/** Expired kv entries, locks, window buckets and leases are deleted this often (ms). */
const MAINTENANCE_INTERVAL_MS = 60_000;

/** The notification channel of a schema (an identifier of at most 63 bytes). */
const channelOf = (schema: string): string =>
  `tokenpool_${createHash("sha256").update(schema).digest("hex").slice(0, 32)}`;

/**
 * A Store on PostgreSQL through node-postgres (`pg`, a peer dependency), for several gateway
 * instances on one database. Versioned migrations run at start under an advisory lock (N
 * instances starting together migrate once). Every atomic step of the contract is one statement
 * or one transaction with row locks (`UPDATE … WHERE remain_quota >= $n`, `SELECT … FOR UPDATE`),
 * so reservations never overdraw across instances; changes reach the other instances through
 * LISTEN/NOTIFY, with a periodic resync for notifications lost with a connection.
 *
 * @example
 * ```ts
 * import { createGateway } from "@tokenpool/core";
 * import { postgresStore } from "@tokenpool/store-postgres";
 *
 * const gateway = createGateway({
 *   store: postgresStore({ connectionString: process.env.DATABASE_URL }),
 *   secret: process.env.TOKENPOOL_SECRET,
 * });
 * ```
 */
export function postgresStore(options: PostgresStoreOptions): PostgresStore {
  const schema = options.schema ?? "tokenpool";
  if (!SCHEMA_NAME.test(schema)) {
    throw new TypeError(
      `postgresStore: schema must be a plain identifier (letters, digits and _, at most 63 characters), got ${JSON.stringify(schema)}`,
    );
  }
  if (!options.pool && !options.connectionString && !options.poolConfig) {
    throw new TypeError("postgresStore: give connectionString, poolConfig or pool");
  }
  const owned = !options.pool;
  const pool =
    options.pool ??
    new pg.Pool({
      ...options.poolConfig,
      ...(options.connectionString === undefined
        ? {}
        : { connectionString: options.connectionString }),
      ...(options.ssl === undefined ? {} : { ssl: options.ssl }),
      max: options.max ?? options.poolConfig?.max ?? 10,
    });
  const onError =
    options.onError ??
    ((err: unknown) =>
      console.warn(`[tokenpool] postgres store: ${(err as Error)?.message ?? err}`));
  // An idle client's error (the server restarted) must not crash the process.
  // After close(), connections still closing (pg's pool.end() resolves before their sockets
  // are gone) may report a server shutdown: that is no failure of a store that is closed.
  let closing = false;
  const onPoolError = (err: Error) => {
    if (!closing) onError(err);
  };
  if (owned) pool.on("error", onPoolError);

  const instanceId = randomUUID();
  const quoted = quoteIdent(schema);
  const channel = channelOf(schema);
  let feedStart: () => Promise<void> = async () => {};
  const ready = (async () => {
    const client = await pool.connect();
    try {
      await migrate(client, schema, quoted);
    } finally {
      client.release();
    }
    await feedStart();
  })();
  // A failed start-up rejects every call; nobody need handle `ready` itself.
  ready.catch(() => {});

  const ctx = pgContext({
    pool,
    schema,
    instanceId,
    channel,
    ready,
    deliver: (changes) => feed.deliver(changes),
  });
  const feed = changeFeed({
    pool,
    t: ctx.t,
    channel,
    instanceId,
    resyncIntervalMs: options.resyncIntervalMs ?? 5_000,
    onError,
  });
  feedStart = feed.start;
  const t = ctx.t;

  const maintenance = setInterval(() => {
    const now = Date.now();
    Promise.all([
      ctx.run(`DELETE FROM ${t.kv} WHERE expires_at IS NOT NULL AND expires_at <= $1`, [now]),
      ctx.run(`DELETE FROM ${t.locks} WHERE expires_at <= $1`, [now]),
      ctx.run(`DELETE FROM ${t.limit_windows} WHERE expires_at <= $1`, [now]),
      ctx.run(`DELETE FROM ${t.limit_leases} WHERE expires_at <= $1`, [now]),
    ]).catch(onError);
  }, MAINTENANCE_INTERVAL_MS);
  maintenance.unref();

  let closed: Promise<void> | undefined;
  let isReady = false;
  ready.then(
    () => {
      isReady = true;
    },
    () => {},
  );
  /**
   * `obj` with every method waiting for the start-up first: a step that reads the clock (a
   * lock's expiry, a reservation's lifetime) reads it after the migrations, not before.
   */
  const gated = <T extends object>(obj: T): T => {
    if (!obj) return obj;
    const out = {} as Record<string, unknown>;
    for (const [name, value] of Object.entries(obj)) {
      out[name] =
        typeof value === "function"
          ? (...args: unknown[]) =>
              isReady ? value.apply(obj, args) : ready.then(() => value.apply(obj, args) as unknown)
          : value;
    }
    return out as T;
  };
  const parts = storeCollections(ctx, collections);
  const steps = ledger(ctx);

  return {
    name: "postgres",
    capabilities: { multiProcess: true },
    ready,
    keys: gated(parts.keys),
    users: gated(parts.users),
    credentials: gated(parts.credentials),
    settings: gated(parts.settings),
    kv: gated(parts.kv),
    ...gated(steps),
    usage: gated(steps.usage),
    ...gated(limits(ctx)),

    async acquireLock(name, ttlMs) {
      if (!isReady) await ready;
      const now = Date.now();
      const token = randomUUID();
      const row = await ctx.one(
        `INSERT INTO ${t.locks} (name, token, expires_at) VALUES ($1, $2, $3)
         ON CONFLICT (name) DO UPDATE SET token = EXCLUDED.token, expires_at = EXCLUDED.expires_at
         WHERE ${t.locks}.expires_at <= $4
         RETURNING token`,
        [name, token, now + ttlMs, now],
      );
      return row ? token : null;
    },

    async releaseLock(name, token) {
      const row = await ctx.one<{ expires_at: number }>(
        `DELETE FROM ${t.locks} WHERE name = $1 AND token = $2 RETURNING expires_at`,
        [name, token],
      );
      return row !== undefined && row.expires_at > Date.now();
    },

    watch: feed.watch,

    close() {
      closing = true;
      closed ??= (async () => {
        clearInterval(maintenance);
        await ready.catch(() => {});
        await feed.close();
        // The error listener stays: a connection still closing may report its end later.
        if (owned) await pool.end();
      })();
      return closed;
    },
  };
}
