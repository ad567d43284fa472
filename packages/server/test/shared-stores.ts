/**
 * The shared stores the multi-instance tests run on, each a real server started on free ports:
 * a redis-server, a Redis Cluster of three masters, a PostgreSQL. A test module registers its
 * tests given a {@link SharedStoreBackend}; one small file per backend calls it.
 */
import type { Store } from "@tokenpool/core";
import { postgresStore } from "@tokenpool/store-postgres";
import { redisStore } from "@tokenpool/store-redis";
import { startPostgresServer } from "@tokenpool/testing/postgres-server";
import { startRedisCluster, startRedisServer } from "@tokenpool/testing/redis-server";

/** A fresh store on a running server, for several gateway processes. */
export interface SharedStore {
  /** The `tokenpool serve --store` spec of the store. */
  spec: string;
  /** The same store, opened in the test process. */
  open(): Store;
  /** Stops the server behind the store. */
  stop(): Promise<void>;
}

/** A backend of the multi-instance tests: its name and how to start a fresh store on it. */
export interface SharedStoreBackend {
  /** As in the test names: "Redis", "Redis Cluster", "PostgreSQL". */
  name: string;
  /** Starts a server and names a fresh store on it; `tag` names the store (prefix or schema). */
  start(tag: string): Promise<SharedStore>;
}

/** One redis-server; the store's keys under `tp-<tag>`. */
export const redisBackend: SharedStoreBackend = {
  name: "Redis",
  async start(tag) {
    const redis = await startRedisServer();
    const prefix = `tp-${tag}`;
    return {
      spec: `${redis.url}?prefix=${prefix}`,
      open: () => redisStore({ redis: redis.url, prefix }),
      stop: () => redis.stop(),
    };
  },
};

/** A Redis Cluster of three masters, named by its `redis://h1:p1,h2:p2,h3:p3` URL. */
export const redisClusterBackend: SharedStoreBackend = {
  name: "Redis Cluster",
  async start(tag) {
    const cluster = await startRedisCluster();
    const prefix = `tp-${tag}`;
    return {
      spec: `${cluster.url}?prefix=${prefix}`,
      open: () => redisStore({ redis: cluster.url, prefix }),
      stop: () => cluster.stop(),
    };
  },
};

/** One PostgreSQL server; the store's tables in the schema `tp_<tag>`. */
export const postgresBackend: SharedStoreBackend = {
  name: "PostgreSQL",
  async start(tag) {
    const pg = await startPostgresServer();
    const schema = `tp_${tag.replace(/\W/g, "_")}`;
    return {
      spec: `${pg.url}?schema=${schema}`,
      open: () => postgresStore({ connectionString: pg.url, schema }),
      stop: () => pg.stop(),
    };
  },
};
