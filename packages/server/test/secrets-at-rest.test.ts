/**
 * Upstream secrets at rest: credentials added through a gateway on SQLite and on a real
 * redis-server leave no secret in the store's raw bytes (the .db/-wal/-shm files; an RDB dump
 * and every value of every Redis key), while the gateway still proxies with them; plaintext
 * records of an earlier version are sealed on start; a record sealed with another secret loads
 * disabled and stays as stored; and `rotateSecret` moves everything to a new server secret.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  CredentialPool,
  type CredentialRecord,
  createGateway,
  type Gateway,
  GatewayEmitter,
  type Logger,
  rotateSecret,
  type Store,
  silentLogger,
  UNREADABLE_SECRET_REASON,
} from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { redisStore } from "@tokenpool/store-redis";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { createMockOAuth, type MockOAuthServer } from "@tokenpool/testing/mock-oauth";
import { type RedisServer, startRedisServer } from "@tokenpool/testing/redis-server";
import { Redis } from "ioredis";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { runCli, runCommand } from "./helpers.js";

const SECRET = "at-rest-server-secret-0123456789-abcdef-0123";
const NEW_SECRET = "at-rest-rotated-secret-9876543210-fedcba-9876";
/** Provider API keys of several shapes, one credential (and one model) each. */
const API_KEYS: Record<string, string> = {
  openai: "sk-proj-AtRestOpenAIKey1234567890abcdefXYZ",
  anthropic: "sk-ant-api03-AtRestAnthropicKey_0987654321-xyzQ",
  gemini: "AIzaSyAtRestGeminiKey0123456789abcdEFGhij",
};
const CLIENT_SECRET = "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";
const REFRESH_TOKEN = "1//at-rest-refresh-token-abcdef0123456789";
const STALE_ACCESS = "ya29.at-rest-stale-access-token-000111222";
const OAUTH_MODEL = "m-oauth";
const messages = [{ role: "user" as const, content: "hi" }];

let redis: RedisServer;
let upstream: MockUpstream;
let oauth: MockOAuthServer;
let dir: string;
const cleanups: (() => Promise<unknown>)[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
});
afterAll(async () => {
  await redis.stop();
});
beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), "tp-at-rest-"));
  oauth = await createMockOAuth({
    refreshTokens: [REFRESH_TOKEN],
    rotateRefreshTokens: true,
    clientId: "tp-at-rest",
    clientSecret: CLIENT_SECRET,
  });
  const accepted = new Set(Object.values(API_KEYS));
  upstream = await createMockUpstream({ authorize: (t) => accepted.has(t) || oauth.accepts(t) });
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await upstream.close();
  await oauth.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Every secret the credentials of {@link addCredentials} held or received. */
const secrets = () => [
  ...Object.values(API_KEYS),
  CLIENT_SECRET,
  REFRESH_TOKEN,
  STALE_ACCESS,
  ...oauth.issued,
  ...oauth.requests.flatMap((r) => (r.refreshToken ? [r.refreshToken] : [])),
];

/** Which of `list` occur in `haystack` (by name, so that a failure never prints a secret twice). */
const found = (haystack: string, list: string[]) => list.filter((s) => haystack.includes(s));

interface Running {
  gateway: Gateway;
  base: string;
  logs: string[];
}

/** A gateway on `store` served on node:http on port 0, with a logger that keeps every line. */
async function start(store: Store, secret = SECRET): Promise<Running> {
  const logs: string[] = [];
  const line = (level: string) => (message: string, fields?: Record<string, unknown>) =>
    logs.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
  const logger: Logger = {
    debug: line("debug"),
    info: line("info"),
    warn: line("warn"),
    error: line("error"),
  };
  const gateway = createGateway({
    store,
    secret,
    logger,
    usage: { flushIntervalMs: 10 },
    oauth: { scanIntervalMs: 0 },
  });
  const server: Server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  let closed: Promise<unknown> | null = null;
  const close = () => {
    closed ??= (async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await gateway.close();
    })();
    return closed;
  };
  cleanups.push(close);
  await gateway.ready;
  return {
    gateway,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    logs,
  };
}

/** The credentials of every kind, as a caller of an earlier version or of this one adds them. */
function credentialInputs() {
  const apiKeyCreds = Object.entries(API_KEYS).map(([name, apiKey]) => ({
    id: `key-${name}`,
    provider: "openai",
    kind: "api-key" as const,
    baseUrl: upstream.url,
    secret: { apiKey },
    models: [{ name: `m-${name}` }],
  }));
  const oauthCred = {
    id: "oauth-account",
    provider: "openai",
    kind: "oauth" as const,
    baseUrl: upstream.url,
    // Expired: the first request refreshes it, so the refreshed tokens are stored too.
    secret: {
      accessToken: STALE_ACCESS,
      refreshToken: REFRESH_TOKEN,
      expiresAt: Date.now() - 1_000,
      extra: { tokenUrl: oauth.url, clientId: "tp-at-rest", clientSecret: CLIENT_SECRET },
    },
    models: [{ name: OAUTH_MODEL }],
  };
  return [...apiKeyCreds, oauthCred];
}

/** Proxies one chat per credential with the `openai` client and checks who answered it. */
async function proxyWithEach(r: Running, key: string): Promise<void> {
  const client = new OpenAI({ baseURL: `${r.base}/v1`, apiKey: key, maxRetries: 0 });
  for (const [name, apiKey] of Object.entries(API_KEYS)) {
    const before = upstream.requests.length;
    const reply = await client.chat.completions.create({ model: `m-${name}`, messages });
    expect(reply.choices[0]?.message.content).toBeTruthy();
    expect(upstream.requests.slice(before).map((q) => q.headers.authorization)).toEqual([
      `Bearer ${apiKey}`,
    ]);
  }
  const reply = await client.chat.completions.create({ model: OAUTH_MODEL, messages });
  expect(reply.choices[0]?.message.content).toBeTruthy();
  expect(oauth.issued.length).toBeGreaterThan(0);
  expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${oauth.issued.at(-1)}`);
}

/** What the gateway hands out: the secrets as added (the OAuth one refreshed since). */
function expectOpened(r: Running): void {
  for (const [name, apiKey] of Object.entries(API_KEYS))
    expect(r.gateway.credentials.get(`key-${name}`)?.secret).toEqual({ apiKey });
  const o = r.gateway.credentials.get("oauth-account")!;
  expect(o.enabled).toBe(true);
  expect(o.secret.accessToken).toBe(oauth.issued.at(-1));
  expect(o.secret.refreshToken).not.toBe(REFRESH_TOKEN);
  expect(o.secret.extra?.clientSecret).toBe(CLIENT_SECRET);
}

/** The SQLite database's raw bytes: the file, its WAL and its shared-memory index. */
function sqliteBytes(filename: string): string {
  return ["", "-wal", "-shm"]
    .map((s) => filename + s)
    .filter((f) => existsSync(f))
    .map((f) => readFileSync(f).toString("latin1"))
    .join("\n");
}

/**
 * Redis's raw bytes under a prefix: an uncompressed RDB dump of the whole server (redis-cli
 * --rdb), the DUMP of every key, and every value read by its type.
 */
async function redisBytes(client: Redis, prefix: string): Promise<string> {
  await client.config("SET", "rdbcompression", "no");
  // redis-cli --rdb is a replica's full sync: no need to wait for more replicas.
  await client.config("SET", "repl-diskless-sync-delay", "0");
  const rdb = join(dir, "dump.rdb");
  const out: string[] = [];
  const { code } = await runCommand("redis-cli", ["-p", String(redis.port), "--rdb", rdb]);
  expect(code).toBe(0);
  out.push(readFileSync(rdb).toString("latin1"));
  let cursor = "0";
  do {
    const [next, keys] = await client.scan(cursor, "MATCH", `{${prefix}}:*`, "COUNT", 1000);
    cursor = next;
    for (const k of keys) {
      const dump = await client.dumpBuffer(k);
      if (dump) out.push(dump.toString("latin1"));
      const type = await client.type(k);
      if (type === "hash") out.push(JSON.stringify(await client.hgetall(k)));
      else if (type === "string") out.push((await client.get(k)) ?? "");
      else if (type === "zset") out.push(JSON.stringify(await client.zrange(k, 0, -1)));
      else if (type === "set") out.push(JSON.stringify(await client.smembers(k)));
      else if (type === "list") out.push(JSON.stringify(await client.lrange(k, 0, -1)));
      else if (type === "stream") out.push(JSON.stringify(await client.xrange(k, "-", "+")));
    }
  } while (cursor !== "0");
  return out.join("\n");
}

/** A Redis client of the test's server, closed after the test. */
function redisClient(): Redis {
  const client = new Redis(redis.url, { lazyConnect: false });
  cleanups.push(() => client.quit().catch(() => {}));
  return client;
}

const openSqlite = (filename: string) => sqliteStore({ filename });
let prefixSeq = 0;
const newPrefix = () => `tp-at-rest-${process.pid}-${prefixSeq++}`;
const openRedis = (prefix: string) => redisStore({ redis: redis.url, prefix });

/** Raw records as the adapter itself holds them (no gateway, no sealing). */
async function rawCredentials(store: Store): Promise<CredentialRecord[]> {
  return store.credentials.list();
}

describe("credential secrets are sealed at rest", () => {
  it("SQLite: the .db/-wal/-shm files hold no secret of credentials added through the gateway, and the gateway proxies with them", async () => {
    const filename = join(dir, "tokenpool.db");
    const r = await start(openSqlite(filename));
    for (const input of credentialInputs()) await r.gateway.credentials.add(input);
    const { key } = await r.gateway.keys.create({ name: "app", unlimitedQuota: true });
    await proxyWithEach(r, key);
    expectOpened(r);
    await r.gateway.credentials.pool.flush();

    // While the gateway runs (WAL not checkpointed) and after it closed.
    expect(found(sqliteBytes(filename), secrets())).toEqual([]);
    const peer = openSqlite(filename);
    cleanups.push(() => peer.close());
    for (const c of await rawCredentials(peer)) {
      expect(Object.keys(c.secret)).toEqual(["sealed"]);
      expect(c.secret.sealed).toMatch(/^v1\./);
    }
    await peer.close();
    await cleanups.shift()!();
    expect(found(sqliteBytes(filename), secrets())).toEqual([]);
    expect(secrets().length).toBeGreaterThan(7);
  });

  it("Redis: an RDB dump and every key's value hold no secret, while two instances share the sealed records", async () => {
    const prefix = newPrefix();
    const a = await start(openRedis(prefix));
    const b = await start(openRedis(prefix));
    for (const input of credentialInputs()) await a.gateway.credentials.add(input);
    const { key } = await a.gateway.keys.create({ name: "app", unlimitedQuota: true });
    // The second instance reads what the first sealed (same secret), through its change feed.
    const deadline = Date.now() + 5_000;
    while (b.gateway.credentials.list().length < 4 && Date.now() < deadline)
      await new Promise((res) => setTimeout(res, 25));
    await proxyWithEach(b, key);
    await b.gateway.credentials.pool.flush();
    expectOpened(b);
    const reloaded = Date.now() + 5_000;
    while (
      a.gateway.credentials.get("oauth-account")?.secret.accessToken !== oauth.issued.at(-1) &&
      Date.now() < reloaded
    )
      await new Promise((res) => setTimeout(res, 25));
    expectOpened(a);

    const client = redisClient();
    expect(found(await redisBytes(client, prefix), secrets())).toEqual([]);
    const raw = openRedis(prefix);
    cleanups.push(() => raw.close());
    const stored = await rawCredentials(raw);
    expect(stored).toHaveLength(4);
    for (const c of stored) expect(Object.keys(c.secret)).toEqual(["sealed"]);
  });
});

/** Writes the credentials the way an earlier version did: plaintext, straight into the adapter. */
async function writePlaintext(store: Store): Promise<void> {
  const pool = new CredentialPool(store, new GatewayEmitter(), silentLogger);
  for (const input of credentialInputs()) await pool.add(input);
}

describe("plaintext secrets of an earlier version", () => {
  it("SQLite: are sealed when a gateway starts, leave no secret in the files, and still work", async () => {
    const filename = join(dir, "old.db");
    const old = openSqlite(filename);
    await writePlaintext(old);
    await old.close();
    // The precondition: the earlier version left the secrets readable in the file.
    expect(found(sqliteBytes(filename), Object.values(API_KEYS))).toHaveLength(3);

    const r = await start(openSqlite(filename));
    const raw = openSqlite(filename);
    cleanups.push(() => raw.close());
    for (const c of await rawCredentials(raw)) expect(Object.keys(c.secret)).toEqual(["sealed"]);
    const { key } = await r.gateway.keys.create({ name: "app", unlimitedQuota: true });
    await proxyWithEach(r, key);
    expectOpened(r);
    expect(r.logs.some((l) => l.includes("sealed plaintext credential secrets"))).toBe(true);
    await r.gateway.credentials.pool.flush();
    await raw.close();
    await cleanups.shift()!();
    expect(found(sqliteBytes(filename), secrets())).toEqual([]);
  });

  it("Redis: two instances starting together seal each record, and both proxy with them", async () => {
    const prefix = newPrefix();
    const old = openRedis(prefix);
    await writePlaintext(old);
    await old.close();
    const client = redisClient();
    expect(found(await redisBytes(client, prefix), Object.values(API_KEYS))).toHaveLength(3);

    // Every write to a credential reaches this observer: each record is rewritten exactly once.
    const raw = openRedis(prefix);
    cleanups.push(() => raw.close());
    const writes: string[] = [];
    raw.watch((c) => {
      if (c.collection === "credentials" && c.id !== undefined) writes.push(c.id);
    });
    await new Promise((res) => setTimeout(res, 100));
    const [a, b] = await Promise.all([start(openRedis(prefix)), start(openRedis(prefix))]);
    const stored = await rawCredentials(raw);
    expect(stored).toHaveLength(4);
    for (const c of stored) expect(Object.keys(c.secret)).toEqual(["sealed"]);
    const settled = Date.now() + 3_000;
    while (writes.length < 4 && Date.now() < settled)
      await new Promise((res) => setTimeout(res, 25));
    await new Promise((res) => setTimeout(res, 300));
    expect(writes.sort()).toEqual(stored.map((c) => c.id).sort());
    const { key } = await a.gateway.keys.create({ name: "app", unlimitedQuota: true });
    await proxyWithEach(a, key);
    const client2 = new OpenAI({ baseURL: `${b.base}/v1`, apiKey: key, maxRetries: 0 });
    for (const name of Object.keys(API_KEYS))
      expect(
        (await client2.chat.completions.create({ model: `m-${name}`, messages })).choices,
      ).toHaveLength(1);
    await a.gateway.credentials.pool.flush();
    expect(found(await redisBytes(client, prefix), secrets())).toEqual([]);
  });
});

describe("sealing plaintext on start, during a refresh", () => {
  it("waits for the refresh's lock and seals the refreshed tokens, never the stale ones", async () => {
    const filename = join(dir, "refreshing.db");
    const raw = openSqlite(filename);
    cleanups.push(() => raw.close());
    await writePlaintext(raw);
    // Another (earlier-version) instance is refreshing the OAuth account: it holds the lock.
    const lock = (await raw.acquireLock("refresh:oauth-account", 30_000))!;
    expect(lock).toBeTruthy();
    const starting = start(openSqlite(filename));
    await new Promise((res) => setTimeout(res, 300));
    const fresh = { accessToken: "ya29.fresh-from-the-refresh-42", refreshToken: "1//fresh-rt-42" };
    await raw.credentials.update("oauth-account", {
      secret: { ...fresh, expiresAt: Date.now() + 3_600_000 },
    });
    await raw.releaseLock("refresh:oauth-account", lock);
    const r = await starting;

    expect(r.gateway.credentials.get("oauth-account")?.secret).toMatchObject(fresh);
    const stored = (await raw.credentials.get("oauth-account"))!;
    expect(Object.keys(stored.secret)).toEqual(["sealed"]);
  });
});

describe("a record sealed with another server secret", () => {
  it("loads disabled with a logged cause, is never picked, and stays as stored", async () => {
    const filename = join(dir, "other.db");
    const first = await start(openSqlite(filename));
    for (const input of credentialInputs().slice(0, 1)) await first.gateway.credentials.add(input);
    await cleanups.shift()!();
    const raw = openSqlite(filename);
    cleanups.push(() => raw.close());
    const before = (await raw.credentials.get("key-openai"))!.secret.sealed;

    const wrong = await start(openSqlite(filename), NEW_SECRET);
    const c = wrong.gateway.credentials.get("key-openai")!;
    expect(c.enabled).toBe(false);
    expect(c.secret).toEqual({});
    expect(c.state.disabledReason).toBe(UNREADABLE_SECRET_REASON);
    const errors = wrong.logs.filter((l) => l.startsWith("error "));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain("key-openai");
    expect(errors[0]).toContain("sealed with another server secret");
    expect(found(wrong.logs.join("\n"), [SECRET, NEW_SECRET, API_KEYS.openai!])).toEqual([]);
    const { key } = await wrong.gateway.keys.create({ name: "app", unlimitedQuota: true });
    const res = await fetch(`${wrong.base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "m-openai", messages }),
    });
    expect(res.status).toBe(503);
    expect(upstream.requests).toHaveLength(0);
    // An operator's change of other fields keeps the sealed secret as it is.
    await wrong.gateway.credentials.update("key-openai", { label: "relabelled" });
    expect((await raw.credentials.get("key-openai"))!.secret.sealed).toBe(before);

    // With the right secret it works again: nothing was wiped.
    const right = await start(openSqlite(filename));
    expect(right.gateway.credentials.get("key-openai")?.secret).toEqual({
      apiKey: API_KEYS.openai,
    });
  });
});

describe("rotateSecret", () => {
  it("moves credentials and downstream keys to the new secret; the old one opens nothing; a second or resumed run is harmless", async () => {
    const filename = join(dir, "rotate.db");
    const a = await start(openSqlite(filename));
    for (const input of credentialInputs()) await a.gateway.credentials.add(input);
    const k = await a.gateway.keys.create({ name: "app", unlimitedQuota: true });
    await a.gateway.users.create({ username: "alice" });
    await proxyWithEach(a, k.key);
    await cleanups.shift()!();
    const raw = openSqlite(filename);
    cleanups.push(() => raw.close());
    // A key stored without its cipher (only a hash): it cannot be re-hashed.
    const hashOnly = await raw.keys.create({
      ...(await raw.keys.get(k.record.id))!,
      keyHash: "imported-hash",
      keyCipher: null,
      name: "imported",
    });
    const oldSealed = (await raw.credentials.get("key-openai"))!.secret;

    const report = await rotateSecret({ store: raw, from: SECRET, to: NEW_SECRET });
    expect(report.credentials).toEqual({
      resealed: 4,
      sealed: 0,
      current: 0,
      plaintext: 0,
      unreadable: [],
    });
    expect(report.keys).toEqual({
      rekeyed: 1,
      current: 0,
      withoutCipher: [hashOnly.id],
      unreadable: [],
    });
    expect(report.users.withAccessToken).toBe(1);

    const b = await start(openSqlite(filename), NEW_SECRET);
    await proxyWithEach(b, k.key);
    expect(await b.gateway.keys.reveal(k.record.id)).toBe(k.key);
    expectOpened(b);

    // The old secret opens nothing any more.
    const old = await start(openSqlite(filename), SECRET);
    for (const c of old.gateway.credentials.list()) {
      expect(c.enabled).toBe(false);
      expect(c.state.disabledReason).toBe(UNREADABLE_SECRET_REASON);
    }
    expect(await old.gateway.keys.reveal(k.record.id)).toBeNull();
    const denied = await fetch(`${old.base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${k.key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "m-openai", messages }),
    });
    expect(denied.status).toBe(401);

    // Again: nothing to do. After a crash half-way (one record still under the old secret): that one.
    const again = await rotateSecret({ store: raw, from: SECRET, to: NEW_SECRET });
    expect(again.credentials).toMatchObject({ resealed: 0, current: 4, unreadable: [] });
    expect(again.keys).toMatchObject({ rekeyed: 0, current: 1, unreadable: [] });
    await raw.credentials.update("key-openai", { secret: oldSealed });
    const resumed = await rotateSecret({ store: raw, from: SECRET, to: NEW_SECRET });
    expect(resumed.credentials).toMatchObject({ resealed: 1, current: 3, unreadable: [] });
    const c = await start(openSqlite(filename), NEW_SECRET);
    await proxyWithEach(c, k.key);
    expectOpened(c);
  });
});

describe("tokenpool rotate-secret", () => {
  it("rotates a SQLite store's secret.key end to end; serve then proxies with the existing key; running it again is harmless", async () => {
    const filename = join(dir, "tokenpool.db");
    writeFileSync(join(dir, "secret.key"), `${SECRET}\n`, { mode: 0o600 });
    const a = await start(openSqlite(filename));
    await a.gateway.credentials.add(credentialInputs()[0]!);
    const k = await a.gateway.keys.create({ name: "app", unlimitedQuota: true });
    await cleanups.shift()!();

    const env = { TOKENPOOL_SECRET: "", TOKENPOOL_NEW_SECRET: "" };
    const run = await runCli(["rotate-secret", "--store", `sqlite:${filename}`], env);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.stdout).toContain("Credentials: 1 re-encrypted");
    expect(run.stdout).toContain("Downstream keys: 1 re-encrypted and re-hashed");
    const rotated = readFileSync(join(dir, "secret.key"), "utf8").trim();
    expect(rotated).toMatch(/^[0-9a-f]{64}$/);
    expect(existsSync(join(dir, "secret.key.new"))).toBe(false);
    expect(found(run.stdout + run.stderr, [SECRET, rotated, API_KEYS.openai!, k.key])).toEqual([]);

    const { startCli } = await import("./helpers.js");
    const served = await startCli(["serve", "--store", `sqlite:${filename}`, "--port", "0"], env);
    cleanups.push(() => served.stop());
    const client = new OpenAI({ baseURL: `${served.url}/v1`, apiKey: k.key, maxRetries: 0 });
    const reply = await client.chat.completions.create({ model: "m-openai", messages });
    expect(reply.choices[0]?.message.content).toBeTruthy();
    expect(upstream.requests.at(-1)?.headers.authorization).toBe(`Bearer ${API_KEYS.openai}`);
    await served.stop();

    const second = await runCli(["rotate-secret", "--store", `sqlite:${filename}`], env);
    expect(second.code).toBe(0);
    const b = await start(
      openSqlite(filename),
      readFileSync(join(dir, "secret.key"), "utf8").trim(),
    );
    expect(b.gateway.credentials.get("key-openai")?.secret).toEqual({ apiKey: API_KEYS.openai });
    expect(await b.gateway.keys.reveal(k.record.id)).toBe(k.key);
  });
});

describe("store-file", () => {
  it("keeps the seeds' plaintext formats: the gateway hands it plain secrets, files mode 0600", async () => {
    const { fileStore } = await import("@tokenpool/store-file");
    const files = join(dir, "files");
    const r = await start(fileStore({ dir: files }));
    await r.gateway.credentials.add({
      id: "acc-1",
      provider: "antigravity",
      kind: "oauth",
      baseUrl: upstream.url,
      secret: {
        accessToken: STALE_ACCESS,
        refreshToken: REFRESH_TOKEN,
        expiresAt: Date.now() + 3_600_000,
      },
    });
    const accounts = join(files, "data", "accounts.json");
    const text = readFileSync(accounts, "utf8");
    expect(text).toContain(REFRESH_TOKEN);
    expect(text).not.toContain("sealed");
    expect(statSync(accounts).mode & 0o777).toBe(0o600);
    expect(r.gateway.credentials.get("acc-1")?.secret.refreshToken).toBe(REFRESH_TOKEN);
  });
});
