/**
 * The management APIs a web console needs (tokenpool's): the whole settings table
 * (`/v0/management/settings`), every credential with its live state (`/v0/management/credentials`),
 * usage by hour (`/v0/management/usage/summary?by=hour`) and a key holder's own usage summary
 * (`/api/usage/token/summary`). Each route through `gateway.handler(new Request(...))`, on the
 * memory store, with a mock upstream and a mock OAuth token endpoint; no answer may hold a secret.
 */
import {
  createMockOAuth,
  createMockUpstream,
  type MockOAuthServer,
  type MockUpstream,
} from "@tokenpool/testing";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import {
  type CredentialInfo,
  createGateway,
  type Gateway,
  type ManagementSettingEntry,
  maskSecret,
  memoryStore,
  RUNTIME_SETTINGS,
} from "../src/index.js";

const MGMT = "dashboard-management-key-0123456789";
const UPSTREAM_KEY = "sk-upstream-dash-aaaaaaaaaaaaaaaaaaaa";
const NEW_KEY = "sk-upstream-dash-new-bbbbbbbbbbbbbbbbbbbb";
const CLIENT_SECRET = "GOCSPX-dash-client-secret-0123456789";
const REFRESH_TOKEN = "1//0dash-refresh-token-CCCCCCCCCCCCCCCCCCCC";
const ACCESS_TOKEN = "ya29.dash-access-token-DDDDDDDDDDDDDDDDDDDD";
const PROXY_PASSWORD = "proxy-pass-s3cr3t-EEEEEEEE";

/** Every secret that must appear in no answer of this file (checked after each test). */
const secrets = new Set([
  MGMT,
  UPSTREAM_KEY,
  NEW_KEY,
  CLIENT_SECRET,
  REFRESH_TOKEN,
  ACCESS_TOKEN,
  PROXY_PASSWORD,
]);
/** Every answer body of the current test. */
let answers: string[] = [];

let mock: MockUpstream;
let oauth: MockOAuthServer;
let gateway: Gateway;

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY, NEW_KEY] });
});
afterAll(async () => {
  await mock.close();
});

beforeEach(async () => {
  answers = [];
  oauth = await createMockOAuth({
    refreshTokens: [REFRESH_TOKEN],
    clientId: "tokenpool-dash",
    clientSecret: CLIENT_SECRET,
  });
  gateway = createGateway({
    store: memoryStore(),
    secret: "dashboard-apis-secret-0123456789-abcdefghij",
    logger: "silent",
    usage: { flushIntervalMs: 10 },
    oauth: {
      providers: {
        openai: { tokenUrl: oauth.url, clientId: "tokenpool-dash", clientSecret: CLIENT_SECRET },
      },
      scanIntervalMs: 0,
    },
  });
  await gateway.ready;
  await gateway.management.setKey(MGMT);
});

afterEach(async () => {
  await gateway.close();
  for (const t of oauth.issued) secrets.add(t);
  await oauth.close();
  for (const text of answers)
    for (const s of secrets) expect(text, `an answer holds a secret: ${text}`).not.toContain(s);
});

interface Answer {
  status: number;
  body: any;
}

async function send(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = { authorization: `Bearer ${MGMT}` },
): Promise<Answer> {
  const res = await gateway.handler(
    new Request(`http://gw.test${path}`, {
      method,
      headers: { "content-type": "application/json", ...headers },
      ...(body === undefined
        ? {}
        : { body: typeof body === "string" ? body : JSON.stringify(body) }),
    }),
    // A local client: the management API refuses remote ones unless `allowRemote` is on.
    { remoteAddress: "127.0.0.1" },
  );
  const text = await res.text();
  answers.push(text);
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, body: parsed };
}

const mgmt = (method: string, path: string, body?: unknown) =>
  send(method, `/v0/management${path}`, body);

async function addApiKey(more: Record<string, unknown> = {}) {
  return gateway.credentials.add({
    provider: "openai",
    kind: "api-key",
    baseUrl: mock.url,
    label: "mock",
    secret: { apiKey: UPSTREAM_KEY },
    models: [{ name: "gpt-4o-mini", alias: "mini" }, { name: "gpt-4o" }],
    groups: ["vip"],
    priority: 2,
    weight: 3,
    limits: { rpm: 10, spendPerDay: 5000 },
    ...more,
  });
}

async function addOAuth() {
  return gateway.credentials.add({
    provider: "openai",
    kind: "oauth",
    baseUrl: mock.url,
    label: "ann@example.com",
    secret: {
      accessToken: ACCESS_TOKEN,
      refreshToken: REFRESH_TOKEN,
      expiresAt: Date.now() + 3_600_000,
    },
  });
}

describe("GET/PUT /v0/management/settings", () => {
  it("lists every runtime setting, sorted, with its type, default and current value", async () => {
    await gateway.settings.set({ "request-retry": 7 });
    const r = await mgmt("GET", "/settings");
    expect(r.status).toBe(200);
    const rows: ManagementSettingEntry[] = r.body.settings;
    const names = rows.map((s) => s.name);
    expect(names).toEqual(Object.keys(RUNTIME_SETTINGS).sort());
    const retry = rows.find((s) => s.name === "request-retry")!;
    expect(retry).toMatchObject({
      type: "integer",
      default: 3,
      value: 7,
      masked: false,
      writable: true,
    });
    expect(retry.description).toMatch(/credentials/);
    const qe = rows.find((s) => s.name === "quota-exceeded")!;
    expect(qe.fields).toEqual({ "switch-project": "boolean", "switch-preview-model": "boolean" });
    expect(rows.find((s) => s.name === "remote-management")).toMatchObject({
      writable: false,
      masked: true,
    });
  });

  it("writes a valid value, answers the new entry, and the setting applies", async () => {
    const r = await mgmt("PUT", "/settings/request-retry", { value: 5 });
    expect(r).toEqual({
      status: 200,
      body: { status: "ok", setting: expect.objectContaining({ name: "request-retry", value: 5 }) },
    });
    expect(gateway.settings.get("request-retry")).toBe(5);
    const s = await mgmt("PUT", "/settings/routing-strategy", { value: "fill-first" });
    expect(s.status).toBe(200);
    expect(gateway.credentials.pool.strategy).toBe("fill-first");
  });

  it("refuses a wrong type or value with a 400 naming the setting, and writes nothing", async () => {
    for (const [name, value] of [
      ["request-retry", "5"],
      ["request-retry", 2.5],
      ["request-retry", 101],
      ["debug", 1],
      ["proxy-url", "ftp://x"],
      ["quota-refill-time-zone", "Mars/Olympus"],
      ["group-limits", { gold: { rpm_limit: -1 } }],
      ["quota-exceeded", { "switch-project": "no" }],
      ["quota-exceeded", { unknown: true }],
      ["model-ratio", [1, 2]],
    ] as const) {
      const before = gateway.settings.raw(name);
      const r = await mgmt("PUT", `/settings/${name}`, { value });
      expect(r.status, `${name} = ${JSON.stringify(value)}`).toBe(400);
      expect(r.body.error).toContain(name);
      expect(gateway.settings.raw(name)).toEqual(before);
    }
    expect((await mgmt("PUT", "/settings/request-retry", { value: "5" })).body.error).toBe(
      "invalid value for the setting request-retry: expected an integer within its allowed values",
    );
  });

  it("answers 400 for a malformed or shapeless body and 404 for an unknown setting", async () => {
    expect(await mgmt("PUT", "/settings/debug", "{not json")).toEqual({
      status: 400,
      body: { error: "invalid body" },
    });
    expect((await mgmt("PUT", "/settings/debug", [true])).status).toBe(400);
    expect((await mgmt("PUT", "/settings/debug", { val: true })).status).toBe(400);
    expect(await mgmt("PUT", "/settings/no-such-setting", { value: 1 })).toEqual({
      status: 404,
      body: { error: "unknown setting: no-such-setting" },
    });
    expect(gateway.settings.raw("debug")).toBe(false);
  });

  it("never writes the management key's setting", async () => {
    const r = await mgmt("PUT", "/settings/remote-management", { value: { "secret-key": "x" } });
    expect(r.status).toBe(400);
    expect(r.body.error).toMatch(/gateway\.management/);
    expect(gateway.management.hasKey()).toBe(true);
    expect((await mgmt("GET", "/settings")).status).toBe(200);
  });

  it("merges an object setting declared by fields, keeping the fields not sent", async () => {
    await mgmt("PUT", "/settings/quota-exceeded", { value: { "switch-project": false } });
    expect(gateway.settings.raw("quota-exceeded")).toEqual({
      "switch-project": false,
      "switch-preview-model": true,
    });
  });

  it("masks a proxy password, and a PUT of the masked form keeps the stored URL", async () => {
    const url = `http://user:${PROXY_PASSWORD}@127.0.0.1:3128`;
    await gateway.settings.set({ "proxy-url": url });
    const rows: ManagementSettingEntry[] = (await mgmt("GET", "/settings")).body.settings;
    const proxy = rows.find((s) => s.name === "proxy-url")!;
    expect(proxy).toMatchObject({ masked: true, value: "http://user:****@127.0.0.1:3128" });
    expect((await mgmt("PUT", "/settings/proxy-url", { value: proxy.value })).status).toBe(200);
    expect(gateway.settings.raw("proxy-url")).toBe(url);
    await mgmt("PUT", "/settings/proxy-url", { value: "socks5://127.0.0.1:1080" });
    expect(gateway.settings.raw("proxy-url")).toBe("socks5://127.0.0.1:1080");
  });

  it("DELETE restores the default", async () => {
    await mgmt("PUT", "/settings/request-retry", { value: 9 });
    const r = await mgmt("DELETE", "/settings/request-retry");
    expect(r.body.setting).toMatchObject({ value: 3, default: 3 });
    expect(gateway.settings.get("request-retry")).toBe(3);
  });

  it("is behind the management key", async () => {
    expect((await send("GET", "/v0/management/settings", undefined, {})).status).toBe(401);
    const wrong = { authorization: "Bearer wrong-key-0123456789abcdef" };
    expect(
      (await send("PUT", "/v0/management/settings/debug", { value: true }, wrong)).status,
    ).toBe(401);
    expect(gateway.settings.raw("debug")).toBe(false);
  });
});

describe("/v0/management/credentials", () => {
  it("lists API-key and OAuth credentials with their state and no secret", async () => {
    const key = await addApiKey();
    const acc = await addOAuth();
    const r = await mgmt("GET", "/credentials");
    expect(r.status).toBe(200);
    const list: CredentialInfo[] = r.body.credentials;
    expect(list.map((c) => c.id)).toEqual([key.id, acc.id]);
    expect(list[0]).toEqual({
      id: key.id,
      provider: "openai",
      kind: "api-key",
      label: "mock",
      base_url: mock.url,
      enabled: true,
      status: "active",
      disabled_reason: null,
      cooling_until: null,
      cooldowns: {},
      error_count: 0,
      last_error: null,
      priority: 2,
      weight: 3,
      groups: ["vip"],
      models: ["gpt-4o-mini", "gpt-4o"],
      masked_key: maskSecret(UPSTREAM_KEY),
      expires_at: null,
      email: null,
      limits: {
        rpm_limit: 10,
        tpm_limit: 0,
        max_concurrency: 0,
        spend_per_day: 5000,
        spend_per_month: 0,
      },
      updated_at: expect.any(Number),
      created_at: expect.any(Number),
    });
    expect(list[1]).toMatchObject({
      kind: "oauth",
      email: "ann@example.com",
      expires_at: acc.secret.expiresAt,
      masked_key: expect.stringContaining("****"),
    });
    const only = await mgmt("GET", "/credentials?provider=anthropic");
    expect(only.body.credentials).toEqual([]);
  });

  it("shows a cooling credential as cooling until its latest cooldown, error text masked", async () => {
    const c = await addApiKey();
    const now = Date.now();
    gateway.credentials.pool.reportFailure(
      c.id,
      "gpt-4o",
      429,
      `rate limited for key ${UPSTREAM_KEY}`,
      { retryAfterMs: 60_000, now },
    );
    gateway.credentials.pool.reportFailure(c.id, "gpt-4o-mini", 429, "slow down", {
      retryAfterMs: 120_000,
      now,
    });
    const info: CredentialInfo = (await mgmt("GET", "/credentials")).body.credentials[0];
    expect(info.status).toBe("cooling");
    expect(info.cooling_until).toBe(now + 120_000);
    expect(info.cooldowns).toEqual({ "gpt-4o": now + 60_000, "gpt-4o-mini": now + 120_000 });
    expect(info.error_count).toBeGreaterThan(0);
    expect(info.last_error).not.toBeNull();
  });

  it("creates an API-key credential with defaults per provider (201), and it serves requests", async () => {
    const r = await mgmt("POST", "/credentials", {
      provider: "anthropic",
      api_key: UPSTREAM_KEY,
      label: "claude",
      models: ["claude-sonnet-4"],
      groups: ["vip"],
      rpm_limit: 3,
    });
    expect(r.status).toBe(201);
    expect(r.body.credential).toMatchObject({
      provider: "anthropic",
      kind: "api-key",
      label: "claude",
      base_url: "https://api.anthropic.com",
      enabled: true,
      status: "active",
      priority: 0,
      weight: 1,
      models: ["claude-sonnet-4"],
      groups: ["vip"],
      limits: { rpm_limit: 3, tpm_limit: 0 },
    });
    const stored = gateway.credentials.get(r.body.credential.id)!;
    expect(stored.secret.apiKey).toBe(UPSTREAM_KEY);
    expect(stored.limits).toEqual({ rpm: 3 });

    const own = await mgmt("POST", "/credentials", {
      provider: "openai",
      api_key: UPSTREAM_KEY,
      base_url: `${mock.url}/`,
    });
    expect(own.body.credential.base_url).toBe(mock.url);
    const { key } = await gateway.keys.create({ name: "k", unlimitedQuota: true });
    const chat = await send(
      "POST",
      "/v1/chat/completions",
      { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] },
      { authorization: `Bearer ${key}` },
    );
    expect(chat.status).toBe(200);
  });

  it("refuses bad creations with a 400 and writes nothing", async () => {
    const bad: unknown[] = [
      "{oops",
      [],
      {},
      { provider: "openai" },
      { provider: "openai", api_key: "" },
      { provider: "openai", api_key: 5 },
      { provider: "nope", api_key: UPSTREAM_KEY },
      { provider: "antigravity", api_key: UPSTREAM_KEY },
      { provider: "qwen", api_key: UPSTREAM_KEY },
      { provider: "openai", api_key: UPSTREAM_KEY, base_url: "ftp://x" },
      { provider: "openai", api_key: UPSTREAM_KEY, priority: "1" },
      { provider: "openai", api_key: UPSTREAM_KEY, weight: 0 },
      { provider: "openai", api_key: UPSTREAM_KEY, models: "gpt-4o" },
      { provider: "openai", api_key: UPSTREAM_KEY, models: [""] },
      { provider: "openai", api_key: UPSTREAM_KEY, groups: [1] },
      { provider: "openai", api_key: UPSTREAM_KEY, enabled: "yes" },
      { provider: "openai", api_key: UPSTREAM_KEY, rpm_limit: -1 },
      { provider: "openai", api_key: UPSTREAM_KEY, spend_per_day: 1.5 },
      { provider: "openai", api_key: UPSTREAM_KEY, secret: { apiKey: "x" } },
    ];
    for (const body of bad) {
      const r = await mgmt("POST", "/credentials", body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(typeof r.body.error).toBe("string");
    }
    expect(gateway.credentials.list()).toEqual([]);
    expect(
      (await mgmt("POST", "/credentials", { provider: "x", api_key: "y" })).body.error,
    ).toMatch(/unknown provider x \(one of: openai, anthropic, gemini, codex, qwen/);
  });

  it("PATCH changes the fields sent and keeps every other one", async () => {
    const c = await addApiKey({ headers: { "x-org": "o1" }, projectIds: ["p1"] });
    const r = await mgmt("PATCH", `/credentials/${c.id}`, { label: "renamed", tpm_limit: 900 });
    expect(r.status).toBe(200);
    expect(r.body.credential).toMatchObject({
      label: "renamed",
      priority: 2,
      weight: 3,
      groups: ["vip"],
      models: ["gpt-4o-mini", "gpt-4o"],
      limits: { rpm_limit: 10, tpm_limit: 900, spend_per_day: 5000 },
    });
    const stored = gateway.credentials.get(c.id)!;
    expect(stored.secret.apiKey).toBe(UPSTREAM_KEY);
    expect(stored.headers).toEqual({ "x-org": "o1" });
    expect(stored.projectIds).toEqual(["p1"]);
    expect(stored.baseUrl).toBe(mock.url);
    // A model that stays keeps its alias.
    await mgmt("PATCH", `/credentials/${c.id}`, { models: ["gpt-4o-mini", "o3"], rpm_limit: 0 });
    const after = gateway.credentials.get(c.id)!;
    expect(after.models).toEqual([{ name: "gpt-4o-mini", alias: "mini" }, { name: "o3" }]);
    expect(after.limits).toEqual({ tpm: 900, spendPerDay: 5000 });
    expect(after.label).toBe("renamed");
  });

  it("PATCH replaces the API key (masked in the answer) and its health record starts over", async () => {
    const c = await addApiKey();
    gateway.credentials.pool.reportFailure(c.id, "gpt-4o", 500, "boom");
    const r = await mgmt("PATCH", `/credentials/${c.id}`, { api_key: NEW_KEY });
    expect(r.body.credential).toMatchObject({ status: "active", error_count: 0 });
    expect(r.body.credential.masked_key).toMatch(/\*\*\*\*bbbb$/);
    expect(gateway.credentials.get(c.id)!.secret.apiKey).toBe(NEW_KEY);
  });

  it("re-enabling clears an automatic disable reason", async () => {
    const c = await addApiKey();
    await gateway.credentials.update(c.id, {
      enabled: false,
      state: {
        cooldowns: {},
        errorCount: 5,
        lastUsedAt: 0,
        lastError: { at: Date.now(), status: 500, message: "upstream down" },
        disabledReason: "auto-disabled: 5 failures within 60s",
      },
    });
    const listed: CredentialInfo = (await mgmt("GET", "/credentials")).body.credentials[0];
    expect(listed).toMatchObject({
      status: "disabled",
      enabled: false,
      disabled_reason: "auto-disabled: 5 failures within 60s",
      last_error: "upstream down",
    });
    const r = await mgmt("PATCH", `/credentials/${c.id}`, { enabled: true });
    expect(r.body.credential).toMatchObject({
      enabled: true,
      status: "active",
      disabled_reason: null,
      error_count: 0,
    });
    const off = await mgmt("PATCH", `/credentials/${c.id}`, { enabled: false });
    expect(off.body.credential).toMatchObject({ status: "disabled", disabled_reason: null });
  });

  it("PATCH: 404 for an unknown id, 400 for bad types or an empty body, nothing written", async () => {
    const c = await addApiKey();
    const acc = await addOAuth();
    expect(await mgmt("PATCH", "/credentials/nope", { label: "x" })).toEqual({
      status: 404,
      body: { error: "credential not found" },
    });
    const before = gateway.credentials.get(c.id);
    for (const body of [
      "not json",
      {},
      { label: 5 },
      { enabled: "true" },
      { weight: -2 },
      { base_url: "javascript:alert(1)" },
      { models: [null] },
      { max_concurrency: "2" },
      { provider: "anthropic" },
      { label: "ok", priority: 1.5 },
    ]) {
      const r = await mgmt("PATCH", `/credentials/${c.id}`, body);
      expect(r.status, JSON.stringify(body)).toBe(400);
    }
    expect(gateway.credentials.get(c.id)).toEqual(before);
    const oauthKey = await mgmt("PATCH", `/credentials/${acc.id}`, { api_key: NEW_KEY });
    expect(oauthKey.status).toBe(400);
    expect(gateway.credentials.get(acc.id)!.secret.apiKey).toBeUndefined();
  });

  it("DELETE removes a credential; an unknown id is a 404", async () => {
    const c = await addApiKey();
    expect(await mgmt("DELETE", `/credentials/${c.id}`)).toEqual({
      status: 200,
      body: { status: "ok" },
    });
    expect(gateway.credentials.get(c.id)).toBeNull();
    expect((await mgmt("DELETE", `/credentials/${c.id}`)).status).toBe(404);
  });

  it("refreshes an OAuth account now; an API key is a 400", async () => {
    const acc = await addOAuth();
    const key = await addApiKey();
    const r = await mgmt("POST", `/credentials/${acc.id}/refresh`);
    expect(r.status).toBe(200);
    expect(oauth.calls(REFRESH_TOKEN)).toBe(1);
    const stored = gateway.credentials.get(acc.id)!;
    expect(stored.secret.accessToken).toBe(oauth.issued[0]);
    expect(r.body.credential.expires_at).toBe(stored.secret.expiresAt);
    expect(r.body.credential.masked_key).not.toBe(oauth.issued[0]);
    const k = await mgmt("POST", `/credentials/${key.id}/refresh`);
    expect(k.status).toBe(400);
    expect((await mgmt("POST", "/credentials/nope/refresh")).status).toBe(404);
  });

  it("a failed refresh is a 502 whose message holds no secret", async () => {
    const acc = await addOAuth();
    oauth.fail({
      status: 400,
      body: { error: "invalid_grant", error_description: `bad token ${REFRESH_TOKEN}` },
    });
    const r = await mgmt("POST", `/credentials/${acc.id}/refresh`);
    expect(r.status).toBe(502);
    expect(r.body.error).toMatch(/^refresh failed: /);
    expect(gateway.credentials.get(acc.id)!.secret.accessToken).toBe(ACCESS_TOKEN);
  });

  it("is behind the management key", async () => {
    await addApiKey();
    expect((await send("GET", "/v0/management/credentials", undefined, {})).status).toBe(401);
    const r = await send(
      "POST",
      "/v0/management/credentials",
      { provider: "openai", api_key: NEW_KEY },
      {},
    );
    expect(r.status).toBe(401);
    expect(gateway.credentials.list()).toHaveLength(1);
  });

  it("is a 404 like every management route while no management key is set", async () => {
    const gw = createGateway({ store: memoryStore(), secret: "x".repeat(40), logger: "silent" });
    await gw.ready;
    const res = await gw.handler(new Request("http://gw.test/v0/management/credentials"));
    expect(res.status).toBe(404);
    await gw.close();
  });
});

describe("usage summaries", () => {
  async function chat(key: string, model = "gpt-4o-mini") {
    const r = await send(
      "POST",
      "/v1/chat/completions",
      { model, messages: [{ role: "user", content: "hi" }] },
      { authorization: `Bearer ${key}` },
    );
    expect(r.status).toBe(200);
  }

  it("groups by UTC hour on the management route and gateway.usage.summary", async () => {
    await addApiKey({ groups: [], models: [], limits: {} });
    const { key } = await gateway.keys.create({ name: "k", unlimitedQuota: true });
    await chat(key);
    await chat(key, "gpt-4o");
    const r = await mgmt("GET", "/usage/summary?by=hour");
    expect(r.status).toBe(200);
    const hour = new Date().toISOString().slice(0, 13);
    expect(r.body).toMatchObject({ by: "hour", rows: [{ id: hour, requests: 2, successes: 2 }] });
    expect(await gateway.usage.summary({ by: "hour" })).toEqual([
      expect.objectContaining({ id: hour, requests: 2 }),
    ]);
    expect((await mgmt("GET", "/usage/summary?by=minute")).status).toBe(400);
  });

  it("a key reads its own summary by day, model and hour, and sees no other key", async () => {
    await addApiKey({ groups: [], models: [], limits: {} });
    const a = await gateway.keys.create({ name: "a", unlimitedQuota: true });
    const b = await gateway.keys.create({ name: "b", unlimitedQuota: true });
    secrets.add(a.key);
    secrets.add(b.key);
    await chat(a.key);
    await chat(a.key, "gpt-4o");
    await chat(b.key);
    const as = { authorization: `Bearer ${a.key}` };
    const day = await send("GET", "/api/usage/token/summary", undefined, as);
    expect(day.status).toBe(200);
    expect(day.body).toEqual({
      success: true,
      message: "",
      data: [
        {
          id: new Date().toISOString().slice(0, 10),
          requests: 2,
          successes: 2,
          failures: 0,
          quota: expect.any(Number),
          cost_usd: expect.any(Number),
          input_tokens: expect.any(Number),
          output_tokens: expect.any(Number),
          total_tokens: expect.any(Number),
        },
      ],
    });
    const models = await send("GET", "/api/usage/token/summary?by=model", undefined, as);
    expect(models.body.data.map((r: { id: string }) => r.id).sort()).toEqual([
      "gpt-4o",
      "gpt-4o-mini",
    ]);
    const now = Math.floor(Date.now() / 1000);
    const hour = await send(
      "GET",
      `/api/usage/token/summary?by=hour&from=${now - 7200}&to=${now + 60}`,
      undefined,
      as,
    );
    expect(hour.body.data).toEqual([
      expect.objectContaining({ id: new Date().toISOString().slice(0, 13), requests: 2 }),
    ]);
    const old = await send(
      "GET",
      `/api/usage/token/summary?from=${now - 90 * 86400}&to=${now - 80 * 86400}`,
      undefined,
      as,
    );
    expect(old.body.data).toEqual([]);
    const bs = await send("GET", "/api/usage/token/summary", undefined, {
      authorization: `Bearer ${b.key}`,
    });
    expect(bs.body.data).toEqual([expect.objectContaining({ requests: 1 })]);
  });

  it("reads the key from the Authorization header only, and errors in the new-api format", async () => {
    const a = await gateway.keys.create({ name: "a", unlimitedQuota: true });
    secrets.add(a.key);
    const byQuery = await send("GET", `/api/usage/token/summary?key=${a.key}`, undefined, {});
    expect(byQuery.status).toBe(401);
    expect(byQuery.body).toEqual({
      success: false,
      message: expect.stringMatching(/Authorization/),
    });
    const byHeader = await send("GET", "/api/usage/token/summary", undefined, {
      "x-api-key": a.key,
    });
    expect(byHeader.status).toBe(401);
    const wrong = await send("GET", "/api/usage/token/summary", undefined, {
      authorization: "Bearer sk-not-a-key-0123456789abcdefghij",
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.success).toBe(false);
    const as = { authorization: `Bearer ${a.key}` };
    for (const q of ["by=key", "by=user", "from=yesterday", "to=-5", "from=200&to=100"]) {
      const r = await send("GET", `/api/usage/token/summary?${q}`, undefined, as);
      expect(r.status, q).toBe(400);
      expect(r.body).toEqual({ success: false, message: expect.any(String) });
    }
  });
});
