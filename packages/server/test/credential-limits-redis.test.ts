/**
 * A credential's concurrency cap holds across gateways: two gateways (each behind its own
 * node:http server on port 0) share one real redis-server started here on a free port; a
 * credential with `maxConcurrency: 1` never serves two requests at once, whichever gateway they
 * reach (the mock upstream records its peak), and its slot is free again once they are done.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createGateway, type Gateway } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { redisStore } from "@tokenpool/store-redis";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { type RedisServer, startRedisServer } from "@tokenpool/testing/redis-server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const SECRET = "cred-limits-redis-secret-0123456789-0123456789";
const PREFIX = `tp-cred-limits-${process.pid}`;

let redis: RedisServer;
let upstream: MockUpstream;
const gateways: Gateway[] = [];
const servers: Server[] = [];
const urls: string[] = [];
let key: string;

beforeAll(async () => {
  redis = await startRedisServer();
  upstream = await createMockUpstream({ chunkDelayMs: 10 });
  for (let i = 0; i < 2; i++) {
    const gateway = createGateway({
      store: redisStore({ redis: redis.url, prefix: PREFIX }),
      secret: SECRET,
      logger: false,
      oauth: { scanIntervalMs: 0 },
    });
    await gateway.ready;
    gateways.push(gateway);
    const server = createServer(toNodeHandler(gateway));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    servers.push(server);
    urls.push(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  }
  const [first, second] = gateways as [Gateway, Gateway];
  await first.credentials.add({
    id: "capped",
    provider: "openai",
    kind: "api-key",
    baseUrl: upstream.url,
    secret: { apiKey: "sk-upstream-capped-0123456789" },
    models: [{ name: "gpt-4o-mini" }],
    limits: { maxConcurrency: 1 },
  });
  await first.settings.set({ "request-retry": 0 });
  key = (await first.keys.create({ name: "k", unlimitedQuota: true })).key;
  // The credential reaches the other gateway through the store's change feed.
  for (let i = 0; i < 100 && !second.credentials.get("capped"); i++)
    await new Promise((r) => setTimeout(r, 50));
  expect(second.credentials.get("capped")?.limits).toEqual({ maxConcurrency: 1 });
}, 30_000);

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  for (const g of gateways) await g.close();
  await upstream?.close();
  await redis?.stop();
});

const stream = (url: string) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({
      model: "gpt-4o-mini",
      stream: true,
      messages: [{ role: "user", content: "hi" }],
    }),
  }).then(async (r) => ({ status: r.status, body: await r.text() }));

describe("two gateways on one Redis", () => {
  it("a credential with maxConcurrency 1 never serves two requests at once", async () => {
    const results: { status: number; body: string }[] = [];
    // Waves of parallel requests on both gateways, so that some find the slot free again.
    for (let wave = 0; wave < 5; wave++)
      results.push(
        ...(await Promise.all(Array.from({ length: 8 }, (_, i) => stream(urls[i % 2]!)))),
      );
    expect(upstream.peakInFlight).toBe(1);
    const served = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status === 429);
    expect(served.length + refused.length).toBe(results.length);
    expect(served.length).toBeGreaterThanOrEqual(5);
    expect(served.length).toBe(upstream.requests.length);
    for (const r of refused)
      expect(JSON.parse(r.body)).toMatchObject({ error: { code: "rate_limit_exceeded" } });
    // The slot is free again (a freed lease waits 50 ms for the next request of its gateway first).
    await new Promise((r) => setTimeout(r, 200));
    const store = gateways[1]!.store;
    const now = Date.now();
    const free = await store.acquireLeases(
      [{ pool: "conc:cred:capped", limit: 1 }],
      "probe",
      now + 1000,
      now,
    );
    expect(free.ok).toBe(true);
  }, 30_000);
});
