import type { Redis } from "ioredis";

export { type RedisServer, startRedisServer } from "@tokenpool/testing/redis-server";

/** Deletes every key of a store prefix (SCAN, never KEYS). */
export async function clearPrefix(redis: Redis, prefix: string): Promise<void> {
  let cursor = "0";
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", `{${prefix}}:*`, "COUNT", 1000);
    cursor = next;
    if (keys.length) await redis.unlink(...keys);
  } while (cursor !== "0");
}
