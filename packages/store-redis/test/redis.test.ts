import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { recordUsage, type Store } from "@tokenpool/core";
import { fixtures, runStoreConformance } from "@tokenpool/testing";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { redisStore } from "../src/index.js";
import { clearPrefix, startRedisServer } from "./redis-server.js";

const here = dirname(fileURLToPath(import.meta.url));

// Top-level: the conformance suite creates a probe store while tests are collected.
const server = await startRedisServer();
const admin = new Redis(server.url);
afterAll(async () => {
  admin.disconnect();
  await server.stop();
});

let counter = 0;
const uniquePrefix = () => `tp-test-${process.pid}-${Date.now().toString(36)}-${counter++}`;
const prefixes = new WeakMap<Store, string>();

runStoreConformance({
  name: "redis",
  create: () => {
    const prefix = uniquePrefix();
    const store = redisStore({ redis: server.url, prefix });
    prefixes.set(store, prefix);
    return store;
  },
  reopen: (store) => {
    const prefix = prefixes.get(store)!;
    const peer = redisStore({ redis: server.url, prefix });
    prefixes.set(peer, prefix);
    return peer;
  },
  cleanup: (store) => clearPrefix(admin, prefixes.get(store)!),
});

describe("redisStore", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  const open = (prefix = uniquePrefix(), extra: { usageDetailsLimit?: number } = {}) => {
    const store = redisStore({ redis: server.url, prefix, ...extra });
    cleanups.push(async () => {
      await store.close();
      await clearPrefix(admin, prefix);
    });
    return store;
  };

  it("keeps every key under the prefix's hash tag", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix);
    const user = await store.users.create(fixtures.user());
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 10 }));
    await store.credentials.create(fixtures.credential());
    await store.settings.set({ a: 1 });
    await store.kv.set("x", "y", 10_000);
    await store.acquireLock("l", 10_000);
    const res = await store.reserveQuota(key.id, 1);
    if (!res.ok) throw new Error("expected a reservation");
    await store.commitUsage(
      [{ reservation: res.reservation, actualUnits: 1, record: fixtures.usage({ keyId: key.id }) }],
      1,
    );
    const all: string[] = [];
    let cursor = "0";
    do {
      const [next, keys] = await admin.scan(cursor, "MATCH", `*${prefix}*`, "COUNT", 1000);
      cursor = next;
      all.push(...keys);
    } while (cursor !== "0");
    expect(all.length).toBeGreaterThan(10);
    for (const key of all) expect(key.startsWith(`{${prefix}}:`)).toBe(true);
  });

  it("does not close a client it did not create", async () => {
    const client = new Redis(server.url);
    const store = redisStore({ redis: client, prefix: uniquePrefix() });
    await store.settings.set({ a: 1 });
    store.watch(() => {});
    await store.close();
    expect(await client.ping()).toBe("PONG");
    client.disconnect();
  });

  it("bounds usage details with usageDetailsLimit and keeps roll-ups", async () => {
    const store = open(uniquePrefix(), { usageDetailsLimit: 5 });
    const timestamp = Date.UTC(2024, 0, 1, 10);
    await recordUsage(
      store,
      Array.from({ length: 8 }, (_, i) => fixtures.usage({ timestamp: timestamp + i, keyId: 1 })),
    );
    const page = await store.usage.list({ limit: 100 });
    expect(page.total).toBe(5);
    expect(page.items.map((r) => r.timestamp)).toEqual([7, 6, 5, 4, 3].map((i) => timestamp + i));
    expect((await store.usage.list({ keyId: 1 })).total).toBe(5);
    const rollups = await store.usage.rollups();
    expect(rollups.reduce((s, r) => s + r.requests, 0)).toBe(8);
  });

  it("reservation rows written before refill periods existed settle and recover as period 0", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix);
    const user = await store.users.create(fixtures.user({ quota: 920 }));
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 20 }));
    // Two rows as the previous version wrote them (no keyPeriod/userPeriod in the meta JSON),
    // with the debits they made and their in-flight units.
    const base = `{${prefix}}:`;
    const meta = (requestId: string) =>
      JSON.stringify({ owner: "gw", requestId, route: "r", model: "m", timestamp: 1 });
    await admin
      .multi()
      .hset(`${base}res:data`, "r-live", `${key.id}|${user.id}|40|1|${meta("req-live")}`)
      .hset(`${base}res:data`, "r-dead", `${key.id}|${user.id}|40|1|${meta("req-dead")}`)
      .zadd(`${base}res`, 9_999_999_999_999, "r-live", 1_000, "r-dead")
      .hincrby(`${base}res:inflight`, `k:${key.id}`, 80)
      .hincrby(`${base}res:inflight`, `u:${user.id}`, 80)
      .exec();
    const live = { id: "r-live", keyId: key.id, userId: user.id, units: 40, keyDebited: true };
    expect(await store.settleQuota(live, 10, 5)).toEqual({ charged: 10 });
    const [rec] = await store.recoverReservations(2_000, 10);
    expect(rec).toMatchObject({ requestId: "req-dead", quota: 40, recovered: true });
    expect(await store.keys.get(key.id)).toMatchObject({ remainQuota: 50, usedQuota: 50 });
    expect(await store.users.get(user.id)).toMatchObject({ quota: 950, usedQuota: 50 });
    expect(await admin.hlen(`${base}res:inflight`)).toBe(0);
  });

  it("two processes racing reserveQuota on one key get exactly the quota", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix);
    const user = await store.users.create(fixtures.user({ quota: 1_000 }));
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 137 }));
    // A barrier, not a clock: each child says `ready` once connected, and both are told to go
    // together, however long a loaded machine takes to start them.
    let ready = 0;
    const procs: ReturnType<typeof spawn>[] = [];
    let go!: () => void;
    const allReady = new Promise<void>((r) => {
      go = r;
    });
    const child = (count: number) =>
      new Promise<number>((resolve, reject) => {
        const proc = spawn(
          process.execPath,
          [
            "--conditions=source",
            "--import",
            "tsx",
            join(here, "fixtures", "reserve-child.ts"),
            server.url,
            prefix,
            String(key.id),
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
    const results = [child(150), child(150)];
    // A child that fails before it is ready rejects here instead of hanging the barrier.
    await Promise.race([allReady, Promise.all(results)]);
    for (const p of procs) p.stdin!.end("go\n");
    const granted = await Promise.all(results);
    expect(granted[0]! + granted[1]!).toBe(137);
    expect(granted[0]).toBeGreaterThan(0);
    expect(granted[1]).toBeGreaterThan(0);
    expect((await store.keys.get(key.id))!.remainQuota).toBe(0);
    expect((await store.users.get(user.id))!.quota).toBe(1_000 - 137);
  }, 30_000);

  /**
   * Starts limits-child.ts processes with the given arguments, releases them together once all
   * are ready, and resolves each one's JSON answer. The processes are in `procs`.
   */
  const limitChildren = (prefix: string, argv: string[][]) => {
    let ready = 0;
    const procs: ReturnType<typeof spawn>[] = [];
    let go!: () => void;
    const allReady = new Promise<void>((r) => {
      go = r;
    });
    const answers = argv.map(
      (args) =>
        new Promise<Record<string, unknown>>((resolve, reject) => {
          const proc = spawn(
            process.execPath,
            [
              "--conditions=source",
              "--import",
              "tsx",
              join(here, "fixtures", "limits-child.ts"),
              server.url,
              prefix,
              ...args,
            ],
            { cwd: join(here, "..") },
          );
          procs.push(proc);
          let out = "";
          let err = "";
          proc.stdout!.on("data", (d) => {
            const wasReady = out.startsWith("ready\n");
            out += d;
            if (!wasReady && out.startsWith("ready\n") && ++ready === argv.length) go();
            const line = out.slice(6);
            if (line.includes("\n")) resolve(JSON.parse(line.trim()));
          });
          proc.stderr!.on("data", (d) => {
            err += d;
          });
          proc.on("exit", (code, signal) => {
            if (code !== 0 && signal === null)
              reject(new Error(`child exited with ${code}: ${err}`));
          });
        }),
    );
    const started = Promise.race([allReady, Promise.all(answers)]).then(() => {
      for (const p of procs) p.stdin!.write("go\n");
    });
    return { procs, started, answers };
  };

  it("three processes hitting a 60-per-minute counter admit exactly 60", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix);
    const now = Date.now();
    const { started, answers } = limitChildren(prefix, [
      ["hit", "200", String(now)],
      ["hit", "200", String(now)],
      ["hit", "200", String(now)],
    ]);
    await started;
    const admitted = (await Promise.all(answers)).map((a) => a.admitted as number);
    expect(admitted.reduce((s, n) => s + n, 0)).toBe(60);
    // They really raced: more than one process got hits through.
    expect(admitted.filter((n) => n > 0).length).toBeGreaterThan(1);
    const probe = await store.hitWindows(
      [{ key: "rpm:key:1", limit: 60, windowMs: 60_000, cost: 0 }],
      now,
    );
    expect(probe).toMatchObject({ ok: true, windows: [{ remaining: 0 }] });
  }, 30_000);

  it("a process killed with SIGKILL while holding a lease gives the slot back at its expiry", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix);
    const { procs, started, answers } = limitChildren(prefix, [["hold", "600"]]);
    await started;
    expect(await answers[0]).toEqual({ held: true });
    procs[0]!.kill("SIGKILL");
    const pool = [{ pool: "one", limit: 1 }];
    const refused = await store.acquireLeases(pool, "parent", Date.now() + 5_000, Date.now());
    expect(refused).toMatchObject({ ok: false, pool: "one" });
    if (refused.ok) return;
    expect(refused.retryAfterMs).toBeLessThanOrEqual(600);
    await new Promise((r) => setTimeout(r, refused.retryAfterMs + 20));
    const now = Date.now();
    expect(await store.acquireLeases(pool, "parent", now + 5_000, now)).toEqual({
      ok: true,
      inUse: [1],
    });
  }, 30_000);

  it("keeps window and lease keys under the prefix's hash tag, with a TTL", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix);
    const now = Date.now();
    await store.hitWindows([{ key: "rpm:k", limit: 5, windowMs: 60_000, cost: 1 }], now);
    await store.acquireLeases([{ pool: "conc:k", limit: 5 }], "l", now + 30_000, now);
    const keys: string[] = [];
    let cursor = "0";
    do {
      const [next, found] = await admin.scan(cursor, "MATCH", `*${prefix}*`, "COUNT", 1000);
      cursor = next;
      keys.push(...found);
    } while (cursor !== "0");
    keys.sort();
    expect(keys).toEqual([`{${prefix}}:lease:conc:k`, `{${prefix}}:win:60000:rpm:k`]);
    for (const key of keys) {
      const ttl = await admin.pttl(key);
      expect(ttl).toBeGreaterThan(25_000);
      expect(ttl).toBeLessThanOrEqual(61_000);
    }
    await store.releaseLeases("l", ["conc:k"]);
    expect(await admin.exists(`{${prefix}}:lease:conc:k`)).toBe(0);
  });
});
