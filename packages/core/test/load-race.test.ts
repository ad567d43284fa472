/**
 * The gateway's first load of its credentials and settings runs while the caller may already
 * be writing them (`createGateway()` then `credentials.add()` / `settings.set()` at once, as
 * tests and embedders do). A load answered by the store with a snapshot taken before those
 * writes must not wipe them from the gateway's in-memory views.
 */
import { describe, expect, it } from "vitest";
import { createGateway, memoryStore, type Store } from "../src/index.js";

/**
 * A memory store whose reads of every credential and every setting answer late, as of when
 * they were asked; `reads` counts the credential reads begun.
 */
function slowSnapshots(delayMs: number): { store: Store; reads: () => number } {
  const base = memoryStore();
  const later = <T>(value: T) => new Promise<T>((r) => setTimeout(() => r(value), delayMs));
  let reads = 0;
  const store: Store = {
    ...base,
    credentials: {
      ...base.credentials,
      async list() {
        reads++;
        return later(await base.credentials.list());
      },
    },
    settings: {
      ...base.settings,
      async all() {
        return later(await base.settings.all());
      },
    },
  };
  return { store, reads: () => reads };
}

describe("the first load and writes made meanwhile", () => {
  it("keeps credentials added and settings set while it was under way", async () => {
    const { store, reads } = slowSnapshots(100);
    const gateway = createGateway({
      store,
      secret: "load-race-secret-0123456789-0123456789",
      logger: false,
    });
    try {
      // The writes land while the pool's first read (after the secrets' sealing pass, which
      // reads the credentials too) is on its way.
      await expect.poll(reads, { interval: 1 }).toBe(2);
      const a = await gateway.credentials.add({
        provider: "openai",
        baseUrl: "http://127.0.0.1:9/v1",
        secret: { apiKey: "sk-a" },
        models: [{ name: "model-a" }],
      });
      const b = await gateway.credentials.add({
        provider: "openai",
        baseUrl: "http://127.0.0.1:9/v1",
        secret: { apiKey: "sk-b" },
        models: [{ name: "model-b" }],
      });
      await gateway.settings.set({ "request-retry": 7 });
      await gateway.ready;
      expect(
        gateway.credentials
          .list()
          .map((c) => c.id)
          .sort(),
      ).toEqual([a.id, b.id].sort());
      expect(gateway.settings.get("request-retry")).toBe(7);
    } finally {
      await gateway.close();
    }
  });
});
