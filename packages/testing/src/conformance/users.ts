import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { defineGroup } from "./context.js";

/** Users: CRUD, lookups by username and access-token hash, list. */
export const usersGroup = defineGroup("users", "users", ({ store }) => {
  it("create assigns distinct ids; get, getByUsername and getByAccessTokenHash find the user", async () => {
    const input = fixtures.user({ role: "admin", accessTokenHash: "tok-hash-1", quota: 42 });
    const a = await store.users.create(input);
    const b = await store.users.create(fixtures.user());
    expect(a).toEqual({ ...input, id: a.id });
    expect(b.id).not.toBe(a.id);
    expect(await store.users.get(a.id)).toEqual(a);
    expect(await store.users.getByUsername(a.username)).toEqual(a);
    expect(await store.users.getByUsername(b.username)).toEqual(b);
    expect(await store.users.getByAccessTokenHash("tok-hash-1")).toEqual(a);
  });

  it("lookups return null when nothing matches", async () => {
    await store.users.create(fixtures.user());
    expect(await store.users.get(31_337)).toBeNull();
    expect(await store.users.getByUsername("nobody")).toBeNull();
    expect(await store.users.getByAccessTokenHash("no-such-token")).toBeNull();
  });

  it("create rejects a duplicate username", async () => {
    const a = await store.users.create(fixtures.user());
    await expect(store.users.create(fixtures.user({ username: a.username }))).rejects.toThrow();
    expect((await store.users.list()).total).toBe(1);
  });

  it("list paginates with a stable order and counts all matches", async () => {
    const ids: number[] = [];
    for (let i = 0; i < 5; i++) ids.push((await store.users.create(fixtures.user())).id);
    const p1 = await store.users.list({ offset: 0, limit: 2 });
    const p2 = await store.users.list({ offset: 2, limit: 2 });
    const p3 = await store.users.list({ offset: 4, limit: 2 });
    expect([p1.total, p2.total, p3.total]).toEqual([5, 5, 5]);
    expect([p1.items.length, p2.items.length, p3.items.length]).toEqual([2, 2, 1]);
    const seen = [...p1.items, ...p2.items, ...p3.items].map((u) => u.id);
    expect([...seen].sort((x, y) => x - y)).toEqual([...ids].sort((x, y) => x - y));
    expect((await store.users.list()).items).toHaveLength(5);
  });

  it("list filters by keyword in the username", async () => {
    const alice = await store.users.create(fixtures.user({ username: "alice" }));
    const malice = await store.users.create(fixtures.user({ username: "malice" }));
    await store.users.create(fixtures.user({ username: "bob" }));
    const page = await store.users.list({ keyword: "alice" });
    expect(page.total).toBe(2);
    expect(page.items.map((u) => u.id).sort()).toEqual([alice.id, malice.id].sort());
    expect((await store.users.list({ keyword: "carol" })).total).toBe(0);
  });

  it("update patches a user and returns null for an unknown id", async () => {
    const a = await store.users.create(fixtures.user());
    const updated = await store.users.update(a.id, {
      displayName: "Renamed",
      accessTokenHash: "new-token-hash",
      quota: 7,
    });
    expect(updated).toEqual({
      ...a,
      displayName: "Renamed",
      accessTokenHash: "new-token-hash",
      quota: 7,
    });
    expect(await store.users.get(a.id)).toEqual(updated);
    expect((await store.users.getByAccessTokenHash("new-token-hash"))?.id).toBe(a.id);
    expect(await store.users.update(777_777, { quota: 1 })).toBeNull();
  });

  it("delete returns whether the user existed", async () => {
    const a = await store.users.create(fixtures.user());
    expect(await store.users.delete(a.id)).toBe(true);
    expect(await store.users.get(a.id)).toBeNull();
    expect(await store.users.getByUsername(a.username)).toBeNull();
    expect(await store.users.delete(a.id)).toBe(false);
  });
});
