import { randomUUID } from "node:crypto";
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Store } from "@tokenpool/core";
import { storeCollections } from "@tokenpool/core/store-kernel";
import Database from "better-sqlite3";
import { changeFeed } from "./change-feed.js";
import * as collections from "./collections.js";
import type { BetterSqlite3Database } from "./database.js";
import { ledger } from "./ledger.js";
import { limits } from "./limits.js";
import { migrate } from "./migrations.js";
import { prepareStatements, QueryShapes } from "./statements.js";

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
  /**
   * Offer gateways a usage journal directory beside the database file (`<file>.usage-journal/`),
   * so that they can share one quota reservation between several requests of a key (quota
   * blocks: one write transaction per block instead of one per request) without losing a
   * request's record if the process is killed. `false`: every request reserves alone. Nothing
   * for an in-memory database.
   * @default true
   */
  usageJournal?: boolean;
}

/**
 * Options of {@link sqliteStore}: a database file to open (`":memory:"` for a private
 * in-memory database), or an already open better-sqlite3 `Database`.
 */
export type SqliteStoreOptions = SqliteStoreBaseOptions &
  (
    | {
        /**
         * Path of the database file, or `":memory:"`. The file is created when missing, and so
         * is its folder (with its parents).
         */
        filename: string;
      }
    | {
        /**
         * An open better-sqlite3 database. The store configures it (WAL, pragmas, migrations,
         * a `tokenpool_lower` SQL function) and does not close it.
         */
        database: BetterSqlite3Database;
      }
  );

/**
 * Creates the folder of a database file (with its parents) so that better-sqlite3 can create
 * the file; nothing for `":memory:"` or `""` (SQLite's private temporary database). Throws an
 * error naming the folder and the cause when it cannot (e.g. a file where a folder should be).
 */
function ensureFolder(filename: string): void {
  if (filename === ":memory:" || filename === "") return;
  const folder = dirname(resolve(filename));
  try {
    mkdirSync(folder, { recursive: true });
  } catch (err) {
    const code = (err as { code?: string }).code;
    const why =
      code === "ENOTDIR" || code === "EEXIST"
        ? "a file is in the way (a path component is not a folder)"
        : code === "EACCES" || code === "EPERM"
          ? "permission denied"
          : (err as Error).message;
    throw new Error(
      `sqliteStore: cannot create the folder ${folder} for the database file ${filename}: ${why}${code ? ` (${code})` : ""}`,
      { cause: err },
    );
  }
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
  if (!("database" in options)) ensureFolder(options.filename);
  // The option's public type is structural (BetterSqlite3Database); it is better-sqlite3's own.
  const db =
    "database" in options
      ? (options.database as Database.Database)
      : new Database(options.filename);

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

  const s = prepareStatements(db);
  const shapes = new QueryShapes(db);
  const transaction = db.transaction((fn: () => unknown) => fn());
  /** Runs `fn` in a BEGIN IMMEDIATE transaction: the write lock is taken before the first read. */
  const immediate = <T>(fn: () => T): T => transaction.immediate(fn) as T;

  const feed = changeFeed({ s, immediate, shared, instanceId, pollIntervalMs });
  const { mutate, maintain } = feed;
  const { flush, ...steps } = ledger({ s, immediate, mutate, shapes });
  const { flush: flushLimits, ...limitSteps } = limits(db, immediate);
  let closed = false;

  return {
    name: "sqlite",
    capabilities: {
      multiProcess: shared,
      quotaShares: true,
      ...(shared && options.usageJournal !== false
        ? { usageJournalDir: `${resolve(db.name)}.usage-journal` }
        : {}),
    },
    ...storeCollections({ s, mutate, maintain, shapes }, collections),
    ...steps,
    ...limitSteps,

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

    watch: feed.watch,

    async close() {
      if (closed) return;
      closed = true;
      // Reservations already asked for are answered before the database goes away.
      flush();
      flushLimits();
      feed.close();
      if (owned) db.close();
    },
  };
}
