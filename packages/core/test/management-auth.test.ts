import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import {
  createGateway,
  type Gateway,
  type GatewayOptions,
  memoryStore,
  type Store,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "management-auth-secret-0123456789-abcdef";
const KEY = "tp-mgmt-test-key-0123456789";

interface Running {
  gateway: Gateway;
  server: Server;
  base: string;
}
const running: Running[] = [];

async function start(
  store: Store,
  options: Partial<GatewayOptions> = {},
  key: string | null = KEY,
): Promise<Running> {
  const gateway = createGateway({
    store,
    secret: SECRET,
    logger: false,
    // The test server only sees loopback peers: believe X-Forwarded-For from them, so that a
    // test can pose as a remote client.
    trustedProxies: ["127.0.0.1", "::1"],
    ...options,
  });
  await gateway.ready;
  if (key) await gateway.management.setKey(key);
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const r = { gateway, server, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
  running.push(r);
  return r;
}

afterEach(async () => {
  for (const r of running.splice(0)) {
    await new Promise((res) => r.server.close(res));
    await r.gateway.close();
  }
});

function get(
  base: string,
  path: string,
  headers: Record<string, string> = {},
  method = "GET",
): Promise<Response> {
  return fetch(`${base}/v0/management${path}`, { method, headers });
}
const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
const from = (ip: string, h: Record<string, string> = {}) => ({ "x-forwarded-for": ip, ...h });

describe("management authentication", () => {
  it("answers 404 on every management route, known or not, when no key is set", async () => {
    const { base } = await start(memoryStore(), {}, null);
    for (const [path, method] of [
      ["/usage", "GET"],
      ["/config", "GET"],
      ["/debug", "PUT"],
      ["/config", "DELETE"],
      ["/nope", "GET"],
      ["", "GET"],
    ] as const) {
      const res = await get(base, path, bearer(KEY), method);
      expect(res.status, `${method} ${path}`).toBe(404);
      // The seed's 404, with how to set a key (issue 14).
      expect(await res.json()).toEqual({
        error: expect.stringMatching(
          /^not found: no management key is set; set one with `await gateway\.management\.setKey\(key\)`/,
        ),
      });
    }
  });

  it("refuses a missing key and a wrong key with the seed's 401 errors", async () => {
    const { base } = await start(memoryStore());
    let res = await get(base, "/debug");
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "missing management key" });
    res = await get(base, "/debug", bearer("wrong-key-0123456789"));
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "invalid management key" });
    res = await get(base, "/debug", { "x-management-key": "wrong" });
    expect(res.status).toBe(401);
    expect(await res.json()).toEqual({ error: "invalid management key" });
  });

  it("accepts the key as Authorization: Bearer and as X-Management-Key", async () => {
    const { base } = await start(memoryStore());
    let res = await get(base, "/debug", bearer(KEY));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ debug: false });
    res = await get(base, "/debug", { "x-management-key": KEY });
    expect(res.status).toBe(200);
  });

  it("answers unknown management paths with a management 404 when a key is set", async () => {
    const { base } = await start(memoryStore());
    const res = await get(base, "/no-such-route", bearer(KEY));
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({ error: "not found" });
  });

  it("refuses remote clients unless allowRemote is on, even with the right key", async () => {
    const store = memoryStore();
    const { base } = await start(store);
    const res = await get(base, "/debug", from("203.0.113.9", bearer(KEY)));
    expect(res.status).toBe(403);
    expect(await res.json()).toEqual({
      error: expect.stringMatching(
        /^remote management disabled: the management key is accepted from loopback clients only/,
      ),
    });
    // Loopback in any spelling is local.
    for (const ip of ["127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.2"]) {
      const ok = await get(base, "/debug", from(ip, bearer(KEY)));
      expect(ok.status, ip).toBe(200);
    }
  });

  it("lets remote clients in with allowRemote", async () => {
    const { base } = await start(memoryStore(), { management: { allowRemote: true } });
    const res = await get(base, "/debug", from("203.0.113.9", bearer(KEY)));
    expect(res.status).toBe(200);
  });

  it("bans a remote address for 30 minutes after 5 failures, across instances, and only that address", async () => {
    let now = Date.now();
    const store = memoryStore({ now: () => now });
    const { base } = await start(store, { management: { allowRemote: true } });
    const ip = "198.51.100.7";
    for (let i = 0; i < 4; i++) {
      const res = await get(base, "/debug", from(ip, bearer(`wrong-${i}`)));
      expect(res.status).toBe(401);
    }
    // A missing key counts as a failure too (the fifth).
    expect((await get(base, "/debug", from(ip))).status).toBe(401);
    const banned = await get(base, "/debug", from(ip, bearer(KEY)));
    expect(banned.status).toBe(403);
    const body = (await banned.json()) as { error: string };
    expect(body.error).toMatch(
      /^IP banned due to too many failed attempts\. Try again in (29m\d+s|30m0s)$/,
    );
    // Another address is not affected.
    expect((await get(base, "/debug", from("198.51.100.8", bearer(KEY)))).status).toBe(200);
    // A second gateway on the same store sees the ban.
    const second = await start(store, { management: { allowRemote: true } }, null);
    const res2 = await get(second.base, "/debug", from(ip, bearer(KEY)));
    expect(res2.status).toBe(403);
    // The ban expires after about 30 minutes.
    now += 30 * 60_000 + 1_000;
    expect((await get(base, "/debug", from(ip, bearer(KEY)))).status).toBe(200);
  });

  it("counts only consecutive failures: a success starts again", async () => {
    const { base } = await start(memoryStore(), { management: { allowRemote: true } });
    const ip = "198.51.100.20";
    for (let round = 0; round < 2; round++) {
      for (let i = 0; i < 4; i++)
        expect((await get(base, "/debug", from(ip, bearer("bad")))).status).toBe(401);
      expect((await get(base, "/debug", from(ip, bearer(KEY)))).status).toBe(200);
    }
  });

  it("never bans loopback clients", async () => {
    const { base } = await start(memoryStore());
    for (let i = 0; i < 7; i++) expect((await get(base, "/debug", bearer("bad"))).status).toBe(401);
    expect((await get(base, "/debug", bearer(KEY))).status).toBe(200);
  });

  it("judges the client address through serve() with the exchange's remote address", async () => {
    const gateway = createGateway({ store: memoryStore(), secret: SECRET, logger: false });
    await gateway.management.setKey(KEY);
    const reply = await gateway.handler(
      new Request("http://x/v0/management/debug", { headers: bearer(KEY) }),
      { remoteAddress: "192.0.2.44" },
    );
    expect(reply.status).toBe(403);
    expect(await reply.json()).toEqual({
      error: expect.stringMatching(
        /^remote management disabled: .* the client address 192\.0\.2\.44\./,
      ),
    });
    const local = await gateway.handler(
      new Request("http://x/v0/management/debug", { headers: bearer(KEY) }),
      { remoteAddress: "::ffff:127.0.0.1" },
    );
    expect(local.status).toBe(200);
    await gateway.close();
  });
});
