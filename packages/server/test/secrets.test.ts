/**
 * Our credentials' secrets never leave the gateway. Upstreams that quote the credential they were
 * given (in an error body, a streamed error event, a header) are driven on every client format,
 * JSON and streamed, after failover and without, with the request log on; then no secret of any
 * credential (six shapes: a Mistral-style 32-character key, Groq's `gsk_`, Google's `AIza`,
 * Anthropic's `sk-ant-`, plain hex, an OAuth account's opaque tokens and client secret) is in any
 * answer, log line, event, or in the raw bytes of the SQLite file and of Redis.
 */
import { randomBytes } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGateway, type Gateway, type Logger, type Store } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { redisStore } from "@tokenpool/store-redis";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { type RedisServer, startRedisServer } from "@tokenpool/testing/redis-server";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const SECRET = "secrets-test-server-secret-0123456789-abcdef";
const MODEL = "echo-model";

function alnum(n: number): string {
  const abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return [...randomBytes(n)].map((b) => abc[b % abc.length]).join("");
}

/** One secret of each shape, fresh per run. */
const S = {
  mistral: alnum(32),
  groq: `gsk_${alnum(52)}`,
  google: `AIza${alnum(35)}`,
  anthropic: `sk-ant-api03-${alnum(80)}-${alnum(6)}AA`,
  hex: randomBytes(32).toString("hex"),
  access: `opaque.${alnum(60)}`,
  refresh: `rt_${alnum(48)}`,
  clientSecret: `cs-${alnum(30)}`,
};
const ALL = Object.values(S);

/** Where a secret must not be: the whole value and any 16-character run from its middle. */
function leaks(text: string): string[] {
  const found: string[] = [];
  for (const s of ALL) {
    const middle = s.slice(Math.floor(s.length / 2) - 8, Math.floor(s.length / 2) + 8);
    if (text.includes(s) || text.includes(middle)) found.push(s);
  }
  return found;
}

interface Rig {
  gateway: Gateway;
  url: string;
  key: string;
  logs: string[];
  events: string[];
  answers: string[];
  close(): Promise<void>;
}

const EVENT_NAMES = [
  "usage.recorded",
  "key.exhausted",
  "credential.selected",
  "credential.cooldown",
  "credential.error",
  "credential.disabled",
  "credential.enabled",
  "credential.refreshed",
  "credential.refresh_failed",
  "settings.changed",
  "error",
] as const;

async function rig(store: Store, upstream: MockUpstream): Promise<Rig> {
  const logs: string[] = [];
  const line =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      logs.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
    };
  const logger: Logger = {
    debug: line("debug"),
    info: line("info"),
    warn: line("warn"),
    error: line("error"),
  };
  const gateway = createGateway({ store, secret: SECRET, logger });
  await gateway.ready;
  const events: string[] = [];
  for (const name of EVENT_NAMES) {
    (gateway.events.on as (n: string, f: (...a: unknown[]) => void) => void)(name, (...args) =>
      events.push(`${name} ${JSON.stringify(args)}`),
    );
  }
  await gateway.settings.set({
    "request-log": true,
    "request-retry": 10,
    // Every attempt fails in these tests: keep the credentials enabled throughout.
    "credential-max-failures": 0,
  });
  const base = upstream.url;
  const add = (provider: string, secret: Record<string, unknown>, kind?: "oauth") =>
    gateway.credentials.add({
      provider,
      ...(kind ? { kind } : {}),
      baseUrl: provider === "gemini" ? `${upstream.origin}/v1beta` : base,
      secret,
    } as Parameters<Gateway["credentials"]["add"]>[0]);
  await add("openai", { apiKey: S.mistral });
  await add("openai", { apiKey: S.groq });
  await add("gemini", { apiKey: S.google });
  await add("anthropic", { apiKey: S.anthropic });
  await add("qwen", { apiKey: S.hex });
  await add(
    "codex",
    {
      accessToken: S.access,
      refreshToken: S.refresh,
      expiresAt: Date.now() + 24 * 3_600_000,
      extra: { client_secret: S.clientSecret },
    },
    "oauth",
  );
  const { key } = await gateway.keys.create({ name: "secrets", unlimitedQuota: true });
  const server: Server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    gateway,
    url,
    key,
    logs,
    events,
    answers: [],
    async close() {
      await new Promise<void>((r) => server.close(() => r()));
      await gateway.close();
    },
  };
}

type Format = "openai" | "anthropic" | "gemini" | "responses";
const FORMATS: Format[] = ["openai", "anthropic", "gemini", "responses"];

/** Sends one request in a client format and keeps its whole answer (status, headers, body). */
async function send(r: Rig, format: Format, stream: boolean): Promise<number> {
  const text = "Say hello";
  let path: string;
  let body: unknown;
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (format === "openai") {
    path = "/v1/chat/completions";
    body = { model: MODEL, stream, messages: [{ role: "user", content: text }] };
    headers.authorization = `Bearer ${r.key}`;
  } else if (format === "anthropic") {
    path = "/v1/messages";
    body = { model: MODEL, stream, max_tokens: 64, messages: [{ role: "user", content: text }] };
    headers["x-api-key"] = r.key;
  } else if (format === "gemini") {
    path = `/v1beta/models/${MODEL}:${stream ? "streamGenerateContent?alt=sse" : "generateContent"}`;
    body = { contents: [{ role: "user", parts: [{ text }] }] };
    headers["x-goog-api-key"] = r.key;
  } else {
    path = "/v1/responses";
    body = { model: MODEL, stream, input: text };
    headers.authorization = `Bearer ${r.key}`;
  }
  const res = await fetch(r.url + path, { method: "POST", headers, body: JSON.stringify(body) });
  const answer = await res.text();
  r.answers.push(`${format} ${stream} ${res.status} ${JSON.stringify([...res.headers])} ${answer}`);
  return res.status;
}

/** Drives every kind of echo on every format, JSON and streamed. */
async function driveEchoes(r: Rig, upstream: MockUpstream): Promise<void> {
  const statuses: number[] = [];
  for (const format of FORMATS) {
    for (const stream of [false, true]) {
      // A client error quoting the key: passed through from whichever credential was picked;
      // six rounds so that the rotation gives every credential its turn.
      for (let i = 0; i < 6; i++) {
        upstream.fail({ status: 400, echoCredential: true });
        statuses.push(await send(r, format, stream));
      }
      // Server errors quoting the key from every credential: failover through all six, then the
      // last answer reaches the client.
      upstream.fail({ status: 500, echoCredential: true, times: 6 });
      statuses.push(await send(r, format, stream));
      // A 401 quoting the key (an API key refused), then a success.
      upstream.fail({ status: 401, echoCredential: true });
      statuses.push(await send(r, format, stream));
      if (stream) {
        // A stream that opens fine and then carries the upstream's error event with the key.
        for (let i = 0; i < 6; i++) {
          upstream.fail({ status: 401, echoCredential: true, errorEvent: true });
          statuses.push(await send(r, format, stream));
        }
      }
    }
  }
  upstream.reset();
  // Every request reached the upstream and came back as an answer of some kind.
  expect(statuses.length).toBe(FORMATS.length * (8 + 14));
  expect(statuses.every((s) => s >= 200 && s < 600)).toBe(true);
  // The echoes did reach the gateway: the mock recorded the credentials it quoted.
  await r.gateway.usage.flush();
}

function checkNoLeaks(r: Rig, extra: Record<string, string> = {}): void {
  const places: Record<string, string> = {
    answers: r.answers.join("\n"),
    logs: r.logs.join("\n"),
    events: r.events.join("\n"),
    ...extra,
  };
  const found: Record<string, string[]> = {};
  for (const [where, text] of Object.entries(places)) {
    const l = leaks(text);
    if (l.length > 0) found[where] = l;
  }
  expect(found).toEqual({});
  // The checks looked at real traffic: answers quoted masked keys, and the log has request lines.
  expect(places.answers).toContain("Incorrect API key provided:");
  expect(r.logs.some((l) => l.startsWith("info request "))).toBe(true);
}

describe("no secret of a credential leaves the gateway", () => {
  let upstream: MockUpstream;
  let redis: RedisServer;
  const dirs: string[] = [];

  beforeAll(async () => {
    upstream = await createMockUpstream();
    redis = await startRedisServer();
  });
  afterAll(async () => {
    await upstream.close();
    await redis.stop();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("SQLite: not in any answer, log line, event, or byte of the database files", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tp-secrets-"));
    dirs.push(dir);
    const r = await rig(sqliteStore({ filename: join(dir, "tokenpool.db") }), upstream);
    const files: Record<string, string> = {};
    /** Every file under `dir`, the usage journal's folder too. */
    const read = () => {
      for (const f of readdirSync(dir, { recursive: true, withFileTypes: true }))
        if (f.isFile()) {
          const path = join(f.parentPath, f.name);
          files[`file ${path.slice(dir.length + 1)}`] = readFileSync(path).toString("latin1");
        }
    };
    try {
      await driveEchoes(r, upstream);
      // The journal is removed by a clean close: read it while the gateway runs.
      read();
      expect(Object.keys(files).some((f) => f.endsWith(".journal"))).toBe(true);
    } finally {
      await r.close();
    }
    read();
    expect(Object.keys(files).length).toBeGreaterThan(0);
    checkNoLeaks(r, files);
  });

  it("Redis: not in any answer, log line, event, or value stored in Redis", async () => {
    const prefix = `tp-secrets-${process.pid}`;
    const r = await rig(redisStore({ redis: redis.url, prefix }), upstream);
    try {
      await driveEchoes(r, upstream);
    } finally {
      await r.close();
    }
    const client = new Redis(redis.url);
    try {
      const values: string[] = [];
      let cursor = "0";
      do {
        const [next, keys] = await client.scan(cursor, "COUNT", 500);
        cursor = next;
        for (const k of keys) {
          const type = await client.type(k);
          values.push(k);
          if (type === "string") values.push((await client.get(k)) ?? "");
          else if (type === "hash") values.push(JSON.stringify(await client.hgetall(k)));
          else if (type === "list") values.push(JSON.stringify(await client.lrange(k, 0, -1)));
          else if (type === "set") values.push(JSON.stringify(await client.smembers(k)));
          else if (type === "zset") values.push(JSON.stringify(await client.zrange(k, 0, -1)));
          else if (type === "stream") values.push(JSON.stringify(await client.xrange(k, "-", "+")));
        }
      } while (cursor !== "0");
      expect(values.length).toBeGreaterThan(0);
      checkNoLeaks(r, { redis: values.join("\n") });
    } finally {
      client.disconnect();
    }
  });
});
