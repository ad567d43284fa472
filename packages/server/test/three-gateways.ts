/**
 * Three `tokenpool serve` processes on one shared store (a real server started here on free
 * ports, see shared-stores.ts; one small test file per backend calls {@link describeThreeGateways}): the first-start
 * management key is created once; 1,000 concurrent requests on a key worth 50 are served exactly
 * 50 times, never overdrawing it, and Σ usage = used quota; a key disabled through one instance
 * is refused by the others within a second; an expired OAuth credential that all three need at
 * once is refreshed exactly once.
 */
import {
  Billing,
  createGateway,
  type Gateway,
  GatewayEmitter,
  memoryStore,
  SettingsService,
} from "@tokenpool/core";
import {
  countMockPromptTokens,
  createMockUpstream,
  DEFAULT_MOCK_REPLY,
  type MockUpstream,
  splitMockReply,
} from "@tokenpool/testing";
import { createMockOAuth, type MockOAuthServer } from "@tokenpool/testing/mock-oauth";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startCli } from "./helpers.js";
import type { SharedStore, SharedStoreBackend } from "./shared-stores.js";

const SECRET = "three-gw-secret-0123456789-0123456789-abcdef";
const UPSTREAM_KEY = "sk-upstream-three-0a1b2c3d4e5f";
const REFRESH_TOKEN = "1//three-gateways-refresh-token-abcdef";
const MODEL = "gpt-4o-mini";
const messages = [{ role: "user", content: "hi" }];
/** Concurrent requests on the quota key, spread over the three gateways. */
const REQUESTS = 1_000;

// Priced by the default tables, as in the two-gateway SQLite test: "hi" counts 8 prompt tokens,
// max_tokens 11 is reserved; the mock bills its prompt tokens + one completion token per word.
const billing = new Billing(new SettingsService(memoryStore(), new GatewayEmitter(), {}), 1024);
const RESERVED = billing.estimate(MODEL, "default", 8, 11);
const COST = billing.cost(MODEL, "default", {
  inputTokens: countMockPromptTokens(messages),
  outputTokens: splitMockReply(DEFAULT_MOCK_REPLY).length,
});
/** What the quota key affords. */
const AFFORDABLE = 50;
const QUOTA = COST * AFFORDABLE;

const chat = (url: string, key: string) =>
  fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, max_tokens: 11, messages }),
  }).then(async (r) => ({ status: r.status, body: await r.text() }));

/**
 * Registers the three-gateway tests on `backend`: three `tokenpool serve` processes started at
 * the same moment on a fresh store.
 */
export function describeThreeGateways(backend: SharedStoreBackend): void {
  let shared: SharedStore;
  let upstream: MockUpstream;
  let oauth: MockOAuthServer;
  let admin: Gateway;
  let gws: ServerProcess[] = [];
  let quotaKey: { key: string; id: number };
  let disableKey: { key: string; id: number };
  let oauthKey: { key: string; id: number };

  beforeAll(async () => {
    shared = await backend.start(`three-${process.pid}`);
    oauth = await createMockOAuth({ refreshTokens: [REFRESH_TOKEN] });
    upstream = await createMockUpstream({
      authorize: (t) => t === UPSTREAM_KEY || oauth.accepts(t),
    });
    // Set up through a gateway of our own (same secret), without its background OAuth scan.
    admin = createGateway({
      store: shared.open(),
      secret: SECRET,
      logger: false,
      oauth: { scanIntervalMs: 0 },
    });
    await admin.ready;
    await admin.credentials.add({
      provider: "openai",
      kind: "api-key",
      baseUrl: upstream.url,
      secret: { apiKey: UPSTREAM_KEY },
    });
    const make = async (name: string, extra: { group?: string } = {}) => {
      const { key, record } = await admin.keys.create({ name, remainQuota: QUOTA, ...extra });
      return { key, id: record.id };
    };
    quotaKey = await make("quota");
    disableKey = await make("disable");
    oauthKey = await make("oauth", { group: "oauth-only" });

    // All three start at the same moment on a fresh store.
    const args = ["serve", "--port", "0", "--store", shared.spec, "--log-level", "error"];
    gws = await Promise.all([0, 1, 2].map(() => startCli(args, { TOKENPOOL_SECRET: SECRET })));
  }, 60_000);

  afterAll(async () => {
    await Promise.all(gws.map((g) => g.stop()));
    await admin?.close();
    await upstream?.close();
    await oauth?.close();
    await shared?.stop();
  });

  describe(`three gateways on one ${backend.name}`, () => {
    it("create the first-start management key exactly once", () => {
      const printed = gws.map((g) => g.match(/Management key \(shown once[^:]*: (\S+)/));
      expect(printed.filter((k) => k !== null)).toHaveLength(1);
    });

    it(`serve exactly the ${AFFORDABLE} affordable requests of ${REQUESTS} concurrent ones, never overdrawing, and their usage adds up`, async () => {
      // A request reserves what it then costs, so how many the key affords does not depend on
      // the order in which reservations and settlements interleave.
      expect(RESERVED).toBe(COST);
      const results = await Promise.all(
        Array.from({ length: REQUESTS }, (_, i) => chat(gws[i % 3]!.url, quotaKey.key)),
      );
      const ok = results.filter((r) => r.status === 200).length;
      const refused = results.filter((r) => r.status === 429).length;
      expect(ok + refused).toBe(REQUESTS);
      expect(ok).toBe(AFFORDABLE);

      // Settlements and usage records land shortly after the answers (each instance batches them).
      const store = admin.store;
      let key = await store.keys.get(quotaKey.id);
      let usage = await store.usage.list({ keyId: quotaKey.id, limit: 100_000 });
      const successes = () => usage.items.filter((r) => r.success);
      for (let i = 0; i < 100 && (key!.usedQuota !== ok * COST || successes().length < ok); i++) {
        await new Promise((r) => setTimeout(r, 50));
        key = await store.keys.get(quotaKey.id);
        usage = await store.usage.list({ keyId: quotaKey.id, limit: 100_000 });
      }
      expect(key!.remainQuota).toBeGreaterThanOrEqual(0);
      expect(key!.usedQuota).toBe(ok * COST);
      expect(key!.remainQuota).toBe(QUOTA - ok * COST);
      expect(key!.remainQuota).toBe(0);
      expect(successes()).toHaveLength(ok);
      expect(successes().reduce((sum, r) => sum + r.quota, 0)).toBe(ok * COST);
      expect(successes().reduce((sum, r) => sum + r.outputTokens, 0)).toBe(
        ok * splitMockReply(DEFAULT_MOCK_REPLY).length,
      );
      // The upstream saw every one of them.
      const perUpstreamAuth = upstream.requests.filter(
        (q) => q.headers.authorization === `Bearer ${UPSTREAM_KEY}`,
      );
      expect(perUpstreamAuth.length).toBeGreaterThanOrEqual(ok);
    }, 120_000);

    it("refuse a key on every instance within a second of it being disabled through one", async () => {
      for (const g of gws) expect((await chat(g.url, disableKey.key)).status).toBe(200);
      const mgmt = gws
        .map((g) => g.match(/Management key \(shown once[^:]*: (\S+)/))
        .find(Boolean)!;
      // Disabled through the first instance's token API (new-api's: status 2 = disabled).
      const put = await fetch(`${gws[0]!.url}/api/token/`, {
        method: "PUT",
        headers: { authorization: `Bearer ${mgmt}`, "content-type": "application/json" },
        body: JSON.stringify({ id: disableKey.id, status: 2 }),
      });
      expect(put.status).toBe(200);
      expect(((await put.json()) as { success: boolean }).success).toBe(true);
      const disabledAt = Date.now();
      for (const g of gws.slice(1)) {
        let status = 200;
        while (status === 200 && Date.now() - disabledAt < 1_000) {
          status = (await chat(g.url, disableKey.key)).status;
          if (status === 200) await new Promise((r) => setTimeout(r, 25));
        }
        expect(status).not.toBe(200);
        expect(Date.now() - disabledAt).toBeLessThan(1_000);
      }
    });

    it("refresh an expired OAuth credential exactly once when all three need it at once", async () => {
      const before = oauth.calls();
      const cred = await admin.credentials.add({
        provider: "qwen",
        kind: "oauth",
        baseUrl: upstream.url,
        groups: ["oauth-only"],
        // Listed by /v1/models (the API-key credential serves any model and lists none).
        models: [{ name: MODEL }],
        secret: {
          accessToken: "expired-access-token-000000000000",
          refreshToken: REFRESH_TOKEN,
          expiresAt: Date.now() - 60_000,
          extra: { tokenUrl: oauth.url },
        },
      });
      // Wait until every instance has the credential (change notifications), then fire at once.
      const deadline = Date.now() + 5_000;
      for (const g of gws) {
        for (;;) {
          const models = await fetch(`${g.url}/v1/models`, {
            headers: { authorization: `Bearer ${oauthKey.key}` },
          });
          const ids = ((await models.json()) as { data?: { id: string }[] }).data ?? [];
          if (ids.some((m) => m.id === MODEL)) break;
          if (Date.now() > deadline) throw new Error(`${g.url} did not see the new credential`);
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const results = await Promise.all(
        Array.from({ length: 30 }, (_, i) => chat(gws[i % 3]!.url, oauthKey.key)),
      );
      expect(results.map((r) => r.status)).toEqual(Array(30).fill(200));
      expect(oauth.calls() - before).toBe(1);
      const stored = await admin.store.credentials.get(cred.id);
      expect(stored?.secret.accessToken).not.toContain("expired");
    });
  });
}
