import type { Reservation, ReserveResult } from "@tokenpool/core";
import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { defineGroup, denial, grant, granted, reservationOf } from "./context.js";

/** Quota reservations and settlements: debits of key and owner, caps, overdraft races. */
export const quotaGroup = defineGroup("quota", "reserveQuota and settleQuota", ({ store }) => {
  const balances = async (keyId: number, userId?: number) => {
    const key = (await store.keys.get(keyId))!;
    const user = userId === undefined ? null : await store.users.get(userId);
    return {
      remain: key.remainQuota,
      keyUsed: key.usedQuota,
      userQuota: user?.quota,
      userUsed: user?.usedQuota,
    };
  };
  /** Reserves `units` on a new key with a new owner: what came back, the grant it should be, balances after. */
  const reserveOwned = async (userQuota: number, remainQuota: number, units: number) => {
    const user = await store.users.create(fixtures.user({ quota: userQuota }));
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota }));
    const reserved = await store.reserveQuota(key.id, units);
    return {
      reserved,
      grant: grant(key.id, user.id, units, true),
      after: await balances(key.id, user.id),
    };
  };

  it("reserves from a key without an owner", async () => {
    const key = await store.keys.create(fixtures.key({ remainQuota: 100 }));
    expect(await store.reserveQuota(key.id, 30)).toEqual(grant(key.id, null, 30, true));
    expect((await store.keys.get(key.id))!.remainQuota).toBe(70);
  });

  it("reserves from the key and its owner together", async () => {
    const { reserved, grant, after } = await reserveOwned(80, 100, 30);
    expect(reserved).toEqual(grant);
    expect(after).toMatchObject({ remain: 70, userQuota: 50 });
  });

  it("debits only the key when its owner does not exist", async () => {
    const key = await store.keys.create(fixtures.key({ userId: 4_040, remainQuota: 10 }));
    expect(await store.reserveQuota(key.id, 4)).toEqual(grant(key.id, null, 4, true));
    expect((await store.keys.get(key.id))!.remainQuota).toBe(6);
  });

  it("an unlimited key debits only its owner", async () => {
    const user = await store.users.create(fixtures.user({ quota: 10 }));
    const key = await store.keys.create(
      fixtures.key({ userId: user.id, unlimitedQuota: true, remainQuota: 0 }),
    );
    expect(await store.reserveQuota(key.id, 6)).toEqual(grant(key.id, user.id, 6, false));
    expect(await balances(key.id, user.id)).toMatchObject({ remain: 0, userQuota: 4 });
    // The denial reports the owner's units held by unsettled reservations.
    expect(await store.reserveQuota(key.id, 5)).toEqual(denial("user_quota", 6));
    expect(await balances(key.id, user.id)).toMatchObject({ remain: 0, userQuota: 4 });
  });

  it("an unlimited key without an owner always succeeds and debits nothing", async () => {
    const key = await store.keys.create(fixtures.key({ unlimitedQuota: true, remainQuota: 0 }));
    expect(await store.reserveQuota(key.id, 1_000_000)).toEqual(
      grant(key.id, null, 1_000_000, false),
    );
    expect((await store.keys.get(key.id))!.remainQuota).toBe(0);
  });

  it("refuses with key_quota when the key has too little left, debiting nobody", async () => {
    const user = await store.users.create(fixtures.user({ quota: 100 }));
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 30 }));
    expect(await store.reserveQuota(key.id, 31)).toEqual(denial("key_quota", 0));
    expect(await balances(key.id, user.id)).toMatchObject({ remain: 30, userQuota: 100 });
    expect((await store.reserveQuota(key.id, 30)).ok).toBe(true);
    expect(await balances(key.id, user.id)).toMatchObject({ remain: 0, userQuota: 70 });
    // Now 30 units are held by a reservation in flight, which waiting may give back.
    expect(await store.reserveQuota(key.id, 1)).toEqual(denial("key_quota", 30));
  });

  it("refuses with user_quota when the owner has too little left, debiting nobody", async () => {
    const user = await store.users.create(fixtures.user({ quota: 5 }));
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 100 }));
    expect(await store.reserveQuota(key.id, 6)).toEqual(denial("user_quota", 0));
    expect(await balances(key.id, user.id)).toMatchObject({ remain: 100, userQuota: 5 });
  });

  it("refuses with key_not_found for an unknown key", async () => {
    expect(await store.reserveQuota(123_456, 1)).toEqual({
      ok: false,
      reason: "key_not_found",
    });
    expect(await store.reserveQuota(123_456, 0)).toEqual({
      ok: false,
      reason: "key_not_found",
    });
  });

  it("0 units always succeeds for an existing key, even with nothing left", async () => {
    const { reserved, grant, after } = await reserveOwned(0, 0, 0);
    expect(reserved).toEqual(grant);
    expect(after).toMatchObject({ remain: 0, userQuota: 0 });
  });

  it("does not check the key's status or expiry", async () => {
    const key = await store.keys.create(
      fixtures.key({ status: 2, expiredTime: 1, remainQuota: 5 }),
    );
    expect((await store.reserveQuota(key.id, 5)).ok).toBe(true);
  });

  // A key of `remainQuota` units owned by a user of `quota`; `reserve` units reserved, then
  // settled for `actual`: what is charged and the balances after.
  const settleCases = [
    {
      title: "settling for less gives the difference back to the key and the owner",
      quota: 200,
      remainQuota: 100,
      reserve: 50,
      actual: 20,
      at: 1_700_000_123,
      charged: 20,
      after: { remain: 80, keyUsed: 20, userQuota: 180, userUsed: 20 },
      // The settlement also stamps the key's last use.
      accessedTime: 1_700_000_123,
    },
    {
      title: "settling for more takes the extra when both balances cover it",
      quota: 200,
      remainQuota: 100,
      reserve: 10,
      actual: 25,
      at: 1_700_000_000,
      charged: 25,
      after: { remain: 75, keyUsed: 25, userQuota: 175, userUsed: 25 },
    },
    {
      title: "the extra is capped by the key's balance, which never goes below zero",
      quota: 1_000,
      remainQuota: 100,
      reserve: 90,
      actual: 150,
      at: 1_700_000_000,
      charged: 100,
      after: { remain: 0, keyUsed: 100, userQuota: 900, userUsed: 100 },
    },
    {
      title: "the extra is capped by the owner's balance, which never goes below zero",
      quota: 40,
      remainQuota: 1_000,
      reserve: 30,
      actual: 100,
      at: 1_700_000_000,
      charged: 40,
      after: { remain: 960, keyUsed: 40, userQuota: 0, userUsed: 40 },
    },
  ];

  for (const c of settleCases) {
    it(c.title, async () => {
      const user = await store.users.create(fixtures.user({ quota: c.quota }));
      const key = await store.keys.create(
        fixtures.key({ userId: user.id, remainQuota: c.remainQuota }),
      );
      const res = reservationOf(await store.reserveQuota(key.id, c.reserve));
      expect(await store.settleQuota(res, c.actual, c.at)).toEqual({ charged: c.charged });
      expect(await balances(key.id, user.id)).toEqual(c.after);
      if (c.accessedTime !== undefined)
        expect((await store.keys.get(key.id))!.accessedTime).toBe(c.accessedTime);
    });
  }

  it("settling for exactly the reservation changes no balance but counts usage", async () => {
    const key = await store.keys.create(fixtures.key({ remainQuota: 100, usedQuota: 7 }));
    const res = reservationOf(await store.reserveQuota(key.id, 40));
    expect(await store.settleQuota(res, 40, 1_700_000_000)).toEqual({ charged: 40 });
    expect(await balances(key.id)).toMatchObject({ remain: 60, keyUsed: 47 });
  });

  it("an unlimited key's extra is capped only by the owner and leaves remainQuota alone", async () => {
    const user = await store.users.create(fixtures.user({ quota: 50 }));
    const key = await store.keys.create(
      fixtures.key({ userId: user.id, unlimitedQuota: true, remainQuota: 3 }),
    );
    const res = reservationOf(await store.reserveQuota(key.id, 20));
    expect(await store.settleQuota(res, 500, 1_700_000_000)).toEqual({ charged: 50 });
    expect(await balances(key.id, user.id)).toEqual({
      remain: 3,
      keyUsed: 50,
      userQuota: 0,
      userUsed: 50,
    });
    const free = await store.keys.create(fixtures.key({ unlimitedQuota: true, remainQuota: 0 }));
    const res2 = reservationOf(await store.reserveQuota(free.id, 1));
    expect(await store.settleQuota(res2, 9_999, 1_700_000_000)).toEqual({ charged: 9_999 });
    expect(await balances(free.id)).toMatchObject({ remain: 0, keyUsed: 9_999 });
  });

  it("200 parallel reservations of 1 unit against 50 units succeed exactly 50 times", async () => {
    const key = await store.keys.create(fixtures.key({ remainQuota: 50 }));
    const results = await Promise.all(
      Array.from({ length: 200 }, () => store.reserveQuota(key.id, 1)),
    );
    expect(granted(results)).toBe(50);
    expect(results.filter((r) => !r.ok && r.reason === "key_quota")).toHaveLength(150);
    expect((await store.keys.get(key.id))!.remainQuota).toBe(0);
  });

  it("two keys sharing an owner's 50 units never overdraw the owner in parallel", async () => {
    const user = await store.users.create(fixtures.user({ quota: 50 }));
    const k1 = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 1_000 }));
    const k2 = await store.keys.create(
      fixtures.key({ userId: user.id, unlimitedQuota: true, remainQuota: 0 }),
    );
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => store.reserveQuota(i % 2 ? k2.id : k1.id, 1)),
    );
    expect(granted(results)).toBe(50);
    expect(results.filter((r) => !r.ok && r.reason === "user_quota")).toHaveLength(150);
    const viaK1 = results.filter((r) => r.ok && r.reservation.keyId === k1.id).length;
    expect((await store.users.get(user.id))!.quota).toBe(0);
    expect((await store.keys.get(k1.id))!.remainQuota).toBe(1_000 - viaK1);
    expect((await store.keys.get(k2.id))!.remainQuota).toBe(0);
  });

  it("parallel settlements and reservations on one key lose no updates", async () => {
    const user = await store.users.create(fixtures.user({ quota: 2_000 }));
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 1_000 }));
    const held: Reservation[] = [];
    for (let i = 0; i < 50; i++) held.push(reservationOf(await store.reserveQuota(key.id, 10)));
    // key 500, user 1500 left; settle 25×5 + 25×15 = 500 while reserving 50×3 more.
    const ops: Promise<unknown>[] = [];
    const settlements: Promise<{ charged: number }>[] = [];
    const reservations: Promise<ReserveResult>[] = [];
    held.forEach((res, i) => {
      const s = store.settleQuota(res, i % 2 ? 15 : 5, 1_700_000_000 + i);
      const r = store.reserveQuota(key.id, 3);
      settlements.push(s);
      reservations.push(r);
      ops.push(s, r);
    });
    await Promise.all(ops);
    const charged = (await Promise.all(settlements)).reduce((sum, s) => sum + s.charged, 0);
    expect(charged).toBe(500);
    expect(granted(await Promise.all(reservations))).toBe(50);
    expect(await balances(key.id, user.id)).toEqual({
      remain: 1_000 - 500 - 150,
      keyUsed: 500,
      userQuota: 2_000 - 500 - 150,
      userUsed: 500,
    });
  });
});
