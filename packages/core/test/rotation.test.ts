/**
 * Credential rotation through the real request path: gateway.handler → proxy → several mock
 * upstreams, one per credential, in real time (short Retry-After values and cooldowns).
 */
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isAutoDisabled } from "../src/credentials/health.js";
import type { AddCredentialInput } from "../src/credentials/pool.js";
import { modelsProbe } from "../src/credentials/probe.js";
import type { GatewayEvents } from "../src/events.js";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { UpstreamClient } from "../src/net/upstream.js";

const SECRET = "rotation-secret-0123456789-0123456789-abcdef";
const MODEL = "gpt-4o-mini";
const hello = { model: MODEL, messages: [{ role: "user", content: "Hello there, mock!" }] };

/** The upstream key of a credential: unique text, so that a leak is easy to find. */
const upstreamKey = (id: string) => `upstream-key-${id}-9f8e7d6c5b4a`;

let gateway: Gateway;
let key: string;
let mocks: Map<string, MockUpstream>;
/** Every credential event, in order. */
let seen: { name: string; payload: Record<string, unknown> }[];
let probeClient: UpstreamClient | null;

beforeEach(async () => {
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
    settings: { "model-ratio": {}, "completion-ratio": {}, "cache-ratio": {} },
  });
  mocks = new Map();
  seen = [];
  probeClient = null;
  for (const name of [
    "credential.selected",
    "credential.cooldown",
    "credential.error",
    "credential.disabled",
    "credential.enabled",
  ] as const satisfies readonly (keyof GatewayEvents)[])
    gateway.events.on(name, (payload: object) =>
      seen.push({ name, payload: payload as Record<string, unknown> }),
    );
  key = (await gateway.keys.create({ name: "rotation", unlimitedQuota: true })).key;
});

afterEach(async () => {
  await gateway.close();
  await probeClient?.close();
  await Promise.all([...mocks.values()].map((m) => m.close()));
});

/** Adds credentials, each with its own mock upstream (which accepts only that credential's key). */
async function addCredentials(...creds: (Partial<AddCredentialInput> & { id: string })[]) {
  for (const c of creds) {
    const mock = await createMockUpstream({ apiKeys: [upstreamKey(c.id)] });
    mocks.set(c.id, mock);
    await gateway.credentials.add({
      provider: "openai",
      baseUrl: mock.url,
      secret: { apiKey: upstreamKey(c.id) },
      ...c,
    });
  }
}

async function chat(auth = key, headers: Record<string, string> = {}) {
  return gateway.handler(
    new Request("http://gw.test/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${auth}`, ...headers },
      body: JSON.stringify(hello),
    }),
    { remoteAddress: "127.0.0.1" },
  );
}

/** Chat requests each mock received. */
function counts(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [id, m] of mocks)
    out[id] = m.requests.filter((r) => r.path === "/v1/chat/completions").length;
  return out;
}

/** Sends `n` requests one after the other, each expected to succeed; returns the credential that served each. */
async function serve(n: number, auth = key, headers: Record<string, string> = {}) {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const before = counts();
    const res = await chat(auth, headers);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const after = counts();
    // The last credential that received the request is the one that answered.
    const hit = Object.keys(after).filter((id) => after[id]! > before[id]!);
    const selected = seen.filter((e) => e.name === "credential.selected").at(-1)!.payload
      .credentialId as string;
    expect(hit).toContain(selected);
    out.push(selected);
  }
  return out;
}

/** Ids of every pick so far (failover picks included). */
const selections = () =>
  seen.filter((e) => e.name === "credential.selected").map((e) => e.payload.credentialId);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("rotation order per strategy", () => {
  it("round-robin (the default) takes each credential in turn", async () => {
    await addCredentials({ id: "a" }, { id: "b" }, { id: "c" });
    expect(await serve(7)).toEqual(["a", "b", "c", "a", "b", "c", "a"]);
    expect(counts()).toEqual({ a: 3, b: 2, c: 2 });
  });

  it("weighted follows the weights, spread out", async () => {
    await gateway.settings.set({ "routing-strategy": "weighted" });
    await addCredentials({ id: "a", weight: 3 }, { id: "b", weight: 1 });
    expect(await serve(8)).toEqual(["a", "a", "b", "a", "a", "a", "b", "a"]);
    expect(counts()).toEqual({ a: 6, b: 2 });
  });

  it("fill-first stays on the first credential until it cools down, and returns after", async () => {
    await gateway.settings.set({ "routing-strategy": "fill-first" });
    await addCredentials({ id: "a" }, { id: "b" }, { id: "c" });
    expect(await serve(3)).toEqual(["a", "a", "a"]);
    mocks.get("a")!.fail({ status: 429, headers: { "retry-after": "1" } });
    expect(await serve(3)).toEqual(["b", "b", "b"]);
    await sleep(1_100);
    expect(await serve(2)).toEqual(["a", "a"]);
    expect(counts()).toEqual({ a: 6, b: 3, c: 0 });
  });

  it("least-recently-used starts with the credential used longest ago (stored use times)", async () => {
    await gateway.settings.set({ "routing-strategy": "least-recently-used" });
    const now = Date.now();
    const used = (lastUsedAt: number) => ({
      cooldowns: {},
      errorCount: 0,
      lastUsedAt,
      lastError: null,
      disabledReason: null,
    });
    await addCredentials(
      { id: "a", state: used(now - 1_000) },
      { id: "b", state: used(now - 3_000) },
      { id: "c", state: used(now - 2_000) },
    );
    expect(await serve(6)).toEqual(["b", "c", "a", "b", "c", "a"]);
  });

  it("uses a lower priority tier only while the higher one is unavailable", async () => {
    await addCredentials(
      { id: "backup", priority: 0 },
      { id: "a", priority: 10 },
      { id: "b", priority: 10 },
    );
    expect(await serve(4)).toEqual(["a", "b", "a", "b"]);
    mocks.get("a")!.fail({ status: 429, headers: { "retry-after": "1" } });
    mocks.get("b")!.fail({ status: 429, headers: { "retry-after": "1" } });
    // Both of the top tier answer 429 inside this one request; the backup serves it.
    expect(await serve(3)).toEqual(["backup", "backup", "backup"]);
    await sleep(1_100);
    expect(await serve(2)).toEqual(["a", "b"]);
    expect(counts().backup).toBe(3);
  });

  it("keeps a session on its credential (x-session-id) while other traffic rotates", async () => {
    await addCredentials({ id: "a" }, { id: "b" }, { id: "c" });
    const session = { "x-session-id": "conversation-42" };
    const first = (await serve(1, key, session))[0]!;
    expect(await serve(4, key, session)).toEqual([first, first, first, first]);
    expect(new Set(await serve(3))).toEqual(new Set(["a", "b", "c"]));
  });
});

describe("health through the proxy", () => {
  it("moves traffic off a credential that answered 429 and back after its Retry-After", async () => {
    await addCredentials({ id: "a" }, { id: "b" });
    mocks.get("a")!.fail({ status: 429, headers: { "retry-after": "1" } });
    const t = Date.now();
    // a answers 429: the same request fails over to b.
    expect(await serve(1)).toEqual(["b"]);
    expect(selections()).toEqual(["a", "b"]);
    const cooldown = seen.find((e) => e.name === "credential.cooldown")!.payload;
    expect(cooldown).toMatchObject({ credentialId: "a", model: MODEL, status: 429 });
    expect(cooldown.until as number).toBeGreaterThanOrEqual(t + 1_000);
    expect(cooldown.until as number).toBeLessThan(t + 2_000);
    expect(await serve(3)).toEqual(["b", "b", "b"]);
    await sleep(1_100);
    expect(await serve(4)).toEqual(["a", "b", "a", "b"]);
    expect(counts()).toEqual({ a: 3, b: 6 });
  });

  it("auto-disables a credential after N failures inside the window, not on the first", async () => {
    await gateway.settings.set({
      "credential-max-failures": 3,
      "credential-failure-window-ms": 10_000,
    });
    await addCredentials({ id: "a" }, { id: "b" });
    mocks.get("a")!.fail({ status: 500, times: 10, path: "/v1/chat/completions" });
    expect(await serve(1)).toEqual(["b"]);
    expect(gateway.credentials.get("a")!.enabled).toBe(true);
    expect(await serve(2)).toEqual(["b", "b"]);
    const a = gateway.credentials.get("a")!;
    expect(a.enabled).toBe(false);
    expect(isAutoDisabled(a)).toBe(true);
    expect(counts().a).toBe(3);
    expect(seen.filter((e) => e.name === "credential.disabled").map((e) => e.payload)).toEqual([
      { credentialId: "a", provider: "openai", reason: a.state.disabledReason, by: "pool" },
    ]);
    // Never picked again, still stored and listed.
    expect(await serve(5)).toEqual(["b", "b", "b", "b", "b"]);
    expect(counts().a).toBe(3);
    await gateway.credentials.pool.flush();
    expect((await gateway.store.credentials.get("a"))!.enabled).toBe(false);
    expect(gateway.credentials.list().map((c) => [c.id, c.enabled])).toEqual([
      ["a", false],
      ["b", true],
    ]);
  });

  it("never picks a disabled credential, and rotates it again once enabled", async () => {
    await addCredentials({ id: "a" }, { id: "b" }, { id: "c" });
    await gateway.credentials.pool.setEnabled("b", false, "key being rotated");
    const served = await serve(9);
    expect(served).not.toContain("b");
    expect(counts().b).toBe(0);
    // Every other credential failing: the request fails, still without touching b.
    mocks.get("a")!.fail({ status: 503 });
    mocks.get("c")!.fail({ status: 503 });
    expect((await chat()).status).toBe(503);
    expect(counts().b).toBe(0);
    await gateway.credentials.pool.setEnabled("b", true);
    expect(await serve(6)).toContain("b");
  });

  it("a recovery probe re-enables an auto-disabled credential once its upstream answers again", async () => {
    await gateway.settings.set({ "credential-max-failures": 2 });
    await addCredentials({ id: "a" }, { id: "b" }, { id: "manual" });
    await gateway.credentials.pool.setEnabled("manual", false);
    mocks.get("a")!.fail({ status: 502, times: 2, path: "/v1/chat/completions" });
    // Probes fail while the upstream rejects /models, then succeed.
    mocks.get("a")!.fail({ status: 503, times: 2, path: "/v1/models" });
    await serve(4);
    expect(gateway.credentials.get("a")!.enabled).toBe(false);

    probeClient = new UpstreamClient({
      connectTimeoutMs: 1_000,
      headersTimeoutMs: 1_000,
      bodyTimeoutMs: 1_000,
    });
    const enabled = new Promise<Record<string, unknown>>((resolve) =>
      gateway.events.on("credential.enabled", (p) => resolve(p)),
    );
    gateway.credentials.pool.startRecoveryProbe(modelsProbe(probeClient), { intervalMs: 50 });
    expect(await enabled).toEqual({ credentialId: "a", provider: "openai", by: "probe" });
    const probes = mocks.get("a")!.requests.filter((r) => r.path === "/v1/models");
    expect(probes.length).toBe(3);
    // The probe authenticated as the credential itself.
    expect(probes.at(-1)!.headers.authorization).toBe(`Bearer ${upstreamKey("a")}`);
    expect(await serve(4)).toContain("a");
    // An operator-disabled credential is never probed nor re-enabled.
    await sleep(150);
    expect(mocks.get("manual")!.requests.length).toBe(0);
    expect(gateway.credentials.get("manual")!.enabled).toBe(false);
  });
});

describe("credential groups", () => {
  it("a key bound to a group only ever reaches credentials of that group", async () => {
    await addCredentials(
      { id: "plain" },
      { id: "vip1", groups: ["vip"] },
      { id: "vip2", groups: ["vip"] },
    );
    const vip = (await gateway.keys.create({ name: "vip", group: "vip", unlimitedQuota: true }))
      .key;
    expect(await serve(6, vip)).toEqual(["vip1", "vip2", "vip1", "vip2", "vip1", "vip2"]);
    expect(await serve(3)).toEqual(["plain", "plain", "plain"]);
    expect(counts()).toEqual({ plain: 3, vip1: 3, vip2: 3 });

    // With every vip credential failing, the vip key fails rather than use another group's.
    mocks.get("vip1")!.fail({ status: 429, headers: { "retry-after": "60" } });
    mocks.get("vip2")!.fail({ status: 429, headers: { "retry-after": "60" } });
    expect((await chat(vip)).status).toBe(429);
    expect((await chat(vip)).status).toBe(503);
    expect(counts().plain).toBe(3);
  });
});

describe("credential events", () => {
  it("report selection, errors, cooldowns, disabling and re-enabling without any secret", async () => {
    await gateway.settings.set({ "credential-max-failures": 2 });
    await addCredentials({ id: "a" }, { id: "b" });
    // Upstream error bodies that echo the credential's key.
    const echo = { error: { message: `invalid key ${upstreamKey("a")}`, type: "x", code: null } };
    mocks.get("a")!.fail({ status: 429, body: echo, headers: { "retry-after": "0" } });
    mocks.get("a")!.fail({ status: 500, body: echo, times: 2 });
    for (let i = 0; i < 4; i++) await serve(1);
    await gateway.credentials.pool.setEnabled("a", true);
    const names = new Set(seen.map((e) => e.name));
    expect(names).toEqual(
      new Set([
        "credential.selected",
        "credential.error",
        "credential.cooldown",
        "credential.disabled",
        "credential.enabled",
      ]),
    );
    const errors = seen.filter((e) => e.name === "credential.error").map((e) => e.payload);
    expect(errors[0]).toMatchObject({ credentialId: "a", provider: "openai", status: 429 });
    const text = JSON.stringify(seen);
    for (const id of ["a", "b"]) expect(text).not.toContain(upstreamKey(id));
    expect(text).not.toContain("9f8e7d6c5b4a");
    expect(text).not.toContain(key);
    // Nor in the stored state or the listing.
    await gateway.credentials.pool.flush();
    const stored = await gateway.store.credentials.list();
    expect(JSON.stringify(stored.map((c) => c.state))).not.toContain("9f8e7d6c5b4a");
    expect(JSON.stringify(gateway.credentials.list())).not.toContain("9f8e7d6c5b4a");
  });
});
