import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Billing, GatewayEmitter, memoryStore, SettingsService } from "@tokenpool/core";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { countMockPromptTokens, DEFAULT_MOCK_REPLY, splitMockReply } from "@tokenpool/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startCli } from "./helpers.js";

const SECRET = "two-gw-secret-0123456789-0123456789-abcdef";

describe("two gateways on one SQLite file", () => {
  let dir: string;
  let dbFile: string;
  let a: ServerProcess;
  let b: ServerProcess;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "tokenpool-two-"));
    dbFile = join(dir, "tokenpool.db");
    const args = [
      "serve",
      "--port",
      "0",
      "--store",
      `sqlite:${dbFile}`,
      "--demo",
      "--log-level",
      "error",
    ];
    // Start one after the other: the first creates the schema, the management key and the demo key.
    a = await startCli(args, { TOKENPOOL_SECRET: SECRET });
    b = await startCli(args, { TOKENPOOL_SECRET: SECRET });
  });

  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    rmSync(dir, { recursive: true, force: true });
  });

  it("never overdraw a key's quota under concurrent load, and lose no settlement", async () => {
    const key = a.match(/Demo key: (\S+)/)!;
    expect(b.match(/Demo key: (\S+)/)).toBe(key);

    // Priced by the default tables: "hi" counts 8 prompt tokens (3 per message, "user", "hi",
    // 3 to prime the reply) + max_tokens 11 reserved; the mock bills its prompt tokens + one
    // completion token per word of its reply.
    const messages = [{ role: "user", content: "hi" }];
    const billing = new Billing(new SettingsService(memoryStore(), new GatewayEmitter(), {}), 1024);
    const RESERVED = billing.estimate("gpt-4o-mini", "default", 8, 11);
    const COST = billing.cost("gpt-4o-mini", "default", {
      inputTokens: countMockPromptTokens(messages),
      outputTokens: splitMockReply(DEFAULT_MOCK_REPLY).length,
    });
    const QUOTA = RESERVED * 50;
    const store = sqliteStore({ filename: dbFile });
    const { items } = await store.keys.list({ keyword: "demo" });
    const keyId = items[0]!.id;
    await store.keys.update(keyId, { remainQuota: QUOTA, usedQuota: 0 });

    const body = JSON.stringify({ model: "gpt-4o-mini", max_tokens: 11, messages });
    const fire = (url: string) =>
      fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body,
      }).then(async (r) => ({ status: r.status, body: await r.text() }));
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) => fire(i % 2 === 0 ? a.url : b.url)),
    );

    const ok = results.filter((r) => r.status === 200).length;
    const refused = results.filter((r) => r.status === 429).length;
    expect(ok + refused).toBe(200);
    // At least every request whose reservation fit succeeded, and never more than the quota pays for.
    expect(ok).toBeGreaterThanOrEqual(QUOTA / RESERVED);
    expect(ok).toBeLessThanOrEqual(Math.floor(QUOTA / COST));
    expect(refused).toBeGreaterThan(0);

    // Settlements and usage records land shortly after the responses.
    let key2 = await store.keys.get(keyId);
    let usage = await store.usage.list({ keyId, limit: 1000 });
    for (let i = 0; i < 100 && (key2!.usedQuota !== ok * COST || usage.total < ok); i++) {
      await new Promise((r) => setTimeout(r, 50));
      key2 = await store.keys.get(keyId);
      usage = await store.usage.list({ keyId, limit: 1000 });
    }
    expect(key2!.remainQuota).toBeGreaterThanOrEqual(0);
    expect(key2!.usedQuota).toBe(ok * COST);
    expect(key2!.remainQuota).toBe(QUOTA - ok * COST);
    const billed = usage.items.reduce((sum, r) => sum + r.quota, 0);
    expect(billed).toBe(ok * COST);
    await store.close();
  });
});
