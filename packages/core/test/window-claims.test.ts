/**
 * WindowClaims against a real (memory) store, several instances sharing it like gateways share
 * a SQLite file or a Redis: claims ahead never let the instances together admit more than the
 * limit, units are only used in the bucket they were counted in, unused ones go back, small
 * limits are always asked exactly, and an instance under load asks the store for a small
 * fraction of its requests.
 */
import { describe, expect, it } from "vitest";
import { WindowClaims } from "../src/admission/window-claims.js";
import { GatewayEmitter, memoryStore, type Store, type WindowHit } from "../src/index.js";

const MINUTE = 60_000;

/** A store that counts its hitWindows calls. */
function counting(store: Store): { store: Store; calls: () => number } {
  let n = 0;
  const proxy = new Proxy(store, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (prop !== "hitWindows") return v;
      return (...args: Parameters<Store["hitWindows"]>) => {
        n++;
        return target.hitWindows(...args);
      };
    },
  });
  return { store: proxy, calls: () => n };
}

/** What the store counts in the window now (a hit of cost 0 reads without adding). */
async function counted(store: Store, key: string, limit: number, nowMs: number): Promise<number> {
  const r = await store.hitWindows([{ key, limit, windowMs: MINUTE, cost: 0 }], nowMs);
  if (!r.ok) throw new Error("a read cannot be refused");
  return limit - r.windows[0]!.remaining;
}

const hit = (key: string, limit: number, cost = 1): WindowHit[] => [
  { key, limit, windowMs: MINUTE, cost },
];

describe("WindowClaims", () => {
  it("three instances on one store never admit more than a large limit, and give back what they did not use", async () => {
    const store = memoryStore();
    const instances = [0, 1, 2].map(() => new WindowClaims(store, new GatewayEmitter()));
    const LIMIT = 6_400;
    // Inside one 1 s bucket: every claim stays usable for the whole test.
    const t = Math.floor(Date.now() / 1000) * 1000 + 10;
    const results = await Promise.all(
      Array.from({ length: 9_000 }, (_, i) => instances[i % 3]!.hit(hit("rpm:big", LIMIT), t)),
    );
    const admitted = results.filter((r) => r.ok).length;
    expect(admitted).toBeLessThanOrEqual(LIMIT);
    // Claimed but unused units are at most 1/16 of the limit per instance.
    expect(admitted).toBeGreaterThanOrEqual(LIMIT - 3 * (LIMIT / 16));
    expect(await counted(store, "rpm:big", LIMIT, t)).toBeGreaterThanOrEqual(admitted);
    for (const c of instances) await c.flush(t + 1_000);
    // Returned: the store counts exactly what was admitted.
    expect(await counted(store, "rpm:big", LIMIT, t + 1_000)).toBe(admitted);
    for (const c of instances) await c.close();
  });

  it("asks a small limit exactly: 500 parallel hits on 60 admit 60", async () => {
    const store = memoryStore();
    const instances = [0, 1, 2].map(() => new WindowClaims(store, new GatewayEmitter()));
    const t = Date.now();
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) => instances[i % 3]!.hit(hit("rpm:small", 60), t)),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(60);
    const refused = results.find((r) => !r.ok);
    expect(refused).toMatchObject({ ok: false, key: "rpm:small", remaining: 0 });
    for (const c of instances) await c.close();
  });

  it("asks the store for a small fraction of the hits of a busy instance", async () => {
    const { store, calls } = counting(memoryStore());
    const claims = new WindowClaims(store, new GatewayEmitter());
    const t = Math.floor(Date.now() / 1000) * 1000 + 10;
    for (let i = 0; i < 2_000; i++) {
      const r =
        claims.tryLocal(hit("rpm:busy", 1_000_000), t) ??
        (await claims.hit(hit("rpm:busy", 1_000_000), t));
      expect(r.ok).toBe(true);
    }
    expect(calls()).toBeLessThan(60);
    await claims.close();
    expect(await counted(store, "rpm:busy", 1_000_000, t)).toBe(2_000);
  });

  it("tops up in the background: a steady stream of requests is admitted locally, and nothing is lost", async () => {
    const { store, calls } = counting(memoryStore());
    const claims = new WindowClaims(store, new GatewayEmitter());
    const t = Math.floor(Date.now() / 1000) * 1000 + 10;
    let misses = 0;
    for (let i = 0; i < 5_000; i++) {
      let r = claims.tryLocal(hit("rpm:steady", 1_000_000_000), t);
      if (!r) {
        misses++;
        r = await claims.hit(hit("rpm:steady", 1_000_000_000), t);
      }
      expect(r.ok).toBe(true);
      // Other work between requests: a top-up's store call lands meanwhile.
      await new Promise((resolve) => setImmediate(resolve));
    }
    // Only the first claims (one request's worth, then growing) make a request wait.
    expect(misses).toBeLessThan(5);
    expect(calls()).toBeLessThan(20);
    await claims.close();
    expect(await counted(store, "rpm:steady", 1_000_000_000, t)).toBe(5_000);
  });

  it("uses claimed units only in the bucket they were counted in", async () => {
    const { store, calls } = counting(memoryStore());
    const claims = new WindowClaims(store, new GatewayEmitter());
    const t = Math.floor(Date.now() / 1000) * 1000 + 10;
    for (let i = 0; i < 200; i++) await claims.hit(hit("rpm:edge", 1_000_000), t);
    const before = calls();
    // Units are left (claimed ahead)...
    expect(claims.tryLocal(hit("rpm:edge", 1_000_000), t + 500)).not.toBeNull();
    // ... but not in the next bucket.
    expect(claims.tryLocal(hit("rpm:edge", 1_000_000), t + 1_000)).toBeNull();
    expect((await claims.hit(hit("rpm:edge", 1_000_000), t + 1_000)).ok).toBe(true);
    expect(calls()).toBe(before + 1);
    await claims.close();
    // 202 admitted in all; every unused unit went back.
    expect(await counted(store, "rpm:edge", 1_000_000, t + 1_000)).toBe(202);
  });

  it("sums corrections per bucket and writes them on flush", async () => {
    const store = memoryStore();
    const claims = new WindowClaims(store, new GatewayEmitter());
    const t = Date.now();
    expect((await store.hitWindows(hit("tpm:k", 10_000, 5_000), t)).ok).toBe(true);
    claims.adjust("tpm:k", MINUTE, t, -1_000);
    claims.adjust("tpm:k", MINUTE, t, -2_500);
    expect(await counted(store, "tpm:k", 10_000, t)).toBe(5_000);
    await claims.flush(t);
    expect(await counted(store, "tpm:k", 10_000, t)).toBe(1_500);
    await claims.close();
  });
});
