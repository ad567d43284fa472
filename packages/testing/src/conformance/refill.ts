import type { Reservation, ReservationMeta, Store } from "@tokenpool/core";
import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { change, defineGroup, grant, record, reservationOf, waitUntil } from "./context.js";

/** Period starts (ms) used by the group: two consecutive UTC days. */
const P1 = Date.UTC(2026, 11, 4);
const P2 = Date.UTC(2026, 11, 5);

/** Fields of a key or user the admission stage adds; absent on a record that never had them. */
const ADMISSION_FIELDS = ["limits", "quotaRefill", "quotaPeriod"] as const;

/**
 * Refill periods: the limit and refill fields of keys, users and credentials round-trip,
 * `refillQuota` starts a period exactly once, and a reservation made in an earlier period never
 * touches the balance of a later one (through `settleQuota`, `commitUsage` and
 * `recoverReservations`).
 */
export const refillGroup = defineGroup("refill", "refill periods and limit fields", (ctx) => {
  const { store } = ctx;

  /** A key (remain `remain`) owned by a user (quota `quota`), both in the period `period` when given. */
  const owned = async (quota: number, remain: number, period?: number) => {
    const user = await store.users.create(
      fixtures.user({ quota, ...(period === undefined ? {} : { quotaPeriod: period }) }),
    );
    const key = await store.keys.create(
      fixtures.key({
        userId: user.id,
        remainQuota: remain,
        ...(period === undefined ? {} : { quotaPeriod: period }),
      }),
    );
    return { user, key };
  };
  /** The balances and used quota of a key and its owner. */
  const balances = async (keyId: number, userId: number) => {
    const key = (await store.keys.get(keyId))!;
    const user = (await store.users.get(userId))!;
    return {
      remain: key.remainQuota,
      keyUsed: key.usedQuota,
      quota: user.quota,
      userUsed: user.usedQuota,
    };
  };

  it("a key, user or credential created without limit or refill fields returns them absent", async () => {
    const key = await store.keys.create(fixtures.key());
    const user = await store.users.create(fixtures.user());
    const cred = await store.credentials.create(fixtures.credential());
    for (const rec of [key, await store.keys.get(key.id), user, await store.users.get(user.id)])
      for (const field of ADMISSION_FIELDS) expect(Object.keys(rec!)).not.toContain(field);
    for (const rec of [cred, await store.credentials.get(cred.id)])
      expect(Object.keys(rec!)).not.toContain("limits");
  });

  it("a key's limits, quotaRefill and quotaPeriod round-trip and survive patches that do not name them", async () => {
    const fields = {
      limits: { rpm: 60, tpm: 100_000, rpd: 0, maxConcurrency: 5, queueTimeoutMs: 2_000 },
      quotaRefill: { interval: "month" as const, amount: 2_500_000 },
      quotaPeriod: P1,
    };
    const created = await store.keys.create(fixtures.key(fields));
    expect(created).toMatchObject(fields);
    expect(await store.keys.get(created.id)).toEqual(created);
    expect(await store.keys.getByHash(created.keyHash)).toEqual(created);
    expect((await store.keys.list()).items).toEqual([created]);
    // A patch that does not name them (or names them undefined, as an older caller would) keeps them.
    const renamed = await store.keys.update(created.id, { name: "renamed", limits: undefined });
    expect(renamed).toEqual({ ...created, name: "renamed" });
    // A patch that names one replaces it whole (no merge), the others stay.
    const limited = await store.keys.update(created.id, { limits: { rpm: 10 } });
    expect(limited).toEqual({ ...created, name: "renamed", limits: { rpm: 10 } });
    const cleared = await store.keys.update(created.id, {
      limits: {},
      quotaRefill: null,
      quotaPeriod: 0,
    });
    expect(cleared).toEqual({
      ...created,
      name: "renamed",
      limits: {},
      quotaRefill: null,
      quotaPeriod: 0,
    });
    expect(await store.keys.get(created.id)).toEqual(cleared);
  });

  it("a user's limits, quotaRefill and quotaPeriod round-trip and survive patches that do not name them", async () => {
    const fields = {
      limits: { rpm: 600, maxConcurrency: 20 },
      quotaRefill: { interval: "7d" as const, amount: 0 },
      quotaPeriod: P2,
    };
    const created = await store.users.create(fixtures.user(fields));
    expect(created).toMatchObject(fields);
    expect(await store.users.get(created.id)).toEqual(created);
    expect(await store.users.getByUsername(created.username)).toEqual(created);
    const renamed = await store.users.update(created.id, {
      displayName: "Renamed",
      quotaRefill: undefined,
    });
    expect(renamed).toEqual({ ...created, displayName: "Renamed" });
    const changed = await store.users.update(created.id, {
      quotaRefill: { interval: "1d", amount: 100 },
    });
    expect(changed).toEqual({
      ...created,
      displayName: "Renamed",
      quotaRefill: { interval: "1d", amount: 100 },
    });
    expect((await store.users.list()).items).toEqual([changed]);
  });

  it("a credential's limits round-trip and survive patches that do not name them", async () => {
    const limits = {
      rpm: 30,
      tpm: 40_000,
      maxConcurrency: 1,
      spendPerDay: 5_000,
      spendPerMonth: 0,
    };
    const created = await store.credentials.create(fixtures.credential({ limits }));
    expect(created.limits).toEqual(limits);
    expect(await store.credentials.get(created.id)).toEqual(created);
    expect(await store.credentials.list()).toEqual([created]);
    const relabelled = (await store.credentials.update(created.id, {
      label: "relabelled",
      limits: undefined,
    }))!;
    expect(relabelled).toMatchObject({ label: "relabelled", limits });
    const replaced = (await store.credentials.update(created.id, { limits: { rpm: 2 } }))!;
    expect(replaced).toMatchObject({ label: "relabelled", limits: { rpm: 2 } });
    expect(await store.credentials.get(created.id)).toEqual(replaced);
  });

  it("refillQuota starts a period once: balance = amount, usedQuota 0, quotaPeriod = period", async () => {
    const key = await store.keys.create(fixtures.key({ remainQuota: 7, usedQuota: 93 }));
    expect(await store.refillQuota("key", key.id, P1, 100)).toBe(true);
    expect(await store.keys.get(key.id)).toEqual({
      ...key,
      remainQuota: 100,
      usedQuota: 0,
      quotaPeriod: P1,
    });
    // The same period, or an earlier one, changes nothing.
    await store.keys.update(key.id, { remainQuota: 40, usedQuota: 60 });
    expect(await store.refillQuota("key", key.id, P1, 100)).toBe(false);
    expect(await store.refillQuota("key", key.id, P1 - 1, 100)).toBe(false);
    expect(await store.keys.get(key.id)).toMatchObject({
      remainQuota: 40,
      usedQuota: 60,
      quotaPeriod: P1,
    });
    // The next one refills again (an amount of 0 included).
    expect(await store.refillQuota("key", key.id, P2, 0)).toBe(true);
    expect(await store.keys.get(key.id)).toMatchObject({
      remainQuota: 0,
      usedQuota: 0,
      quotaPeriod: P2,
    });
  });

  it("refillQuota refills a user's quota, and answers false for an unknown key or user", async () => {
    const user = await store.users.create(fixtures.user({ quota: 3, usedQuota: 997 }));
    expect(await store.refillQuota("user", user.id, P1, 1_000)).toBe(true);
    expect(await store.users.get(user.id)).toEqual({
      ...user,
      quota: 1_000,
      usedQuota: 0,
      quotaPeriod: P1,
    });
    expect(await store.refillQuota("user", user.id, P1, 1_000)).toBe(false);
    expect(await store.refillQuota("user", 987_654, P1, 1)).toBe(false);
    expect(await store.refillQuota("key", 987_654, P1, 1)).toBe(false);
    expect(await store.users.get(987_654)).toBeNull();
    expect(await store.keys.get(987_654)).toBeNull();
  });

  it("refillQuota rejects a bad target, period or amount and changes nothing", async () => {
    const key = await store.keys.create(fixtures.key({ remainQuota: 5 }));
    const bad: [string, number, number][] = [
      ["group", P1, 1],
      ["key", 0, 1],
      ["key", -P1, 1],
      ["key", P1 + 0.5, 1],
      ["key", Number.NaN, 1],
      ["key", P1, -1],
      ["key", P1, 1.5],
      ["key", P1, Number.POSITIVE_INFINITY],
    ];
    for (const [target, period, amount] of bad)
      await expect(
        store.refillQuota(target as "key", key.id, period, amount),
        `${target} ${period} ${amount}`,
      ).rejects.toThrow();
    expect(await store.keys.get(key.id)).toEqual(key);
  });

  it("refillQuota delivers a change notification for the record it refilled", async () => {
    const { user, key } = await owned(10, 10);
    const seen = record(store);
    expect(await store.refillQuota("key", key.id, P1, 50)).toBe(true);
    expect(await store.refillQuota("user", user.id, P1, 50)).toBe(true);
    await waitUntil(() => seen.changes.length >= 2, 2_000, "2 changes");
    seen.stop();
    expect(seen.changes).toEqual([
      change("keys", key.id, "upsert"),
      change("users", user.id, "upsert"),
    ]);
  });

  it("50 concurrent refills of one period refill once", async () => {
    const { user, key } = await owned(1, 2);
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        i % 2
          ? store.refillQuota("key", key.id, P1, 1_000)
          : store.refillQuota("user", user.id, P1, 2_000),
      ),
    );
    expect(results.filter((r, i) => r && i % 2 === 1)).toHaveLength(1);
    expect(results.filter((r, i) => r && i % 2 === 0)).toHaveLength(1);
    expect(await balances(key.id, user.id)).toEqual({
      remain: 1_000,
      keyUsed: 0,
      quota: 2_000,
      userUsed: 0,
    });
  });

  it("refills racing with reservations and settlements leave one period's balance", async () => {
    const key = await store.keys.create(fixtures.key({ remainQuota: 1_000 }));
    const ops: Promise<unknown>[] = [];
    for (let i = 0; i < 40; i++) {
      ops.push(
        store
          .reserveQuota(key.id, 5)
          .then((r) => (r.ok ? store.settleQuota(r.reservation, 3, 1) : undefined)),
      );
      if (i % 10 === 0) ops.push(store.refillQuota("key", key.id, P1, 10_000));
    }
    await Promise.all(ops);
    const after = (await store.keys.get(key.id))!;
    expect(after.quotaPeriod).toBe(P1);
    // Whatever settled in the new period moved its balance and its used quota together.
    expect(after.remainQuota + after.usedQuota).toBe(10_000);
  });

  it("a reservation carries the key's and the owner's period", async () => {
    const { user, key } = await owned(1_000, 1_000);
    expect(await store.reserveQuota(key.id, 10)).toEqual(grant(key.id, user.id, 10, true, 0, 0));
    await store.refillQuota("user", user.id, P1, 1_000);
    expect(await store.reserveQuota(key.id, 10)).toEqual(grant(key.id, user.id, 10, true, 0, P1));
    await store.refillQuota("key", key.id, P2, 1_000);
    expect(await store.reserveQuota(key.id, 10)).toEqual(grant(key.id, user.id, 10, true, P2, P1));
    const lone = await store.keys.create(fixtures.key({ quotaPeriod: P1 }));
    expect(await store.reserveQuota(lone.id, 1)).toEqual(grant(lone.id, null, 1, true, P1, 0));
  });

  it("settling with less than reserved after a refill leaves the new period's balances untouched", async () => {
    const { user, key } = await owned(1_000, 100);
    const res = reservationOf(await store.reserveQuota(key.id, 40));
    await store.refillQuota("key", key.id, P1, 500);
    await store.refillQuota("user", user.id, P1, 800);
    expect(await store.settleQuota(res, 10, 1_234)).toEqual({ charged: 10 });
    expect(await balances(key.id, user.id)).toEqual({
      remain: 500,
      keyUsed: 0,
      quota: 800,
      userUsed: 0,
    });
    expect((await store.keys.get(key.id))!.accessedTime).toBe(1_234);
  });

  it("settling with more than reserved after a refill takes nothing from the new period and is not capped by it", async () => {
    const { user, key } = await owned(1_000, 100);
    const res = reservationOf(await store.reserveQuota(key.id, 40));
    await store.refillQuota("key", key.id, P1, 5);
    await store.refillQuota("user", user.id, P1, 3);
    expect(await store.settleQuota(res, 70, 1)).toEqual({ charged: 70 });
    expect(await balances(key.id, user.id)).toEqual({
      remain: 5,
      keyUsed: 0,
      quota: 3,
      userUsed: 0,
    });
  });

  it("commitUsage after a refill bills the actual cost and leaves the new period's balances untouched", async () => {
    const { user, key } = await owned(1_000, 100);
    const a = reservationOf(await store.reserveQuota(key.id, 40));
    const b = reservationOf(await store.reserveQuota(key.id, 40));
    await store.refillQuota("key", key.id, P1, 5);
    await store.refillQuota("user", user.id, P1, 800);
    const out = await store.commitUsage(
      [
        { reservation: a, actualUnits: 10, record: fixtures.usage({ keyId: key.id }) },
        { reservation: b, actualUnits: 90, record: fixtures.usage({ keyId: key.id }) },
      ],
      1,
    );
    expect(out.map((r) => r.quota)).toEqual([10, 90]);
    expect(await balances(key.id, user.id)).toEqual({
      remain: 5,
      keyUsed: 0,
      quota: 800,
      userUsed: 0,
    });
    const listed = await store.usage.list({ keyId: key.id });
    expect(listed.items.map((r) => r.quota).sort((x, y) => x - y)).toEqual([10, 90]);
  });

  it("recovering a reservation expired after a refill bills its units and leaves the new period's balances untouched", async () => {
    const T = 1_700_000_000_000;
    const meta: ReservationMeta = { expiresAt: T, requestId: "req-refill" };
    const { user, key } = await owned(1_000, 100);
    reservationOf(await store.reserveQuota(key.id, 40, meta));
    await store.refillQuota("key", key.id, P1, 500);
    await store.refillQuota("user", user.id, P1, 800);
    const [rec, ...more] = await store.recoverReservations(T, 10);
    expect(more).toEqual([]);
    expect(rec).toMatchObject({ requestId: "req-refill", quota: 40, recovered: true });
    expect(await balances(key.id, user.id)).toEqual({
      remain: 500,
      keyUsed: 0,
      quota: 800,
      userUsed: 0,
    });
  });

  it("when only the owner was refilled, the key settles as before and alone caps the extra", async () => {
    const { user, key } = await owned(1_000, 50);
    const res = reservationOf(await store.reserveQuota(key.id, 40));
    await store.refillQuota("user", user.id, P1, 0);
    // 40 reserved, 70 used: the key has 10 left, the owner (refilled to 0) caps nothing.
    expect(await store.settleQuota(res, 70, 1)).toEqual({ charged: 50 });
    expect(await balances(key.id, user.id)).toEqual({
      remain: 0,
      keyUsed: 50,
      quota: 0,
      userUsed: 0,
    });
  });

  it("when only the key was refilled, the owner settles as before", async () => {
    const { user, key } = await owned(1_000, 100);
    const res = reservationOf(await store.reserveQuota(key.id, 40));
    await store.refillQuota("key", key.id, P1, 500);
    expect(await store.settleQuota(res, 10, 1)).toEqual({ charged: 10 });
    expect(await balances(key.id, user.id)).toEqual({
      remain: 500,
      keyUsed: 0,
      quota: 990,
      userUsed: 10,
    });
  });

  it("a reservation in the current period settles as usual", async () => {
    const { user, key } = await owned(1_000, 100, P1);
    const res = reservationOf(await store.reserveQuota(key.id, 40));
    expect(res).toMatchObject({ keyPeriod: P1, userPeriod: P1 });
    expect(await store.settleQuota(res, 10, 1)).toEqual({ charged: 10 });
    expect(await balances(key.id, user.id)).toEqual({
      remain: 90,
      keyUsed: 10,
      quota: 990,
      userUsed: 10,
    });
  });

  it("a reservation without periods (an older caller's) counts as period 0", async () => {
    const { user, key } = await owned(1_000, 100);
    const strip = ({ keyPeriod: _k, userPeriod: _u, ...rest }: Reservation): Reservation => rest;
    const a = strip(reservationOf(await store.reserveQuota(key.id, 40)));
    expect(await store.settleQuota(a, 10, 1)).toEqual({ charged: 10 });
    expect(await balances(key.id, user.id)).toEqual({
      remain: 90,
      keyUsed: 10,
      quota: 990,
      userUsed: 10,
    });
    const b = strip(reservationOf(await store.reserveQuota(key.id, 40)));
    await store.refillQuota("key", key.id, P1, 500);
    expect(await store.settleQuota(b, 30, 1)).toEqual({ charged: 30 });
    expect(await balances(key.id, user.id)).toEqual({
      remain: 500,
      keyUsed: 0,
      quota: 960,
      userUsed: 40,
    });
  });
});

/** Runs `n` refills of one period through `stores` (round robin): how many answered true. */
export async function refillRace(stores: Store[], keyId: number, period: number, n: number) {
  const results = await Promise.all(
    Array.from({ length: n }, (_, i) =>
      stores[i % stores.length]!.refillQuota("key", keyId, period, 1_000),
    ),
  );
  return results.filter(Boolean).length;
}
