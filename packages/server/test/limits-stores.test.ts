/**
 * The races of admission control through a real gateway on each of the five stores (memory,
 * file, SQLite, Redis, PostgreSQL): 500 parallel requests on a key with an rpm limit of 60 are
 * admitted exactly 60 times, and 200 parallel requests on a key with `maxConcurrency` 5 never
 * have more than 5 in flight at the mock upstream (it records its peak) — with a queue, all of
 * them are served; without one, the rest get a 429.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGateway, type Gateway, memoryStore, type Store } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { fileStore } from "@tokenpool/store-file";
import { postgresStore } from "@tokenpool/store-postgres";
import { redisStore } from "@tokenpool/store-redis";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { type PostgresServer, startPostgresServer } from "@tokenpool/testing/postgres-server";
import { type RedisServer, startRedisServer } from "@tokenpool/testing/redis-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const UPSTREAM_KEY = "sk-upstream-limit-stores-0a1b2c3d";
const messages = [{ role: "user", content: "hi" }];

let redis: RedisServer;
let postgres: PostgresServer;
let upstream: MockUpstream;
const dirs: string[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  postgres = await startPostgresServer();
  // Streams of 10 chunks, 4 ms apart: long enough to overlap.
  upstream = await createMockUpstream({ apiKeys: [UPSTREAM_KEY], chunkDelayMs: 4 });
});

afterAll(async () => {
  await upstream?.close();
  await redis?.stop();
  await postgres?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "tp-limit-stores-"));
  dirs.push(d);
  return d;
};

const STORES: [string, () => Store][] = [
  ["memory", () => memoryStore()],
  ["file", () => fileStore({ dir: tempDir() })],
  ["sqlite", () => sqliteStore({ filename: join(tempDir(), "t.db") })],
  ["redis", () => redisStore({ redis: redis.url, prefix: `tp-ls-${process.pid}-${Date.now()}` })],
  [
    "postgres",
    () => postgresStore({ connectionString: postgres.url, schema: `tp_ls_${process.pid}` }),
  ],
];

describe.each(STORES)("admission races on the %s store", (_name, open) => {
  let gateway: Gateway;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    gateway = createGateway({
      store: open(),
      secret: "limit-stores-secret-0123456789-abcdefghij",
      logger: false,
      usage: { flushIntervalMs: 20 },
    });
    await gateway.credentials.add({
      provider: "openai",
      kind: "api-key",
      baseUrl: upstream.url,
      secret: { apiKey: UPSTREAM_KEY },
    });
    await gateway.settings.set({ "request-retry": 0 });
    server = createServer(toNodeHandler(gateway));
    server.maxConnections = 1000;
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await gateway.close();
  });

  async function keyWith(limits: Record<string, number>): Promise<string> {
    const { key, record } = await gateway.keys.create({ name: "race", unlimitedQuota: true });
    await gateway.keys.update(record.id, { limits });
    return key;
  }

  const send = (key: string, stream: boolean) =>
    fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages, stream }),
    }).then(async (r) => {
      await r.text();
      return r.status;
    });

  it("admits exactly 60 of 500 parallel requests on a 60-rpm key", async () => {
    const key = await keyWith({ rpm: 60 });
    const statuses = await Promise.all(Array.from({ length: 500 }, () => send(key, false)));
    expect(statuses.filter((s) => s === 200)).toHaveLength(60);
    expect(statuses.filter((s) => s === 429)).toHaveLength(440);
  }, 60_000);

  it("never has more than 5 of 200 parallel requests in flight at the upstream", async () => {
    upstream.reset();
    const queued = await keyWith({ maxConcurrency: 5, queueTimeoutMs: 60_000 });
    const served = await Promise.all(Array.from({ length: 200 }, () => send(queued, true)));
    expect(served.filter((s) => s === 200)).toHaveLength(200);
    expect(upstream.peakInFlight).toBe(5);

    upstream.reset();
    const refusing = await keyWith({ maxConcurrency: 5 });
    const statuses = await Promise.all(Array.from({ length: 200 }, () => send(refusing, true)));
    expect(upstream.peakInFlight).toBeLessThanOrEqual(5);
    expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(5);
    expect(statuses.filter((s) => s === 429).length).toBeGreaterThan(0);
    expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
  }, 120_000);
});
