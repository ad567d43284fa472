/**
 * Reservation lifetime at the gateway level (issue 12, point 7): a gateway recovers the
 * reservations a dead process left behind when it starts and periodically, and keeps its own
 * in-flight reservations alive, so a stream longer than the lifetime is never recovered.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, fixtures, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "reservations-secret-0123456789-0123456789-ab";

let mock: MockUpstream | undefined;
let gateway: Gateway | undefined;
let server: Server | undefined;

afterEach(async () => {
  server?.closeAllConnections();
  if (server) await new Promise((r) => server!.close(r));
  await gateway?.close();
  await mock?.close();
  server = gateway = mock = undefined;
});

const TTL_MS = 300;

describe("reservation lifetime", () => {
  it("a starting gateway recovers what a dead process left reserved, before it serves", async () => {
    const store = memoryStore();
    const key = await store.keys.create(fixtures.key({ remainQuota: 1_000 }));
    // A process reserved and died: its row expired a minute ago.
    const r = await store.reserveQuota(key.id, 120, {
      expiresAt: Date.now() - 60_000,
      requestId: "req-dead",
      route: "POST /v1/chat/completions",
      model: "gpt-4o-mini",
      timestamp: Date.now() - 120_000,
    });
    expect(r.ok).toBe(true);
    gateway = createGateway({ store, secret: SECRET, logger: false });
    const recovered: string[] = [];
    gateway.events.on("usage.recorded", (rec) => recovered.push(rec.requestId));
    await gateway.ready;
    expect(recovered).toEqual(["req-dead"]);
    const records = (await store.usage.list({ keyId: key.id })).items;
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ requestId: "req-dead", quota: 120, recovered: true });
    expect((await store.keys.get(key.id))!).toMatchObject({ remainQuota: 880, usedQuota: 120 });
  });

  it("a stream that lasts several lifetimes is renewed, not recovered", async () => {
    // 30 chunks 50 ms apart: the stream runs about 1.5 s, five lifetimes of 300 ms.
    const reply = Array.from({ length: 30 }, (_, i) => `w${i}`).join(" ");
    mock = await createMockUpstream({ reply, chunkDelayMs: 50 });
    const store = memoryStore();
    gateway = createGateway({
      store,
      secret: SECRET,
      logger: false,
      usage: { flushIntervalMs: 10, reservationTtlMs: TTL_MS },
    });
    await gateway.credentials.add({
      provider: "openai",
      baseUrl: mock.url,
      secret: { apiKey: "k" },
    });
    const { key, record } = await gateway.keys.create({ name: "long", remainQuota: 1_000_000 });
    server = createServer(toNodeHandler(gateway));
    await new Promise<void>((r) => server!.listen(0, "127.0.0.1", r));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0 });

    const started = Date.now();
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "a long one" }],
      max_tokens: 500,
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? "";
    expect(Date.now() - started).toBeGreaterThan(4 * TTL_MS);
    expect(text).toBe(reply);

    await gateway.usage.flush();
    // Give a recovery run the chance to (wrongly) find something.
    await new Promise((r) => setTimeout(r, TTL_MS));
    const records = (await store.usage.list({ keyId: record.id })).items;
    expect(records).toHaveLength(1);
    expect(records[0]!.recovered).toBeUndefined();
    expect(records[0]!.outputTokens).toBe(30);
    const k = (await store.keys.get(record.id))!;
    expect(k.usedQuota).toBe(records[0]!.quota);
    expect(k.usedQuota + k.remainQuota).toBe(1_000_000);
  });
});
