/**
 * Issue 12, point 7: a gateway killed with SIGKILL under load leaves nothing reserved forever
 * and nothing unbilled. Its in-flight reservations (requests still streaming, and answered
 * requests whose usage batch was still in memory) are durable rows; the restarted instance
 * recovers them once they outlive their lifetime, so afterwards Σ usage records = used quota,
 * used + remaining = initial, every request that answered 200 has a record, and no reservation
 * is left. On SQLite, Redis and PostgreSQL, each gateway a real process on port 0.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createGateway, type Store } from "@tokenpool/core";
import { postgresStore } from "@tokenpool/store-postgres";
import { redisStore } from "@tokenpool/store-redis";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { type PostgresServer, startPostgresServer } from "@tokenpool/testing/postgres-server";
import { type RedisServer, startRedisServer } from "@tokenpool/testing/redis-server";
import Database from "better-sqlite3";
import { Redis } from "ioredis";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const GATEWAY = fileURLToPath(new URL("./fixtures/crash-gateway.ts", import.meta.url));
const SECRET = "crash-recovery-secret-0123456789-abcdefghij";
const UPSTREAM_KEY = "sk-upstream-crash-0a1b2c3d4e5f";
const QUOTA = 50_000_000;
const TTL_MS = 1_500;
const LANES = 16;
/** SIGKILL once this many requests have answered 200. */
const KILL_AFTER = 150;

let upstream: MockUpstream;
let redis: RedisServer;
let postgres: PostgresServer;
const dirs: string[] = [];

beforeAll(async () => {
  // Streams take a while (a chunk every 15 ms), so some are cut by the kill.
  upstream = await createMockUpstream({ apiKeys: [UPSTREAM_KEY], chunkDelayMs: 15 });
  [redis, postgres] = await Promise.all([startRedisServer(), startPostgresServer()]);
});
afterAll(async () => {
  await upstream?.close();
  await redis?.stop();
  await postgres?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface GatewayProcess {
  child: ChildProcess;
  url: string;
  stop(signal: NodeJS.Signals): Promise<void>;
}

function startGateway(args: string[]): Promise<GatewayProcess> {
  const child = spawn(
    process.execPath,
    ["--conditions=source", "--import", "tsx", GATEWAY, ...args, String(TTL_MS)],
    { env: { ...process.env, TOKENPOOL_SECRET: SECRET }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the gateway did not start.\nstdout:\n${out}\nstderr:\n${err}`));
    }, 30_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const m = /listening (http:\/\/\S+)/.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({
        child,
        url: m[1]!,
        async stop(signal) {
          if (child.exitCode === null && child.signalCode === null) child.kill(signal);
          await exited;
        },
      });
    });
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the gateway exited before listening.\nstderr:\n${err}`));
    });
  });
}

/**
 * Keeps LANES requests in flight against the gateway (one in four streamed) and kills it with
 * SIGKILL once KILL_AFTER requests have answered 200. Returns the request ids of every answer
 * whose status was 200 (a stream counts from its headers: its client was told "200").
 */
async function loadAndKill(gw: GatewayProcess, key: string): Promise<string[]> {
  const answered: string[] = [];
  let killed = false;
  const one = async (i: number) => {
    const stream = i % 4 === 0;
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "gpt-4o-mini",
        max_tokens: 40,
        stream,
        messages: [{ role: "user", content: `request ${i}` }],
      }),
    });
    if (res.status === 200) answered.push(res.headers.get("x-request-id")!);
    else throw new Error(`unexpected status ${res.status}: ${await res.text()}`);
    if (answered.length >= KILL_AFTER && !killed) {
      killed = true;
      gw.child.kill("SIGKILL");
    }
    await res.text();
  };
  let next = 0;
  const lane = async () => {
    while (!killed) {
      try {
        await one(next++);
      } catch (error) {
        if (!killed) throw error;
      }
    }
  };
  await Promise.all(Array.from({ length: LANES }, lane));
  await gw.stop("SIGKILL");
  return answered;
}

interface Ledger {
  used: number;
  remain: number;
  billed: number;
  recovered: number;
  requestIds: Set<string>;
}

async function ledger(store: Store, keyId: number): Promise<Ledger> {
  const key = (await store.keys.get(keyId))!;
  const records = (await store.usage.list({ keyId, limit: 100_000 })).items;
  return {
    used: key.usedQuota,
    remain: key.remainQuota,
    billed: records.reduce((s, r) => s + r.quota, 0),
    recovered: records.filter((r) => r.recovered === true).length,
    requestIds: new Set(records.map((r) => r.requestId)),
  };
}

/** Sets up a credential and a key through a gateway of our own, then closes it. */
async function provision(store: Store): Promise<{ key: string; id: number }> {
  const admin = createGateway({
    store,
    secret: SECRET,
    logger: false,
    oauth: { scanIntervalMs: 0 },
  });
  await admin.ready;
  await admin.credentials.add({
    provider: "openai",
    kind: "api-key",
    baseUrl: upstream.url,
    secret: { apiKey: UPSTREAM_KEY },
  });
  const { key, record } = await admin.keys.create({ name: "crash", remainQuota: QUOTA });
  await admin.close();
  return { key, id: record.id };
}

async function crashAndRecover(
  open: () => Store,
  args: string[],
  reservationsLeft: () => Promise<number>,
  journalDir?: string,
): Promise<void> {
  const { key, id } = await provision(open());
  const killed = await startGateway(args);
  const answered = await loadAndKill(killed, key);
  expect(answered.length).toBeGreaterThanOrEqual(KILL_AFTER);
  // SQLite: the killed gateway shared quota blocks between its requests, kept in its journal.
  const journal = (): string[] =>
    journalDir && existsSync(journalDir)
      ? readdirSync(journalDir).filter((f) => f.startsWith(`${killed.child.pid}.`))
      : [];
  if (journalDir) expect(journal().length).toBeGreaterThan(0);

  // The next start recovers the dead instance's reservations once they outlive their lifetime.
  const restarted = await startGateway(args);
  const store = open();
  try {
    const deadline = Date.now() + 6 * TTL_MS + 5_000;
    let l = await ledger(store, id);
    while ((l.used + l.remain !== QUOTA || l.billed !== l.used) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      l = await ledger(store, id);
    }
    expect(l.billed).toBe(l.used);
    expect(l.used + l.remain).toBe(QUOTA);
    // The kill caught reservations in flight: they were recovered, not lost.
    expect(l.recovered).toBeGreaterThan(0);
    const missing = answered.filter((rid) => !l.requestIds.has(rid));
    expect(missing).toEqual([]);
    expect(await reservationsLeft()).toBe(0);
    // Its journal was replayed (every answered request got its record from it) and removed.
    expect(journal()).toEqual([]);
  } finally {
    await restarted.stop("SIGTERM");
    await store.close();
  }
}

/** A shared store the crash test runs on. */
interface CrashBackend {
  /** Opens the store in the test process. */
  open(): Store;
  /** The store as fixtures/crash-gateway.ts takes it: kind, file or URL, prefix or schema. */
  args: string[];
  /** Reservations still in the store, read behind its back. */
  reservationsLeft(): Promise<number>;
  /** Where the store's gateways keep their usage journals (SQLite only). */
  journalDir?: string;
}

const backends: [name: string, make: () => CrashBackend][] = [
  [
    "SQLite",
    () => {
      const dir = mkdtempSync(join(tmpdir(), "tokenpool-crash-recovery-"));
      dirs.push(dir);
      const file = join(dir, "tokenpool.db");
      return {
        open: () => sqliteStore({ filename: file }),
        args: ["sqlite", file, "-"],
        journalDir: `${file}.usage-journal`,
        async reservationsLeft() {
          const db = new Database(file, { readonly: true });
          try {
            return (db.prepare("SELECT COUNT(*) FROM reservations").pluck().get() as number) ?? 0;
          } finally {
            db.close();
          }
        },
      };
    },
  ],
  [
    "Redis",
    () => {
      const prefix = `tp-crash-${process.pid}`;
      return {
        open: () => redisStore({ redis: redis.url, prefix }),
        args: ["redis", redis.url, prefix],
        async reservationsLeft() {
          const client = new Redis(redis.url);
          try {
            return (
              (await client.zcard(`{${prefix}}:res`)) + (await client.hlen(`{${prefix}}:res:data`))
            );
          } finally {
            client.disconnect();
          }
        },
      };
    },
  ],
  [
    "PostgreSQL",
    () => {
      const schema = `tp_crash_${process.pid}`;
      return {
        open: () => postgresStore({ connectionString: postgres.url, schema }),
        args: ["postgres", postgres.url, schema],
        async reservationsLeft() {
          const client = new pg.Client({ connectionString: postgres.url });
          await client.connect();
          try {
            const { rows } = await client.query<{ n: number }>(
              `SELECT COUNT(*)::int AS n FROM "${schema}".reservations`,
            );
            return rows[0]!.n;
          } finally {
            await client.end();
          }
        },
      };
    },
  ],
];

describe("SIGKILL of a gateway under load, then a restart", () => {
  it.each(backends)(
    "on %s: every reservation is recovered, Σ usage records = used quota",
    async (_, make) => {
      const backend = make();
      await crashAndRecover(
        backend.open,
        backend.args,
        backend.reservationsLeft,
        backend.journalDir,
      );
    },
    120_000,
  );
});
