/**
 * Management errors say what to do (issue 14, point 5): with no management key set, every route
 * family that takes the key names how to set one; a remote caller's 403 names the address seen,
 * `allowRemote` / `allow-remote-management`, `trustedProxies`, and how Next.js gives the client
 * address. Same rule and words on `/v0/management`, `/api/token/`, `/api/user/` and `/v1/tokens`,
 * each in its own envelope. Real gateways on node:http servers on port 0 that trust loopback as
 * a proxy, so that `X-Forwarded-For` lets a request pose as a remote client.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, type GatewayOptions, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "management-hints-secret-0123456789-abcdef";
const KEY = "tp-mgmt-hints-test-key-0123456789";
const REMOTE = "203.0.113.77";

const running: { gateway: Gateway; server: Server }[] = [];
afterEach(async () => {
  for (const r of running.splice(0)) {
    r.server.closeAllConnections();
    await new Promise((res) => r.server.close(res));
    await r.gateway.close();
  }
});

async function start(key: string | null, options: Partial<GatewayOptions> = {}) {
  const gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    trustedProxies: ["127.0.0.1", "::1"],
    ...options,
  });
  await gateway.ready;
  if (key) await gateway.management.setKey(key);
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  running.push({ gateway, server });
  return { gateway, base: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

const FAMILIES = {
  management: "/v0/management/debug",
  token: "/api/token/",
  user: "/api/user/",
  pool: "/v1/tokens",
} as const;
type Family = keyof typeof FAMILIES;

async function call(base: string, family: Family, ip?: string) {
  const headers: Record<string, string> = { authorization: `Bearer ${KEY}` };
  if (ip) headers["x-forwarded-for"] = ip;
  const res = await fetch(`${base}${FAMILIES[family]}`, { headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const SET_KEY_HOWTO =
  "set one with `await gateway.management.setKey(key)` (tokenpool server: use the management key it printed on the store's first start, or set `remote-management.secret-key` in the file given with --config; an empty value disables the management API)";

describe("management errors say what to do", () => {
  it("names how to set a management key on every route family when none is set", async () => {
    const { base } = await start(null);
    expect(await call(base, "management")).toEqual({
      status: 404,
      body: { error: `not found: no management key is set; ${SET_KEY_HOWTO}` },
    });
    // Any management path and method.
    for (const path of ["/v0/management/nope", "/v0/management/anthropic-auth-url"]) {
      const res = await fetch(`${base}${path}`, { method: "PATCH" });
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as { error: string }).error, path).toContain(SET_KEY_HOWTO);
    }
    for (const family of ["token", "user"] as const)
      expect(await call(base, family), family).toEqual({
        status: 401,
        body: {
          success: false,
          message: `Unauthorized: the access token is invalid, and no management key is set; ${SET_KEY_HOWTO}`,
        },
      });
    expect(await call(base, "pool")).toEqual({
      status: 401,
      body: {
        success: false,
        message: `API Key 验证失败: no management key is set; ${SET_KEY_HOWTO}`,
      },
    });
  });

  it("keeps the plain messages once a key is set: unknown path 404, wrong key 401", async () => {
    const { base } = await start(KEY);
    const res = await fetch(`${base}/v0/management/nope`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect([res.status, await res.json()]).toEqual([404, { error: "not found" }]);
    const wrong = await fetch(`${base}/api/token/`, { headers: { authorization: "Bearer nope" } });
    expect(((await wrong.json()) as { message: string }).message).toBe(
      "Unauthorized: the access token is invalid",
    );
  });

  it("tells a remote caller how to allow it, in each route family's envelope", async () => {
    const { base } = await start(KEY);
    const messages: string[] = [];
    for (const family of Object.keys(FAMILIES) as Family[]) {
      const res = await call(base, family, REMOTE);
      expect(res.status, family).toBe(403);
      if (family === "management") {
        expect(Object.keys(res.body)).toEqual(["error"]);
        messages.push(String(res.body.error));
      } else {
        expect(res.body.success, family).toBe(false);
        messages.push(String(res.body.message));
      }
    }
    const [management, token, user, pool] = messages;
    // One message from the one gate: as it is on the management and new-api routes, prefixed by
    // the seed's words on the pool routes.
    expect(token).toBe(management);
    expect(user).toBe(management);
    expect(pool).toBe(`API Key 验证失败: ${management}`);
    expect(management).toMatch(/^remote management disabled: /);
    for (const hint of [
      `the client address ${REMOTE}`,
      "`management: { allowRemote: true }`",
      "`allow-remote-management: true`",
      "`remote-management.allow-remote: true`",
      "`trustedProxies`",
      "`toNextRouteHandlers` gets `trustProxy` or `clientIp`",
    ])
      expect(management, hint).toContain(hint);
    // The option it names lets the same caller in.
    const open = await start(KEY, { management: { allowRemote: true } });
    for (const family of Object.keys(FAMILIES) as Family[])
      expect((await call(open.base, family, REMOTE)).status, family).toBe(200);
  });

  it("says the client address is unknown when the binding gave none (Next.js without trustProxy or clientIp)", async () => {
    const { gateway } = await start(KEY);
    const reply = await gateway.handler(
      new Request("http://app/v0/management/debug", {
        headers: { authorization: `Bearer ${KEY}` },
      }),
      { remoteAddress: "" },
    );
    expect(reply.status).toBe(403);
    const { error } = (await reply.json()) as { error: string };
    expect(error).toContain("this request came from an unknown client address");
    expect(error).toContain("with @tokenpool/next the address is unknown unless");
  });
});
