/** How the Redis store gets its client: a given one, or one it opens from options or a URL. */
import { Cluster, type ClusterOptions, Redis, type RedisOptions } from "ioredis";

/** A client of one Redis server or of a Redis Cluster. */
export type RedisClient = Redis | Cluster;

/** Whether `x` is an ioredis client (a `Redis` or a `Cluster`) rather than options or a URL. */
export const isClient = (x: unknown): x is RedisClient =>
  typeof x === "object" && x !== null && typeof (x as Redis).duplicate === "function";

/**
 * A Redis Cluster URL split into what `new Cluster()` takes, or null when the URL names one
 * server (the single-host form stays ioredis's own). A cluster URL lists several `host:port`
 * (`redis://[[user]:password@]h1:p1,h2:p2[/db]`) or says `?cluster=true`; its hosts are the
 * startup nodes, the client finds the others itself.
 */
export function parseClusterUrl(url: string): {
  nodes: { host: string; port: number }[];
  options: ClusterOptions;
} | null {
  const m = /^(rediss?):\/\/(?:([^@/]*)@)?([^/?#]*)(?:\/(\d*))?(?:\?([^#]*))?$/.exec(url);
  if (!m) return null;
  const [, scheme, auth, hostList = "", db, query = ""] = m;
  const params = new URLSearchParams(query);
  const hosts = hostList.split(",").filter((h) => h !== "");
  const flag = params.get("cluster");
  if (hosts.length < 2 && flag !== "true" && flag !== "1") return null;
  if (hosts.length === 0)
    throw new Error(`redisStore: the Redis Cluster URL "${url}" names no host`);
  if (db && Number(db) !== 0) {
    throw new Error(
      `redisStore: a Redis Cluster has only database 0, the URL asks for /${db}: drop it from "redis" or use a prefix to keep deployments apart`,
    );
  }
  const nodes = hosts.map((h) => {
    // [::1]:6379, host:6379, or host alone (port 6379).
    const hm = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(h);
    if (!hm) throw new Error(`redisStore: "${h}" in the Redis URL is not host:port`);
    return { host: hm[1] ?? hm[2]!, port: hm[3] ? Number(hm[3]) : 6379 };
  });
  const redisOptions: RedisOptions = {};
  if (auth !== undefined && auth !== "") {
    const colon = auth.indexOf(":");
    const user = decodeURIComponent(colon < 0 ? "" : auth.slice(0, colon));
    const password = decodeURIComponent(colon < 0 ? auth : auth.slice(colon + 1));
    if (user) redisOptions.username = user;
    if (password) redisOptions.password = password;
  }
  if (scheme === "rediss") redisOptions.tls = {};
  return { nodes, options: { redisOptions } };
}

/**
 * The client of `redisStore({ redis })`: the given client, else one opened from options or a
 * URL (a {@link parseClusterUrl cluster URL} opens a `Cluster`); `owned` says the store closes it.
 */
export function openClient(redis: RedisClient | RedisOptions | string): {
  client: RedisClient;
  owned: boolean;
} {
  if (isClient(redis)) return { client: redis, owned: false };
  if (typeof redis !== "string") return { client: new Redis(redis), owned: true };
  const cluster = parseClusterUrl(redis);
  return {
    client: cluster ? new Cluster(cluster.nodes, cluster.options) : new Redis(redis),
    owned: true,
  };
}
