/**
 * The one gate of the management key (issue 12, points 3-5): the same rules on every route
 * that accepts the key, `X-Forwarded-For` failing closed, and wrong keys that cannot starve
 * the server. Real gateways on node:http servers on port 0; the test servers trust loopback
 * as a proxy, so that `X-Forwarded-For` lets a request pose as a remote client.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createGateway,
  type Gateway,
  type GatewayOptions,
  IpAllowList,
  memoryStore,
  resolveClientIp,
  type Store,
} from "../src/index.js";
import { MANAGEMENT_MAX_CHECKS } from "../src/keys/management-gate.js";
import { toNodeHandler } from "../src/node.js";
import { createBcryptComparer } from "../src/util/bcrypt-worker.js";

const SECRET = "management-gate-secret-0123456789-abcdef";
const KEY = "tp-mgmt-gate-test-key-0123456789";
const REMOTE = "203.0.113.9";

interface Running {
  gateway: Gateway;
  server: Server;
  base: string;
}
const running: Running[] = [];
let mock: MockUpstream;

beforeEach(async () => {
  mock = await createMockUpstream();
});

afterEach(async () => {
  for (const r of running.splice(0)) {
    r.server.closeAllConnections();
    await new Promise((res) => r.server.close(res));
    await r.gateway.close();
  }
  await mock.close();
});

async function start(
  options: Partial<GatewayOptions> = {},
  key: string | null = KEY,
  store: Store = memoryStore(),
): Promise<Running> {
  const gateway = createGateway({
    store,
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
    trustedProxies: ["127.0.0.1", "::1"],
    ...options,
  });
  await gateway.ready;
  if (key) await gateway.management.setKey(key);
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    secret: { apiKey: "upstream" },
    models: [{ name: "gpt-4o-mini" }],
  });
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const r = { gateway, server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  running.push(r);
  return r;
}

/** One read-only route of each family that accepts the management key. */
const ROUTES = {
  management: "/v0/management/debug",
  token: "/api/token/",
  user: "/api/user/",
  pool: "/v1/tokens",
} as const;
type Family = keyof typeof ROUTES;
const FAMILIES = Object.keys(ROUTES) as Family[];

interface Answer {
  status: number;
  body: Record<string, unknown>;
}

async function call(
  base: string,
  family: Family,
  credential: string | null,
  ip?: string,
): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (credential !== null) headers.authorization = `Bearer ${credential}`;
  if (ip !== undefined) headers["x-forwarded-for"] = ip;
  const res = await fetch(`${base}${ROUTES[family]}`, { headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The refusal message of an answer, whatever the dialect's envelope. */
const messageOf = (a: Answer) => String(a.body.error ?? a.body.message);

const BANNED = /IP banned due to too many failed attempts\. Try again in (29m\d+s|30m0s)$/;

describe("the management key's gate on every route that accepts it", () => {
  it("refuses the key from a remote address on /api/token/, /api/user/ and /v1/tokens unless allowRemote is on", async () => {
    const { base, gateway } = await start();
    for (const family of FAMILIES) {
      const remote = await call(base, family, KEY, REMOTE);
      expect(remote.status, family).toBe(403);
      expect(messageOf(remote), family).toMatch(
        /remote management disabled: the management key is accepted from loopback clients only/,
      );
      if (family !== "management") expect(remote.body.success, family).toBe(false);
      // The same key from loopback is served.
      expect((await call(base, family, KEY)).status, family).toBe(200);
    }
    expect((await call(base, "management", KEY, REMOTE)).body).toEqual({
      error: expect.stringMatching(
        /^remote management disabled: the management key is accepted from loopback clients only/,
      ),
    });
    expect((await call(base, "token", KEY, REMOTE)).body).toEqual({
      success: false,
      message: expect.stringMatching(
        /^remote management disabled: the management key is accepted from loopback clients only/,
      ),
    });

    // A remote user with a valid access token keeps working with remote management off.
    const { accessToken, record } = await gateway.users.create({
      username: "remote-admin",
      role: "admin",
    });
    for (const family of ["token", "user", "pool"] as const) {
      const res = await fetch(`${base}${ROUTES[family]}`, {
        headers: {
          authorization: `Bearer ${accessToken}`,
          "new-api-user": String(record.id),
          "x-forwarded-for": REMOTE,
        },
      });
      expect(res.status, family).toBe(200);
    }

    const open = await start({ management: { allowRemote: true } });
    for (const family of FAMILIES)
      expect((await call(open.base, family, KEY, REMOTE)).status, family).toBe(200);
  });

  it("bans a remote address after 5 failures spread over the four route families, on all of them even with the right key", async () => {
    const store = memoryStore();
    const { base, gateway } = await start({ management: { allowRemote: true } }, KEY, store);
    const { accessToken, record } = await gateway.users.create({ username: "a", role: "admin" });
    const ip = "198.51.100.7";
    const order: Family[] = ["management", "token", "user", "pool", "token"];
    for (const [i, family] of order.entries()) {
      const res = await call(base, family, `wrong-key-${i}-0123456789`, ip);
      expect(res.status, `${family} #${i}`).toBe(401);
    }
    for (const family of FAMILIES) {
      const banned = await call(base, family, KEY, ip);
      expect(banned.status, family).toBe(403);
      expect(messageOf(banned), family).toMatch(BANNED);
    }
    expect((await call(base, "management", KEY, ip)).body).toEqual({
      error: expect.stringMatching(/^IP banned due to too many failed attempts\. Try again in/),
    });
    // A banned address is refused whatever it presents, a valid access token too.
    const withToken = await fetch(`${base}/api/token/`, {
      headers: {
        authorization: `Bearer ${accessToken}`,
        "new-api-user": String(record.id),
        "x-forwarded-for": ip,
      },
    });
    expect(withToken.status).toBe(403);
    // Another address is not affected, and a second gateway on the store sees the ban.
    for (const family of FAMILIES)
      expect((await call(base, family, KEY, "198.51.100.8")).status, family).toBe(200);
    const second = await start({ management: { allowRemote: true } }, null, store);
    expect((await call(second.base, "pool", KEY, ip)).status).toBe(403);
  });

  it("counts wrong credentials on the token, user and pool routes with remote management off", async () => {
    const { base } = await start();
    const ip = "198.51.100.30";
    const order: Family[] = ["token", "user", "pool", "token", "pool"];
    for (const [i, family] of order.entries())
      expect((await call(base, family, `not-a-token-${i}`, ip)).status, family).toBeGreaterThan(
        399,
      );
    // Banned now: the management dialect says so instead of "remote management disabled".
    const res = await call(base, "management", KEY, ip);
    expect(res.status).toBe(403);
    expect(messageOf(res)).toMatch(BANNED);
  });

  it("accepts the management key nowhere when none is set, while access tokens still work", async () => {
    const { base, gateway } = await start({}, null);
    const { accessToken, record } = await gateway.users.create({ username: "u", role: "admin" });
    const user = { authorization: `Bearer ${accessToken}`, "new-api-user": String(record.id) };
    expect(await call(base, "management", KEY)).toEqual({
      status: 404,
      body: {
        error: expect.stringMatching(
          /^not found: no management key is set; set one with `await gateway\.management\.setKey\(key\)`/,
        ),
      },
    });
    for (const family of ["token", "user", "pool"] as const) {
      const res = await call(base, family, KEY);
      expect(res.status, family).toBe(401);
      expect(res.body.success, family).toBe(false);
      expect((await fetch(`${base}${ROUTES[family]}`, { headers: user })).status, family).toBe(200);
    }
    // A remote client guessing is still counted: 5 wrong credentials ban it.
    const ip = "198.51.100.40";
    for (let i = 0; i < 5; i++)
      expect((await call(base, "token", `${KEY}-${i}`, ip)).status).toBe(401);
    const banned = await fetch(`${base}/api/token/`, {
      headers: { ...user, "x-forwarded-for": ip },
    });
    expect(banned.status).toBe(403);
    expect(((await banned.json()) as { message: string }).message).toMatch(BANNED);
    expect(
      (await fetch(`${base}/api/token/`, { headers: { ...user, "x-forwarded-for": REMOTE } }))
        .status,
    ).toBe(200);
  });
});

describe("X-Forwarded-For fails closed", () => {
  const trusted = new IpAllowList(["127.0.0.1", "10.0.0.0/8"]);

  it("makes the client unknown, never the proxy, when a hop cannot be read", () => {
    for (const chain of [
      "not-an-ip",
      "203.0.113.9, garbage",
      "unknown",
      "_hidden, 10.0.0.2",
      "203.0.113.9, , 10.0.0.2",
      "",
      " ",
      "999.1.1.1",
    ])
      expect(resolveClientIp("127.0.0.1", chain, trusted), JSON.stringify(chain)).toBe("");
    // Readable chains, ports included, still resolve.
    expect(resolveClientIp("127.0.0.1", "203.0.113.9:5123, 10.0.0.2", trusted)).toBe("203.0.113.9");
    expect(resolveClientIp("::ffff:127.0.0.1", "[2001:db8::1]:443", trusted)).toBe("2001:db8::1");
    expect(resolveClientIp("127.0.0.1", "garbage, 203.0.113.9", trusted)).toBe("203.0.113.9");
    expect(resolveClientIp("127.0.0.1", undefined, trusted)).toBe("127.0.0.1");
    expect(new IpAllowList(["127.0.0.1"]).allows("")).toBe(false);
  });

  it("treats a malformed chain from a trusted proxy as remote: management refused, a 127.0.0.1 allowlist not matched", async () => {
    const { base, gateway } = await start();
    for (const family of FAMILIES) {
      const res = await call(base, family, KEY, "not-an-ip");
      expect(res.status, family).toBe(403);
      expect(messageOf(res), family).toMatch(
        /remote management disabled: the management key is accepted from loopback clients only/,
      );
    }

    const { key } = await gateway.keys.create({
      name: "loopback only",
      unlimitedQuota: true,
      allowIps: ["127.0.0.1"],
    });
    const client = (xff?: string) =>
      new OpenAI({
        baseURL: `${base}/v1`,
        apiKey: key,
        maxRetries: 0,
        ...(xff === undefined ? {} : { defaultHeaders: { "x-forwarded-for": xff } }),
      });
    const ask = (c: OpenAI) =>
      c.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "hi" }],
      });
    // From loopback itself the key works ...
    expect((await ask(client())).choices[0]?.message.content).toBeTruthy();
    // ... but not for an unreadable client behind the proxy.
    await expect(ask(client("bogus, 127.0.0.1"))).rejects.toMatchObject({ status: 403 });
    await expect(ask(client("unknown"))).rejects.toMatchObject({ status: 403 });
  });

  it("does not serve relayed remote or unreadable clients as localhost-unauthenticated", async () => {
    const { base, gateway } = await start();
    await gateway.settings.set({ "allow-localhost-unauthenticated": true });
    const chat = (xff?: string) =>
      fetch(`${base}/v1/chat/completions`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(xff === undefined ? {} : { "x-forwarded-for": xff }),
        },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
      });
    const local = await chat();
    expect(local.status).toBe(200);
    await local.text();
    for (const xff of [REMOTE, "garbage"]) {
      const res = await chat(xff);
      expect(res.status, xff).toBe(401);
      await res.text();
    }
  });
});

describe("wrong management keys cannot starve the server", () => {
  // A latency bound on a machine shared with the rest of the suite: one unlucky scheduling pause
  // of another process can cost a sample 50 ms, so the measurement may be taken again (twice).
  // The starvation it guards against is not subtle: before the fix, p99 was about 4.5 s.
  it("keeps /healthz p99 under 50 ms and the proxy path answering while 50 distinct wrong keys are checked", {
    retry: 2,
  }, async () => {
    const { base, gateway } = await start();
    const { key } = await gateway.keys.create({ name: "app", unlimitedQuota: true });
    const openai = new OpenAI({ baseURL: `${base}/v1`, apiKey: key, maxRetries: 0 });
    // Warm up what a long-running server has warm already: the HTTP client and the bcrypt worker
    // (started at the first check).
    await (await fetch(`${base}/healthz`)).arrayBuffer();
    expect(await gateway.management.verify("warm-up-wrong-key-0123456789")).toBe(false);

    let flooding = true;
    const flood = Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        call(
          base,
          i % 2 === 0 ? "management" : "token",
          `wrong-management-key-${i}-${"x".repeat(20)}`,
        ),
      ),
    ).finally(() => {
      flooding = false;
    });
    const latencies: number[] = [];
    const poll = (async () => {
      while (flooding || latencies.length < 50) {
        const t0 = performance.now();
        const res = await fetch(`${base}/healthz`);
        await res.arrayBuffer();
        latencies.push(performance.now() - t0);
        expect(res.status).toBe(200);
      }
    })();
    const chat = await openai.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "still there?" }],
    });
    expect(chat.choices[0]?.message.content).toBeTruthy();
    const answers = await flood;
    await poll;
    for (const a of answers) expect(a.status).toBe(401);
    latencies.sort((a, b) => a - b);
    const p99 = latencies[Math.ceil(latencies.length * 0.99) - 1]!;
    expect(p99, `p99 over ${latencies.length} samples`).toBeLessThan(50);
    // The right key still works afterwards (nothing was remembered wrongly).
    expect((await call(base, "management", KEY)).status).toBe(200);
  });

  it("remembers a wrong key for a while: the same wrong key again costs no bcrypt", async () => {
    const { gateway } = await start();
    const wrong = "wrong-management-key-remembered-0123456789";
    expect(await gateway.management.verify(wrong)).toBe(false);
    const t0 = performance.now();
    for (let i = 0; i < 20; i++) expect(await gateway.management.verify(wrong)).toBe(false);
    // 20 bcrypt checks at cost 10 would take over a second.
    expect(performance.now() - t0).toBeLessThan(100);
    // A new key is checked again from scratch: the old wrong key is not remembered as right,
    // and the new key is accepted at once.
    await gateway.management.setKey(wrong);
    expect(await gateway.management.verify(wrong)).toBe(true);
    expect(await gateway.management.verify(KEY)).toBe(false);
  });

  it("refuses checks beyond the bound at once instead of queueing them, and checks again afterwards", async () => {
    const { gateway } = await start();
    let settled = 0;
    const running = Array.from({ length: MANAGEMENT_MAX_CHECKS }, (_, i) =>
      gateway.management.verify(`wrong-management-key-bound-${i}`).finally(() => {
        settled++;
      }),
    );
    // One more check (the right key even) is refused before any running check has finished.
    expect(await gateway.management.verify(KEY)).toBe(false);
    expect(settled).toBe(0);
    expect(await Promise.all(running)).toEqual(running.map(() => false));
    // Nothing was remembered about the refused key: checked now, it passes.
    expect(await gateway.management.verify(KEY)).toBe(true);
  });

  it("compares on a worker thread and on the main thread alike", async () => {
    const bcrypt = (await import("bcryptjs")).default;
    const hash = await bcrypt.hash("the-right-value", 4);
    for (const worker of [true, false]) {
      const comparer = createBcryptComparer({ worker });
      expect(await comparer.compare("the-right-value", hash), String(worker)).toBe(true);
      expect(await comparer.compare("a-wrong-value", hash), String(worker)).toBe(false);
      expect(await comparer.compare("the-right-value", "not a bcrypt hash"), String(worker)).toBe(
        false,
      );
      await comparer.close();
      // After close, comparisons still answer (on the main thread).
      expect(await comparer.compare("the-right-value", hash), String(worker)).toBe(true);
    }
  });
});
