import {
  DEFAULT_RESERVATION_TTL_MS,
  type Reservation,
  type ReservationMeta,
} from "@tokenpool/core";
import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { defineGroup, denial, reservationOf } from "./context.js";

/** Durable reservation rows: renewal, recovery of expired ones exactly once, the ledger invariant. */
export const recoveryGroup = defineGroup(
  "recovery",
  "durable reservations and recovery",
  ({ store }) => {
    const T = 1_700_000_000_000;
    const meta = (expiresAt: number, requestId = "req-1"): ReservationMeta => ({
      expiresAt,
      owner: "gw-a",
      requestId,
      route: "POST /v1/chat/completions",
      model: "gpt-4o-mini",
      timestamp: T - 5_000,
    });
    /** Σ of the key's usage records' quota, and its usedQuota: they must agree. */
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

    it("recovers an expired reservation once: charged in full, with a recovered record", async () => {
      const user = await store.users.create(fixtures.user({ quota: 500 }));
      const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 100 }));
      reservationOf(await store.reserveQuota(key.id, 40, meta(T)));
      expect(await store.recoverReservations(T - 1, 100)).toEqual([]);
      const [rec, ...more] = await store.recoverReservations(T, 100);
      expect(more).toEqual([]);
      expect(rec).toMatchObject({
        requestId: "req-1",
        keyId: key.id,
        userId: user.id,
        route: "POST /v1/chat/completions",
        model: "gpt-4o-mini",
        timestamp: T - 5_000,
        quota: 40,
        totalTokens: 0,
        success: false,
        recovered: true,
      });
      expect(typeof rec!.id).toBe("number");
      // Exactly once: a second run finds nothing.
      expect(await store.recoverReservations(T + 60_000, 100)).toEqual([]);
      const l = await ledger(key.id);
      expect(l).toMatchObject({ billed: 40, used: 40, remain: 60 });
      expect(l.records).toEqual([rec]);
      expect((await store.users.get(user.id))!).toMatchObject({ quota: 460, usedQuota: 40 });
      const rollups = await store.usage.rollups({ keyId: key.id });
      expect(rollups.reduce((sum, r) => sum + r.quota, 0)).toBe(40);
      expect(rollups.reduce((sum, r) => sum + r.requests, 0)).toBe(1);
      // Nothing is in flight any more.
      expect(await store.reserveQuota(key.id, 61)).toEqual(denial("key_quota", 0));
    });

    it("a settlement after recovery charges and gives back nothing; its record carries quota 0", async () => {
      const key = await store.keys.create(fixtures.key({ remainQuota: 100 }));
      const a = reservationOf(await store.reserveQuota(key.id, 30, meta(T, "req-a")));
      const b = reservationOf(await store.reserveQuota(key.id, 30, meta(T, "req-b")));
      expect(await store.recoverReservations(T, 100)).toHaveLength(2);
      expect(await store.settleQuota(a, 5, 1_234)).toEqual({ charged: 0 });
      const [late] = await store.commitUsage(
        [{ reservation: b, actualUnits: 50, record: fixtures.usage({ keyId: key.id }) }],
        1_234,
      );
      expect(late!.quota).toBe(0);
      expect(late!.recovered).toBeUndefined();
      const l = await ledger(key.id);
      expect(l).toMatchObject({ billed: 60, used: 60, remain: 40 });
      expect(l.records).toHaveLength(3);
      expect(l.records.filter((r) => r.recovered === true)).toHaveLength(2);
    });

    it("a settled reservation is never recovered, and stops counting as in flight", async () => {
      const key = await store.keys.create(fixtures.key({ remainQuota: 30 }));
      const res = reservationOf(await store.reserveQuota(key.id, 30, meta(T)));
      expect(await store.reserveQuota(key.id, 1)).toMatchObject({ inFlight: 30 });
      await store.commitUsage(
        [{ reservation: res, actualUnits: 30, record: fixtures.usage({ keyId: key.id }) }],
        1,
      );
      expect(await store.reserveQuota(key.id, 1)).toEqual(denial("key_quota", 0));
      expect(await store.recoverReservations(T + 3_600_000, 100)).toEqual([]);
      expect(await ledger(key.id)).toMatchObject({ billed: 30, used: 30, remain: 0 });
    });

    it("renewal keeps a reservation alive until its new expiry", async () => {
      const key = await store.keys.create(fixtures.key({ remainQuota: 100 }));
      const a = reservationOf(await store.reserveQuota(key.id, 10, meta(T, "req-a")));
      const b = reservationOf(await store.reserveQuota(key.id, 10, meta(T, "req-b")));
      await store.commitUsage(
        [{ reservation: b, actualUnits: 10, record: fixtures.usage({ keyId: key.id }) }],
        1,
      );
      // Only the live one is renewed.
      expect(await store.renewReservations([a.id, b.id, "no-such-reservation"], T + 10_000)).toBe(
        1,
      );
      expect(await store.renewReservations([], T + 20_000)).toBe(0);
      expect(await store.recoverReservations(T + 9_999, 100)).toEqual([]);
      const out = await store.recoverReservations(T + 10_000, 100);
      expect(out.map((r) => r.requestId)).toEqual(["req-a"]);
      expect(await ledger(key.id)).toMatchObject({ billed: 20, used: 20, remain: 80 });
    });

    it("a reservation made without meta lives the default lifetime", async () => {
      const key = await store.keys.create(fixtures.key({ remainQuota: 100 }));
      const before = Date.now();
      reservationOf(await store.reserveQuota(key.id, 7));
      expect(
        await store.recoverReservations(before + DEFAULT_RESERVATION_TTL_MS - 1_000, 10),
      ).toEqual([]);
      const out = await store.recoverReservations(Date.now() + DEFAULT_RESERVATION_TTL_MS, 10);
      expect(out).toHaveLength(1);
      expect(out[0]).toMatchObject({ quota: 7, recovered: true, keyId: key.id });
    });

    it("recovers at most `limit` per call, oldest expiry first", async () => {
      const key = await store.keys.create(fixtures.key({ remainQuota: 1_000 }));
      for (let i = 0; i < 5; i++)
        reservationOf(await store.reserveQuota(key.id, 1, meta(T + 10 - i, `req-${i}`)));
      const first = await store.recoverReservations(T + 100, 2);
      expect(first.map((r) => r.requestId)).toEqual(["req-4", "req-3"]);
      expect(await store.recoverReservations(T + 100, 10)).toHaveLength(3);
      expect(await ledger(key.id)).toMatchObject({ billed: 5, used: 5, remain: 995 });
    });

    it("parallel recoveries, settlements and reservations keep Σ records = used quota", async () => {
      const user = await store.users.create(fixtures.user({ quota: 100_000 }));
      const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 10_000 }));
      const held: Reservation[] = [];
      for (let i = 0; i < 60; i++)
        held.push(reservationOf(await store.reserveQuota(key.id, 10, meta(T, `req-${i}`))));
      const ops: Promise<unknown>[] = [];
      held.forEach((res, i) => {
        ops.push(
          store.commitUsage(
            [{ reservation: res, actualUnits: 4, record: fixtures.usage({ keyId: key.id }) }],
            1,
          ),
        );
        if (i % 10 === 0) ops.push(store.recoverReservations(T, 7));
        ops.push(store.reserveQuota(key.id, 2, meta(T + 1_000_000)));
      });
      await Promise.all(ops);
      await store.recoverReservations(T, 1_000);
      const l = await ledger(key.id);
      expect(l.billed).toBe(l.used);
      // 60 reservations of 10 settled at 4 or recovered at 10 (then their late commit is
      // recorded with quota 0); 60 of 2 still held.
      const recovered = l.records.filter((r) => r.recovered === true).length;
      expect(l.records.filter((r) => r.recovered !== true)).toHaveLength(60);
      expect(l.records.filter((r) => r.recovered !== true && r.quota === 0)).toHaveLength(
        recovered,
      );
      expect(l.used).toBe(recovered * 10 + (60 - recovered) * 4);
      expect(l.remain).toBe(10_000 - l.used - 60 * 2);
      expect((await store.users.get(user.id))!).toMatchObject({
        quota: 100_000 - l.used - 60 * 2,
        usedQuota: l.used,
      });
    });
  },
);
