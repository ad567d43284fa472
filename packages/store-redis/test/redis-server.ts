import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
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

/**
 * Two processes (fixtures/reserve-child.ts), each with its own connection to `url`, race
 * `count` reservations of one unit each on key `keyId` of the store `prefix`. A barrier, not a
 * clock: each child says `ready` once connected, and both are told to go together, however long
 * a loaded machine takes to start them. Resolves the units each child was granted.
 */
export async function raceReserveInTwoProcesses(
  url: string,
  prefix: string,
  keyId: number,
  count: number,
): Promise<number[]> {
  const here = dirname(fileURLToPath(import.meta.url));
  let ready = 0;
  const procs: ReturnType<typeof spawn>[] = [];
  let go!: () => void;
  const allReady = new Promise<void>((r) => {
    go = r;
  });
  const child = () =>
    new Promise<number>((resolve, reject) => {
      const proc = spawn(
        process.execPath,
        [
          "--conditions=source",
          "--import",
          "tsx",
          join(here, "fixtures", "reserve-child.ts"),
          url,
          prefix,
          String(keyId),
          String(count),
        ],
        { cwd: join(here, "..") },
      );
      procs.push(proc);
      let out = "";
      let err = "";
      proc.stdout!.on("data", (d) => {
        const wasReady = out.startsWith("ready\n");
        out += d;
        if (!wasReady && out.startsWith("ready\n") && ++ready === 2) go();
      });
      proc.stderr!.on("data", (d) => {
        err += d;
      });
      proc.on("exit", (code) => {
        if (code !== 0) return reject(new Error(`child exited with ${code}: ${err}`));
        resolve(JSON.parse(out.slice(6).trim()).granted);
      });
    });
  const results = [child(), child()];
  // A child that fails before it is ready rejects here instead of hanging the barrier.
  await Promise.race([allReady, Promise.all(results)]);
  for (const p of procs) p.stdin!.end("go\n");
  return Promise.all(results);
}
