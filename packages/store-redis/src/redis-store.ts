import { randomUUID } from "node:crypto";
import type { Store } from "@tokenpool/core";
import { storeCollections } from "@tokenpool/core/store-kernel";
import type { Cluster, Redis, RedisOptions } from "ioredis";
import { changeFeed } from "./change-feed.js";
import * as collections from "./collections.js";
import { openClient } from "./connect.js";
import {
  COMMANDS,
  type CommandName,
  type RedisContext,
  redisKeys,
  type ScriptArg,
} from "./context.js";
import { ledger } from "./ledger.js";
import { limits } from "./limits.js";

/** Options of {@link redisStore}. */
export interface RedisStoreOptions {
  /**
   * A connected ioredis client, `Redis` or `Cluster` (not closed by the store), or options / a
   * `redis://` URL for a client the store creates and closes. A URL with several hosts
   * (`redis://[:password@]h1:p1,h2:p2[/0]`) or with `?cluster=true` opens a Redis Cluster
   * client, whose hosts are the startup nodes; a cluster has only database 0.
   */
  redis: Redis | Cluster | RedisOptions | string;
  /**
   * Prefix of every key, so several deployments can share one Redis. Keys are
   * `{<prefix>}:...` (one hash tag), the change channel is `<prefix>:changes`. Must not be
   * empty on a Redis Cluster (`{}` is no hash tag).
   * @default "tokenpool"
   */
  prefix?: string;
  /**
   * Retention bound of usage details: when more are stored, the oldest are deleted as new
   * ones are written (roll-ups are kept). 0 = no bound.
   * @default 1_000_000
   */
  usageDetailsLimit?: number;
}

/**
 * The Redis store: every atomic step of the Store contract is one Lua script, so any number of
 * gateway processes can share one Redis. Changes are announced on the pub/sub channel
 * `<prefix>:changes` and reach every other instance's `watch()` within milliseconds.
 *
 * All keys share the hash tag `{<prefix>}`: on Redis Cluster the whole store lives in one hash
 * slot, so one master serves it (each script, MULTI and pipeline stays in that slot), and several
 * prefixes spread deployments over the masters. Change notifications are plain PUBLISH, which a
 * cluster delivers to subscribers on every node.
 *
 * @example
 * ```ts
 * const store = redisStore({ redis: "redis://127.0.0.1:6379/0", prefix: "tokenpool" });
 * // A Redis Cluster: several startup nodes (or `?cluster=true`), or an ioredis `Cluster`.
 * const shared = redisStore({ redis: "redis://10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379" });
 * ```
 */
export function redisStore(options: RedisStoreOptions): Store {
  const prefix = options.prefix ?? "tokenpool";
  const detailsLimit = options.usageDetailsLimit ?? 1_000_000;
  const { client, owned } = openClient(options.redis);
  if (prefix === "" && client.isCluster) {
    // `{}` is no hash tag: Redis would hash each whole key, spreading the store over slots
    // where its scripts and transactions fail with CROSSSLOT.
    if (owned) client.disconnect();
    throw new Error(
      'redisStore: on a Redis Cluster the prefix must not be empty (every key is under the hash tag `{<prefix>}`, and `{}` is none): set `prefix`, e.g. "tokenpool"',
    );
  }
  if (owned) client.on("error", () => {}); // commands reject with the error; avoid unhandled events
  for (const [name, script] of Object.entries(COMMANDS)) {
    client.defineCommand(name, { lua: script });
  }

  const base = `{${prefix}}:`;
  const channel = `${prefix}:changes`;
  const instanceId = randomUUID();
  const k = redisKeys(base);

  let closed = false;

  const run = (name: CommandName, keys: string[], args: ScriptArg[]): Promise<unknown> =>
    (client as unknown as Record<string, (...a: ScriptArg[]) => Promise<unknown>>)[name]!(
      keys.length,
      ...keys,
      ...args,
    );
  /** Runs a notifying script (its ARGV starts with BASE, channel, instance id). */
  const write = (name: CommandName, keys: string[], args: ScriptArg[]) =>
    run(name, [k.log, ...keys], [base, channel, instanceId, ...args]);

  const feed = changeFeed({ client, channel, log: k.log, instanceId });
  const ctx: RedisContext = { client, k, base, run, write, emitLocal: feed.emitLocal };

  return {
    name: "redis",
    capabilities: { multiProcess: true },
    ...storeCollections(ctx, collections),
    ...ledger(ctx, detailsLimit),
    ...limits(ctx),

    async acquireLock(name, ttlMs) {
      const token = randomUUID();
      const ok = await client.set(k.lock(name), token, "PX", Math.max(1, Math.ceil(ttlMs)), "NX");
      return ok === "OK" ? token : null;
    },

    async releaseLock(name, token) {
      return (await run("tpLockRelease", [k.lock(name)], [token])) === 1;
    },

    watch: feed.watch,

    async close() {
      if (closed) return;
      closed = true;
      feed.close();
      if (owned) await client.quit().catch(() => client.disconnect());
    },
  };
}
