/**
 * Admission control across three `tokenpool serve` processes on one shared store (a real server
 * started on free ports; one small test file per backend calls
 * {@link describeThreeGatewaysLimits}): a key with `rpm_limit` 60 admits exactly 60 requests in a
 * minute whatever gateway they reach; a credential with `max_concurrency` 1 never serves two
 * requests at once (the mock upstream records its peak); and the slots of a gateway killed with
 * SIGKILL while streaming come back once their leases expire, not later.
 */
import { createGateway, type Gateway } from "@tokenpool/core";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startCli } from "./helpers.js";
import type { SharedStore, SharedStoreBackend } from "./shared-stores.js";

const SECRET = "three-gw-limits-secret-0123456789-0123456789";
const UPSTREAM_KEY = "sk-upstream-limits-0a1b2c3d4e5f";
/** How long a lease lives unrenewed (LEASE_TTL_MS of @tokenpool/core's admission). */
const LEASE_TTL_MS = 30_000;
const messages = [{ role: "user", content: "hi" }];

const send = (url: string, key: string, body: Record<string, unknown>, init: RequestInit = {}) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ messages, ...body }),
    ...init,
  });

const chat = (url: string, key: string) =>
  send(url, key, { model: "gpt-4o-mini" }).then(async (r) => {
    await r.text();
    return r.status;
  });

/** Registers the admission tests on `backend`: three gateways on a fresh store. */
export function describeThreeGatewaysLimits(backend: SharedStoreBackend): void {
  let shared: SharedStore;
  /** Fast answers for `gpt-4o-mini`. */
  let fast: MockUpstream;
  /** `slow-model`: 40 chunks, 25 ms apart (a stream of about a second). */
  let slow: MockUpstream;
  let admin: Gateway;
  let gws: ServerProcess[] = [];

  beforeAll(async () => {
    shared = await backend.start(`limits-${process.pid}`);
    fast = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
    slow = await createMockUpstream({
      apiKeys: [UPSTREAM_KEY],
      chunkDelayMs: 25,
      reply: Array.from({ length: 40 }, (_, i) => `w${i}`).join(" "),
    });
    admin = createGateway({
      store: shared.open(),
      secret: SECRET,
      logger: false,
      oauth: { scanIntervalMs: 0 },
    });
    await admin.ready;
    const apiKey = {
      provider: "openai",
      kind: "api-key" as const,
      secret: { apiKey: UPSTREAM_KEY },
    };
    await admin.credentials.add({
      ...apiKey,
      baseUrl: fast.url,
      models: [{ name: "gpt-4o-mini" }],
    });
    await admin.settings.set({ "request-retry": 0 });
    const args = ["serve", "--port", "0", "--store", shared.spec, "--log-level", "error"];
    gws = await Promise.all([0, 1, 2].map(() => startCli(args, { TOKENPOOL_SECRET: SECRET })));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(gws.map((g) => g.stop()));
    await admin?.close();
    await fast?.close();
    await slow?.close();
    await shared?.stop();
  });

  async function keyWith(limits: Record<string, number>): Promise<string> {
    const { key, record } = await admin.keys.create({ name: "lim", unlimitedQuota: true });
    await admin.keys.update(record.id, { limits });
    return key;
  }

  describe(`three gateways on one ${backend.name}`, () => {
    it("admit exactly 60 requests of a key with rpm_limit 60 in a minute", async () => {
      const key = await keyWith({ rpm: 60 });
      const started = Date.now();
      const statuses = await Promise.all(
        Array.from({ length: 240 }, (_, i) => chat(gws[i % 3]!.url, key)),
      );
      expect(Date.now() - started).toBeLessThan(50_000);
      expect(statuses.filter((s) => s === 200)).toHaveLength(60);
      expect(statuses.filter((s) => s === 429)).toHaveLength(180);
      // Each gateway admitted some: the limit is shared, not per instance.
      const perGateway = [0, 1, 2].map((g) => statuses.filter((s, i) => i % 3 === g && s === 200));
      for (const admitted of perGateway) expect(admitted.length).toBeGreaterThan(0);
    }, 60_000);

    it("never send two requests at once with a credential whose max_concurrency is 1", async () => {
      const capped = await createMockUpstream({
        apiKeys: [UPSTREAM_KEY],
        chunkDelayMs: 5,
        reply: Array.from({ length: 10 }, (_, i) => `c${i}`).join(" "),
      });
      try {
        await admin.credentials.add({
          provider: "openai",
          kind: "api-key",
          secret: { apiKey: UPSTREAM_KEY },
          baseUrl: capped.url,
          models: [{ name: "capped-model" }],
          limits: { maxConcurrency: 1 },
        });
        const key = await keyWith({});
        // The new credential reaches every gateway through the store's change feed.
        await new Promise((r) => setTimeout(r, 1_500));
        const statuses: number[] = [];
        for (let wave = 0; wave < 4; wave++) {
          statuses.push(
            ...(await Promise.all(
              Array.from({ length: 9 }, (_, i) =>
                send(gws[i % 3]!.url, key, { model: "capped-model", stream: true }).then(
                  async (r) => {
                    await r.text();
                    return r.status;
                  },
                ),
              ),
            )),
          );
        }
        expect(capped.peakInFlight).toBe(1);
        expect(statuses.every((s) => s === 200 || s === 429)).toBe(true);
        expect(statuses.filter((s) => s === 200).length).toBeGreaterThanOrEqual(4);
        expect(statuses.filter((s) => s === 200)).toHaveLength(capped.requests.length);
      } finally {
        await capped.close();
      }
    }, 60_000);

    it("give back a killed gateway's slots when their leases expire", async () => {
      const key = await keyWith({ maxConcurrency: 2 });
      await admin.credentials.add({
        provider: "openai",
        kind: "api-key",
        secret: { apiKey: UPSTREAM_KEY },
        baseUrl: slow.url,
        models: [{ name: "slow-model" }],
      });
      // The new credential reaches every gateway through the store's change feed.
      await new Promise((r) => setTimeout(r, 1_500));
      const victim = gws[0]!;
      // Two streams hold both slots on the first gateway...
      const streams = await Promise.all(
        [0, 1].map(() => send(victim.url, key, { model: "slow-model", stream: true })),
      );
      for (const s of streams) expect(s.status).toBe(200);
      // ... which dies with them.
      await victim.stop("SIGKILL");
      const killedAt = Date.now();
      for (const s of streams) await s.text().catch(() => "");
      const other = gws[1]!.url;
      expect(await chat(other, key)).toBe(429);
      let back = 0;
      while (Date.now() - killedAt < LEASE_TTL_MS + 10_000) {
        if ((await chat(other, key)) === 200) {
          back = Date.now() - killedAt;
          break;
        }
        await new Promise((r) => setTimeout(r, 250));
      }
      // Not before the lease time (nobody released them), and not much after it.
      expect(back).toBeGreaterThan(LEASE_TTL_MS - 10_000);
      expect(back).toBeLessThanOrEqual(LEASE_TTL_MS + 1_500);
      // Both slots are back (the probe's freed lease waits 50 ms on its gateway for a next request first).
      await new Promise((r) => setTimeout(r, 200));
      const both = await Promise.all(
        [0, 1].map(() =>
          send(gws[2]!.url, key, { model: "slow-model", stream: true }).then(async (r) => {
            await r.text();
            return r.status;
          }),
        ),
      );
      expect(both).toEqual([200, 200]);
    }, 60_000);
  });
}
