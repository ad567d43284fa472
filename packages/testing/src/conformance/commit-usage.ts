import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { defineGroup } from "./context.js";

/** The batched proxy-path write: settlements and usage records in one atomic step. */
export const commitUsageGroup = defineGroup("commit-usage", "commitUsage", ({ store }) => {
  it("settles each reservation and appends its record with the amount charged, atomically", async () => {
    const user = await store.users.create(fixtures.user({ quota: 1_000 }));
    const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 100 }));
    const a = await store.reserveQuota(key.id, 30);
    const b = await store.reserveQuota(key.id, 30);
    if (!a.ok || !b.ok) throw new Error("reservations should succeed");
    const seen: unknown[] = [];
    const off = store.watch((c) => seen.push(c));
    const out = await store.commitUsage(
      [
        {
          reservation: a.reservation,
          actualUnits: 10,
          record: fixtures.usage({ keyId: key.id, quota: 999 }),
        },
        // More than reserved and more than is left: capped at its 30 plus the 60 left after the first.
        {
          reservation: b.reservation,
          actualUnits: 500,
          record: fixtures.usage({ keyId: key.id }),
        },
        { reservation: null, actualUnits: 7, record: fixtures.usage({ keyId: null }) },
      ],
      1_234,
    );
    off();
    expect(out.map((r) => r.quota)).toEqual([10, 90, 7]);
    expect(new Set(out.map((r) => r.id)).size).toBe(3);
    const k = (await store.keys.get(key.id))!;
    expect(k).toMatchObject({ remainQuota: 0, usedQuota: 100, accessedTime: 1_234 });
    expect((await store.users.get(user.id))!).toMatchObject({ quota: 900, usedQuota: 100 });
    const listed = await store.usage.list({ keyId: key.id });
    expect(listed.items.map((r) => r.quota).sort((x, y) => x - y)).toEqual([10, 90]);
    const rollups = await store.usage.rollups({ keyId: key.id });
    expect(rollups.reduce((sum, r) => sum + r.quota, 0)).toBe(100);
    await new Promise((r) => setTimeout(r, 20));
    expect(seen).toEqual([]);
  });

  it("an empty batch is a no-op", async () => {
    expect(await store.commitUsage([], 1)).toEqual([]);
  });

  it("loses no update when commits and reservations interleave", async () => {
    const key = await store.keys.create(fixtures.key({ remainQuota: 10_000 }));
    const tasks: Promise<unknown>[] = [];
    for (let i = 0; i < 100; i++) {
      tasks.push(
        store.reserveQuota(key.id, 10).then((r) =>
          r.ok
            ? store.commitUsage(
                [
                  {
                    reservation: r.reservation,
                    actualUnits: 3,
                    record: fixtures.usage({ keyId: key.id }),
                  },
                ],
                1,
              )
            : null,
        ),
      );
    }
    await Promise.all(tasks);
    expect((await store.keys.get(key.id))!).toMatchObject({
      remainQuota: 10_000 - 300,
      usedQuota: 300,
    });
    expect((await store.usage.list({ keyId: key.id, limit: 1000 })).total).toBe(100);
  });
});
