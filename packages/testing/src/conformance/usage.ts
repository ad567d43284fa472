import { type NewUsageRecord, recordUsage, type Store, type UsageRollup } from "@tokenpool/core";
import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { byRollupId, defineGroup } from "./context.js";
import { requestLogTests } from "./usage-log.js";

/** Usage records and hourly roll-ups: `recordUsage`, list filters, roll-up sums, prune. */
export const usageGroup = defineGroup("usage", "usage", ({ store }) => {
  const H = Date.UTC(2024, 0, 15, 10); // 2024-01-15T10:00Z
  const MIN = 60_000;

  it("recordUsage returns the records with distinct increasing ids", async () => {
    const input = [fixtures.usage(), fixtures.usage({ keyId: 3 }), fixtures.usage()];
    const out = await recordUsage(store, input);
    expect(out).toHaveLength(3);
    expect(out).toEqual(input.map((r, i) => ({ ...r, id: out[i]!.id })));
    expect(out[1]!.id).toBeGreaterThan(out[0]!.id);
    expect(out[2]!.id).toBeGreaterThan(out[1]!.id);
    const more = await recordUsage(store, [fixtures.usage()]);
    expect(more[0]!.id).toBeGreaterThan(out[2]!.id);
    expect(await recordUsage(store, [])).toEqual([]);
  });

  it("list returns details newest first", async () => {
    const [mid, old, recent] = await recordUsage(store, [
      fixtures.usage({ timestamp: H + 2 * MIN }),
      fixtures.usage({ timestamp: H + 1 * MIN }),
      fixtures.usage({ timestamp: H + 3 * MIN }),
    ]);
    const page = await store.usage.list();
    expect(page.total).toBe(3);
    expect(page.items).toEqual([recent, mid, old]);
  });

  it("list filters by from (inclusive), to (exclusive), keyId and userId", async () => {
    const rows = await recordUsage(store, [
      fixtures.usage({ timestamp: H, keyId: 1, userId: 10 }),
      fixtures.usage({ timestamp: H + MIN, keyId: 2, userId: 10 }),
      fixtures.usage({ timestamp: H + 2 * MIN, keyId: 1, userId: 20 }),
      fixtures.usage({ timestamp: H + 3 * MIN, keyId: null, userId: null }),
    ]);
    const ids = async (q: Parameters<Store["usage"]["list"]>[0]) =>
      (await store.usage.list(q)).items.map((r) => r.id);
    const [r0, r1, r2, r3] = rows.map((r) => r.id);
    expect(await ids({ from: H + MIN })).toEqual([r3, r2, r1]);
    expect(await ids({ to: H + 2 * MIN })).toEqual([r1, r0]);
    expect(await ids({ from: H + MIN, to: H + 3 * MIN })).toEqual([r2, r1]);
    expect(await ids({ keyId: 1 })).toEqual([r2, r0]);
    expect(await ids({ userId: 10 })).toEqual([r1, r0]);
    expect(await ids({ keyId: 1, userId: 20 })).toEqual([r2]);
    expect(await ids({ keyId: 1, from: H + 3 * MIN })).toEqual([]);
    expect((await store.usage.list({ keyId: 1 })).total).toBe(2);
  });

  it("list paginates (default limit 100) and counts all matches", async () => {
    const input = Array.from({ length: 105 }, (_, i) => fixtures.usage({ timestamp: H + i }));
    await recordUsage(store, input);
    const first = await store.usage.list();
    expect(first.total).toBe(105);
    expect(first.items).toHaveLength(100);
    expect(first.items[0]!.timestamp).toBe(H + 104);
    const page = await store.usage.list({ offset: 100, limit: 10 });
    expect(page.total).toBe(105);
    expect(page.items.map((r) => r.timestamp)).toEqual([H + 4, H + 3, H + 2, H + 1, H]);
    expect(
      (await store.usage.list({ offset: 10, limit: 2 })).items.map((r) => r.timestamp),
    ).toEqual([H + 94, H + 93]);
  });

  it("rollups sum records per hour, route, model and key", async () => {
    const A = "POST /v1/chat/completions";
    const B = "POST /v1/messages";
    // The amounts of one record, and so of a roll-up row that counts one record.
    const ONE = {
      inputTokens: 10,
      outputTokens: 20,
      reasoningTokens: 1,
      cachedTokens: 2,
      totalTokens: 30,
      quota: 100,
    };
    const rec = (o: Partial<NewUsageRecord>) =>
      fixtures.usage({
        route: A,
        model: "m1",
        keyId: 1,
        ...ONE,
        ...o,
      });
    await recordUsage(store, [
      rec({ timestamp: H + 1 * MIN }),
      rec({ timestamp: H + 2 * MIN, model: "m2", inputTokens: 7, totalTokens: 27 }),
      rec({ timestamp: H + 60 * MIN }), // next hour
      rec({ timestamp: H + 5 * MIN, route: B }),
    ]);
    await recordUsage(store, [
      rec({
        timestamp: H + 59 * MIN,
        success: false,
        status: 500,
        inputTokens: 5,
        outputTokens: 0,
        reasoningTokens: 0,
        cachedTokens: 0,
        totalTokens: 5,
        quota: 0,
      }),
      rec({ timestamp: H + 6 * MIN, keyId: 2 }),
      rec({ timestamp: H + 7 * MIN, keyId: null, quota: 3 }),
    ]);
    const row = (o: Partial<UsageRollup>): UsageRollup => ({
      hour: "2024-01-15T10",
      route: A,
      model: "m1",
      keyId: 1,
      userId: null,
      credentialId: null,
      requests: 1,
      successes: 1,
      failures: 0,
      ...ONE,
      ...o,
    });
    const expected = [
      row({
        requests: 2,
        successes: 1,
        failures: 1,
        inputTokens: 15,
        outputTokens: 20,
        reasoningTokens: 1,
        cachedTokens: 2,
        totalTokens: 35,
        quota: 100,
      }),
      row({ model: "m2", inputTokens: 7, totalTokens: 27 }),
      row({ hour: "2024-01-15T11" }),
      row({ route: B }),
      row({ keyId: 2 }),
      row({ keyId: null, quota: 3 }),
    ];
    expect(byRollupId(await store.usage.rollups())).toEqual(byRollupId(expected));
    expect(byRollupId(await store.usage.rollups({ keyId: 1 }))).toEqual(
      byRollupId(expected.filter((r) => r.keyId === 1)),
    );
    expect(byRollupId(await store.usage.rollups({ fromHour: "2024-01-15T11" }))).toEqual([
      row({ hour: "2024-01-15T11" }),
    ]);
    expect(byRollupId(await store.usage.rollups({ toHour: "2024-01-15T11" }))).toEqual(
      byRollupId(expected.filter((r) => r.hour === "2024-01-15T10")),
    );
    expect(
      await store.usage.rollups({ fromHour: "2024-01-15T10", toHour: "2024-01-15T10" }),
    ).toEqual([]);
  });

  it("concurrent recordUsage calls lose no roll-up increments", async () => {
    await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        recordUsage(store, [
          fixtures.usage({ timestamp: H + i, quota: 1, totalTokens: 2 }),
          fixtures.usage({ timestamp: H + i, quota: 1, totalTokens: 2, success: false }),
        ]),
      ),
    );
    const rows = await store.usage.rollups();
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ requests: 100, successes: 50, failures: 50, quota: 100 });
    expect(rows[0]!.totalTokens).toBe(200);
    expect((await store.usage.list()).total).toBe(100);
  });

  it("keeps roll-up rows apart whatever characters routes and models contain", async () => {
    await recordUsage(store, [
      fixtures.usage({ timestamp: H, route: "POST /a|b", model: "m", keyId: null }),
      fixtures.usage({ timestamp: H, route: "POST /a", model: "b|m", keyId: null }),
    ]);
    const rows = await store.usage.rollups();
    expect(rows).toHaveLength(2);
    expect(rows.map((r) => r.requests)).toEqual([1, 1]);
  });

  it("prune deletes details older than the cut-off and keeps the roll-ups", async () => {
    const [, kept1, kept2] = await recordUsage(store, [
      fixtures.usage({ timestamp: H - 120 * MIN }),
      fixtures.usage({ timestamp: H - 60 * MIN }),
      fixtures.usage({ timestamp: H }),
    ]);
    const before = byRollupId(await store.usage.rollups());
    expect(await store.usage.prune(H - 60 * MIN)).toBe(1);
    expect((await store.usage.list()).items).toEqual([kept2, kept1]);
    expect(byRollupId(await store.usage.rollups())).toEqual(before);
    expect(await store.usage.prune(H - 60 * MIN)).toBe(0);
    expect(await store.usage.prune(H + 1)).toBe(2);
    expect((await store.usage.list()).total).toBe(0);
    expect(byRollupId(await store.usage.rollups())).toEqual(before);
  });
  requestLogTests(() => store);
});
