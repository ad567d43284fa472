import { expect, it } from "vitest";
import { defineGroup, sleep } from "./context.js";

/** The small key-value space: TTLs and atomic counters (`kv.incr`), including a race. */
export const kvGroup = defineGroup("kv", "kv", ({ store }) => {
  it("get, set, overwrite and delete", async () => {
    expect(await store.kv.get("k")).toBeNull();
    await store.kv.set("k", "v1");
    expect(await store.kv.get("k")).toBe("v1");
    await store.kv.set("k", "v2");
    expect(await store.kv.get("k")).toBe("v2");
    expect(await store.kv.delete("k")).toBe(true);
    expect(await store.kv.get("k")).toBeNull();
    expect(await store.kv.delete("k")).toBe(false);
  });

  it("an entry expires after its TTL", async () => {
    await store.kv.set("short", "v", 60);
    await store.kv.set("forever", "v");
    expect(await store.kv.get("short")).toBe("v");
    await sleep(150);
    expect(await store.kv.get("short")).toBeNull();
    expect(await store.kv.get("forever")).toBe("v");
  });

  it("set without a TTL clears a previous TTL", async () => {
    await store.kv.set("k", "old", 60);
    await store.kv.set("k", "new");
    await sleep(150);
    expect(await store.kv.get("k")).toBe("new");
  });

  it("incr creates a counter, adds to it and stores the value as a string", async () => {
    expect(await store.kv.incr("n", 1)).toBe(1);
    expect(await store.kv.incr("n", 5)).toBe(6);
    expect(await store.kv.incr("n", -2)).toBe(4);
    expect(await store.kv.get("n")).toBe("4");
    await store.kv.set("m", "10");
    expect(await store.kv.incr("m", 3)).toBe(13);
  });

  it("incr restarts an expired counter", async () => {
    expect(await store.kv.incr("c", 2, 60)).toBe(2);
    await sleep(150);
    expect(await store.kv.get("c")).toBeNull();
    expect(await store.kv.incr("c", 1, 60)).toBe(1);
  });

  it("incr sets the TTL when it creates the counter and never extends it", async () => {
    expect(await store.kv.incr("c", 1, 150)).toBe(1);
    await sleep(75);
    expect(await store.kv.incr("c", 1, 150)).toBe(2);
    await sleep(100);
    // 175 ms after creation: expired, although only 100 ms after the last incr.
    expect(await store.kv.get("c")).toBeNull();
  });

  it("200 parallel kv.incr calls end at 200", async () => {
    const values = await Promise.all(
      Array.from({ length: 200 }, () => store.kv.incr("hits", 1, 60_000)),
    );
    expect(await store.kv.get("hits")).toBe("200");
    expect(new Set(values).size).toBe(200);
    expect(Math.max(...values)).toBe(200);
  });
});
