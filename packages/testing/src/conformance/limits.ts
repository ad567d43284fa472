import type { LeaseResult, Store, WindowHit } from "@tokenpool/core";
import { expect, it } from "vitest";
import { defineGroup, sleep } from "./context.js";

const MINUTE = 60_000;
const DAY = 86_400_000;
/** A time on a minute boundary (so on a bucket boundary of every window the tests use). */
const T0 = 1_700_000_040_000;

const rpm = (key: string, limit: number, cost = 1): WindowHit => ({
  key,
  limit,
  windowMs: MINUTE,
  cost,
});

/** What a counter still admits at `nowMs` (a hit of cost 0 reads without adding). */
async function remainingOf(store: Store, hit: WindowHit, nowMs: number): Promise<number> {
  const r = await store.hitWindows([{ ...hit, cost: 0 }], nowMs);
  if (!r.ok) throw new Error("a hit of cost 0 is never refused");
  return r.windows[0]!.remaining;
}

/**
 * Admission steps: rolling-window counters (`hitWindows`, `adjustWindow`) and concurrency leases
 * (`acquireLeases`, `renewLeases`, `releaseLeases`), with their races.
 */
export const limitsGroup = defineGroup("limits", "limits: windows and leases", ({ store }) => {
  it("hitWindows admits up to the limit, then refuses with the time until a bucket leaves", async () => {
    for (let i = 0; i < 3; i++) {
      expect(await store.hitWindows([rpm("k", 3)], T0)).toEqual({
        ok: true,
        windows: [{ remaining: 2 - i, resetMs: 61_000 }],
      });
    }
    // The first second's bucket leaves a minute after its end.
    expect(await store.hitWindows([rpm("k", 3)], T0 + 500)).toEqual({
      ok: false,
      index: 0,
      key: "k",
      remaining: 0,
      retryAfterMs: 60_500,
    });
    expect((await store.hitWindows([rpm("k", 3)], T0 + 60_999)).ok).toBe(false);
    expect(await store.hitWindows([rpm("k", 3)], T0 + 61_000)).toEqual({
      ok: true,
      windows: [{ remaining: 2, resetMs: 61_000 }],
    });
  });

  it("the window rolls bucket by bucket", async () => {
    await store.hitWindows([rpm("k", 3), rpm("k", 3)], T0);
    await store.hitWindows([rpm("k", 3)], T0 + 30_000);
    const refused = await store.hitWindows([rpm("k", 3)], T0 + 40_000);
    expect(refused).toMatchObject({ ok: false, retryAfterMs: 21_000 });
    // At T0 + 61 s the two first hits have left; the one at T0 + 30 s is still counted.
    expect(await store.hitWindows([rpm("k", 3)], T0 + 61_000)).toEqual({
      ok: true,
      windows: [{ remaining: 1, resetMs: 30_000 }],
    });
  });

  it("a daily window counts the whole day, in buckets of a 60th of it", async () => {
    const rpd = { key: "d", limit: 2, windowMs: DAY, cost: 1 };
    const bucket = DAY / 60;
    expect((await store.hitWindows([rpd], T0)).ok).toBe(true);
    expect((await store.hitWindows([rpd], T0 + 3_600_000)).ok).toBe(true);
    const refused = await store.hitWindows([rpd], T0 + DAY - 1);
    expect(refused.ok).toBe(false);
    if (refused.ok) return;
    // The first hit's bucket leaves at most one bucket after T0 + DAY.
    expect(refused.retryAfterMs).toBeGreaterThan(1);
    expect(refused.retryAfterMs).toBeLessThanOrEqual(bucket + 1);
    expect((await store.hitWindows([rpd], T0 + DAY + bucket)).ok).toBe(true);
    // The second hit (an hour later) is still counted: the window is full again.
    expect((await store.hitWindows([rpd], T0 + DAY + bucket)).ok).toBe(false);
  });

  it("counters are separate by key and by window", async () => {
    await store.hitWindows([rpm("a", 1)], T0);
    expect((await store.hitWindows([rpm("a", 1)], T0)).ok).toBe(false);
    expect((await store.hitWindows([rpm("b", 1)], T0)).ok).toBe(true);
    expect((await store.hitWindows([{ key: "a", limit: 1, windowMs: DAY, cost: 1 }], T0)).ok).toBe(
      true,
    );
  });

  it("hitWindows is all or nothing: a hit refused on its second counter adds nothing to the first", async () => {
    await store.hitWindows([rpm("user", 1)], T0);
    const r = await store.hitWindows([rpm("key", 10), rpm("user", 1)], T0 + 1_000);
    expect(r).toEqual({
      ok: false,
      index: 1,
      key: "user",
      remaining: 0,
      retryAfterMs: 60_000,
    });
    expect(await remainingOf(store, rpm("key", 10), T0 + 1_000)).toBe(10);
    const tokens = { key: "tpm", limit: 100, windowMs: MINUTE, cost: 60 };
    expect((await store.hitWindows([tokens, rpm("r", 5)], T0)).ok).toBe(true);
    expect(await store.hitWindows([rpm("r", 5), tokens], T0)).toMatchObject({
      ok: false,
      index: 1,
      remaining: 40,
    });
    expect(await remainingOf(store, rpm("r", 5), T0)).toBe(4);
  });

  it("two hits of one call on the same counter see each other", async () => {
    expect(await store.hitWindows([rpm("k", 3, 2), rpm("k", 3, 1)], T0)).toEqual({
      ok: true,
      windows: [
        { remaining: 1, resetMs: 61_000 },
        { remaining: 0, resetMs: 61_000 },
      ],
    });
    expect(await store.hitWindows([rpm("j", 3, 2), rpm("j", 3, 2)], T0)).toMatchObject({
      ok: false,
      index: 1,
      remaining: 1,
    });
    expect(await remainingOf(store, rpm("j", 3), T0)).toBe(3);
  });

  it("a hit whose cost is above its limit is refused with no retry time", async () => {
    expect(await store.hitWindows([rpm("k", 10, 11)], T0)).toEqual({
      ok: false,
      index: 0,
      key: "k",
      remaining: 10,
      retryAfterMs: null,
    });
    expect(await store.hitWindows([], T0)).toEqual({ ok: true, windows: [] });
    expect(await store.hitWindows([rpm("fresh", 5, 0)], T0)).toEqual({
      ok: true,
      windows: [{ remaining: 5, resetMs: 0 }],
    });
  });

  it("adjustWindow corrects a hit up and down, never below zero, and not after its bucket left", async () => {
    const tpm = { key: "tpm", limit: 100, windowMs: MINUTE, cost: 50 };
    await store.hitWindows([tpm], T0 + 200);
    await store.adjustWindow("tpm", MINUTE, T0 + 200, 30, T0 + 5_000);
    expect(await remainingOf(store, tpm, T0 + 5_000)).toBe(20);
    await store.adjustWindow("tpm", MINUTE, T0 + 200, -60, T0 + 5_000);
    expect(await remainingOf(store, tpm, T0 + 5_000)).toBe(80);
    await store.adjustWindow("tpm", MINUTE, T0 + 200, -1_000, T0 + 5_000);
    expect(await remainingOf(store, tpm, T0 + 5_000)).toBe(100);
    // A correction for a bucket that has left the window changes nothing.
    await store.hitWindows([tpm], T0 + 200);
    await store.adjustWindow("tpm", MINUTE, T0 + 200, 40, T0 + 61_000);
    expect(await remainingOf(store, tpm, T0 + 60_999)).toBe(50);
    expect(await remainingOf(store, tpm, T0 + 61_000)).toBe(100);
    // It corrects the bucket the hit went into, not the current one.
    await store.hitWindows([tpm], T0 + 30_000);
    await store.adjustWindow("tpm", MINUTE, T0 + 30_000, 10, T0 + 50_000);
    expect(await remainingOf(store, tpm, T0 + 61_000)).toBe(40);
    expect(await remainingOf(store, tpm, T0 + 91_000)).toBe(100);
  });

  it("rejects malformed hits and pools (a limit of 0 means none: the caller does not ask)", async () => {
    for (const hit of [
      rpm("k", 0),
      rpm("k", -1),
      rpm("k", 1.5),
      rpm("k", 5, -1),
      rpm("k", 5, 0.5),
      { key: "k", limit: 5, windowMs: 0, cost: 1 },
    ]) {
      await expect(store.hitWindows([rpm("ok", 5), hit], T0)).rejects.toThrow();
    }
    expect(await remainingOf(store, rpm("ok", 5), T0)).toBe(5);
    await expect(store.adjustWindow("k", 0, T0, 1, T0)).rejects.toThrow();
    await expect(store.adjustWindow("k", MINUTE, T0, 0.5, T0)).rejects.toThrow();
    for (const limit of [0, -1, 2.5])
      await expect(store.acquireLeases([{ pool: "p", limit }], "l", T0 + 1, T0)).rejects.toThrow();
  });

  it("500 parallel hits on a 60-per-minute counter admit exactly 60", async () => {
    const now = Date.now();
    const results = await Promise.all(
      Array.from({ length: 500 }, () => store.hitWindows([rpm("race", 60)], now)),
    );
    expect(results.filter((r) => r.ok)).toHaveLength(60);
    expect(await remainingOf(store, rpm("race", 60), now)).toBe(0);
  });

  it("acquireLeases grants up to the limit; release frees a slot, idempotently", async () => {
    const pool = { pool: "p", limit: 2 };
    expect(await store.acquireLeases([pool], "a", T0 + 10_000, T0)).toEqual({
      ok: true,
      inUse: [1],
    });
    expect(await store.acquireLeases([pool], "b", T0 + 5_000, T0)).toEqual({
      ok: true,
      inUse: [2],
    });
    expect(await store.acquireLeases([pool], "c", T0 + 10_000, T0 + 1_000)).toEqual({
      ok: false,
      index: 0,
      pool: "p",
      retryAfterMs: 4_000,
    });
    // A lease id already held counts once.
    expect(await store.acquireLeases([pool], "a", T0 + 10_000, T0 + 1_000)).toEqual({
      ok: true,
      inUse: [2],
    });
    expect(await store.releaseLeases("b", ["p"])).toBe(1);
    expect(await store.releaseLeases("b", ["p"])).toBe(0);
    expect(await store.releaseLeases("never", ["p", "nowhere"])).toBe(0);
    expect(await store.acquireLeases([pool], "c", T0 + 10_000, T0 + 1_000)).toEqual({
      ok: true,
      inUse: [2],
    });
  });

  it("acquireLeases is all or nothing across pools", async () => {
    await store.acquireLeases([{ pool: "cred", limit: 1 }], "x", T0 + 10_000, T0);
    const r = await store.acquireLeases(
      [
        { pool: "key", limit: 5 },
        { pool: "cred", limit: 1 },
      ],
      "y",
      T0 + 10_000,
      T0,
    );
    expect(r).toEqual({ ok: false, index: 1, pool: "cred", retryAfterMs: 10_000 });
    expect(await store.acquireLeases([{ pool: "key", limit: 1 }], "z", T0 + 10_000, T0)).toEqual({
      ok: true,
      inUse: [1],
    });
    expect(await store.acquireLeases([], "w", T0 + 1, T0)).toEqual({ ok: true, inUse: [] });
    // A pool named twice counts the lease once.
    const twice = { pool: "twice", limit: 1 };
    expect(await store.acquireLeases([twice, twice], "v", T0 + 10_000, T0)).toEqual({
      ok: true,
      inUse: [1, 1],
    });
    expect(await store.acquireLeases([twice, twice], "v", T0 + 10_000, T0)).toEqual({
      ok: true,
      inUse: [1, 1],
    });
    expect(await store.releaseLeases("v", ["twice", "twice"])).toBe(1);
  });

  it("an expired lease frees its slot; renew keeps a live one and does not revive a dead one", async () => {
    const pool = { pool: "p", limit: 1 };
    await store.acquireLeases([pool], "a", T0 + 1_000, T0);
    expect((await store.acquireLeases([pool], "b", T0 + 5_000, T0 + 999)).ok).toBe(false);
    expect(await store.renewLeases("a", ["p", "other"], T0 + 3_000, T0 + 999)).toBe(1);
    expect((await store.acquireLeases([pool], "b", T0 + 5_000, T0 + 2_000)).ok).toBe(false);
    expect(await store.renewLeases("a", ["p"], T0 + 9_000, T0 + 3_000)).toBe(0);
    expect(await store.acquireLeases([pool], "b", T0 + 5_000, T0 + 3_000)).toEqual({
      ok: true,
      inUse: [1],
    });
    expect(await store.renewLeases("a", ["p"], T0 + 9_000, T0 + 3_000)).toBe(0);
  });

  it("a lease with a short expiry frees itself on the wall clock", async () => {
    const pool = { pool: "p", limit: 1 };
    expect((await store.acquireLeases([pool], "a", Date.now() + 60, Date.now())).ok).toBe(true);
    expect((await store.acquireLeases([pool], "b", Date.now() + 60, Date.now())).ok).toBe(false);
    await sleep(150);
    expect((await store.acquireLeases([pool], "b", Date.now() + 60, Date.now())).ok).toBe(true);
  });

  it("200 parallel requests on a pool of 5 never hold more than 5 and are all served", async () => {
    const stats = await leaseRace([store], 200, 5);
    expect(stats.peak).toBeLessThanOrEqual(5);
    expect(stats.peak).toBeGreaterThan(1);
    expect(stats.served).toBe(200);
  });
});

/**
 * Runs `requests` workers over `stores` (round robin): each takes a lease in a pool of `limit`,
 * holds it a few ms and releases it, retrying after a refusal. Returns the peak held at once.
 */
export async function leaseRace(
  stores: Store[],
  requests: number,
  limit: number,
): Promise<{ peak: number; served: number }> {
  let held = 0;
  let peak = 0;
  let served = 0;
  const deadline = Date.now() + 20_000;
  await Promise.all(
    Array.from({ length: requests }, async (_, i) => {
      const s = stores[i % stores.length]!;
      const id = `lease-${i}`;
      for (;;) {
        if (Date.now() > deadline) throw new Error("lease race: not served within 20 s");
        const now = Date.now();
        const r: LeaseResult = await s.acquireLeases(
          [{ pool: "race", limit }],
          id,
          now + 10_000,
          now,
        );
        if (!r.ok) {
          await sleep(1 + (i % 4));
          continue;
        }
        held++;
        peak = Math.max(peak, held);
        await sleep(2);
        held--;
        await s.releaseLeases(id, ["race"]);
        served++;
        return;
      }
    }),
  );
  return { peak, served };
}
