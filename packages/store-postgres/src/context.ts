/**
 * What every part of the PostgreSQL store shares: the pool, the schema's quoted table names,
 * queries with the store's own type parsers, and transactions that record change notifications.
 * Internal to this package.
 */
import type { StoreChange } from "@tokenpool/core";
import pg from "pg";

/** A collection whose changes `watch()` reports. */
export type Collection = StoreChange["collection"];

/** The quoted, schema-qualified name of every table of the store. */
export interface Tables {
  keys: string;
  users: string;
  credentials: string;
  usage_records: string;
  usage_rollups: string;
  usage_totals: string;
  reservations: string;
  settings: string;
  kv: string;
  locks: string;
  limit_windows: string;
  limit_leases: string;
  change_versions: string;
}

const TABLE_NAMES: readonly (keyof Tables)[] = [
  "keys",
  "users",
  "credentials",
  "usage_records",
  "usage_rollups",
  "usage_totals",
  "reservations",
  "settings",
  "kv",
  "locks",
  "limit_windows",
  "limit_leases",
  "change_versions",
];

/** A schema name the store accepts: a plain SQL identifier (quoted anyway). */
export const SCHEMA_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,62}$/;

/** `"schema"` quoted as an identifier. */
export const quoteIdent = (name: string): string => `"${name.replaceAll('"', '""')}"`;

/** Every table of the store in `schema`. */
export function tablesOf(schema: string): Tables {
  const s = quoteIdent(schema);
  return Object.fromEntries(TABLE_NAMES.map((t) => [t, `${s}.${t}`])) as unknown as Tables;
}

/**
 * The store's type parsers, given with every query (so a pool shared with the application keeps
 * its own): bigint and numeric as JS numbers (quota units, ms and ids stay far below 2^53).
 */
const toNumber = (v: string): number => Number(v);
export const TYPES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: "text" | "binary") =>
    oid === pg.types.builtins.INT8 || oid === pg.types.builtins.NUMERIC
      ? toNumber
      : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig["getTypeParser"],
};

/** Something to run a query on: the pool, or one client inside a transaction. */
interface Queryable {
  query(config: pg.QueryConfig): Promise<pg.QueryResult>;
}

/** The SQL statement runners of {@link PgContext} and {@link Tx}. */
export interface Runner {
  /** The rows of a query. */
  rows<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<R[]>;
  /** The first row of a query, or undefined. */
  one<R = Record<string, unknown>>(text: string, values?: unknown[]): Promise<R | undefined>;
  /** The whole result (rowCount ...). */
  run(text: string, values?: unknown[]): Promise<pg.QueryResult>;
}

function runner(target: Queryable, gate?: () => Promise<void>): Runner {
  const query = (text: string, values?: unknown[]) =>
    target.query({ text, values: values as unknown[], types: TYPES });
  const run = gate
    ? async (text: string, values?: unknown[]) => {
        await gate();
        return query(text, values);
      }
    : query;
  return {
    run,
    rows: async <R>(text: string, values?: unknown[]) => (await run(text, values)).rows as R[],
    one: async <R>(text: string, values?: unknown[]) =>
      (await run(text, values)).rows[0] as R | undefined,
  };
}

/** One transaction of {@link PgContext.tx}. */
export interface Tx extends Runner {
  /**
   * Records a change of a watched collection: bumps the collection's version and sends the
   * notification (delivered to other instances at commit); local listeners hear it after the
   * commit. `id` absent: the whole collection changed.
   */
  changed(
    collection: Collection,
    id: string | number | undefined,
    op: StoreChange["op"],
  ): Promise<void>;
}

/** SQLSTATEs of a transaction that lost a race and may simply run again. */
const RETRYABLE = new Set(["40001", "40P01"]);

/** The shared context of one store object. */
export interface PgContext extends Runner {
  readonly pool: pg.Pool;
  readonly schema: string;
  /** Quoted, schema-qualified table names. */
  readonly t: Tables;
  /** This store object's id in change notifications. */
  readonly instanceId: string;
  /** The notification channel of the schema. */
  readonly channel: string;
  /**
   * Runs `fn` in one transaction (READ COMMITTED; atomic steps take row locks with
   * `SELECT … FOR UPDATE` or single-statement conditional updates). A serialization failure or
   * deadlock rolls back and runs `fn` again (up to 5 times); any other error rolls back and
   * rejects. Changes recorded with {@link Tx.changed} reach local listeners after the commit.
   */
  tx<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
}

/** Creates the context (see {@link PgContext}); `deliver` hands committed local changes to the feed. */
export function pgContext(options: {
  pool: pg.Pool;
  schema: string;
  instanceId: string;
  channel: string;
  deliver: (changes: StoreChange[]) => void;
  /** Resolves when the store is ready (migrated, listening); every query waits for it. */
  ready: Promise<void>;
}): PgContext {
  const { pool, schema, instanceId, channel, deliver, ready } = options;
  let isReady = false;
  void ready.then(
    () => {
      isReady = true;
    },
    () => {},
  );
  const gate = () => (isReady ? Promise.resolve() : ready);
  const t = tablesOf(schema);
  const bump = `WITH v AS (UPDATE ${t.change_versions} SET version = version + 1 WHERE collection = $1 RETURNING version)
    SELECT pg_notify($2, json_build_object('c', $1::text, 'i', $3::text, 'o', $4::text, 'n', $5::text, 'v', v.version)::text) FROM v`;

  async function tx<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (!isReady) await ready;
    for (let attempt = 0; ; attempt++) {
      const client = await pool.connect();
      const changes: StoreChange[] = [];
      const r = runner(client);
      const handle: Tx = {
        ...r,
        async changed(collection, id, op) {
          await r.run(bump, [
            collection,
            channel,
            id === undefined ? null : String(id),
            op,
            instanceId,
          ]);
          changes.push(
            id === undefined
              ? { collection, op, origin: "local" }
              : { collection, id: String(id), op, origin: "local" },
          );
        },
      };
      let broken: Error | undefined;
      try {
        await client.query("BEGIN");
        const result = await fn(handle);
        await client.query("COMMIT");
        client.release();
        if (changes.length > 0) deliver(changes);
        return result;
      } catch (err) {
        try {
          await client.query("ROLLBACK");
        } catch (rollbackError) {
          broken = rollbackError as Error;
        }
        client.release(broken);
        const code = (err as { code?: string }).code;
        if (code !== undefined && RETRYABLE.has(code) && attempt < 5) {
          await new Promise((r) => setTimeout(r, Math.random() * 5 * (attempt + 1)));
          continue;
        }
        throw err;
      }
    }
  }

  return { pool, schema, t, instanceId, channel, tx, ...runner(pool, gate) };
}
