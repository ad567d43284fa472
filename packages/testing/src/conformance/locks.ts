import { expect, it } from "vitest";
import { defineGroup, sleep } from "./context.js";

/** Named locks with expiry: ownership, expiry and exclusivity under a race. */
export const locksGroup = defineGroup("locks", "locks", ({ store }) => {
  it("a held lock cannot be taken again; its owner can release it", async () => {
    const token = await store.acquireLock("refresh:a", 5_000);
    expect(typeof token).toBe("string");
    expect(await store.acquireLock("refresh:a", 5_000)).toBeNull();
    expect(await store.acquireLock("refresh:b", 5_000)).not.toBeNull();
    expect(await store.releaseLock("refresh:a", token!)).toBe(true);
    const again = await store.acquireLock("refresh:a", 5_000);
    expect(again).not.toBeNull();
    expect(again).not.toBe(token);
  });

  it("only the owner's token releases a lock", async () => {
    const token = (await store.acquireLock("l", 5_000))!;
    expect(await store.releaseLock("l", "not-the-token")).toBe(false);
    expect(await store.acquireLock("l", 5_000)).toBeNull();
    expect(await store.releaseLock("l", token)).toBe(true);
    expect(await store.releaseLock("l", token)).toBe(false);
    expect(await store.releaseLock("never-taken", token)).toBe(false);
  });

  it("an expired lock can be acquired again, and the old token no longer releases it", async () => {
    const first = (await store.acquireLock("l", 60))!;
    expect(await store.acquireLock("l", 60)).toBeNull();
    await sleep(150);
    const second = await store.acquireLock("l", 5_000);
    expect(second).not.toBeNull();
    expect(second).not.toBe(first);
    expect(await store.releaseLock("l", first)).toBe(false);
    expect(await store.acquireLock("l", 5_000)).toBeNull();
    expect(await store.releaseLock("l", second!)).toBe(true);
  });

  it("20 parallel acquireLock calls hand out exactly one token", async () => {
    const tokens = await Promise.all(
      Array.from({ length: 20 }, () => store.acquireLock("oauth-refresh", 5_000)),
    );
    expect(tokens.filter((t) => t !== null)).toHaveLength(1);
  });
});
