/**
 * The Redis store on a real Redis Cluster (three masters, started by `startRedisCluster()`): the
 * whole conformance suite through a cluster URL, plus what only a cluster can get wrong.
 */
import type { Store } from "@tokenpool/core";
import { fixtures, runStoreConformance } from "@tokenpool/testing";
import { Cluster } from "ioredis";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { parseClusterUrl } from "../src/connect.js";
import { redisStore } from "../src/index.js";
import {
  clearPrefix,
  raceReserveInTwoProcesses,
  scanKeys,
  startRedisCluster,
} from "./redis-server.js";

// Top-level: the conformance suite creates a probe store while tests are collected.
const cluster = await startRedisCluster();
const admin = new Cluster(cluster.nodes);
afterAll(async () => {
  admin.disconnect();
  await cluster.stop();
});

let counter = 0;
const uniquePrefix = () => `tp-cluster-${process.pid}-${Date.now().toString(36)}-${counter++}`;
const prefixes = new WeakMap<Store, string>();

runStoreConformance({
  name: "redis-cluster",
  create: () => {
    const prefix = uniquePrefix();
    const store = redisStore({ redis: cluster.url, prefix });
    prefixes.set(store, prefix);
    return store;
  },
  reopen: (store) => {
    const prefix = prefixes.get(store)!;
    const peer = redisStore({ redis: cluster.url, prefix });
    prefixes.set(peer, prefix);
    return peer;
  },
  cleanup: (store) => clearPrefix(admin, prefixes.get(store)!),
});

describe("redisStore on a Redis Cluster", () => {
  const cleanups: (() => unknown)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  const open = (prefix = uniquePrefix()) => {
    const store = redisStore({ redis: cluster.url, prefix });
    cleanups.push(async () => {
      await store.close();
      await clearPrefix(admin, prefix);
    });
    return store;
  };

  /** Writes through every part of the store: records, usage, windows, leases, kv, a lock. */
  const fill = async (store: Store) => {
    const user = await store.users.create(fixtures.user());
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 10 }));
    await store.credentials.create(fixtures.credential());
    await store.settings.set({ a: 1 });
    await store.kv.set("x", "y", 10_000);
    await store.kv.incr("n", 1, 10_000);
    await store.acquireLock("l", 10_000);
    const now = Date.now();
    await store.hitWindows([{ key: "rpm:k", limit: 5, windowMs: 60_000, cost: 1 }], now);
    await store.acquireLeases([{ pool: "conc:k", limit: 5 }], "l", now + 30_000, now);
    const res = await store.reserveQuota(key.id, 1);
    if (!res.ok) throw new Error("expected a reservation");
    await store.commitUsage(
      [{ reservation: res.reservation, actualUnits: 1, record: fixtures.usage({ keyId: key.id }) }],
      1,
    );
    return { user, key };
  };

  it("keeps every key of a store in one hash slot, on the one master that serves it", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix);
    await fill(store);
    const masters = admin.nodes("master");
    expect(masters).toHaveLength(3);
    const perMaster = await Promise.all(
      masters.map(async (node) => (await scanKeys(node, `*${prefix}*`)).flat()),
    );
    const holding = perMaster.filter((keys) => keys.length > 0);
    expect(holding).toHaveLength(1);
    const keys = holding[0]!;
    expect(keys.length).toBeGreaterThan(10);
    const slot = Number(await admin.cluster("KEYSLOT", `{${prefix}}`));
    const master = masters[perMaster.indexOf(keys)]!;
    for (const key of keys) {
      expect(key.startsWith(`{${prefix}}:`)).toBe(true);
      expect(Number(await master.cluster("KEYSLOT", key))).toBe(slot);
    }
    // That master is the one the cluster assigns the slot to.
    expect(master.options.port).toBe(await slotOwner(prefix));
  });

  it("spreads stores with different prefixes over the masters", async () => {
    const used = new Set<number>();
    for (let i = 0; i < 12 && used.size < 2; i++) {
      const prefix = uniquePrefix();
      await open(prefix).settings.set({ a: i });
      const masters = admin.nodes("master");
      for (const [n, node] of masters.entries()) {
        if ((await scanKeys(node, `{${prefix}}:*`)).flat().length > 0) used.add(n);
      }
    }
    expect(used.size).toBeGreaterThan(1);
  });

  it("works with a Cluster instance it was given, and does not close it", async () => {
    const client = new Cluster(cluster.nodes);
    const prefix = uniquePrefix();
    const store = redisStore({ redis: client, prefix });
    const peer = open(prefix);
    const seen: string[] = [];
    const stop = store.watch((c) => seen.push(`${c.origin}:${c.collection}:${c.id}`));
    // The subscriber connection (a duplicate of the cluster client) is live once a change the
    // peer makes arrives; keep making one until it does.
    for (let i = 0; i < 200 && !seen.some((c) => c.startsWith("remote:")); i++) {
      await peer.settings.set({ probe: i });
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(seen.some((c) => c.startsWith("remote:settings:"))).toBe(true);
    const { user, key } = await fill(store);
    expect(await peer.keys.get(key.id)).toMatchObject({ userId: user.id, remainQuota: 9 });
    expect((await store.usage.list({ keyId: key.id })).total).toBe(1);
    await expect.poll(() => seen.includes(`local:keys:${key.id}`)).toBe(true);
    const other = await peer.keys.create(fixtures.key());
    await expect.poll(() => seen.includes(`remote:keys:${other.id}`)).toBe(true);
    stop();
    await store.close();
    expect(await client.get(`{${prefix}}:kv:x`)).toBe("y");
    await clearPrefix(client, prefix);
    client.disconnect();
  });

  it("two processes racing reserveQuota on one key through the cluster get exactly the quota", async () => {
    const prefix = uniquePrefix();
    const store = open(prefix);
    const user = await store.users.create(fixtures.user({ quota: 1_000 }));
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 137 }));
    // Each child opens its own Cluster client from the URL.
    const granted = await raceReserveInTwoProcesses(cluster.url, prefix, key.id, 150);
    expect(granted[0]! + granted[1]!).toBe(137);
    expect((await store.keys.get(key.id))!.remainQuota).toBe(0);
    expect((await store.users.get(user.id))!.quota).toBe(1_000 - 137);
  }, 30_000);

  it("hands each change to a watcher once, whichever node its subscriber is on", async () => {
    const prefix = uniquePrefix();
    const writer = open(prefix);
    // Several watching store objects: each subscriber connection picks a node of its own.
    const watchers = Array.from({ length: 4 }, () => open(prefix));
    const seen = watchers.map(() => [] as string[]);
    watchers.forEach((w, i) => {
      w.watch((c) => {
        seen[i]!.push(`${c.collection}:${c.id}`);
      });
    });
    for (let i = 0; i < 200 && seen.some((s) => s.length === 0); i++) {
      await writer.settings.set({ probe: i });
      await new Promise((r) => setTimeout(r, 10));
    }
    for (const s of seen) s.splice(0);
    const created: { id: string }[] = [];
    for (let i = 0; i < 5; i++)
      created.push(await writer.credentials.create(fixtures.credential()));
    const want = created.map((c) => `credentials:${c.id}`);
    for (const s of seen) {
      await expect.poll(() => s.filter((x) => x.startsWith("credentials:"))).toEqual(want);
    }
  });
});

describe("cluster URLs", () => {
  it("several hosts or ?cluster=true make a cluster; one host stays a plain server", () => {
    expect(parseClusterUrl("redis://127.0.0.1:6379")).toBeNull();
    expect(parseClusterUrl("redis://:pw@127.0.0.1:6379/2")).toBeNull();
    expect(parseClusterUrl("redis://a:1,b:2/0")).toEqual({
      nodes: [
        { host: "a", port: 1 },
        { host: "b", port: 2 },
      ],
      options: { redisOptions: {} },
    });
    expect(parseClusterUrl("redis://a:1?cluster=true")?.nodes).toEqual([{ host: "a", port: 1 }]);
    expect(parseClusterUrl("rediss://user:p%40ss@a:1,[::1]:2,c")).toEqual({
      nodes: [
        { host: "a", port: 1 },
        { host: "::1", port: 2 },
        { host: "c", port: 6379 },
      ],
      options: { redisOptions: { username: "user", password: "p@ss", tls: {} } },
    });
    expect(parseClusterUrl("redis://:secret@a:1,b:2")?.options).toEqual({
      redisOptions: { password: "secret" },
    });
  });

  it("refuses a database other than 0 for a cluster, naming the fix", () => {
    expect(() => parseClusterUrl("redis://a:1,b:2/3")).toThrow(/only database 0/);
  });

  it("refuses an empty prefix on a cluster, where `{}` is no hash tag", () => {
    expect(() => redisStore({ redis: cluster.url, prefix: "" })).toThrow(
      /prefix must not be empty/,
    );
  });

  it("a store opened from ?cluster=true with one startup node finds the whole cluster", async () => {
    const node = cluster.nodes[2]!;
    // A prefix whose slot another master serves: a plain client of this node would get MOVED.
    let prefix = uniquePrefix();
    while ((await slotOwner(prefix)) === node.port) prefix = uniquePrefix();
    const store = redisStore({ redis: `redis://${node.host}:${node.port}?cluster=true`, prefix });
    try {
      await fill2(store);
    } finally {
      await store.close();
      await clearPrefix(admin, prefix);
    }
  });
});

/** The port of the master that serves the slot of `{prefix}` (CLUSTER SLOTS). */
async function slotOwner(prefix: string): Promise<number> {
  const slot = Number(await admin.cluster("KEYSLOT", `{${prefix}}`));
  const ranges = await admin.cluster("SLOTS");
  const master = ranges.find(([from, to]) => slot >= from && slot <= to)?.[2];
  if (!master) throw new Error(`no master serves slot ${slot}`);
  return master[1];
}

/** A few writes and reads that must reach the prefix's master wherever it is. */
async function fill2(store: Store): Promise<void> {
  const key = await store.keys.create(fixtures.key({ remainQuota: 3 }));
  expect(await store.keys.get(key.id)).toMatchObject({ remainQuota: 3 });
  expect((await store.reserveQuota(key.id, 2)).ok).toBe(true);
}
