import { expect, it } from "vitest";
import { defineGroup } from "./context.js";

/** Runtime settings: JSON values by name, written several at a time. */
export const settingsGroup = defineGroup("settings", "settings", ({ store }) => {
  it("starts empty", async () => {
    expect(await store.settings.all()).toEqual({});
    expect((await store.settings.get("request-retry")) ?? null).toBeNull();
  });

  it("set writes several JSON values, get and all read them back", async () => {
    const values = {
      "request-retry": 3,
      "proxy-url": "socks5://127.0.0.1:1080",
      debug: false,
      "quota-exceeded": { "switch-project": true, "switch-preview-model": false },
      "api-keys": ["a", "b"],
      nested: { list: [{ x: 1, y: [null, "z"] }], empty: {}, n: 1.5 },
      nothing: null,
    };
    await store.settings.set(values);
    expect(await store.settings.all()).toEqual(values);
    for (const [k, v] of Object.entries(values)) expect(await store.settings.get(k)).toEqual(v);
  });

  it("set overwrites existing values and keeps the others", async () => {
    await store.settings.set({ a: 1, b: { deep: [1] } });
    await store.settings.set({ b: { deep: [2, 3] }, c: "x" });
    expect(await store.settings.all()).toEqual({ a: 1, b: { deep: [2, 3] }, c: "x" });
  });

  it("returns copies of object values", async () => {
    const input = { list: [1, 2] };
    await store.settings.set({ s: input });
    input.list.push(3);
    const got = (await store.settings.get("s")) as { list: number[] };
    expect(got).toEqual({ list: [1, 2] });
    got.list.push(4);
    const all = (await store.settings.all()) as { s: { list: number[] } };
    expect(all.s.list).toEqual([1, 2]);
  });

  it("delete removes a setting and returns whether it existed", async () => {
    await store.settings.set({ a: 1, b: 2 });
    expect(await store.settings.delete("a")).toBe(true);
    expect(await store.settings.delete("a")).toBe(false);
    expect((await store.settings.get("a")) ?? null).toBeNull();
    expect(await store.settings.all()).toEqual({ b: 2 });
  });
});
