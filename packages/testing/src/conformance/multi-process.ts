import type { StoreChange } from "@tokenpool/core";
import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import {
  change,
  defineGroup,
  granted,
  record,
  reservationOf,
  sleep,
  waitUntil,
} from "./context.js";
import { leaseRace } from "./limits.js";
import { refillRace } from "./refill.js";

/** Several store objects over the same data (multi-process adapters with `reopen`): shared reads, remote changes, races across objects. */
export const multiProcessGroup = defineGroup(
  "multi-process",
  "several store objects over the same data",
  ({ store, capabilities, reopen, openPeer }) => {
    const skip = !capabilities.multiProcess || !reopen;

    it.skipIf(skip)("a write through one is read through the other", async () => {
      const peer = await openPeer();
      const key = await store.keys.create(fixtures.key());
      expect(await peer.keys.getByHash(key.keyHash)).toEqual(key);
      await peer.settings.set({ shared: [1, 2] });
      expect(await store.settings.get("shared")).toEqual([1, 2]);
    });

    it.skipIf(skip)(
      "changes committed through another reach watch() as remote within about a second",
      async () => {
        const peer = await openPeer();
        const here = record(store);
        const there = record(peer);
        const started = Date.now();
        const key = await peer.keys.create(fixtures.key());
        const user = await peer.users.create(fixtures.user());
        const cred = await peer.credentials.create(fixtures.credential());
        await peer.settings.set({ "request-retry": 5 });
        await peer.keys.delete([key.id]);
        await waitUntil(() => here.changes.length >= 5, 1_200, "5 remote changes");
        expect(Date.now() - started).toBeLessThan(1_200);
        const ids = (origin: StoreChange["origin"]) => [
          change("keys", key.id, "upsert", origin),
          change("users", user.id, "upsert", origin),
          change("credentials", cred.id, "upsert", origin),
          change("settings", "request-retry", "upsert", origin),
          change("keys", key.id, "delete", origin),
        ];
        await sleep(400);
        expect(here.changes).toEqual(ids("remote"));
        expect(there.changes).toEqual(ids("local"));
      },
    );

    it.skipIf(skip)("reservations through both never overdraw", async () => {
      const peer = await openPeer();
      const key = await store.keys.create(fixtures.key({ remainQuota: 50 }));
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => (i % 2 ? peer : store).reserveQuota(key.id, 1)),
      );
      expect(granted(results)).toBe(50);
      expect((await peer.keys.get(key.id))!.remainQuota).toBe(0);
    });

    it.skipIf(skip)("an expired reservation is recovered exactly once through both", async () => {
      const peer = await openPeer();
      const key = await store.keys.create(fixtures.key({ remainQuota: 10_000 }));
      const T = 1_700_000_000_000;
      for (let i = 0; i < 40; i++) {
        const r = await (i % 2 ? peer : store).reserveQuota(key.id, 10 + i, {
          expiresAt: T,
          requestId: `req-${i}`,
        });
        reservationOf(r);
      }
      const runs = await Promise.all(
        Array.from({ length: 8 }, (_, i) => (i % 2 ? peer : store).recoverReservations(T, 15)),
      );
      const more = await store.recoverReservations(T, 1_000);
      const ids = [...runs.flat(), ...more].map((r) => r.requestId).sort();
      expect(ids).toEqual(Array.from({ length: 40 }, (_, i) => `req-${i}`).sort());
      const used = Array.from({ length: 40 }, (_, i) => 10 + i).reduce((a, b) => a + b, 0);
      const key2 = (await peer.keys.get(key.id))!;
      expect(key2).toMatchObject({ usedQuota: used, remainQuota: 10_000 - used });
      const records = (await peer.usage.list({ keyId: key.id, limit: 1_000 })).items;
      expect(records).toHaveLength(40);
      expect(records.reduce((s, r) => s + r.quota, 0)).toBe(used);
    });

    it.skipIf(skip)(
      "a reservation recovered through one is not settled again through the other",
      async () => {
        const peer = await openPeer();
        const key = await store.keys.create(fixtures.key({ remainQuota: 100 }));
        const res = reservationOf(
          await store.reserveQuota(key.id, 30, { expiresAt: 1_700_000_000_000 }),
        );
        expect(await peer.recoverReservations(1_700_000_000_000, 10)).toHaveLength(1);
        expect(await store.settleQuota(res, 1, 1)).toEqual({ charged: 0 });
        expect((await store.keys.get(key.id))!).toMatchObject({ remainQuota: 70, usedQuota: 30 });
      },
    );

    it.skipIf(skip)("a lock held through one cannot be taken through the other", async () => {
      const peer = await openPeer();
      const tokens = await Promise.all(
        Array.from({ length: 20 }, (_, i) => (i % 2 ? peer : store).acquireLock("l", 5_000)),
      );
      const winners = tokens.filter((t) => t !== null);
      expect(winners).toHaveLength(1);
      const [holder, other] = tokens.indexOf(winners[0]!) % 2 ? [peer, store] : [store, peer];
      expect(await other.releaseLock("l", "forged")).toBe(false);
      expect(await holder.releaseLock("l", winners[0]!)).toBe(true);
      expect(await other.acquireLock("l", 5_000)).not.toBeNull();
    });

    it.skipIf(skip)(
      "500 hits through three store objects on a 60-per-minute counter admit exactly 60",
      async () => {
        const peers = [store, await openPeer(), await openPeer()];
        const now = Date.now();
        const hit = { key: "rpm:key:1", limit: 60, windowMs: 60_000, cost: 1 };
        const results = await Promise.all(
          Array.from({ length: 500 }, (_, i) => peers[i % 3]!.hitWindows([hit], now)),
        );
        expect(results.filter((r) => r.ok)).toHaveLength(60);
        const probe = await peers[1]!.hitWindows([{ ...hit, cost: 0 }], now);
        expect(probe).toMatchObject({ ok: true, windows: [{ remaining: 0 }] });
      },
    );

    it.skipIf(skip)("leases taken through three store objects never exceed the pool", async () => {
      const peers = [store, await openPeer(), await openPeer()];
      const stats = await leaseRace(peers, 150, 5);
      expect(stats.peak).toBeLessThanOrEqual(5);
      expect(stats.served).toBe(150);
      const now = Date.now();
      await peers[0]!.acquireLeases([{ pool: "one", limit: 1 }], "a", now + 10_000, now);
      expect(
        await peers[2]!.acquireLeases([{ pool: "one", limit: 1 }], "b", now + 10_000, now),
      ).toMatchObject({ ok: false });
      expect(await peers[1]!.releaseLeases("a", ["one"])).toBe(1);
      expect(
        (await peers[2]!.acquireLeases([{ pool: "one", limit: 1 }], "b", now + 10_000, now)).ok,
      ).toBe(true);
    });

    it.skipIf(skip)("refills of one period through three store objects refill once", async () => {
      const peers = [store, await openPeer(), await openPeer()];
      const key = await store.keys.create(fixtures.key({ remainQuota: 3, usedQuota: 9 }));
      expect(await refillRace(peers, key.id, Date.UTC(2026, 0, 1), 60)).toBe(1);
      expect(await peers[2]!.keys.get(key.id)).toMatchObject({
        remainQuota: 1_000,
        usedQuota: 0,
        quotaPeriod: Date.UTC(2026, 0, 1),
      });
    });

    it.skipIf(skip)("counters incremented through both end at the sum", async () => {
      const peer = await openPeer();
      await Promise.all(
        Array.from({ length: 100 }, (_, i) => (i % 2 ? peer : store).kv.incr("n", 1)),
      );
      expect(await store.kv.get("n")).toBe("100");
    });
  },
);
