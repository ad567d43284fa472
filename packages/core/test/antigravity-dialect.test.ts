import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import {
  createMockOAuth,
  createMockUpstream,
  type MockOAuthServer,
  type MockUpstream,
} from "@tokenpool/testing";
import { afterAll, afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  accessTokenSuffix,
  ANTIGRAVITY_MESSAGES as POOL_MESSAGES,
} from "../src/dialects/antigravity/routes.js";
import { createGateway, type Gateway, type Logger, memoryStore, type Store } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "pool-secret-0123456789-0123456789-abcdef";
const MANAGEMENT_KEY = "tp-mgmt-pool-dialect-test-key-0123456789";
const RT_A = "1//0GWI4-refresh-token-a-AAAAAAAAAAAAAAAAAAAAAAAA";
const RT_B = "1//0GWI4-refresh-token-b-BBBBBBBBBBBBBBBBBBBBBBBB";
const AT_A = "ya29.a0ARrdaM-access-token-a-abc12345";
const AT_B = "ya29.a0ARrdaM-access-token-b-def67890";

/** Every response body, event payload and log line of this file, and the tokens they must not contain. */
const seen: string[] = [];
const tokens = new Set<string>([RT_A, RT_B, AT_A, AT_B]);

const recordingLogger: Logger = {
  debug: (m, f) => seen.push(`debug ${m} ${JSON.stringify(f ?? {})}`),
  info: (m, f) => seen.push(`info ${m} ${JSON.stringify(f ?? {})}`),
  warn: (m, f) => seen.push(`warn ${m} ${JSON.stringify(f ?? {})}`),
  error: (m, f) => seen.push(`error ${m} ${JSON.stringify(f ?? {})}`),
};

let oauth: MockOAuthServer;
let upstream: MockUpstream;
let store: Store;
let gateway: Gateway;
let server: Server;
let base: string;

async function startGateway(s: Store): Promise<void> {
  store = s;
  gateway = createGateway({
    store,
    secret: SECRET,
    logger: recordingLogger,
    usage: { flushIntervalMs: 10 },
    poolDialect: { provider: "openai", baseUrl: upstream.url },
    oauth: {
      providers: { openai: { tokenUrl: oauth.url, clientId: "pool-test" } },
      scanIntervalMs: 0,
    },
  });
  const emit = gateway.events.emit.bind(gateway.events);
  gateway.events.emit = ((name: string, ...args: unknown[]) => {
    seen.push(`event ${name} ${JSON.stringify(args)}`);
    return (emit as (n: string, ...a: unknown[]) => boolean)(name, ...args);
  }) as typeof gateway.events.emit;
  await gateway.management.setKey(MANAGEMENT_KEY);
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

beforeEach(async () => {
  oauth = await createMockOAuth({ refreshTokens: [RT_A, RT_B] });
  upstream = await createMockUpstream({ authorize: (t) => oauth.accepts(t) });
  await startGateway(memoryStore());
});

async function stopGateway(): Promise<void> {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
}

afterEach(async () => {
  await stopGateway();
  for (const t of oauth.issued) tokens.add(t);
  await oauth.close();
  await upstream.close();
});

interface Answer {
  status: number;
  body: { success: boolean; message?: string; data?: unknown };
  text: string;
}

async function call(
  method: string,
  path: string,
  body?: unknown,
  auth: string | null = MANAGEMENT_KEY,
  raw?: string,
): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(auth === null ? {} : { authorization: `Bearer ${auth}` }),
      ...(body !== undefined || raw !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(raw !== undefined
      ? { body: raw }
      : body !== undefined
        ? { body: JSON.stringify(body) }
        : {}),
  });
  const text = await res.text();
  seen.push(`response ${method} ${res.status} ${text}`);
  return { status: res.status, body: JSON.parse(text) as Answer["body"], text };
}

interface TokenView {
  id: string;
  refresh_token: string;
  access_token_suffix: string;
  expires_in: number;
  timestamp: number;
  enable: boolean;
  projectId: string | null;
}

async function list(): Promise<TokenView[]> {
  const res = await call("GET", "/v1/tokens");
  expect(res.status).toBe(200);
  expect(Object.keys(res.body).sort()).toEqual(["data", "success"]);
  return res.body.data as TokenView[];
}

async function add(body: Record<string, unknown>): Promise<string> {
  const res = await call("POST", "/v1/tokens", body);
  expect(res.status).toBe(200);
  expect(res.body).toMatchObject({ success: true, message: POOL_MESSAGES.added });
  return (res.body.data as { id: string }).id;
}

async function chat(apiKey: string): Promise<number> {
  const res = await fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
  });
  seen.push(`response chat ${res.status} ${await res.text()}`);
  return res.status;
}

describe("antigravity dialect: authentication", () => {
  it("answers 401 without a key and with a wrong one, in the seed's envelope", async () => {
    for (const auth of [null, "sk-wrong-key-000000000000", ""]) {
      const res = await call("GET", "/v1/tokens", undefined, auth);
      expect(res.status).toBe(401);
      expect(res.body.success).toBe(false);
      expect(res.body.message).toContain(POOL_MESSAGES.unauthorized);
    }
    const res = await call("POST", "/v1/tokens", { refresh_token: RT_A }, "nope");
    expect(res.status).toBe(401);
    expect(await list()).toEqual([]);
  });

  it("accepts an admin's access token, and refuses a plain user's with 403", async () => {
    const admin = await gateway.users.create({ username: "root", role: "admin" });
    const user = await gateway.users.create({ username: "alice" });
    expect((await call("GET", "/v1/tokens", undefined, admin.accessToken)).status).toBe(200);
    const denied = await call("GET", "/v1/tokens", undefined, user.accessToken);
    expect(denied.status).toBe(403);
    expect(denied.body).toEqual({ success: false, message: POOL_MESSAGES.forbidden });
  });
});

describe("antigravity dialect: routes", () => {
  it("adds a token and lists it with its secrets masked", async () => {
    const before = Date.now();
    const id = await add({
      access_token: AT_A,
      refresh_token: RT_A,
      expires_in: 3599,
      projectId: "project-123",
    });
    const [t, ...rest] = await list();
    expect(rest).toEqual([]);
    expect(t).toEqual({
      id,
      refresh_token: expect.stringMatching(/^1\/\/0.*\*\*\*\*AAAA$/),
      access_token_suffix: "...abc12345",
      expires_in: 3599,
      timestamp: expect.any(Number),
      enable: true,
      projectId: "project-123",
    });
    expect(t!.timestamp).toBeGreaterThanOrEqual(before);
    expect(t!.timestamp).toBeLessThanOrEqual(Date.now());
    // It is an OAuth account of the dialect's provider, in the shared pool.
    const rec = gateway.credentials.get(id)!;
    expect(rec).toMatchObject({ provider: "openai", kind: "oauth", baseUrl: upstream.url });
    expect(rec.secret).toMatchObject({ accessToken: AT_A, refreshToken: RT_A });
    expect(rec.secret.expiresAt).toBe(t!.timestamp + 3599 * 1000);
  });

  it("honours the seed's timestamp and keeps other providers' credentials out of the list", async () => {
    await add({
      access_token: AT_A,
      refresh_token: RT_A,
      expires_in: 100,
      timestamp: 1_700_000_000_000,
    });
    await gateway.credentials.add({
      provider: "openai",
      baseUrl: upstream.url,
      secret: { apiKey: "sk-other-api-key-0000000000" },
    });
    tokens.add("sk-other-api-key-0000000000");
    const [t, ...rest] = await list();
    expect(rest).toEqual([]);
    expect(t).toMatchObject({ timestamp: 1_700_000_000_000, expires_in: 100 });
  });

  it("rejects a duplicate refresh_token with 400, also when two adds race", async () => {
    await add({ access_token: AT_A, refresh_token: RT_A, expires_in: 3599 });
    const dup = await call("POST", "/v1/tokens", { access_token: AT_B, refresh_token: RT_A });
    expect(dup.status).toBe(400);
    expect(dup.body).toEqual({ success: false, message: expect.stringContaining("Token已存在") });

    const raced = await Promise.all(
      Array.from({ length: 5 }, () => call("POST", "/v1/tokens", { refresh_token: RT_B })),
    );
    expect(raced.map((r) => r.status).sort()).toEqual([200, 400, 400, 400, 400]);
    expect(await list()).toHaveLength(2);
  });

  it("answers 400 for a bad body and writes nothing", async () => {
    const bad: [unknown, string | undefined][] = [
      [undefined, "{not json"],
      [[1, 2], undefined],
      [{ access_token: AT_A }, undefined],
      [{ refresh_token: "" }, undefined],
      [{ refresh_token: 42 }, undefined],
      [{ refresh_token: RT_A, expires_in: "3599" }, undefined],
      [{ refresh_token: RT_A, expires_in: -1 }, undefined],
      [{ refresh_token: RT_A, enable: "yes" }, undefined],
      [{ refresh_token: RT_A, access_token: 7 }, undefined],
      [{ refresh_token: RT_A, projectId: 5 }, undefined],
    ];
    for (const [body, raw] of bad) {
      const res = await call("POST", "/v1/tokens", body, MANAGEMENT_KEY, raw);
      expect(res.status, JSON.stringify(body ?? raw)).toBe(400);
      expect(res.body.success).toBe(false);
      expect(res.body.message).toContain(POOL_MESSAGES.badRequest);
    }
    expect(await list()).toEqual([]);
  });

  it("updates by refresh token (raw or percent-encoded) and by id", async () => {
    const id = await add({ access_token: AT_A, refresh_token: RT_A, expires_in: 3599 });

    // The seed's form: the refresh token as is in the path, slashes included.
    let res = await call("PUT", `/v1/tokens/${RT_A}`, { enable: false });
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ success: true, message: POOL_MESSAGES.updated });
    expect((await list())[0]!.enable).toBe(false);

    res = await call("PUT", `/v1/tokens/${encodeURIComponent(RT_A)}`, { enable: true });
    expect(res.status).toBe(200);
    expect((await list())[0]!.enable).toBe(true);

    res = await call("PUT", `/v1/tokens/${id}`, {
      access_token: AT_B,
      expires_in: 1800,
      projectId: "project-456",
    });
    expect(res.status).toBe(200);
    const [t] = await list();
    expect(t).toMatchObject({
      access_token_suffix: "...def67890",
      expires_in: 1800,
      projectId: "project-456",
      enable: true,
    });
    expect(gateway.credentials.get(id)!.secret.accessToken).toBe(AT_B);
  });

  it("answers 404 for an unknown token, 400 for a bad update, and 400 for a refresh_token taken", async () => {
    const id = await add({ access_token: AT_A, refresh_token: RT_A });
    await add({ access_token: AT_B, refresh_token: RT_B });
    for (const path of [
      "/v1/tokens/1//unknown-refresh",
      "/v1/tokens/cred_nope",
      "/v1/tokens/a/b/c",
    ]) {
      const res = await call("PUT", path, { enable: false });
      expect(res.status).toBe(404);
      expect(res.body).toEqual({ success: false, message: POOL_MESSAGES.notFound });
      expect((await call("DELETE", path)).status).toBe(404);
    }
    expect((await call("PUT", `/v1/tokens/${id}`, { enable: "no" })).status).toBe(400);
    expect((await call("PUT", `/v1/tokens/${id}`, undefined, MANAGEMENT_KEY, "[")).status).toBe(
      400,
    );
    const taken = await call("PUT", `/v1/tokens/${id}`, { refresh_token: RT_B });
    expect(taken.status).toBe(400);
    expect(gateway.credentials.get(id)!.secret.refreshToken).toBe(RT_A);
    expect((await call("PUT", `/v1/tokens/${id}`, undefined, null)).status).toBe(401);
  });

  it("deletes by id and by refresh token", async () => {
    const a = await add({ access_token: AT_A, refresh_token: RT_A });
    await add({ access_token: AT_B, refresh_token: RT_B });
    let res = await call("DELETE", `/v1/tokens/${a}`);
    expect(res.body).toEqual({ success: true, message: POOL_MESSAGES.deleted });
    res = await call("DELETE", `/v1/tokens/${RT_B}`);
    expect(res.body).toEqual({ success: true, message: POOL_MESSAGES.deleted });
    expect(await list()).toEqual([]);
    expect(await store.credentials.list()).toEqual([]);
    expect((await call("DELETE", `/v1/tokens/${a}`)).status).toBe(404);
  });

  it("reloads the pool from the store (changes made behind the gateway's back)", async () => {
    // A store whose change notifications are lost, as with a file edited while nothing watched.
    await stopGateway();
    const inner = memoryStore();
    await startGateway({ ...inner, watch: () => () => {} } as Store);
    const id = await add({ access_token: AT_A, refresh_token: RT_A });
    await inner.credentials.update(id, { enabled: false });
    expect((await list())[0]!.enable).toBe(true);
    const res = await call("POST", "/v1/tokens/reload");
    expect(res.body).toEqual({ success: true, message: POOL_MESSAGES.reloaded });
    expect((await list())[0]!.enable).toBe(false);
  });

  it("answers 405 and 404 for other methods and paths in the pool envelope", async () => {
    const res = await call("PATCH", "/v1/tokens");
    expect(res.status).toBe(405);
    expect(res.body.success).toBe(false);
    expect((await call("GET", "/v1/tokens/x")).status).toBe(405);
  });

  it("answers 500 with the seed's message when the store fails, without details", async () => {
    await stopGateway();
    const inner = memoryStore();
    await startGateway({
      ...inner,
      credentials: {
        ...inner.credentials,
        create: async () => {
          throw new Error(`disk full while writing ${RT_A}`);
        },
      },
    } as Store);
    const res = await call("POST", "/v1/tokens", { access_token: AT_A, refresh_token: RT_A });
    expect(res.status).toBe(500);
    expect(res.body).toEqual({ success: false, message: POOL_MESSAGES.internal });
  });
});

describe("antigravity dialect: tokens in the proxy", () => {
  it("serves requests with an added token, refreshing it once, and never with a disabled one", async () => {
    const { key } = await gateway.keys.create({ name: "pool", unlimitedQuota: true });
    // The access token given is stale: the first request gets a 401, refreshes, succeeds.
    const id = await add({ access_token: AT_A, refresh_token: RT_A, expires_in: 3599 });
    expect(await chat(key)).toBe(200);
    expect(oauth.calls(RT_A)).toBe(1);
    const [t] = await list();
    expect(t!.access_token_suffix).toBe(accessTokenSuffix(oauth.issued[0]));
    expect(t!.access_token_suffix.length).toBeGreaterThan(3);
    expect(t!.expires_in).toBe(3599);

    // A token added without an access token is refreshed before its first use.
    const b = await add({ refresh_token: RT_B });
    expect(gateway.credentials.get(b)!.secret.expiresAt).toBe(0);

    await call("PUT", `/v1/tokens/${id}`, { enable: false });
    await call("PUT", `/v1/tokens/${b}`, { enable: false });
    const before = upstream.requests.length;
    expect(await chat(key)).toBe(503);
    expect(upstream.requests.length).toBe(before);
  });
});

afterAll(() => {
  assertNoTokens();
});

function assertNoTokens(): void {
  const all = seen.join("\n");
  for (const t of tokens)
    expect(all.includes(t), `a full token appears: ${t.slice(0, 6)}…`).toBe(false);
}

describe("secrets", () => {
  it("no response body, event payload or log line of these tests contains a full token", () => {
    expect(seen.length).toBeGreaterThan(50);
    assertNoTokens();
  });
});
