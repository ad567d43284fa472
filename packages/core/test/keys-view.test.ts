import { afterEach, beforeEach, describe, expect, expectTypeOf, it } from "vitest";
import { createGateway, type Gateway, memoryStore, type Store } from "../src/index.js";

const SECRET = "keys-view-secret-0123456789-0123456789-abcdef";
const HIDDEN = ["keyHash", "keyCipher"];

describe("gateway.keys never hands out a key's hash or cipher", () => {
  let store: Store;
  let gateway: Gateway;
  beforeEach(async () => {
    store = memoryStore();
    gateway = createGateway({ store, secret: SECRET, logger: false });
    await gateway.ready;
  });
  afterEach(() => gateway.close());

  it("create, get, list, search, update, findByPlain and authorize return the key without them", async () => {
    const { key, record } = await gateway.keys.create({ name: "app", remainQuota: 100 });
    const stored = (await store.keys.get(record.id))!;
    // The store keeps both; the gateway's answers carry neither, in any form.
    expect(stored.keyHash).toEqual(expect.any(String));
    expect(stored.keyCipher).toEqual(expect.any(String));
    const answers = {
      created: record,
      got: await gateway.keys.get(record.id),
      listed: await gateway.keys.list(),
      searched: await gateway.keys.list({ keyword: "app" }),
      updated: await gateway.keys.update(record.id, { name: "app 2" }),
      found: await gateway.keys.findByPlain(key),
      authorized: (await gateway.keys.authorize(key, { ip: "127.0.0.1" })).key,
    };
    for (const [name, answer] of Object.entries(answers)) {
      const one = "items" in answer! ? answer.items[0]! : answer!;
      for (const field of HIDDEN) expect(one, `${name}.${field}`).not.toHaveProperty(field);
      const text = JSON.stringify(answer);
      expect(text, name).not.toContain(stored.keyHash);
      expect(text, name).not.toContain(stored.keyCipher);
      expect(text, name).not.toContain(key);
      expect(one, name).toMatchObject({ id: record.id, keyHint: stored.keyHint });
    }
    expect(answers.searched.total).toBe(1);
    expect(answers.updated!.name).toBe("app 2");
    // The plain key stays available through the explicit call, and the store's record unchanged.
    expect(await gateway.keys.reveal(record.id)).toBe(key);
    expect((await store.keys.get(record.id))!.keyHash).toBe(stored.keyHash);
  });

  it("the public types of those answers have no keyHash or keyCipher either", () => {
    type Keys = Gateway["keys"];
    type Listed = Awaited<ReturnType<Keys["list"]>>["items"][number];
    expectTypeOf<Listed>().not.toHaveProperty("keyHash");
    expectTypeOf<Listed>().not.toHaveProperty("keyCipher");
    expectTypeOf<NonNullable<Awaited<ReturnType<Keys["get"]>>>>().not.toHaveProperty("keyHash");
    expectTypeOf<Awaited<ReturnType<Keys["create"]>>["record"]>().not.toHaveProperty("keyCipher");
    expectTypeOf<Awaited<ReturnType<Keys["authorize"]>>["key"]>().not.toHaveProperty("keyHash");
    expectTypeOf<Listed>().toHaveProperty("keyHint");
  });
});
