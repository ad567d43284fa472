import type { ApiKeyPatch, ApiKeyRecord } from "@tokenpool/core";
import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { defineGroup } from "./context.js";

/** Downstream keys: CRUD, lookups by hash, list filters and pagination, rekey. */
export const keysGroup = defineGroup("keys", "keys", ({ store }) => {
  it("create assigns distinct ids and stores every field", async () => {
    const input = fixtures.key({
      userId: 7,
      keyCipher: "cipher",
      modelLimitsEnabled: true,
      modelLimits: ["gpt-4o", "claude-sonnet-4"],
      allowIps: ["10.0.0.0/8", "127.0.0.1"],
      unlimitedQuota: true,
      expiredTime: 1_900_000_000,
    });
    const a = await store.keys.create(input);
    const b = await store.keys.create(fixtures.key());
    expect(a).toEqual({ ...input, id: a.id });
    expect(Number.isInteger(a.id)).toBe(true);
    expect(b.id).not.toBe(a.id);
    expect(await store.keys.get(a.id)).toEqual(a);
    expect(await store.keys.get(b.id)).toEqual(b);
  });

  it("get returns null for an unknown id", async () => {
    expect(await store.keys.get(987_654)).toBeNull();
  });

  it("getByHash finds a key by its hash and returns null for an unknown hash", async () => {
    const a = await store.keys.create(fixtures.key());
    await store.keys.create(fixtures.key());
    expect(await store.keys.getByHash(a.keyHash)).toEqual(a);
    expect(await store.keys.getByHash("no-such-hash")).toBeNull();
  });

  it("create rejects a keyHash that already exists", async () => {
    const a = await store.keys.create(fixtures.key());
    await expect(store.keys.create(fixtures.key({ keyHash: a.keyHash }))).rejects.toThrow();
    expect((await store.keys.list()).total).toBe(1);
  });

  it("returns copies: mutating inputs or results never changes stored state", async () => {
    const input = fixtures.key({ modelLimits: ["a"] });
    const created = await store.keys.create(input);
    input.modelLimits.push("from-input");
    created.modelLimits.push("from-result");
    created.name = "mutated";
    const fetched = (await store.keys.get(created.id))!;
    expect(fetched.modelLimits).toEqual(["a"]);
    expect(fetched.name).toBe(input.name);
    fetched.allowIps.push("1.2.3.4");
    expect((await store.keys.get(created.id))!.allowIps).toEqual([]);
  });

  it("list returns the newest first with the total", async () => {
    const created: ApiKeyRecord[] = [];
    for (let i = 0; i < 3; i++) created.push(await store.keys.create(fixtures.key()));
    const page = await store.keys.list();
    expect(page.total).toBe(3);
    expect(page.items.map((k) => k.id)).toEqual(created.map((k) => k.id).reverse());
    expect(page.items[0]).toEqual(created[2]);
  });

  it("list paginates with offset and limit (default limit 20) and counts all matches", async () => {
    const ids: number[] = [];
    for (let i = 0; i < 25; i++) ids.push((await store.keys.create(fixtures.key())).id);
    const newestFirst = [...ids].reverse();
    const first = await store.keys.list();
    expect(first.total).toBe(25);
    expect(first.items.map((k) => k.id)).toEqual(newestFirst.slice(0, 20));
    const page = await store.keys.list({ offset: 5, limit: 3 });
    expect(page.total).toBe(25);
    expect(page.items.map((k) => k.id)).toEqual(newestFirst.slice(5, 8));
    const tail = await store.keys.list({ offset: 23, limit: 10 });
    expect(tail.items.map((k) => k.id)).toEqual(newestFirst.slice(23));
    const past = await store.keys.list({ offset: 30 });
    expect(past).toEqual({ items: [], total: 25 });
  });

  it("list filters by userId, including keys without an owner (userId null)", async () => {
    const own1 = await store.keys.create(fixtures.key({ userId: 1 }));
    const own2 = await store.keys.create(fixtures.key({ userId: 2 }));
    const own1b = await store.keys.create(fixtures.key({ userId: 1 }));
    const none = await store.keys.create(fixtures.key({ userId: null }));
    const of1 = await store.keys.list({ userId: 1 });
    expect(of1.total).toBe(2);
    expect(of1.items.map((k) => k.id)).toEqual([own1b.id, own1.id]);
    expect((await store.keys.list({ userId: 2 })).items.map((k) => k.id)).toEqual([own2.id]);
    expect((await store.keys.list({ userId: null })).items.map((k) => k.id)).toEqual([none.id]);
    expect(await store.keys.list({ userId: 3 })).toEqual({ items: [], total: 0 });
  });

  it("list filters by a case-insensitive keyword in the name", async () => {
    const a = await store.keys.create(fixtures.key({ name: "Alpha Production" }));
    await store.keys.create(fixtures.key({ name: "beta" }));
    const c = await store.keys.create(fixtures.key({ name: "staging ALPHA" }));
    const alpha = await store.keys.list({ keyword: "alpha" });
    expect(alpha.total).toBe(2);
    expect(alpha.items.map((k) => k.id)).toEqual([c.id, a.id]);
    expect((await store.keys.list({ keyword: "PRODUCTION" })).items.map((k) => k.id)).toEqual([
      a.id,
    ]);
    expect((await store.keys.list({ keyword: "gamma" })).total).toBe(0);
  });

  it("list filters by a fragment of the masked key (hint)", async () => {
    const a = await store.keys.create(fixtures.key({ keyHint: "sk-Ab12****wxYZ" }));
    const b = await store.keys.create(fixtures.key({ keyHint: "sk-Cd34****wxYZ" }));
    expect((await store.keys.list({ hint: "Ab12" })).items.map((k) => k.id)).toEqual([a.id]);
    expect((await store.keys.list({ hint: "wxYZ" })).items.map((k) => k.id)).toEqual([b.id, a.id]);
    expect((await store.keys.list({ hint: "Zz99" })).total).toBe(0);
  });

  it("list applies every given filter together", async () => {
    const match = await store.keys.create(fixtures.key({ userId: 1, name: "prod one" }));
    await store.keys.create(fixtures.key({ userId: 2, name: "prod two" }));
    await store.keys.create(fixtures.key({ userId: 1, name: "dev" }));
    const page = await store.keys.list({ userId: 1, keyword: "prod", hint: match.keyHint });
    expect(page).toEqual({ items: [match], total: 1 });
  });

  it("update applies a partial patch and returns the updated record", async () => {
    const a = await store.keys.create(fixtures.key({ name: "old", remainQuota: 10 }));
    const patch: ApiKeyPatch = {
      name: "new",
      status: 2,
      modelLimits: ["gpt-4o"],
      allowIps: ["192.168.0.0/16"],
      userId: 9,
    };
    const updated = await store.keys.update(a.id, patch);
    expect(updated).toEqual({ ...a, ...patch });
    expect(await store.keys.get(a.id)).toEqual(updated);
    expect(await store.keys.getByHash(a.keyHash)).toEqual(updated);
  });

  it("update returns null for an unknown id", async () => {
    expect(await store.keys.update(424_242, { name: "x" })).toBeNull();
    expect((await store.keys.list()).total).toBe(0);
  });

  it("update never changes the id or the keyHash", async () => {
    const a = await store.keys.create(fixtures.key());
    const sneaky = { keyHash: "other-hash", id: a.id + 100, name: "renamed" } as ApiKeyPatch;
    // Ignoring the forbidden fields and rejecting the patch are both acceptable.
    await store.keys.update(a.id, sneaky).catch(() => null);
    expect((await store.keys.getByHash(a.keyHash))?.id).toBe(a.id);
    expect(await store.keys.getByHash("other-hash")).toBeNull();
    expect(await store.keys.get(a.id + 100)).toBeNull();
  });

  it("delete removes the given ids, ignores unknown ones and returns the count", async () => {
    const a = await store.keys.create(fixtures.key());
    const b = await store.keys.create(fixtures.key());
    const c = await store.keys.create(fixtures.key());
    expect(await store.keys.delete([a.id, c.id, 99_999])).toBe(2);
    expect(await store.keys.get(a.id)).toBeNull();
    expect(await store.keys.getByHash(a.keyHash)).toBeNull();
    expect(await store.keys.get(b.id)).toEqual(b);
    expect(await store.keys.delete([a.id])).toBe(0);
    expect(await store.keys.delete([])).toBe(0);
    expect((await store.keys.list()).items.map((k) => k.id)).toEqual([b.id]);
  });

  it("a deleted key's hash can be used again", async () => {
    const a = await store.keys.create(fixtures.key());
    await store.keys.delete([a.id]);
    const again = await store.keys.create(fixtures.key({ keyHash: a.keyHash }));
    expect(again.id).not.toBe(a.id);
    expect((await store.keys.getByHash(a.keyHash))?.id).toBe(again.id);
  });

  it("rekey moves the hash lookup and the cipher in one step and keeps every other field", async () => {
    const a = await store.keys.create(fixtures.key({ keyCipher: "old-cipher" }));
    const b = await store.keys.create(fixtures.key());
    const moved = await store.keys.rekey(a.id, "new-hash", "new-cipher");
    expect(moved).toEqual({ ...a, keyHash: "new-hash", keyCipher: "new-cipher" });
    expect(await store.keys.getByHash(a.keyHash)).toBeNull();
    expect(await store.keys.getByHash("new-hash")).toEqual(moved);
    // Doing it again is harmless; another key's hash is refused and changes nothing.
    expect(await store.keys.rekey(a.id, "new-hash", "new-cipher")).toEqual(moved);
    await expect(store.keys.rekey(b.id, "new-hash", null)).rejects.toThrow();
    expect(await store.keys.get(b.id)).toEqual(b);
    expect(await store.keys.rekey(424_242, "x", null)).toBeNull();
    expect(await store.keys.getByHash("x")).toBeNull();
  });
});
