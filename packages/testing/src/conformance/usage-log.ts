import {
  type NewUsageRecord,
  recordUsage,
  type Store,
  type UsageQuery,
  type UsageRollup,
} from "@tokenpool/core";
import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { byRollupId } from "./context.js";

/**
 * The request log's side of the usage collection: the log fields round-trip, every filter of
 * `list` and `stat` (alone and combined), retention by count, and roll-ups by owner and
 * credential. Runs inside the usage group (a fresh store per test).
 */
export function requestLogTests(current: () => Store): void {
  const H = Date.UTC(2024, 2, 1, 8);
  const MIN = 60_000;

  /** Twelve records over four keys, two users, two models, two credentials, two groups. */
  const corpus = (): NewUsageRecord[] =>
    Array.from({ length: 12 }, (_, i) =>
      fixtures.usage({
        timestamp: H + i * MIN,
        keyId: (i % 4) + 1,
        keyName: `key-${(i % 4) + 1}`,
        userId: i % 2 === 0 ? 10 : 20,
        username: i % 2 === 0 ? "ann" : "bob",
        model: i % 3 === 0 ? "gpt-4o" : "claude-3",
        credentialId: i < 6 ? "cred-a" : "cred-b",
        group: i % 5 === 0 ? "vip" : "",
        success: i % 4 !== 3,
        status: i % 4 === 3 ? 502 : 200,
        error: i % 4 === 3 ? "upstream 502" : null,
        errorType: i % 4 === 3 ? "upstream_error" : null,
        quota: 100 + i,
        totalTokens: 10 * i,
        format: "openai",
        firstTokenMs: 40 + i,
        retries: i % 3,
      }),
    );

  it("keeps the request log fields of a record", async () => {
    const store = current();
    const input = fixtures.usage({
      timestamp: H,
      keyId: 7,
      keyName: "prod key",
      userId: 3,
      username: "ann",
      group: "vip",
      format: "anthropic",
      firstTokenMs: 123,
      retries: 2,
      errorType: "stream_interrupted",
      success: false,
      status: 502,
      error: "upstream stream interrupted",
      bodies: { request: '{"model":"m"}', response: "ok" },
    });
    const [rec] = await recordUsage(store, [input]);
    expect(rec).toEqual({ ...input, id: rec!.id });
    expect((await store.usage.list()).items).toEqual([rec]);
    // A record without the optional fields comes back without them.
    const [plain] = await recordUsage(store, [fixtures.usage({ timestamp: H + 1 })]);
    const back = (await store.usage.list({ limit: 1 })).items[0]!;
    expect(back).toEqual(plain);
    for (const f of ["keyName", "username", "group", "format", "retries", "bodies"])
      expect(back).not.toHaveProperty(f);
  });

  it("list and stat apply every filter, alone and combined", async () => {
    const store = current();
    const rows = await recordUsage(store, corpus());
    const cases: UsageQuery[] = [
      {},
      { model: "gpt-4o" },
      { keyName: "key-2" },
      { username: "bob" },
      { credentialId: "cred-b" },
      { group: "vip" },
      { group: "" },
      { success: false },
      { success: true },
      { keyId: 3 },
      { userId: 10 },
      { model: "claude-3", username: "ann" },
      { model: "claude-3", credentialId: "cred-a", success: true },
      { keyName: "key-1", group: "vip" },
      { username: "bob", success: false, from: H + 3 * MIN, to: H + 8 * MIN },
      { model: "gpt-4o", from: H + 4 * MIN },
      { model: "nope" },
      { keyName: "key-4", username: "ann" },
    ];
    for (const q of cases) {
      const want = rows
        .filter(
          (r) =>
            (q.from === undefined || r.timestamp >= q.from) &&
            (q.to === undefined || r.timestamp < q.to) &&
            (q.keyId === undefined || r.keyId === q.keyId) &&
            (q.userId === undefined || r.userId === q.userId) &&
            (q.model === undefined || r.model === q.model) &&
            (q.keyName === undefined || (r.keyName ?? "") === q.keyName) &&
            (q.username === undefined || (r.username ?? "") === q.username) &&
            (q.credentialId === undefined || r.credentialId === q.credentialId) &&
            (q.group === undefined || (r.group ?? "") === q.group) &&
            (q.success === undefined || r.success === q.success),
        )
        .sort((a, b) => b.timestamp - a.timestamp);
      const page = await store.usage.list({ ...q, limit: 3, offset: 1 });
      expect(page.total, JSON.stringify(q)).toBe(want.length);
      expect(
        page.items.map((r) => r.id),
        JSON.stringify(q),
      ).toEqual(want.slice(1, 4).map((r) => r.id));
      const stat = await store.usage.stat(q);
      expect(stat, JSON.stringify(q)).toEqual({
        requests: want.length,
        quota: want.reduce((s, r) => s + r.quota, 0),
        totalTokens: want.reduce((s, r) => s + r.totalTokens, 0),
      });
    }
    // Names match exactly: no prefix or case folding.
    expect((await store.usage.list({ keyName: "key" })).total).toBe(0);
    expect((await store.usage.list({ username: "ANN" })).total).toBe(0);
  });

  it("filters find records whatever characters names contain", async () => {
    const store = current();
    const odd = ["a:b", "a b", "a|b", "ключ", "*", "a%", "'x'"];
    await recordUsage(
      store,
      odd.map((name, i) =>
        fixtures.usage({ timestamp: H + i, keyName: name, model: name, username: name }),
      ),
    );
    for (const name of odd) {
      expect((await store.usage.list({ keyName: name })).total, name).toBe(1);
      expect((await store.usage.list({ model: name, username: name })).total, name).toBe(1);
    }
  });

  it('a record without a name or group is found by the "" filters, and only by them', async () => {
    const store = current();
    const [bare, named] = await recordUsage(store, [
      fixtures.usage({ timestamp: H, keyId: 1, userId: 2, model: "m" }),
      fixtures.usage({
        timestamp: H + 1,
        keyId: 1,
        userId: 2,
        model: "m",
        keyName: "k",
        username: "u",
        group: "g",
      }),
    ]);
    const ids = async (q: UsageQuery) => (await store.usage.list(q)).items.map((r) => r.id);
    expect(await ids({ keyName: "" })).toEqual([bare!.id]);
    expect(await ids({ username: "" })).toEqual([bare!.id]);
    expect(await ids({ group: "" })).toEqual([bare!.id]);
    expect(await ids({ group: "", model: "m", keyId: 1 })).toEqual([bare!.id]);
    expect(await ids({ keyName: "k", username: "u", group: "g" })).toEqual([named!.id]);
    expect((await store.usage.stat({ username: "" })).requests).toBe(1);
  });

  it("stat of nothing is zero", async () => {
    const store = current();
    expect(await store.usage.stat()).toEqual({ requests: 0, quota: 0, totalTokens: 0 });
    await recordUsage(store, [fixtures.usage({ timestamp: H, quota: 5, totalTokens: 7 })]);
    expect(await store.usage.stat({ to: H })).toEqual({ requests: 0, quota: 0, totalTokens: 0 });
    expect(await store.usage.stat({ from: H })).toEqual({ requests: 1, quota: 5, totalTokens: 7 });
  });

  it("prune with keep leaves the newest details, and the filters still find them", async () => {
    const store = current();
    const rows = await recordUsage(store, corpus());
    const before = byRollupId(await store.usage.rollups());
    expect(await store.usage.prune(0, 5)).toBe(7);
    const left = await store.usage.list();
    expect(left.items.map((r) => r.id)).toEqual(
      rows
        .slice(7)
        .reverse()
        .map((r) => r.id),
    );
    expect((await store.usage.list({ model: "gpt-4o" })).total).toBe(
      rows.slice(7).filter((r) => r.model === "gpt-4o").length,
    );
    expect((await store.usage.stat({ success: false })).requests).toBe(
      rows.slice(7).filter((r) => !r.success).length,
    );
    expect(byRollupId(await store.usage.rollups())).toEqual(before);
    expect(await store.usage.prune(0, 5)).toBe(0);
    // Age and count together.
    expect(await store.usage.prune(H + 9 * MIN, 4)).toBe(2);
    expect((await store.usage.list()).total).toBe(3);
    expect(await store.usage.prune(0, 0)).toBe(3);
    expect((await store.usage.list({ username: "ann" })).total).toBe(0);
  });

  it("rollups keep owners and credentials apart and filter by them", async () => {
    const store = current();
    const rec = (o: Partial<NewUsageRecord>) =>
      fixtures.usage({ timestamp: H, keyId: 1, quota: 10, totalTokens: 3, ...o });
    await recordUsage(store, [
      rec({ userId: 5, credentialId: "c1" }),
      rec({ userId: 5, credentialId: "c1" }),
      rec({ userId: 5, credentialId: "c2" }),
      rec({ userId: 6, credentialId: null }),
    ]);
    const rows = await store.usage.rollups();
    const pick = (r: UsageRollup) => [r.userId, r.credentialId, r.requests, r.quota];
    expect(byRollupId(rows).map(pick)).toEqual([
      [5, "c1", 2, 20],
      [5, "c2", 1, 10],
      [6, null, 1, 10],
    ]);
    expect((await store.usage.rollups({ userId: 5 })).map((r) => r.requests).sort()).toEqual([
      1, 2,
    ]);
    expect((await store.usage.rollups({ credentialId: "c2" })).map(pick)).toEqual([
      [5, "c2", 1, 10],
    ]);
  });
}
