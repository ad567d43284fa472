import type { ReservationMeta, UsageCommit } from "@tokenpool/core";
import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { defineGroup, denial, reservationOf } from "./context.js";

/**
 * Shared reservations (stores with `capabilities.quotaShares`; the others skip these tests):
 * `UsageCommit.share` settles a part of a reservation and the row keeps the rest;
 * `reservationUnits` reads what is left. Also, for every store, a committed record keeps
 * `recovered: true`. Part of `commitUsage`, so `skip: ["commit-usage"]` skips it too.
 */
export const quotaSharesGroup = defineGroup(
  "commit-usage",
  "commitUsage with shares of a reservation (quotaShares)",
  ({ store, capabilities }) => {
    const skip = capabilities.quotaShares !== true;
    const T = 1_700_000_000_000;
    const meta = (expiresAt: number, requestId = "block-1"): ReservationMeta => ({
      expiresAt,
      owner: "gw-a",
      requestId,
      route: "POST /v1/chat/completions",
      model: "gpt-4o-mini",
      timestamp: T - 5_000,
    });
    /** What is left on a reservation row (null: gone), through the store's read. */
    const unitsOf = (id: string) => {
      if (!store.reservationUnits) throw new Error("quotaShares requires reservationUnits");
      return store.reservationUnits(id);
    };
    /** Σ of the key's usage records' quota, and its balances: Σ quota must equal usedQuota. */
    const ledger = async (keyId: number) => {
      const records = (await store.usage.list({ keyId, limit: 10_000 })).items;
      const key = (await store.keys.get(keyId))!;
      return {
        billed: records.reduce((sum, r) => sum + r.quota, 0),
        used: key.usedQuota,
        remain: key.remainQuota,
        records,
      };
    };

    it.skipIf(skip)(
      "settles each share to its actual cost and leaves the rest on the row",
      async () => {
        const key = await store.keys.create(fixtures.key({ remainQuota: 10_000 }));
        const res = reservationOf(await store.reserveQuota(key.id, 1_000));
        expect(await unitsOf(res.id)).toBe(1_000);
        const out = await store.commitUsage(
          [
            // 300 of the block cost 200: 100 go back.
            {
              reservation: res,
              share: 300,
              actualUnits: 200,
              record: fixtures.usage({ keyId: key.id, quota: 999 }),
            },
            // 300 of the block cost 500: 200 more are taken.
            {
              reservation: res,
              share: 300,
              actualUnits: 500,
              record: fixtures.usage({ keyId: key.id }),
            },
          ],
          1_234,
        );
        expect(out.map((r) => r.quota)).toEqual([200, 500]);
        expect(await unitsOf(res.id)).toBe(400);
        expect((await store.keys.get(key.id))!).toMatchObject({
          remainQuota: 10_000 - 1_000 + 100 - 200,
          usedQuota: 700,
          accessedTime: 1_234,
        });
        const l = await ledger(key.id);
        expect(l.billed).toBe(700);
        expect(l.records.map((r) => r.quota).sort((a, b) => a - b)).toEqual([200, 500]);
        const rollups = await store.usage.rollups({ keyId: key.id });
        expect(rollups.reduce((sum, r) => sum + r.quota, 0)).toBe(700);
        // What is left is still in flight.
        expect(await store.reserveQuota(key.id, 9_000)).toEqual(denial("key_quota", 400));
      },
    );

    it.skipIf(skip)(
      "a share at least as large as what is left settles the rest and removes the row",
      async () => {
        const key = await store.keys.create(fixtures.key({ remainQuota: 10_000 }));
        const a = reservationOf(await store.reserveQuota(key.id, 1_000));
        const b = reservationOf(await store.reserveQuota(key.id, 100));
        await store.commitUsage(
          [
            {
              reservation: a,
              share: 600,
              actualUnits: 500,
              record: fixtures.usage({ keyId: key.id }),
            },
          ],
          1,
        );
        expect(await unitsOf(a.id)).toBe(400);
        const out = await store.commitUsage(
          [
            // More than the 400 left: the 400 are settled to 450 (50 more taken).
            {
              reservation: a,
              share: 500,
              actualUnits: 450,
              record: fixtures.usage({ keyId: key.id }),
            },
            // Exactly what is left: settled to 70 (30 back).
            {
              reservation: b,
              share: 100,
              actualUnits: 70,
              record: fixtures.usage({ keyId: key.id }),
            },
          ],
          1,
        );
        expect(out.map((r) => r.quota)).toEqual([450, 70]);
        expect(await unitsOf(a.id)).toBeNull();
        expect(await unitsOf(b.id)).toBeNull();
        expect(await ledger(key.id)).toMatchObject({
          billed: 500 + 450 + 70,
          used: 1_020,
          remain: 10_000 - 1_020,
        });
        // Nothing is in flight any more, and the rows are not recovered.
        expect(await store.reserveQuota(key.id, 10_000)).toEqual(denial("key_quota", 0));
        expect(await store.recoverReservations(Date.now() + 365 * 86_400_000, 100)).toEqual([]);
        // A share of a row settled already charges nothing; its record is still appended.
        const [late] = await store.commitUsage(
          [
            {
              reservation: a,
              share: 10,
              actualUnits: 10,
              record: fixtures.usage({ keyId: key.id }),
            },
          ],
          1,
        );
        expect(late!.quota).toBe(0);
        expect(await ledger(key.id)).toMatchObject({ billed: 1_020, used: 1_020, remain: 8_980 });
      },
    );

    it.skipIf(skip)(
      "a shrunk row is renewable, and recovery charges what is left; a later share charges 0",
      async () => {
        const key = await store.keys.create(fixtures.key({ remainQuota: 10_000 }));
        const res = reservationOf(await store.reserveQuota(key.id, 1_000, meta(T)));
        await store.commitUsage(
          [
            {
              reservation: res,
              share: 300,
              actualUnits: 300,
              record: fixtures.usage({ keyId: key.id }),
            },
          ],
          1,
        );
        expect(await store.renewReservations([res.id], T + 10_000)).toBe(1);
        expect(await store.recoverReservations(T + 9_999, 100)).toEqual([]);
        const [rec, ...more] = await store.recoverReservations(T + 10_000, 100);
        expect(more).toEqual([]);
        expect(rec).toMatchObject({
          requestId: "block-1",
          keyId: key.id,
          quota: 700,
          totalTokens: 0,
          success: false,
          recovered: true,
        });
        expect(await unitsOf(res.id)).toBeNull();
        expect(await ledger(key.id)).toMatchObject({ billed: 1_000, used: 1_000, remain: 9_000 });
        // A share settled after the recovery: nothing charged or given back, record with quota 0.
        const [late] = await store.commitUsage(
          [
            {
              reservation: res,
              share: 300,
              actualUnits: 250,
              record: fixtures.usage({ keyId: key.id }),
            },
          ],
          1,
        );
        expect(late!.quota).toBe(0);
        expect(late!.recovered).toBeUndefined();
        const l = await ledger(key.id);
        expect(l).toMatchObject({ billed: 1_000, used: 1_000, remain: 9_000 });
        expect(l.records.map((r) => r.quota).sort((a, b) => a - b)).toEqual([0, 300, 700]);
        expect(await store.reserveQuota(key.id, 9_001)).toEqual(denial("key_quota", 0));
      },
    );

    it.skipIf(skip)(
      "settles a batch's commits one after the other: each sees what the earlier ones left",
      async () => {
        // The owner's quota is the tighter cap: 1_000 + 300 debited leaves 200.
        const user = await store.users.create(fixtures.user({ quota: 1_500 }));
        const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 5_000 }));
        const block = reservationOf(await store.reserveQuota(key.id, 1_000));
        const alone = reservationOf(await store.reserveQuota(key.id, 300));
        const commit = (c: Omit<UsageCommit, "record">): UsageCommit => ({
          ...c,
          record: fixtures.usage({ keyId: key.id, userId: user.id }),
        });
        const out = await store.commitUsage(
          [
            // 300 cost 450: 150 more, within the owner's 200 left.
            commit({ reservation: block, share: 300, actualUnits: 450 }),
            // 300 cost 500: 200 more wanted, 50 left on the owner: capped at 350.
            commit({ reservation: block, share: 300, actualUnits: 500 }),
            // The whole reservation of 300 costs 100: 200 back to the key and the owner.
            commit({ reservation: alone, actualUnits: 100 }),
            // More than the 400 left: the rest, settled to 600 (200 more, the 200 just given back).
            commit({ reservation: block, share: 500, actualUnits: 700 }),
            // The row is gone (this batch removed it): nothing charged.
            commit({ reservation: block, share: 10, actualUnits: 10 }),
            // Already settled in this batch: nothing charged either.
            commit({ reservation: alone, actualUnits: 50 }),
          ],
          77,
        );
        expect(out.map((r) => r.quota)).toEqual([450, 350, 100, 600, 0, 0]);
        expect(await unitsOf(block.id)).toBeNull();
        expect(await unitsOf(alone.id)).toBeNull();
        const charged = 450 + 350 + 100 + 600;
        expect(await ledger(key.id)).toMatchObject({
          billed: charged,
          used: charged,
          remain: 5_000 - charged,
        });
        expect((await store.users.get(user.id))!).toMatchObject({
          quota: 0,
          usedQuota: charged,
        });
        expect((await store.keys.get(key.id))!.accessedTime).toBe(77);
        // Nothing left in flight, nothing to recover.
        expect(await store.recoverReservations(Date.now() + 365 * 86_400_000, 100)).toEqual([]);
      },
    );

    it.skipIf(skip)("a bad share rejects the whole batch and writes nothing", async () => {
      const user = await store.users.create(fixtures.user({ quota: 5_000 }));
      const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 10_000 }));
      const res = reservationOf(await store.reserveQuota(key.id, 1_000));
      const other = reservationOf(await store.reserveQuota(key.id, 50));
      for (const bad of [-1, Number.NaN, 1.5, Number.POSITIVE_INFINITY]) {
        const batch: UsageCommit[] = [
          // Valid, and first: it must not be applied either.
          { reservation: other, actualUnits: 10, record: fixtures.usage({ keyId: key.id }) },
          {
            reservation: res,
            share: 100,
            actualUnits: 80,
            record: fixtures.usage({ keyId: key.id }),
          },
          {
            reservation: res,
            share: bad,
            actualUnits: 80,
            record: fixtures.usage({ keyId: key.id }),
          },
        ];
        await expect(store.commitUsage(batch, 1)).rejects.toThrow();
      }
      expect(await unitsOf(res.id)).toBe(1_000);
      expect(await unitsOf(other.id)).toBe(50);
      expect((await store.usage.list({ keyId: key.id })).total).toBe(0);
      expect((await store.usage.rollups({ keyId: key.id })).length).toBe(0);
      expect((await store.keys.get(key.id))!).toMatchObject({ remainQuota: 8_950, usedQuota: 0 });
      expect((await store.users.get(user.id))!).toMatchObject({ quota: 3_950, usedQuota: 0 });
    });

    it.skipIf(skip)("settles the owner's quota per share too", async () => {
      const user = await store.users.create(fixtures.user({ quota: 1_500 }));
      const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 10_000 }));
      const res = reservationOf(await store.reserveQuota(key.id, 1_000));
      expect((await store.users.get(user.id))!).toMatchObject({ quota: 500, usedQuota: 0 });
      const out = await store.commitUsage(
        [
          // 400 cost 100: 300 back to the key and the owner.
          {
            reservation: res,
            share: 400,
            actualUnits: 100,
            record: fixtures.usage({ keyId: key.id }),
          },
          // 300 cost 1,500: 1,200 more, capped by the owner's 800 left.
          {
            reservation: res,
            share: 300,
            actualUnits: 1_500,
            record: fixtures.usage({ keyId: key.id }),
          },
        ],
        1,
      );
      expect(out.map((r) => r.quota)).toEqual([100, 1_100]);
      expect(await unitsOf(res.id)).toBe(300);
      expect((await store.keys.get(key.id))!).toMatchObject({
        remainQuota: 8_500,
        usedQuota: 1_200,
      });
      expect((await store.users.get(user.id))!).toMatchObject({ quota: 0, usedQuota: 1_200 });
      // The owner's in-flight units are what the row holds now.
      expect(await store.reserveQuota(key.id, 1)).toEqual(denial("user_quota", 300));
      // The rest, unused: all 300 go back.
      const [last] = await store.commitUsage(
        [
          {
            reservation: res,
            share: 300,
            actualUnits: 0,
            record: fixtures.usage({ keyId: key.id }),
          },
        ],
        1,
      );
      expect(last!.quota).toBe(0);
      expect(await unitsOf(res.id)).toBeNull();
      expect((await store.keys.get(key.id))!).toMatchObject({
        remainQuota: 8_800,
        usedQuota: 1_200,
      });
      expect((await store.users.get(user.id))!).toMatchObject({ quota: 300, usedQuota: 1_200 });
      expect(await ledger(key.id)).toMatchObject({ billed: 1_200, used: 1_200 });
    });

    // commitUsage's own rule, for every store: this test does not skip with quotaShares.
    it("keeps recovered: true on a committed record", async () => {
      const key = await store.keys.create(fixtures.key({ remainQuota: 10_000 }));
      const res = reservationOf(await store.reserveQuota(key.id, 100));
      const out = await store.commitUsage(
        [
          {
            reservation: res,
            actualUnits: 40,
            record: fixtures.usage({ keyId: key.id, requestId: "settled", recovered: true }),
          },
          {
            reservation: null,
            actualUnits: 5,
            record: fixtures.usage({ keyId: key.id, requestId: "alone", recovered: true }),
          },
          {
            reservation: null,
            actualUnits: 5,
            record: fixtures.usage({ keyId: key.id, requestId: "plain" }),
          },
        ],
        1,
      );
      expect(out.map((r) => r.recovered)).toEqual([true, true, undefined]);
      const listed = (await store.usage.list({ keyId: key.id })).items;
      const byRequest = new Map(listed.map((r) => [r.requestId, r]));
      expect(byRequest.get("settled")).toMatchObject({ quota: 40, recovered: true });
      expect(byRequest.get("alone")).toMatchObject({ quota: 5, recovered: true });
      expect(byRequest.get("plain")!.recovered).toBeUndefined();
    });

    it.skipIf(skip)("keeps recovered: true on a record committed with a share", async () => {
      const key = await store.keys.create(fixtures.key({ remainQuota: 10_000 }));
      const res = reservationOf(await store.reserveQuota(key.id, 100));
      const [rec] = await store.commitUsage(
        [
          {
            reservation: res,
            share: 40,
            actualUnits: 30,
            record: fixtures.usage({ keyId: key.id, recovered: true }),
          },
        ],
        1,
      );
      expect(rec).toMatchObject({ quota: 30, recovered: true });
      expect((await store.usage.list({ keyId: key.id })).items).toEqual([rec]);
      expect(await unitsOf(res.id)).toBe(60);
    });
  },
);
