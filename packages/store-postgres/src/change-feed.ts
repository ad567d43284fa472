/**
 * The change feed of the PostgreSQL store: local changes after their commit, other instances'
 * changes through LISTEN/NOTIFY, and a periodic resync for notifications that were missed.
 * Internal to this package.
 *
 * Every change bumps its collection's row of `change_versions` in its own transaction and sends
 * `{c, i, o, n, v}` (collection, id, op, the sender's instance id, the new version) with
 * `pg_notify`, which PostgreSQL delivers at commit. The store listens from its start (its
 * `ready` waits for the LISTEN), so a change committed by another instance after any call of this
 * one has returned is heard, whenever `watch()` is called. It remembers the highest
 * version it heard of per collection. Notifications are lost only with the listening connection;
 * then (on reconnect) and every `resyncIntervalMs` anyway, the instance reads the versions, and
 * for a collection whose version moved past what it heard it reports the whole collection as
 * changed (a `StoreChange` without an id): the gateway reloads it.
 */
import type { StoreChange } from "@tokenpool/core";
import type pg from "pg";
import { type Collection, type Tables, TYPES } from "./context.js";

const COLLECTIONS: readonly Collection[] = ["keys", "users", "credentials", "settings"];

/** What {@link changeFeed} needs of the store. */
export interface ChangeFeedOptions {
  pool: pg.Pool;
  t: Tables;
  channel: string;
  instanceId: string;
  resyncIntervalMs: number;
  /** Reports a failure of the listening connection (it is retried). */
  onError: (err: unknown) => void;
}

/** The change feed of one store object. */
export interface ChangeFeed {
  /** Starts listening; resolves once the LISTEN is in place (rejects when it cannot connect). */
  start(): Promise<void>;
  /** Hands committed local changes to the listeners. */
  deliver(changes: readonly StoreChange[]): void;
  watch(listener: (change: StoreChange) => void): () => void;
  close(): Promise<void>;
}

interface Notification {
  c: Collection;
  i: string | null;
  o: StoreChange["op"];
  n: string;
  v: number;
}

/** Creates the change feed of one store object (see {@link ChangeFeed}). */
export function changeFeed(options: ChangeFeedOptions): ChangeFeed {
  const { pool, t, channel, instanceId, resyncIntervalMs, onError } = options;
  const listeners = new Set<(change: StoreChange) => void>();
  /** The highest version heard of (or seen at a resync) per collection. */
  const heard = new Map<Collection, number>();
  let client: pg.PoolClient | undefined;
  let connecting: Promise<void> | undefined;
  let timer: NodeJS.Timeout | undefined;
  let retry: NodeJS.Timeout | undefined;
  let closed = false;

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

  const onNotification = (message: pg.Notification) => {
    if (message.channel !== channel || !message.payload) return;
    let n: Notification;
    try {
      n = JSON.parse(message.payload) as Notification;
    } catch {
      return;
    }
    if (!COLLECTIONS.includes(n.c)) return;
    if (n.v > (heard.get(n.c) ?? 0)) heard.set(n.c, n.v);
    if (n.n === instanceId) return;
    deliver([
      n.i === null
        ? { collection: n.c, op: n.o, origin: "remote" }
        : { collection: n.c, id: n.i, op: n.o, origin: "remote" },
    ]);
  };

  /** Reads the versions; reports each collection whose version moved past what was heard. */
  const resync = async (report: boolean) => {
    const { rows } = await pool.query<{ collection: Collection; version: number }>({
      text: `SELECT collection, version FROM ${t.change_versions}`,
      types: TYPES,
    });
    for (const { collection, version } of rows) {
      const known = heard.get(collection);
      if (known !== undefined && version <= known) continue;
      heard.set(collection, version);
      if (report && known !== undefined && listeners.size > 0) {
        deliver([{ collection, op: "upsert", origin: "remote" }]);
      }
    }
  };

  const dropClient = (err?: Error) => {
    const c = client;
    client = undefined;
    if (!c) return;
    c.removeListener("notification", onNotification);
    c.removeAllListeners("error");
    c.release(err ?? true);
  };

  const scheduleReconnect = () => {
    if (closed || retry) return;
    retry = setTimeout(() => {
      retry = undefined;
      void connect();
    }, 500);
    retry.unref();
  };

  /** Connects and listens; `first`: errors reject (start-up) instead of retrying. */
  const connect = (first = false): Promise<void> => {
    if (connecting) return connecting;
    connecting = (async () => {
      let c: pg.PoolClient | undefined;
      try {
        c = await pool.connect();
        if (closed) {
          c.release();
          return;
        }
        c.on("notification", onNotification);
        c.on("error", (err) => {
          onError(err);
          dropClient(err);
          scheduleReconnect();
        });
        await c.query(`LISTEN "${channel}"`);
        client = c;
        // What changed while nobody listened (or before the first LISTEN: nothing to report).
        await resync(true);
      } catch (err) {
        if (c && client !== c) c.release(err as Error);
        else dropClient(err as Error);
        if (first) throw err;
        onError(err);
        scheduleReconnect();
      } finally {
        connecting = undefined;
      }
    })();
    return connecting;
  };

  const start = async () => {
    await connect(true);
    if (closed) return;
    timer = setInterval(() => {
      if (!client) return;
      resync(true).catch((err) => onError(err));
    }, resyncIntervalMs);
    timer.unref();
  };

  const stop = async () => {
    if (timer) clearInterval(timer);
    if (retry) clearTimeout(retry);
    timer = undefined;
    retry = undefined;
    await connecting;
    const c = client;
    if (c) {
      await c.query(`UNLISTEN "${channel}"`).catch(() => {});
      dropClient();
    }
  };

  return {
    start,
    deliver,
    watch(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },
    async close() {
      closed = true;
      listeners.clear();
      await stop();
    },
  };
}
