import { describe, expect, it } from "vitest";
import { createGateway, isGatewayError, memoryStore } from "../src/index.js";

const secret = "x".repeat(32);

function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected a throw");
}

describe("createGateway options", () => {
  it("names a missing secret and how to fix it", () => {
    const prev = process.env.TOKENPOOL_SECRET;
    delete process.env.TOKENPOOL_SECRET;
    try {
      const e = thrown(() => createGateway({ store: memoryStore() }));
      expect(isGatewayError(e)).toBe(true);
      expect(e.message).toContain("`secret`");
      expect(e.message).toContain("TOKENPOOL_SECRET");
    } finally {
      if (prev !== undefined) process.env.TOKENPOOL_SECRET = prev;
    }
  });

  it("rejects a short secret", () => {
    const e = thrown(() => createGateway({ store: memoryStore(), secret: "short" }));
    expect(e.message).toMatch(/`secret`.*fewer than 32/);
  });

  it("names an unknown option, nested ones by their path", () => {
    expect(
      thrown(() => createGateway({ store: memoryStore(), secret, colour: 1 } as never)).message,
    ).toContain("`colour`");
    expect(
      thrown(() =>
        createGateway({ store: memoryStore(), secret, usage: { flushEvery: 1 } } as never),
      ).message,
    ).toContain("`usage.flushEvery`");
  });

  it("names a wrongly typed option", () => {
    const e = thrown(() => createGateway({ store: memoryStore(), secret, maxBodyBytes: -5 }));
    expect(e.message).toContain("`maxBodyBytes`");
  });

  it("rejects a store that does not implement the contract", () => {
    const e = thrown(() => createGateway({ store: { keys: {} } as never, secret }));
    expect(e.message).toContain("`store`");
    expect(e.message).toContain("reserveQuota");
  });

  it("accepts the secret from TOKENPOOL_SECRET", async () => {
    process.env.TOKENPOOL_SECRET = secret;
    try {
      const g = createGateway({ store: memoryStore(), logger: false });
      await g.close();
    } finally {
      delete process.env.TOKENPOOL_SECRET;
    }
  });
});
