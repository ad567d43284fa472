import { type ApiKeyRecord, recordUsage } from "@tokenpool/core";
import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { change, defineGroup, record, reservationOf, sleep, waitUntil } from "./context.js";

/** Change notifications (`watch`) of local writes: which, when, how often. */
export const watchGroup = defineGroup("watch", "watch", ({ store }) => {
  it("delivers local changes of keys with collection, id, op and origin", async () => {
    const { changes } = record(store);
    const a = await store.keys.create(fixtures.key());
    const b = await store.keys.create(fixtures.key());
    await store.keys.update(a.id, { name: "renamed" });
    await store.keys.delete([a.id, b.id]);
    await waitUntil(() => changes.length >= 5, 1_000, "5 key changes");
    await sleep(20);
    expect(changes).toHaveLength(5);
    expect(changes.slice(0, 3)).toEqual([
      change("keys", a.id, "upsert"),
      change("keys", b.id, "upsert"),
      change("keys", a.id, "upsert"),
    ]);
    // One batch delete: one change per deleted key, in any order.
    expect(changes.slice(3)).toEqual(
      expect.arrayContaining([change("keys", a.id, "delete"), change("keys", b.id, "delete")]),
    );
  });

  it("delivers local changes of users", async () => {
    const { changes } = record(store);
    const u = await store.users.create(fixtures.user());
    await store.users.update(u.id, { quota: 1 });
    await store.users.delete(u.id);
    await waitUntil(() => changes.length >= 3, 1_000, "3 user changes");
    await sleep(20);
    expect(changes).toEqual([
      change("users", u.id, "upsert"),
      change("users", u.id, "upsert"),
      change("users", u.id, "delete"),
    ]);
  });

  it("delivers local changes of credentials", async () => {
    const { changes } = record(store);
    const c = await store.credentials.create(fixtures.credential({ id: "cred-w" }));
    await store.credentials.update(c.id, { enabled: false });
    await store.credentials.delete(c.id);
    await waitUntil(() => changes.length >= 3, 1_000, "3 credential changes");
    await sleep(20);
    expect(changes).toEqual([
      change("credentials", "cred-w", "upsert"),
      change("credentials", "cred-w", "upsert"),
      change("credentials", "cred-w", "delete"),
    ]);
  });

  it("delivers one local change per written or deleted setting", async () => {
    const { changes } = record(store);
    await store.settings.set({ "request-retry": 2, "proxy-url": "" });
    await store.settings.delete("proxy-url");
    await waitUntil(() => changes.length >= 3, 1_000, "3 settings changes");
    await sleep(20);
    expect(changes.slice(0, 2)).toEqual(
      expect.arrayContaining([
        change("settings", "request-retry", "upsert"),
        change("settings", "proxy-url", "upsert"),
      ]),
    );
    expect(changes).toHaveLength(3);
    expect(changes[2]).toEqual(change("settings", "proxy-url", "delete"));
  });

  it("does not notify unknown-id updates or deletes", async () => {
    const { changes } = record(store);
    await store.keys.update(999, { name: "x" });
    await store.keys.delete([999]);
    await store.users.delete(999);
    await store.credentials.delete("missing");
    await store.settings.delete("missing");
    await store.settings.set({ marker: true });
    await waitUntil(() => changes.length >= 1, 1_000, "the marker change");
    await sleep(20);
    expect(changes).toEqual([change("settings", "marker", "upsert")]);
  });

  it("delivers a change only after it is committed", async () => {
    const seen: Promise<unknown>[] = [];
    let count = 0;
    store.watch((c) => {
      count++;
      if (c.collection === "keys") seen.push(store.keys.get(Number(c.id)));
      if (c.collection === "settings") seen.push(store.settings.get(c.id!));
    });
    const key = await store.keys.create(fixtures.key({ name: "v1" }));
    await waitUntil(() => count >= 1, 1_000, "the create");
    expect(((await seen[0]) as ApiKeyRecord | null)?.name).toBe("v1");
    await store.keys.update(key.id, { name: "v2" });
    await waitUntil(() => count >= 2, 1_000, "the update");
    expect(((await seen[1]) as ApiKeyRecord | null)?.name).toBe("v2");
    await store.keys.delete([key.id]);
    await waitUntil(() => count >= 3, 1_000, "the delete");
    expect(await seen[2]).toBeNull();
    await store.settings.set({ s: { on: true } });
    await waitUntil(() => count >= 4, 1_000, "the setting");
    expect(await seen[3]).toEqual({ on: true });
  });

  it("delivers each local change exactly once, to every listener", async () => {
    const first = record(store);
    const second = record(store);
    const key = await store.keys.create(fixtures.key());
    await store.settings.set({ x: 1 });
    // Longer than a polling adapter's interval, so a change read back from the backing
    // store would show up twice.
    await sleep(400);
    const expected = [change("keys", key.id, "upsert"), change("settings", "x", "upsert")];
    expect(first.changes).toEqual(expected);
    expect(second.changes).toEqual(expected);
  });

  it("stops delivering to a listener after unsubscribe", async () => {
    const kept = record(store);
    const dropped = record(store);
    await store.settings.set({ before: 1 });
    await waitUntil(() => dropped.changes.length >= 1, 1_000, "the first change");
    dropped.stop();
    dropped.stop(); // idempotent
    await store.settings.set({ after: 1 });
    await store.keys.create(fixtures.key());
    await waitUntil(() => kept.changes.length >= 3, 1_000, "the later changes");
    await sleep(20);
    expect(dropped.changes).toEqual([change("settings", "before", "upsert")]);
    expect(kept.changes).toHaveLength(3);
  });

  it("does not notify quota, usage, kv or lock operations", async () => {
    const user = await store.users.create(fixtures.user());
    const key = await store.keys.create(fixtures.key({ userId: user.id }));
    await sleep(20);
    const { changes } = record(store);
    const res = reservationOf(await store.reserveQuota(key.id, 10));
    await store.settleQuota(res, 12, 1_700_000_000);
    await store.reserveQuota(key.id, 10_000_000);
    await recordUsage(store, [fixtures.usage({ keyId: key.id, userId: user.id })]);
    await store.usage.prune(Date.now() + 1);
    await store.kv.set("k", "v", 1_000);
    await store.kv.incr("n", 1);
    await store.kv.delete("k");
    const token = (await store.acquireLock("l", 1_000))!;
    await store.releaseLock("l", token);
    await sleep(50);
    await store.settings.set({ marker: 1 });
    await waitUntil(() => changes.length >= 1, 1_000, "the marker change");
    await sleep(20);
    expect(changes).toEqual([change("settings", "marker", "upsert")]);
  });
});
