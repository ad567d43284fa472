/** Change notifications of the Redis store: local ones, and other instances' through pub/sub. */
import type { StoreChange } from "@tokenpool/core";
import type { RedisClient } from "./connect.js";

type Collection = StoreChange["collection"];

/** What {@link changeFeed} needs of the store. */
export interface ChangeFeedOptions {
  client: RedisClient;
  /** The pub/sub channel, `<prefix>:changes`. */
  channel: string;
  /** The stream of recent changes (to catch up while subscribing). */
  log: string;
  /** This store object's id, to skip its own messages. */
  instanceId: string;
}

/** The change feed of one store object. */
export interface ChangeFeed {
  /** Tells the listeners about a change committed through this store object (origin `local`). */
  emitLocal(collection: Collection, id: string | number, op: StoreChange["op"]): void;
  /** Subscribes a listener; a subscriber connection runs while there are listeners. */
  watch(listener: (change: StoreChange) => void): () => void;
  /** Drops the listeners and the subscriber connection. */
  close(): void;
}

/** Creates the change feed of one store object (see {@link ChangeFeed}). */
export function changeFeed({ client, channel, log, instanceId }: ChangeFeedOptions): ChangeFeed {
  let closed = false;
  const listeners = new Set<(c: StoreChange) => void>();
  let subscriber: RedisClient | null = null;

  const emitLocal = (collection: Collection, id: string | number, op: StoreChange["op"]) => {
    const change: StoreChange = { collection, id: String(id), op, origin: "local" };
    queueMicrotask(() => {
      for (const l of [...listeners]) l(change);
    });
  };

  const streamIdAfter = (a: string, b: string) => {
    const [am, as] = a.split("-").map(Number) as [number, number];
    const [bm, bs] = b.split("-").map(Number) as [number, number];
    return am > bm || (am === bm && as > bs);
  };

  const startSubscriber = () => {
    const sub = client.duplicate();
    subscriber = sub;
    sub.on("error", () => {});
    // Changes committed after this moment are delivered: the stream covers the time until the
    // subscription is active, pub/sub the rest. Stream ids are compared to deliver each once.
    const start = `${Date.now()}-0`;
    let lastSeen = "0-0";
    let catchingUp = true;
    const queued: string[] = [];
    const deliver = (sid: string, json: string) => {
      if (subscriber !== sub || !streamIdAfter(sid, lastSeen)) return;
      lastSeen = sid;
      let m: { o: string; c: Collection; i: string; p: StoreChange["op"] };
      try {
        m = JSON.parse(json);
      } catch {
        return;
      }
      if (m.o === instanceId) return;
      const change: StoreChange = { collection: m.c, id: m.i, op: m.p, origin: "remote" };
      for (const l of [...listeners]) l(change);
    };
    const onMessage = (_ch: string, message: string) => {
      if (catchingUp) queued.push(message);
      else {
        const sp = message.indexOf(" ");
        deliver(message.slice(0, sp), message.slice(sp + 1));
      }
    };
    sub.on("message", onMessage);
    sub
      .subscribe(channel)
      .then(() => client.xrange(log, start, "+"))
      .then((entries) => {
        for (const [sid, fields] of entries) {
          const i = fields.indexOf("m");
          if (i >= 0) deliver(sid, fields[i + 1]!);
        }
      })
      .catch(() => {})
      .finally(() => {
        catchingUp = false;
        for (const message of queued.splice(0)) onMessage(channel, message);
      });
  };

  const stopSubscriber = () => {
    const sub = subscriber;
    subscriber = null;
    if (sub) sub.quit().catch(() => sub.disconnect());
  };

  return {
    emitLocal,
    watch(listener) {
      listeners.add(listener);
      if (!subscriber && !closed) startSubscriber();
      let active = true;
      return () => {
        if (!active) return;
        active = false;
        listeners.delete(listener);
        if (listeners.size === 0) stopSubscriber();
      };
    },
    close() {
      closed = true;
      listeners.clear();
      stopSubscriber();
    },
  };
}
