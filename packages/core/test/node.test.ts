import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream, splitMockReply } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

let mock: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;
let key: string;
let keyId: number;

beforeEach(async () => {
  mock = await createMockUpstream({ chunkDelayMs: 100 });
  gateway = createGateway({
    store: memoryStore(),
    secret: "node-secret-0123456789-0123456789-abcdef",
    logger: false,
    usage: { flushIntervalMs: 10 },
  });
  await gateway.credentials.add({ provider: "openai", baseUrl: mock.url, secret: { apiKey: "k" } });
  ({
    key,
    record: { id: keyId },
  } = await gateway.keys.create({ name: "node", remainQuota: 100_000 }));
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
  await mock.close();
});

const body = JSON.stringify({
  model: "gpt-4o-mini",
  stream: true,
  messages: [{ role: "user", content: "stream please" }],
});

describe("toNodeHandler", () => {
  it("delivers the first chunk before the upstream has sent the last one", async () => {
    const started = Date.now();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body,
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now() - started;
    expect(new TextDecoder().decode(first.value)).toContain("chat.completion.chunk");
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    const total = Date.now() - started;
    expect(rest).toContain("[DONE]");
    // About 12 events at 100 ms each: the first one must not wait for the whole stream.
    expect(firstAt).toBeLessThan(total / 2);
  });

  it("aborts the upstream when the client disconnects and bills only what was sent", async () => {
    const ac = new AbortController();
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body,
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    ac.abort();
    // The record is written as soon as the relay stops, long before the upstream would finish.
    let rec = null;
    for (let i = 0; i < 50 && !rec; i++) {
      await new Promise((r) => setTimeout(r, 20));
      await gateway.usage.flush();
      rec = (await gateway.usage.list({ keyId })).items[0] ?? null;
    }
    expect(rec).not.toBeNull();
    expect(rec!.status).toBe(499);
    expect(rec!.success).toBe(false);
    expect(rec!.outputTokens).toBeGreaterThanOrEqual(1);
    expect(rec!.outputTokens).toBeLessThan(
      splitMockReply("Hello from the mock upstream, this is a test reply.").length,
    );
    const k = await gateway.store.keys.get(keyId);
    expect(k!.usedQuota).toBe(rec!.quota);
    expect(k!.remainQuota).toBe(100_000 - rec!.quota);
  });

  it("rejects malformed JSON with 400 and keeps the connection usable", async () => {
    const res = await fetch(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: "{",
    });
    expect(res.status).toBe(400);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("invalid_json");
    const health = await fetch(`${base}/healthz`);
    expect(await health.json()).toEqual({ status: "ok" });
  });
});
