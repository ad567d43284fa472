import type { Cluster, Redis } from "ioredis";

export {
  type RedisCluster,
  type RedisServer,
  startRedisCluster,
  startRedisServer,
} from "@tokenpool/testing/redis-server";

/**
 * Deletes every key of a store prefix (SCAN, never KEYS). On a Redis Cluster, SCAN sees one
 * node's keys only: every master is scanned.
 */
export async function clearPrefix(redis: Redis | Cluster, prefix: string): Promise<void> {
  const nodes = redis.isCluster ? (redis as Cluster).nodes("master") : [redis as Redis];
  for (const node of nodes) {
    for (const keys of await scanKeys(node, `{${prefix}}:*`)) {
      if (keys.length) await node.unlink(...keys);
    }
  }
}

/** The keys of one server matching `pattern`, in SCAN batches. */
export async function scanKeys(redis: Redis, pattern: string): Promise<string[][]> {
  const batches: string[][] = [];
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 1000);
    cursor = next;
    batches.push(keys);
  } while (cursor !== "0");
  return batches;
}
