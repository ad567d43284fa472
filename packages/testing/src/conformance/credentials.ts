import { expect, it } from "vitest";
import { fixtures } from "../fixtures.js";
import { defineGroup, sleep } from "./context.js";

/** The credential pool: CRUD, generated ids, nested fields kept as copies. */
export const credentialsGroup = defineGroup("credentials", "credentials", ({ store }) => {
  it("create keeps a given id and stores nested fields", async () => {
    const input = fixtures.credential({
      id: "openai-main",
      kind: "oauth",
      secret: { accessToken: "at", refreshToken: "rt", expiresAt: 123, extra: { a: "b" } },
      models: [{ name: "gpt-4o", alias: "fast" }, { name: "o3" }],
      headers: { "x-org": "acme" },
      groups: ["vip"],
      projectIds: ["p1"],
      state: {
        cooldowns: { "gpt-4o": 99 },
        errorCount: 2,
        lastUsedAt: 5,
        lastError: { at: 4, status: 429, message: "slow down" },
        disabledReason: null,
      },
    });
    const before = Date.now();
    const a = await store.credentials.create(input);
    const after = Date.now();
    const { id: _id, ...rest } = input;
    expect(a).toEqual({
      ...rest,
      id: "openai-main",
      createdAt: a.createdAt,
      updatedAt: a.updatedAt,
    });
    expect(a.createdAt).toBeGreaterThanOrEqual(before);
    expect(a.createdAt).toBeLessThanOrEqual(after);
    expect(a.updatedAt).toBe(a.createdAt);
    expect(await store.credentials.get("openai-main")).toEqual(a);
  });

  it("create generates distinct ids when none is given", async () => {
    const a = await store.credentials.create(fixtures.credential());
    const b = await store.credentials.create(fixtures.credential());
    expect(typeof a.id).toBe("string");
    expect(a.id.length).toBeGreaterThan(0);
    expect(b.id).not.toBe(a.id);
    expect(await store.credentials.get(a.id)).toEqual(a);
  });

  it("create rejects an id that already exists", async () => {
    await store.credentials.create(fixtures.credential({ id: "dup" }));
    await expect(store.credentials.create(fixtures.credential({ id: "dup" }))).rejects.toThrow();
    expect(await store.credentials.list()).toHaveLength(1);
  });

  it("get returns null for an unknown id", async () => {
    expect(await store.credentials.get("missing")).toBeNull();
  });

  it("list returns every credential, enabled or not, in creation order", async () => {
    const ids = ["c-zulu", "c-alpha", "c-mike"];
    for (const [i, id] of ids.entries()) {
      await store.credentials.create(fixtures.credential({ id, enabled: i !== 1 }));
    }
    await store.credentials.update("c-zulu", { label: "touched" });
    expect((await store.credentials.list()).map((c) => c.id)).toEqual(ids);
  });

  it("update bumps updatedAt, keeps createdAt and replaces the whole state", async () => {
    const a = await store.credentials.create(
      fixtures.credential({
        state: {
          cooldowns: { "gpt-4o": 1_000, "*": 2_000 },
          errorCount: 3,
          lastUsedAt: 10,
          lastError: { at: 9, status: 500, message: "boom" },
          disabledReason: "too many errors",
        },
      }),
    );
    await sleep(5);
    const state = {
      cooldowns: { o3: 5 },
      errorCount: 0,
      lastUsedAt: 20,
      lastError: null,
      disabledReason: null,
    };
    const updated = (await store.credentials.update(a.id, { state, label: "relabelled" }))!;
    expect(updated.state).toEqual(state);
    expect(updated.label).toBe("relabelled");
    expect(updated.secret).toEqual(a.secret);
    expect(updated.createdAt).toBe(a.createdAt);
    expect(updated.updatedAt).toBeGreaterThan(a.updatedAt);
    expect(await store.credentials.get(a.id)).toEqual(updated);
  });

  it("update returns null for an unknown id", async () => {
    expect(await store.credentials.update("missing", { label: "x" })).toBeNull();
    expect(await store.credentials.list()).toEqual([]);
  });

  it("returns copies of nested fields", async () => {
    const a = await store.credentials.create(fixtures.credential({ headers: { h: "1" } }));
    a.headers.h = "mutated";
    a.state.cooldowns["*"] = 1;
    const fetched = (await store.credentials.get(a.id))!;
    expect(fetched.headers).toEqual({ h: "1" });
    expect(fetched.state.cooldowns).toEqual({});
  });

  it("delete returns whether the credential existed", async () => {
    const a = await store.credentials.create(fixtures.credential());
    const b = await store.credentials.create(fixtures.credential());
    expect(await store.credentials.delete(a.id)).toBe(true);
    expect(await store.credentials.delete(a.id)).toBe(false);
    expect(await store.credentials.get(a.id)).toBeNull();
    expect((await store.credentials.list()).map((c) => c.id)).toEqual([b.id]);
  });
});
