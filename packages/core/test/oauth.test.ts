import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createMockOAuth,
  createMockUpstream,
  type MockOAuthServer,
  type MockUpstream,
} from "@tokenpool/testing";
import { afterAll, afterEach, beforeEach, describe, expect, it, vi } from "vitest";
// By path: @tokenpool/store-sqlite depends on core, so core cannot list it as a dependency.
import { sqliteStore } from "../../store-sqlite/src/index.js";
import {
  type CredentialRecord,
  createGateway,
  type Gateway,
  type GatewayOptions,
  type Logger,
  memoryStore,
  type Store,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "oauth-secret-0123456789-0123456789-abcdef";
const CLIENT_SECRET = "GOCSPX-mock-client-secret-0123456789";
const REFRESH_TOKEN = "1//0mock-refresh-token-AAAAAAAAAAAAAAAAAAAA";
const INITIAL_TOKEN = "ya29.initial-access-token-BBBBBBBBBBBBBBBBBBBB";

/**
 * Everything a client, an event listener or a log reader saw during this file's tests, and
 * every token that must never appear in it (checked by the last test).
 */
const seen: string[] = [];
const tokens = new Set<string>([REFRESH_TOKEN, INITIAL_TOKEN, CLIENT_SECRET]);

const recordingLogger: Logger = {
  debug: (m, f) => seen.push(`debug ${m} ${JSON.stringify(f ?? {})}`),
  info: (m, f) => seen.push(`info ${m} ${JSON.stringify(f ?? {})}`),
  warn: (m, f) => seen.push(`warn ${m} ${JSON.stringify(f ?? {})}`),
  error: (m, f) => seen.push(`error ${m} ${JSON.stringify(f ?? {})}`),
};

/** Records every event payload of a gateway (whatever its name) and returns them by name. */
function recordEvents(gw: Gateway): Map<string, unknown[]> {
  const byName = new Map<string, unknown[]>();
  const emit = gw.events.emit.bind(gw.events);
  gw.events.emit = ((name: string, ...args: unknown[]) => {
    seen.push(`event ${name} ${JSON.stringify(args)}`);
    const list = byName.get(name) ?? [];
    list.push(args[0]);
    byName.set(name, list);
    return (emit as (n: string, ...a: unknown[]) => boolean)(name, ...args);
  }) as typeof gw.events.emit;
  return byName;
}

interface Running {
  gateway: Gateway;
  server: Server;
  base: string;
  events: Map<string, unknown[]>;
}

const running: Running[] = [];

async function start(store: Store, extra: Partial<GatewayOptions> = {}): Promise<Running> {
  const gateway = createGateway({
    store,
    secret: SECRET,
    logger: recordingLogger,
    usage: { flushIntervalMs: 10 },
    settings: { "model-ratio": {}, "completion-ratio": {}, "cache-ratio": {} },
    oauth: {
      providers: {
        openai: { tokenUrl: oauth.url, clientId: "tokenpool-test", clientSecret: CLIENT_SECRET },
      },
      scanIntervalMs: 0,
      ...extra.oauth,
    },
    ...Object.fromEntries(Object.entries(extra).filter(([k]) => k !== "oauth")),
  });
  const events = recordEvents(gateway);
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const r = {
    gateway,
    server,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    events,
  };
  running.push(r);
  await gateway.ready;
  return r;
}

let oauth: MockOAuthServer;
let upstream: MockUpstream;
let key: string;

beforeEach(async () => {
  oauth = await createMockOAuth({
    refreshTokens: [REFRESH_TOKEN],
    clientId: "tokenpool-test",
    clientSecret: CLIENT_SECRET,
  });
  upstream = await createMockUpstream({ authorize: (t) => oauth.accepts(t) });
});

afterEach(async () => {
  for (const r of running.splice(0)) {
    r.server.closeAllConnections();
    await new Promise((done) => r.server.close(done));
    await r.gateway.close();
  }
  for (const t of oauth.issued) tokens.add(t);
  for (const rq of oauth.requests) if (rq.refreshToken) tokens.add(rq.refreshToken);
  await oauth.close();
  await upstream.close();
});

async function addOAuthCredential(
  gw: Gateway,
  secret: Partial<CredentialRecord["secret"]> = {},
  more: Partial<CredentialRecord> = {},
): Promise<CredentialRecord> {
  return gw.credentials.add({
    provider: "openai",
    kind: "oauth",
    baseUrl: upstream.url,
    secret: {
      accessToken: INITIAL_TOKEN,
      refreshToken: REFRESH_TOKEN,
      expiresAt: Date.now() + 3_600_000,
      ...secret,
    },
    ...more,
  });
}

async function newKey(gw: Gateway): Promise<string> {
  const created = await gw.keys.create({ name: "oauth", unlimitedQuota: true });
  return created.key;
}

async function chat(r: Running, apiKey = key): Promise<{ status: number; text: string }> {
  const res = await fetch(`${r.base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
  });
  const text = await res.text();
  seen.push(`response ${res.status} ${text}`);
  return { status: res.status, text };
}

describe("OAuth refresh on the proxy path", () => {
  it("refreshes a credential once after a 401, retries it, and the request succeeds", async () => {
    const r = await start(memoryStore());
    key = await newKey(r.gateway);
    const cred = await addOAuthCredential(r.gateway);

    const res = await chat(r);
    expect(res.status).toBe(200);
    expect(oauth.calls(REFRESH_TOKEN)).toBe(1);
    expect(oauth.requests[0]).toMatchObject({
      format: "form",
      grantType: "refresh_token",
      clientId: "tokenpool-test",
      clientSecret: CLIENT_SECRET,
    });
    // The upstream saw the stale token (401), then the fresh one, on the same credential.
    const auths = upstream.requests.map((q) => q.headers.authorization);
    expect(auths).toEqual([`Bearer ${INITIAL_TOKEN}`, `Bearer ${oauth.issued[0]}`]);

    // The new token and expiry are stored; the next request uses them without a refresh.
    const stored = await r.gateway.store.credentials.get(cred.id);
    expect(stored!.secret.accessToken).toBe(oauth.issued[0]);
    expect(stored!.secret.refreshToken).toBe(REFRESH_TOKEN);
    expect(stored!.secret.expiresAt).toBeGreaterThan(Date.now() + 3_500_000);
    expect((await chat(r)).status).toBe(200);
    expect(oauth.calls()).toBe(1);
    expect(r.events.get("credential.refreshed")).toEqual([
      expect.objectContaining({ credentialId: cred.id, reason: "unauthorized", rotated: false }),
    ]);
  });

  it("100 concurrent requests on an expired credential cause exactly one refresh call", async () => {
    oauth.fail({ delayMs: 100 });
    const store = memoryStore();
    const acquire = store.acquireLock.bind(store);
    let lockAttempts = 0;
    store.acquireLock = (name, ttl) => {
      lockAttempts++;
      return acquire(name, ttl);
    };
    const r = await start(store);
    key = await newKey(r.gateway);
    await addOAuthCredential(r.gateway, { expiresAt: Date.now() - 1000 });

    const results = await Promise.all(Array.from({ length: 100 }, () => chat(r)));
    expect(results.map((x) => x.status)).toEqual(Array(100).fill(200));
    expect(oauth.calls()).toBe(1);
    // In one process the callers share one flight: the store's lock is asked for once.
    expect(lockAttempts).toBe(1);
    // The expired token was never sent upstream.
    expect(
      upstream.requests.every((q) => q.headers.authorization !== `Bearer ${INITIAL_TOKEN}`),
    ).toBe(true);
  });

  it("two gateways on one store refresh an expired credential once between them (the store's lock)", async () => {
    oauth.fail({ delayMs: 150 });
    const store = memoryStore();
    const a = await start(store);
    const b = await start(store);
    key = await newKey(a.gateway);
    const cred = await addOAuthCredential(a.gateway, { expiresAt: Date.now() - 1000 });
    await vi.waitFor(() => expect(b.gateway.credentials.get(cred.id)).not.toBeNull());

    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => chat(i % 2 === 0 ? a : b)),
    );
    expect(results.map((x) => x.status)).toEqual(Array(100).fill(200));
    expect(oauth.calls()).toBe(1);
    const refreshed = [
      ...(a.events.get("credential.refreshed") ?? []),
      ...(b.events.get("credential.refreshed") ?? []),
    ];
    expect(refreshed).toHaveLength(1);
  });

  it("two gateways on one SQLite file (two store objects) refresh an expired credential once", async () => {
    oauth.fail({ delayMs: 150 });
    const dir = mkdtempSync(join(tmpdir(), "tokenpool-oauth-"));
    try {
      const file = join(dir, "store.db");
      const a = await start(sqliteStore({ filename: file }));
      const b = await start(sqliteStore({ filename: file }));
      key = await newKey(a.gateway);
      const cred = await addOAuthCredential(a.gateway, { expiresAt: Date.now() - 1000 });
      await vi.waitFor(() => expect(b.gateway.credentials.get(cred.id)).not.toBeNull(), {
        timeout: 5000,
      });
      await vi.waitFor(async () => expect(await b.gateway.keys.findByPlain(key)).not.toBeNull());

      const results = await Promise.all(
        Array.from({ length: 60 }, (_, i) => chat(i % 2 === 0 ? a : b)),
      );
      expect(results.map((x) => x.status)).toEqual(Array(60).fill(200));
      expect(oauth.calls()).toBe(1);
      const stored = await b.gateway.store.credentials.get(cred.id);
      expect(stored!.secret.accessToken).toBe(oauth.issued[0]);
    } finally {
      for (const r of running.splice(0)) {
        r.server.closeAllConnections();
        await new Promise((done) => r.server.close(done));
        await r.gateway.close();
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a stale 401 after another request already refreshed does not refresh again", async () => {
    const r = await start(memoryStore());
    key = await newKey(r.gateway);
    await addOAuthCredential(r.gateway);
    // 20 requests all send the stale token at once; each gets a 401.
    const results = await Promise.all(Array.from({ length: 20 }, () => chat(r)));
    expect(results.map((x) => x.status)).toEqual(Array(20).fill(200));
    expect(oauth.calls()).toBe(1);
  });

  it("refreshes a credential expiring within the margin before using it", async () => {
    oauth.grant(INITIAL_TOKEN);
    const r = await start(memoryStore(), { oauth: { refreshMarginMs: 120_000 } });
    key = await newKey(r.gateway);
    await addOAuthCredential(r.gateway, { expiresAt: Date.now() + 60_000 });

    expect((await chat(r)).status).toBe(200);
    expect(oauth.calls()).toBe(1);
    // Only the new token went upstream: the refresh happened before forwarding.
    expect(upstream.requests.map((q) => q.headers.authorization)).toEqual([
      `Bearer ${oauth.issued[0]}`,
    ]);
    expect(r.events.get("credential.refreshed")).toEqual([
      expect.objectContaining({ reason: "expiring" }),
    ]);
  });

  it("keeps using a still valid token when its early refresh fails for a while", async () => {
    oauth.grant(INITIAL_TOKEN);
    oauth.fail({ status: 503 });
    const r = await start(memoryStore());
    key = await newKey(r.gateway);
    await addOAuthCredential(r.gateway, { expiresAt: Date.now() + 60_000 });

    expect((await chat(r)).status).toBe(200);
    expect((await chat(r)).status).toBe(200);
    // The failure is not retried at once (failureBackoffMs), and the old token served both.
    expect(oauth.calls()).toBe(1);
    expect(upstream.requests.map((q) => q.headers.authorization)).toEqual([
      `Bearer ${INITIAL_TOKEN}`,
      `Bearer ${INITIAL_TOKEN}`,
    ]);
    expect(r.events.get("credential.refresh_failed")).toEqual([
      expect.objectContaining({ reason: "expiring", status: 503 }),
    ]);
  });

  it("a refused refresh is reported with its secrets redacted, and the request fails over", async () => {
    const echo = {
      error: "invalid_grant",
      error_description: `Token has been expired or revoked: refresh_token=${REFRESH_TOKEN} client_secret=${CLIENT_SECRET} access=${INITIAL_TOKEN}`,
    };
    oauth.fail({ status: 400, body: echo, times: 5 });
    const r = await start(memoryStore());
    key = await newKey(r.gateway);
    const backup = await createMockUpstream({ apiKeys: ["sk-backup-key-123456"] });
    try {
      const cred = await addOAuthCredential(
        r.gateway,
        { expiresAt: Date.now() - 1000 },
        { priority: 10 },
      );
      await r.gateway.credentials.add({
        provider: "openai",
        baseUrl: backup.url,
        secret: { apiKey: "sk-backup-key-123456" },
      });

      expect((await chat(r)).status).toBe(200);
      expect(backup.requests).toHaveLength(1);
      expect(oauth.calls()).toBe(1);

      const failed = r.events.get("credential.refresh_failed") as { message: string }[];
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ credentialId: cred.id, reason: "expired", status: 400 });
      expect(failed[0]!.message).toContain("invalid_grant");
      for (const s of [REFRESH_TOKEN, CLIENT_SECRET, INITIAL_TOKEN])
        expect(failed[0]!.message).not.toContain(s);

      await vi.waitFor(async () => {
        const stored = await r.gateway.store.credentials.get(cred.id);
        expect(stored!.state.lastError?.message).toContain("OAuth refresh failed");
      });
      const stored = await r.gateway.store.credentials.get(cred.id);
      expect(stored!.state.lastError!.status).toBe(401);
      for (const s of [REFRESH_TOKEN, CLIENT_SECRET, INITIAL_TOKEN])
        expect(stored!.state.lastError!.message).not.toContain(s);

      // The pool disabled it (auth failure after a failed refresh): it stays listed, never
      // rotates, and its refused refresh token is not sent again.
      expect(r.gateway.credentials.get(cred.id)!.enabled).toBe(false);
      expect(r.events.get("credential.disabled")).toEqual([
        expect.objectContaining({ credentialId: cred.id, by: "pool" }),
      ]);
      expect((await chat(r)).status).toBe(200);
      expect(backup.requests).toHaveLength(2);
      expect(oauth.calls()).toBe(1);
    } finally {
      await backup.close();
    }
  });

  it("answers a client error when the only credential cannot be refreshed, without leaking", async () => {
    oauth.revoke(REFRESH_TOKEN);
    const r = await start(memoryStore());
    key = await newKey(r.gateway);
    await addOAuthCredential(r.gateway, { expiresAt: Date.now() - 1000 });
    const res = await chat(r);
    expect(res.status).toBe(502);
    expect(res.text).toContain("could not be refreshed");
    expect(res.text).not.toContain(REFRESH_TOKEN);
  });
});

describe("OAuth refresh outside requests", () => {
  it("refreshes credentials expiring within the margin in the background", async () => {
    const r = await start(memoryStore(), { oauth: { scanIntervalMs: 20 } });
    const soon = await addOAuthCredential(r.gateway, { expiresAt: Date.now() + 60_000 });
    const later = await r.gateway.credentials.add({
      provider: "openai",
      kind: "oauth",
      baseUrl: upstream.url,
      secret: {
        accessToken: "ya29.later-token-CCCCCCCCCCCCCCCCCCCC",
        refreshToken: "1//0later-refresh-DDDDDDDDDDDDDDDDDDDD",
        expiresAt: Date.now() + 3_600_000,
      },
    });
    tokens.add("ya29.later-token-CCCCCCCCCCCCCCCCCCCC");
    tokens.add("1//0later-refresh-DDDDDDDDDDDDDDDDDDDD");
    await vi.waitFor(async () => {
      const stored = await r.gateway.store.credentials.get(soon.id);
      expect(stored!.secret.accessToken).toBe(oauth.issued[0]);
    });
    expect(oauth.calls()).toBe(1);
    expect((await r.gateway.store.credentials.get(later.id))!.secret.accessToken).toBe(
      "ya29.later-token-CCCCCCCCCCCCCCCCCCCC",
    );
  });

  it("refreshExpiring refreshes what is due through the queue, and only that", async () => {
    const r = await start(memoryStore(), { oauth: { concurrency: 2 } });
    const extra = [
      "1//0second-refresh-EEEEEEEEEEEEEEEEEEEE",
      "1//0third-refresh-FFFFFFFFFFFFFFFFFFFF",
    ];
    for (const t of extra) {
      oauth.addRefreshToken(t);
      tokens.add(t);
    }
    await addOAuthCredential(r.gateway, { expiresAt: Date.now() - 5 });
    await addOAuthCredential(r.gateway, { refreshToken: extra[0], expiresAt: Date.now() + 1000 });
    await addOAuthCredential(r.gateway, {
      refreshToken: extra[1],
      expiresAt: Date.now() + 7_200_000,
    });
    expect(await r.gateway.credentials.refreshExpiring()).toBe(2);
    expect(oauth.calls()).toBe(2);
    expect(oauth.calls(extra[1])).toBe(0);
    expect(await r.gateway.credentials.refreshExpiring()).toBe(0);
  });

  it("stores a rotated refresh token and never sends a used one again", async () => {
    await oauth.close();
    oauth = await createMockOAuth({
      refreshTokens: [REFRESH_TOKEN],
      rotateRefreshTokens: true,
    });
    const r = await start(memoryStore());
    const cred = await addOAuthCredential(r.gateway);
    const first = await r.gateway.credentials.refresh(cred.id);
    const second = await r.gateway.credentials.refresh(cred.id);
    expect(first.secret.refreshToken).not.toBe(REFRESH_TOKEN);
    expect(second.secret.refreshToken).not.toBe(first.secret.refreshToken);
    expect(oauth.requests.map((q) => q.refreshToken)).toEqual([
      REFRESH_TOKEN,
      first.secret.refreshToken,
    ]);
    expect(oauth.requests.every((q) => q.status === 200)).toBe(true);
    expect(r.events.get("credential.refreshed")).toEqual([
      expect.objectContaining({ reason: "manual", rotated: true }),
      expect.objectContaining({ reason: "manual", rotated: true }),
    ]);
  });

  it("uses a credential's own token endpoint and the provider's JSON body format", async () => {
    const other = await createMockOAuth({ refreshTokens: [REFRESH_TOKEN] });
    try {
      const r = await start(memoryStore(), {
        oauth: {
          providers: { openai: { tokenUrl: oauth.url, clientId: "c", bodyFormat: "json" } },
        },
      });
      const cred = await addOAuthCredential(r.gateway, { extra: { tokenUrl: other.url } });
      await r.gateway.credentials.refresh(cred.id);
      expect(oauth.calls()).toBe(0);
      expect(other.requests).toEqual([
        expect.objectContaining({ format: "json", clientId: "c", refreshToken: REFRESH_TOKEN }),
      ]);
      for (const t of other.issued) tokens.add(t);
    } finally {
      await other.close();
    }
  });

  it("refuses to refresh an API-key credential", async () => {
    const r = await start(memoryStore());
    const c = await r.gateway.credentials.add({
      provider: "openai",
      baseUrl: upstream.url,
      secret: { apiKey: "sk-plain-key-0000000000" },
    });
    await expect(r.gateway.credentials.refresh(c.id)).rejects.toMatchObject({
      code: "INVALID_REQUEST",
    });
    expect(oauth.calls()).toBe(0);
  });

  it("names an OAuth provider without a token endpoint in the options error", () => {
    expect(() =>
      createGateway({
        store: memoryStore(),
        secret: SECRET,
        oauth: { providers: { acme: { clientId: "x" } } },
      }),
    ).toThrow(/oauth\.providers\.acme/);
  });
});

describe("proxy path options around the pool", () => {
  async function twoUpstreams() {
    const a = await createMockUpstream({ apiKeys: ["sk-upstream-a-000000"] });
    const b = await createMockUpstream({ apiKeys: ["sk-upstream-b-000000"] });
    return { a, b, close: () => Promise.all([a.close(), b.close()]) };
  }

  async function post(
    r: Running,
    body: Record<string, unknown>,
    headers: Record<string, string> = {},
  ) {
    const res = await fetch(`${r.base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json", ...headers },
      body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], ...body }),
    });
    const text = await res.text();
    seen.push(`response ${res.status} ${text}`);
    return res.status;
  }

  it("switch-preview-model: retries with the configured fallback when every credential of the model is out of quota", async () => {
    const u = await twoUpstreams();
    try {
      const r = await start(memoryStore(), {
        settings: {
          "model-ratio": {},
          "completion-ratio": {},
          "cache-ratio": {},
          "preview-model-fallbacks": { "gemini-3-pro-preview": "gemini-2.5-pro" },
        },
      });
      key = await newKey(r.gateway);
      await r.gateway.credentials.add({
        provider: "openai",
        baseUrl: u.a.url,
        secret: { apiKey: "sk-upstream-a-000000" },
        models: [{ name: "gemini-3-pro-preview" }],
      });
      await r.gateway.credentials.add({
        provider: "openai",
        baseUrl: u.b.url,
        secret: { apiKey: "sk-upstream-b-000000" },
        models: [{ name: "gemini-2.5-pro" }],
      });
      u.a.fail({ status: 429, times: 10 });
      expect(await post(r, { model: "gemini-3-pro-preview" })).toBe(200);
      expect(u.a.requests).toHaveLength(1);
      expect((u.b.requests[0]!.body as { model: string }).model).toBe("gemini-2.5-pro");
      // While the preview model's credential cools down, the fallback serves at once.
      expect(await post(r, { model: "gemini-3-pro-preview" })).toBe(200);
      expect(u.a.requests).toHaveLength(1);
      expect(u.b.requests).toHaveLength(2);

      // Without the fallback, a request waits for the preview model's credential to come back
      // from its cooldown (cooling down is not failing), and gets that credential's answer.
      await r.gateway.settings.set({ "quota-exceeded": { "switch-preview-model": false } });
      expect(await post(r, { model: "gemini-3-pro-preview" })).toBe(429);
      expect(u.a.requests).toHaveLength(2);
      expect(u.b.requests).toHaveLength(2);
    } finally {
      await u.close();
    }
  });

  it("keeps a session (x-session-id or the body's user) on one credential", async () => {
    const u = await twoUpstreams();
    try {
      const r = await start(memoryStore());
      key = await newKey(r.gateway);
      for (const [up, k] of [
        [u.a, "sk-upstream-a-000000"],
        [u.b, "sk-upstream-b-000000"],
      ] as const)
        await r.gateway.credentials.add({
          provider: "openai",
          baseUrl: up.url,
          secret: { apiKey: k },
        });
      const spread = () => [u.a.requests.length, u.b.requests.length].sort();
      for (const session of [
        { headers: { "x-session-id": "session-1" } },
        { user: "end-user-7" },
      ]) {
        u.a.reset();
        u.b.reset();
        for (let i = 0; i < 4; i++) {
          const body = {
            model: "gpt-4o-mini",
            ...("user" in session ? { user: session.user } : {}),
          };
          expect(await post(r, body, "headers" in session ? session.headers : {})).toBe(200);
        }
        // Every request of the session reached the same upstream.
        expect(spread()).toEqual([0, 4]);
      }
      // Without a session, round-robin alternates.
      u.a.reset();
      u.b.reset();
      for (let i = 0; i < 4; i++) expect(await post(r, { model: "gpt-4o-mini" })).toBe(200);
      expect([u.a.requests.length, u.b.requests.length]).toEqual([2, 2]);
    } finally {
      await u.close();
    }
  });
});

afterAll(() => {
  // Checked here as well as in the last test, so that a test run filtered by name still checks.
  assertNoTokens();
});

function assertNoTokens(): void {
  const all = seen.join("\n");
  for (const t of tokens)
    expect(all.includes(t), `a full token appears: ${t.slice(0, 6)}…`).toBe(false);
}

describe("secrets", () => {
  it("no response body, event payload or log line of these tests contains a full token", () => {
    expect(seen.length).toBeGreaterThan(100);
    expect(tokens.size).toBeGreaterThan(5);
    assertNoTokens();
  });
});
