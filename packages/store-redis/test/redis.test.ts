import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { type NewUsageRecord, recordUsage, type Store, type UsageQuery } from "@tokenpool/core";
import { usageMatches } from "@tokenpool/core/store-kernel";
import { fixtures, runStoreConformance } from "@tokenpool/testing";
import { Redis } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { redisStore } from "../src/index.js";
import { clearPrefix, raceReserveInTwoProcesses, startRedisServer } from "./redis-server.js";

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
    const granted = await raceReserveInTwoProcesses(server.url, prefix, key.id, 150);
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

  it("reads, lists and prunes usage details and roll-ups written by the previous version", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix);
    const base = `{${prefix}}:`;
    const H = Date.UTC(2024, 2, 1, 8);
    // Two details as the previous version wrote them: the record JSON without quota, id, quota,
    // k and u, indexed in usage, usage:key:* and usage:user:* only; no request log fields.
    const old = (id: number, o: Partial<NewUsageRecord>) => {
      const { quota, ...rest } = fixtures.usage({ timestamp: H + id, keyId: 1, userId: 2, ...o });
      return { id, quota, rest };
    };
    const legacy = [
      old(1, { model: "m1", totalTokens: 30 }),
      old(2, { model: "m1", success: false, status: 502, error: "e", totalTokens: 5 }),
    ];
    const multi = admin.multi().set(`${base}seq:usage`, 2);
    for (const { id, quota, rest } of legacy) {
      const member = String(id).padStart(16, "0");
      multi
        .hset(`${base}usage:${member}`, "r", JSON.stringify(rest), "id", id, "quota", quota)
        .hset(`${base}usage:${member}`, "k", "1", "u", "2")
        .zadd(`${base}usage`, rest.timestamp, member)
        .zadd(`${base}usage:key:1`, rest.timestamp, member)
        .zadd(`${base}usage:user:2`, rest.timestamp, member);
    }
    // A roll-up row with the previous 4-element id (hour, route, model, key).
    const oldRow = JSON.stringify(["2024-03-01T08", "POST /v1/chat/completions", "m1", 1]);
    multi
      .zadd(`${base}rollups`, 0, oldRow)
      .hset(`${base}rollup:${oldRow}`, { requests: 2, successes: 1, failures: 1, quota: 30 })
      .hset(`${base}rollup:${oldRow}`, { inputTokens: 20, outputTokens: 15, totalTokens: 35 });
    await multi.exec();

    const want = legacy.map(({ id, quota, rest }) => ({ ...rest, id, quota })).reverse();
    expect((await store.usage.list()).items).toEqual(want);
    expect((await store.usage.list({ keyId: 1 })).total).toBe(2);
    expect((await store.usage.list({ userId: 2, from: H + 2 })).items).toEqual([want[0]]);
    // Filters checked while walking the key's or the user's index read the old details' JSON.
    expect((await store.usage.list({ keyId: 1, success: true })).items).toEqual([want[1]]);
    expect((await store.usage.list({ userId: 2, group: "", keyName: "" })).total).toBe(2);
    expect((await store.usage.list({ keyId: 1, username: "ann", userId: 2 })).total).toBe(0);
    expect(await store.usage.stat({ userId: 2 })).toEqual({
      requests: 2,
      quota: 30,
      totalTokens: 35,
    });
    expect(await store.usage.stat({ keyId: 1, success: true })).toMatchObject({ requests: 1 });

    // A new record of the same hour, route, model and key, without owner or credential, is
    // the same roll-up identity: one row.
    await recordUsage(store, [
      fixtures.usage({ timestamp: H + 3, keyId: 1, model: "m1", quota: 5, totalTokens: 1 }),
      fixtures.usage({ timestamp: H + 4, keyId: 1, userId: 2, model: "m1", credentialId: "c" }),
    ]);
    const rows = await store.usage.rollups();
    expect(rows).toHaveLength(2);
    expect(rows.find((r) => r.userId === null)).toMatchObject({
      keyId: 1,
      credentialId: null,
      requests: 3,
      successes: 2,
      failures: 1,
      quota: 35,
      totalTokens: 36,
    });
    expect((await store.usage.rollups({ userId: 2 })).map((r) => r.credentialId)).toEqual(["c"]);
    expect((await store.usage.rollups({ credentialId: "c" })).map((r) => r.requests)).toEqual([1]);

    expect(await store.usage.prune(H + 2)).toBe(1);
    expect(await store.usage.prune(0, 2)).toBe(1);
    expect((await store.usage.list()).items.map((r) => r.timestamp)).toEqual([H + 4, H + 3]);
    expect((await store.usage.list({ keyId: 1 })).total).toBe(2);
    expect(await admin.exists(`${base}usage:user:2`)).toBe(1); // the new record's entry
    expect(await admin.zcard(`${base}usage:user:2`)).toBe(1);
  });

  it("pruning a usage detail removes it from every index", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix, { usageDetailsLimit: 3 });
    const names = ["a:b", "ключ", "*"];
    await recordUsage(
      store,
      names.map((name, i) =>
        fixtures.usage({
          timestamp: 1_000 + i,
          keyId: i + 1,
          userId: 9,
          keyName: name,
          username: name,
          model: name,
          credentialId: name,
          group: name,
          success: i !== 1,
        }),
      ),
    );
    const usageKeys = async () => {
      const found: string[] = [];
      let cursor = "0";
      do {
        const [next, keys] = await admin.scan(cursor, "MATCH", `{${prefix}}:usage*`, "COUNT", 1000);
        cursor = next;
        found.push(...keys);
      } while (cursor !== "0");
      return found.sort();
    };
    // 3 details, `usage`, 3 key, 1 user, 3 each of model, credential, key name, username and
    // group indexes, `usage:fail` and `usage:groups`.
    expect(await usageKeys()).toHaveLength(3 + 1 + 3 + 1 + 5 * 3 + 2);
    // usageDetailsLimit trims the oldest as new details arrive.
    await recordUsage(store, [fixtures.usage({ timestamp: 2_000, model: "m" })]);
    expect((await store.usage.list({ model: "a:b" })).total).toBe(0);
    expect(await store.usage.prune(3_000)).toBe(3);
    expect(await usageKeys()).toEqual([`{${prefix}}:usage:groups`]);
  });

  it("list and stat walk an index in bounded steps and count every match exactly", async () => {
    const matches = usageMatches;
    const store = open(uniquePrefix(), { usageDetailsLimit: 0 });
    const H = Date.UTC(2024, 2, 1);
    // More details than one scan step looks at, in few distinct values.
    const input = Array.from({ length: 9_500 }, (_, i) =>
      fixtures.usage({
        timestamp: H + Math.floor(i / 3) * 1_000, // ties: three details per timestamp
        keyId: (i % 7) + 1,
        keyName: `key-${(i % 7) + 1}`,
        userId: (i % 3) + 1,
        username: `user-${(i % 3) + 1}`,
        model: i % 2 ? "a" : "b",
        credentialId: `c${i % 5}`,
        group: i % 4 === 0 ? "vip" : "",
        success: i % 11 !== 0,
        quota: i % 13,
        totalTokens: i % 17,
      }),
    );
    const rows = [];
    for (let i = 0; i < input.length; i += 1_000)
      rows.push(...(await recordUsage(store, input.slice(i, i + 1_000))));
    const newest = [...rows].sort((a, b) => b.timestamp - a.timestamp || b.id - a.id);
    const cases: UsageQuery[] = [
      { success: true },
      { group: "" },
      { model: "a", credentialId: "c3" },
      { group: "", success: true, offset: 5_000 },
      { model: "b", username: "user-2", from: H + 500_000, to: H + 2_900_000, offset: 7 },
      { keyName: "key-3", success: true, offset: 1_000 },
      { success: true, offset: 8_000 },
    ];
    for (const q of cases) {
      const want = newest.filter((r) => matches(r, q));
      const offset = q.offset ?? 0;
      const page = await store.usage.list({ ...q, limit: 25 });
      expect(page.total, JSON.stringify(q)).toBe(want.length);
      expect(
        page.items.map((r) => r.id),
        JSON.stringify(q),
      ).toEqual(want.slice(offset, offset + 25).map((r) => r.id));
      expect(await store.usage.stat(q), JSON.stringify(q)).toEqual({
        requests: want.length,
        quota: want.reduce((s, r) => s + r.quota, 0),
        totalTokens: want.reduce((s, r) => s + r.totalTokens, 0),
      });
    }
  }, 30_000);
});
