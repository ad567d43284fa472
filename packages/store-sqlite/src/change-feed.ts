/** The change feed of the SQLite store: local notifications and other processes' changes. */
import type { StoreChange } from "@tokenpool/core";
import type { Statements } from "./statements.js";

/** A collection whose changes `watch()` reports. */
export type Collection = StoreChange["collection"];
/** Records one change of the running write (see {@link ChangeFeed.mutate}). */
export type Note = (collection: Collection, id: string | number, op: StoreChange["op"]) => void;

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

/** What {@link changeFeed} needs of the store. */
export interface ChangeFeedOptions {
  s: Statements;
  /** Runs `fn` in one BEGIN IMMEDIATE transaction. */
  immediate: <T>(fn: () => T) => T;
  /** Whether other connections may share the database (a file): only then is the feed written and polled. */
  shared: boolean;
  /** This store object's id in the change table, to tell its own rows from other processes'. */
  instanceId: string;
  pollIntervalMs: number;
}

/** The change feed of one store object. */
export interface ChangeFeed {
  /**
   * Runs a write of keys, users, credentials or settings as one immediate transaction. `note`
   * appends to the change feed inside that transaction; local listeners hear about the changes
   * after the commit.
   */
  mutate<T>(fn: (note: Note) => T): T;
  /** Best-effort housekeeping (expired kv entries and locks, old change rows), at most once a minute. */
  maintain(): void;
  /** Subscribes a listener; polls for other processes' changes while there are listeners. */
  watch(listener: (change: StoreChange) => void): () => void;
  /** Stops polling and drops the listeners. */
  close(): void;
}

/** Creates the change feed of one store object (see {@link ChangeFeed}). */
export function changeFeed(options: ChangeFeedOptions): ChangeFeed {
  const { s, immediate, shared, instanceId, pollIntervalMs } = options;
  const listeners = new Set<(change: StoreChange) => void>();
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let lastSeq = 0;
  let lastDataVersion = -1;
  let lastMaintenance = 0;

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

  return {
    mutate,
    maintain,
    watch(listener) {
      listeners.add(listener);
      startPolling();
      return () => {
        listeners.delete(listener);
        if (!listeners.size) stopPolling();
      };
    },
    close() {
      closed = true;
      stopPolling();
      listeners.clear();
    },
  };
}
