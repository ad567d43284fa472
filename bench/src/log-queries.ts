/**
 * `pnpm bench:logs`: how fast the request log answers with a million records. Each store
 * (SQLite; Redis when `redis-server` is on PATH; PostgreSQL when it is installed) gets `BENCH_LOG_RECORDS` (default
 * 1,000,000) usage records through its own `commitUsage`, in batches, spread over 30 days, 1,000
 * keys, 100 users, 20 models, 50 credentials, 3 groups, 5 % failures; then each query of
 * new-api's log page (a page of 20 with its total, one filter, a time range, two filters, a deep
 * page) and `stat` runs `BENCH_LOG_REPEAT` (default 7) times. The report gives the median and
 * the slowest run per query, in ms, and the store's size. Queries are what the log routes send
 * (`GET /api/log/?...` maps to exactly these store calls).
 *
 * @module
 */
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { NewUsageRecord, Store, UsageCommit, UsageQuery } from "@tokenpool/core";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { type RedisServer, startRedisServer } from "@tokenpool/testing/redis-server";

const RECORDS = Number(process.env.BENCH_LOG_RECORDS ?? 1_000_000);
const REPEAT = Number(process.env.BENCH_LOG_REPEAT ?? 7);
const BATCH = 1000;
const DAY = 86_400_000;
const NOW = Date.now();
const STORES = (process.env.BENCH_LOG_STORES ?? "sqlite,redis,postgres").split(",");

/** A deterministic pseudo-random sequence (the same corpus in every store and run). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const MODELS = Array.from({ length: 20 }, (_, i) => `model-${i}`);
const GROUPS = ["", "vip", "batch"];

function record(i: number, next: () => number): NewUsageRecord {
  const key = Math.floor(next() * 1000);
  const user = key % 100;
  const ok = next() >= 0.05;
  const input = 50 + Math.floor(next() * 500);
  const output = ok ? Math.floor(next() * 800) : 0;
  return {
    // Oldest first, 30 days up to now.
    timestamp: NOW - 30 * DAY + Math.floor((i / RECORDS) * 30 * DAY),
    requestId: `req-${i}`,
    keyId: key + 1,
    userId: user + 1,
    credentialId: `cred-${Math.floor(next() * 50)}`,
    provider: "openai",
    route: "POST /v1/chat/completions",
    model: MODELS[Math.floor(next() ** 2 * MODELS.length)]!,
    stream: next() < 0.5,
    status: ok ? 200 : 502,
    success: ok,
    inputTokens: input,
    outputTokens: output,
    reasoningTokens: 0,
    cachedTokens: 0,
    totalTokens: input + output,
    quota: input + output * 2,
    durationMs: 200 + Math.floor(next() * 3000),
    error: ok ? null : "upstream 502",
    keyName: `key-${key + 1}`,
    username: `user-${user + 1}`,
    group: GROUPS[key % 3]!,
    format: "openai",
    firstTokenMs: 100 + Math.floor(next() * 500),
    retries: next() < 0.1 ? 1 : 0,
    errorType: ok ? null : "upstream_error",
  };
}

async function fill(store: Store): Promise<number> {
  const next = rng(42);
  const t0 = performance.now();
  for (let i = 0; i < RECORDS; i += BATCH) {
    const commits: UsageCommit[] = [];
    for (let j = i; j < Math.min(RECORDS, i + BATCH); j++) {
      const r = record(j, next);
      commits.push({ reservation: null, actualUnits: r.quota, record: r });
    }
    await store.commitUsage(commits, Math.floor(NOW / 1000));
    if (i % 100_000 === 0) process.stderr.write(`[bench] ${store.name}: ${i} records\n`);
  }
  return (performance.now() - t0) / 1000;
}

/** The queries, as the log routes build them. */
const QUERIES: [string, UsageQuery, "list" | "stat"][] = [
  ["page 1, no filter", { limit: 20 }, "list"],
  ["token_name (key name)", { keyName: "key-500", limit: 20 }, "list"],
  ["username", { username: "user-42", limit: 20 }, "list"],
  ["model_name", { model: "model-3", limit: 20 }, "list"],
  ["channel (credential)", { credentialId: "cred-7", limit: 20 }, "list"],
  ["type=5 (errors)", { success: false, limit: 20 }, "list"],
  ["self (user id)", { userId: 42, limit: 20 }, "list"],
  ["last 24 h", { from: NOW - DAY, limit: 20 }, "list"],
  ["model_name, last 7 days", { model: "model-0", from: NOW - 7 * DAY, limit: 20 }, "list"],
  ["username + model_name", { username: "user-42", model: "model-0", limit: 20 }, "list"],
  ["type=2 + token_name", { success: true, keyName: "key-500", limit: 20 }, "list"],
  ["model_name, page 50", { model: "model-3", offset: 980, limit: 20 }, "list"],
  ["stat: username, 30 days", { username: "user-42" }, "stat"],
  ["stat: last hour (rpm/tpm)", { from: NOW - 3_600_000 }, "stat"],
];

interface Row {
  query: string;
  matches: number;
  medianMs: number;
  maxMs: number;
}

async function run(store: Store): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [name, q, kind] of QUERIES) {
    const times: number[] = [];
    let matches = 0;
    for (let i = 0; i < REPEAT; i++) {
      const t0 = performance.now();
      if (kind === "list") matches = (await store.usage.list(q)).total;
      else matches = (await store.usage.stat(q)).requests;
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    rows.push({
      query: name,
      matches,
      medianMs: times[Math.floor(times.length / 2)]!,
      maxMs: times[times.length - 1]!,
    });
  }
  return rows;
}

const dir = mkdtempSync(join(tmpdir(), "tokenpool-bench-logs-"));
let redis: RedisServer | null = null;
let postgres: { url: string; stop(): Promise<void> } | null = null;
const reports: { store: string; fillSeconds: number; size: string; rows: Row[] }[] = [];
try {
  if (STORES.includes("sqlite")) {
    const file = join(dir, "logs.db");
    const store = sqliteStore({ filename: file });
    const fillSeconds = await fill(store);
    const rows = await run(store);
    await store.close();
    const mb = (statSync(file).size / 2 ** 20).toFixed(0);
    reports.push({ store: "sqlite", fillSeconds, size: `${mb} MB file`, rows });
  }
  if (STORES.includes("redis")) {
    try {
      redis = await startRedisServer();
      const { redisStore } = await import("@tokenpool/store-redis");
      const { Redis } = await import("ioredis");
      const store = redisStore({ redis: redis.url, prefix: "bench", usageDetailsLimit: 0 });
      const fillSeconds = await fill(store);
      const rows = await run(store);
      await store.close();
      const probe = new Redis(redis.url);
      const info = await probe.info("memory");
      await probe.quit();
      const used = Number(/used_memory:(\d+)/.exec(info)?.[1] ?? 0);
      reports.push({
        store: "redis",
        fillSeconds,
        size: `${(used / 2 ** 20).toFixed(0)} MB used_memory`,
        rows,
      });
    } catch (error) {
      console.error(`[bench] redis skipped: ${(error as Error).message}`);
    }
  }
  if (STORES.includes("postgres")) {
    try {
      const { startPostgresServer } = await import("@tokenpool/testing/postgres-server");
      postgres = await startPostgresServer();
      const { postgresStore } = await import("@tokenpool/store-postgres");
      const store = postgresStore({ connectionString: postgres.url, schema: "bench" });
      const fillSeconds = await fill(store);
      // What a live database has after autovacuum (the migration tunes it to follow the inserts):
      // statistics, and a visibility map that lets counts read the indexes alone.
      const { default: pg } = await import("pg");
      const probe = new pg.Client({ connectionString: postgres.url });
      await probe.connect();
      await probe.query("VACUUM ANALYZE bench.usage_records");
      const rows = await run(store);
      await store.close();
      const size = await probe.query(
        "SELECT pg_total_relation_size('bench.usage_records') AS records, pg_total_relation_size('bench.usage_rollups') AS rollups",
      );
      await probe.end();
      const bytes = Number(size.rows[0].records) + Number(size.rows[0].rollups);
      reports.push({
        store: "postgres",
        fillSeconds,
        size: `${(bytes / 2 ** 20).toFixed(0)} MB of tables and indexes`,
        rows,
      });
    } catch (error) {
      console.error(`[bench] postgres skipped: ${(error as Error).message}`);
    }
  }
} finally {
  await redis?.stop();
  await postgres?.stop();
  rmSync(dir, { recursive: true, force: true });
}

console.log(`\n### Request log queries over ${RECORDS.toLocaleString("en")} records\n`);
for (const r of reports)
  console.log(`- ${r.store}: filled in ${r.fillSeconds.toFixed(0)} s, ${r.size}`);
console.log(
  `\n| query | ${reports.map((r) => `${r.store} matches | median ms | max ms`).join(" | ")} |`,
);
console.log(`| --- | ${reports.map(() => "---: | ---: | ---:").join(" | ")} |`);
for (let i = 0; i < QUERIES.length; i++) {
  const cells = reports.map((r) => {
    const row = r.rows[i]!;
    return `${row.matches} | ${row.medianMs.toFixed(1)} | ${row.maxMs.toFixed(1)}`;
  });
  console.log(`| ${QUERIES[i]![0]} | ${cells.join(" | ")} |`);
}
