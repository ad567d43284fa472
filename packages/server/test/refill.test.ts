/**
 * Budgets that reset, through a real gateway on each of the five stores, with a controllable
 * clock (`Date` faked with `vi.setSystemTime`; timers and I/O stay real): a daily and a monthly
 * refill cross 2027-01-31 → 2027-02-01 (a day and a calendar month at once) while a request
 * reserved in January is still streaming. At the boundary the balance becomes the refill amount
 * and the used quota 0, once; the January request settles against January (the February balance
 * is not touched by it, its record keeps its real cost); the next day refills the daily key
 * again and not the monthly one; `next_refill_time` follows the `quota-refill-time-zone` setting.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createGateway,
  type Gateway,
  type GatewayEvents,
  memoryStore,
  type Store,
} from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { fileStore } from "@tokenpool/store-file";
import { postgresStore } from "@tokenpool/store-postgres";
import { redisStore } from "@tokenpool/store-redis";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { type PostgresServer, startPostgresServer } from "@tokenpool/testing/postgres-server";
import { type RedisServer, startRedisServer } from "@tokenpool/testing/redis-server";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";

const UPSTREAM_KEY = "sk-upstream-refill-0a1b2c3d4e5f";
const messages = [{ role: "user", content: "hello there" }];
const AMOUNT = 1_000_000;
const JAN_31_LATE = Date.UTC(2027, 0, 31, 23, 59, 0);
const FEB_1 = Date.UTC(2027, 1, 1);
const FEB_2 = Date.UTC(2027, 1, 2);
const MAR_1 = Date.UTC(2027, 2, 1);

let redis: RedisServer;
let postgres: PostgresServer;
/** `gpt-4o-mini` answers at once; `slow-model` streams 40 chunks 25 ms apart (about a second). */
let fast: MockUpstream;
let slow: MockUpstream;
const dirs: string[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  postgres = await startPostgresServer();
  fast = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  slow = await createMockUpstream({
    apiKeys: [UPSTREAM_KEY],
    chunkDelayMs: 25,
    reply: Array.from({ length: 40 }, (_, i) => `w${i}`).join(" "),
  });
});

afterAll(async () => {
  await fast?.close();
  await slow?.close();
  await redis?.stop();
  await postgres?.stop();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

afterEach(() => {
  vi.useRealTimers();
});

const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), "tp-refill-"));
  dirs.push(d);
  return d;
};

const STORES: [string, () => Store][] = [
  ["memory", () => memoryStore()],
  ["file", () => fileStore({ dir: tempDir() })],
  ["sqlite", () => sqliteStore({ filename: join(tempDir(), "t.db") })],
  [
    "redis",
    () => redisStore({ redis: redis.url, prefix: `tp-refill-${process.pid}-${Date.now()}` }),
  ],
  [
    "postgres",
    () => postgresStore({ connectionString: postgres.url, schema: `tp_refill_${process.pid}` }),
  ],
];

describe.each(STORES)("quota refills on the %s store", (_name, open) => {
  let gateway: Gateway;
  let server: Server;
  let base: string;
  const refills: Parameters<GatewayEvents["quota.refilled"]>[0][] = [];

  beforeAll(async () => {
    gateway = createGateway({
      store: open(),
      secret: "refill-secret-0123456789-abcdefghijklmn",
      logger: false,
      usage: { flushIntervalMs: 10 },
      oauth: { scanIntervalMs: 0 },
    });
    const apiKey = {
      provider: "openai",
      kind: "api-key" as const,
      secret: { apiKey: UPSTREAM_KEY },
    };
    await gateway.credentials.add({
      ...apiKey,
      baseUrl: fast.url,
      models: [{ name: "gpt-4o-mini" }],
    });
    await gateway.credentials.add({
      ...apiKey,
      baseUrl: slow.url,
      models: [{ name: "slow-model" }],
    });
    await gateway.settings.set({ "request-retry": 0 });
    gateway.events.on("quota.refilled", (info) => refills.push(info));
    server = createServer(toNodeHandler(gateway));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
    await gateway.close();
  });

  const send = (key: string, model: string, stream = false) =>
    fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model, messages, stream, max_tokens: 100 }),
    });

  /** Waits until the gateway has written every settlement it holds. */
  async function settled(keyId: number, records: number): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const page = await gateway.store.usage.list({ keyId, limit: 100 });
      if (page.total >= records) return;
      await new Promise((r) => setTimeout(r, 10));
    }
    throw new Error(`fewer than ${records} usage records for key ${keyId}`);
  }

  it("refill at the boundary, once, and settle a reservation across it against its own period", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(JAN_31_LATE);
    const make = async (interval: "1d" | "month") => {
      const { key, record } = await gateway.keys.create({
        name: `refill-${interval}`,
        remainQuota: AMOUNT,
        quotaRefill: { interval, amount: AMOUNT },
      });
      return { key, id: record.id };
    };
    const daily = await make("1d");
    const monthly = await make("month");
    expect((await gateway.keys.get(daily.id))?.nextRefillTime).toBe(FEB_1);
    expect((await gateway.keys.get(monthly.id))?.nextRefillTime).toBe(FEB_1);

    // January: one answered request, and one stream still running at midnight.
    for (const k of [daily, monthly]) expect((await send(k.key, "gpt-4o-mini")).status).toBe(200);
    const streams = await Promise.all([daily, monthly].map((k) => send(k.key, "slow-model", true)));
    for (const s of streams) expect(s.status).toBe(200);
    for (const k of [daily, monthly]) await settled(k.id, 1);
    const january = await Promise.all(
      [daily, monthly].map(async (k) => (await gateway.store.keys.get(k.id))!),
    );
    for (const k of january) {
      expect(k.remainQuota).toBeLessThan(AMOUNT);
      expect(k.usedQuota).toBeGreaterThan(0);
    }

    // Midnight, February 1st: a new day and a new month.
    vi.setSystemTime(FEB_1 + 10_000);
    for (const k of [daily, monthly]) expect((await send(k.key, "gpt-4o-mini")).status).toBe(200);
    expect(
      refills
        .filter((r) => r.target === "key")
        .map((r) => r.id)
        .sort(),
    ).toEqual([daily.id, monthly.id].sort());
    expect(refills.every((r) => r.period === FEB_1 && r.amount === AMOUNT)).toBe(true);
    // The January streams end now and settle.
    for (const s of streams) expect(await s.text()).toContain("w39");
    for (const k of [daily, monthly]) await settled(k.id, 3);

    for (const k of [daily, monthly]) {
      const records = (await gateway.store.usage.list({ keyId: k.id, limit: 10 })).items;
      const feb = records.filter((r) => r.timestamp >= FEB_1);
      const janStream = records.find((r) => r.model === "slow-model")!;
      expect(feb).toHaveLength(1);
      // The stream was billed its real cost in January's period...
      expect(janStream.quota).toBeGreaterThan(0);
      expect(janStream.timestamp).toBeLessThan(FEB_1);
      // ... and February's balance only knows February's request.
      const now = (await gateway.store.keys.get(k.id))!;
      expect(now.usedQuota).toBe(feb[0]!.quota);
      expect(now.remainQuota).toBe(AMOUNT - feb[0]!.quota);
      expect(now.quotaPeriod).toBe(FEB_1);
    }
    expect((await gateway.keys.get(daily.id))?.nextRefillTime).toBe(FEB_2);
    expect((await gateway.keys.get(monthly.id))?.nextRefillTime).toBe(MAR_1);

    // The next day: the daily key refills again, the monthly one does not.
    refills.length = 0;
    vi.setSystemTime(FEB_2 + 5_000);
    for (const k of [daily, monthly]) expect((await send(k.key, "gpt-4o-mini")).status).toBe(200);
    expect(refills.map((r) => r.id)).toEqual([daily.id]);
    for (const k of [daily, monthly]) await settled(k.id, k === daily ? 4 : 4);
    const d = (await gateway.store.keys.get(daily.id))!;
    const m = (await gateway.store.keys.get(monthly.id))!;
    expect(d.quotaPeriod).toBe(FEB_2);
    expect(d.remainQuota).toBe(AMOUNT - d.usedQuota);
    expect(m.quotaPeriod).toBe(FEB_1);
    expect(m.usedQuota).toBeGreaterThan(d.usedQuota);
  }, 60_000);

  it("start periods in the quota-refill-time-zone setting", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.UTC(2027, 5, 10, 20, 0)); // 04:00 on June 11th in Shanghai
    await gateway.settings.set({ "quota-refill-time-zone": "Asia/Shanghai" });
    try {
      const { record } = await gateway.keys.create({
        name: "tz",
        remainQuota: 10,
        quotaRefill: { interval: "1d", amount: 10 },
      });
      // The next local midnight: June 12th 00:00 in Shanghai is June 11th 16:00 UTC.
      expect(record.nextRefillTime).toBe(Date.UTC(2027, 5, 11, 16, 0));
    } finally {
      await gateway.settings.set({ "quota-refill-time-zone": "UTC" });
    }
  });
});
