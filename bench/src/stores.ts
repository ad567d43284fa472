/**
 * `pnpm bench:stores`: what each store sustains on the proxy's per-request store path, in one
 * run, side by side: authorise a key (the gateway's KeyService, with its cache), reserve quota
 * (`reserveQuota`), settle it with a usage record (`commitUsage`, one per request, as a gateway
 * under light load writes them). Each store runs `BENCH_SECONDS` (default 3) with
 * `BENCH_CONCURRENCY` (default 32) requests in flight, in this process; Redis is a real
 * redis-server started on a free port, Redis Cluster three real masters (`startRedisCluster`),
 * PostgreSQL a real server in a temporary folder (`startPostgresServer`).
 *
 * @module
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGateway, memoryStore, type Store } from "@tokenpool/core";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { fixtures } from "@tokenpool/testing";
import { type PostgresServer, startPostgresServer } from "@tokenpool/testing/postgres-server";
import {
  type RedisCluster,
  type RedisServer,
  startRedisCluster,
  startRedisServer,
} from "@tokenpool/testing/redis-server";

const SECONDS = Number(process.env.BENCH_SECONDS ?? 3);
const CONCURRENCY = Number(process.env.BENCH_CONCURRENCY ?? 32);
const SECRET = "bench-stores-secret-0123456789-0123456789";

interface Row {
  store: string;
  ops: number;
  opsPerSec: number;
  p50us: number;
  p99us: number;
  /** Why the store could not be measured (its row says so instead of numbers). */
  error?: string;
}

/** Runs the store path against `store` through a gateway, which it closes (and the store). */
async function measure(name: string, store: Store): Promise<Row> {
  const gateway = createGateway({
    store,
    secret: SECRET,
    logger: false,
    oauth: { scanIntervalMs: 0 },
  });
  try {
    await gateway.ready;
    return { store: name, ...(await load(gateway, store)) };
  } finally {
    await gateway.close();
  }
}

/** The warm-up and the measured window of {@link measure}. */
async function load(
  gateway: ReturnType<typeof createGateway>,
  store: Store,
): Promise<Omit<Row, "store">> {
  const { key, record } = await gateway.keys.create({ name: "bench", remainQuota: 1e15 });
  const latencies: number[] = [];
  let ops = 0;
  let n = 0;
  const one = async () => {
    const t0 = process.hrtime.bigint();
    const auth = await gateway.keys.authorize(key, { ip: "127.0.0.1" });
    const r = await store.reserveQuota(auth.key.id, 10);
    if (!r.ok) throw new Error(`reserve refused: ${r.reason}`);
    await store.commitUsage(
      [
        {
          reservation: r.reservation,
          actualUnits: 7,
          record: fixtures.usage({ keyId: record.id, requestId: `b-${n++}`, quota: 7 }),
        },
      ],
      Math.floor(Date.now() / 1000),
    );
    latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
    ops++;
  };
  // Warm-up, then the measured window.
  for (let i = 0; i < 200; i++) await one();
  ops = 0;
  latencies.length = 0;
  const until = Date.now() + SECONDS * 1000;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (Date.now() < until) await one();
    }),
  );
  const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
  latencies.sort((a, b) => a - b);
  const at = (q: number) =>
    latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { ops, opsPerSec: ops / elapsed, p50us: at(0.5), p99us: at(0.99) };
}

const rows: Row[] = [];
const dir = mkdtempSync(join(tmpdir(), "tokenpool-bench-stores-"));
let redis: RedisServer | null = null;
let cluster: RedisCluster | null = null;
let postgres: PostgresServer | null = null;
/** Measures one store; one that cannot start or fails gets a row that says why. */
async function attempt(name: string, open: () => Promise<Store>): Promise<void> {
  let store: Store | null = null;
  try {
    store = await open();
    rows.push(await measure(name, store));
  } catch (error) {
    const message = (error as Error).message.split("\n")[0]!;
    console.error(`[bench] ${name} store failed: ${message}`);
    rows.push({ store: name, ops: 0, opsPerSec: 0, p50us: 0, p99us: 0, error: message });
    await store?.close().catch(() => {});
  }
}
try {
  rows.push(await measure("memory", memoryStore()));
  rows.push(await measure("sqlite", sqliteStore({ filename: join(dir, "bench.db") })));
  await attempt("file", async () => {
    const { fileStore } = await import("@tokenpool/store-file");
    return fileStore({ dir: join(dir, "file") });
  });
  await attempt("redis", async () => {
    redis = await startRedisServer();
    const { redisStore } = await import("@tokenpool/store-redis");
    return redisStore({ redis: redis.url, prefix: "bench" });
  });
  await attempt("redis cluster (3 masters)", async () => {
    cluster = await startRedisCluster();
    const { redisStore } = await import("@tokenpool/store-redis");
    return redisStore({ redis: cluster.url, prefix: "bench" });
  });
  await attempt("postgres", async () => {
    postgres = await startPostgresServer();
    const { postgresStore } = await import("@tokenpool/store-postgres");
    return postgresStore({ connectionString: postgres.url, schema: "bench" });
  });
} finally {
  await Promise.all([
    (redis as RedisServer | null)?.stop(),
    (cluster as RedisCluster | null)?.stop(),
    (postgres as PostgresServer | null)?.stop(),
  ]);
  rmSync(dir, { recursive: true, force: true });
}

const memory = rows.find((r) => r.store === "memory")!.opsPerSec;
console.log(
  `\n### Store path: authorise + reserve + settle (${SECONDS} s per store, ${CONCURRENCY} in flight)\n`,
);
console.log("| store | ops | ops/s | ÷ memory | p50 µs | p99 µs |");
console.log("| --- | ---: | ---: | ---: | ---: | ---: |");
for (const r of rows) {
  if (r.error) {
    console.log(`| ${r.store} | failed: ${r.error.replaceAll("|", "\\|")} | | | | |`);
    continue;
  }
  console.log(
    `| ${r.store} | ${r.ops} | ${Math.round(r.opsPerSec)} | ${(r.opsPerSec / memory).toFixed(2)}× | ${Math.round(r.p50us)} | ${Math.round(r.p99us)} |`,
  );
}
