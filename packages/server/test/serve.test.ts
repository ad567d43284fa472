import { mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Billing, GatewayEmitter, memoryStore, SettingsService } from "@tokenpool/core";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { countMockPromptTokens, DEFAULT_MOCK_REPLY, splitMockReply } from "@tokenpool/testing";
import { startPostgresServer } from "@tokenpool/testing/postgres-server";
import OpenAI from "openai";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseStoreSpec, redactSpec } from "../src/serve.js";
import { type ServerProcess, startCli } from "./helpers.js";

const SECRET = "e2e-secret-0123456789-0123456789-abcdef";
const messages = [{ role: "user" as const, content: "Say hello to the end-to-end test." }];
const promptTokens = countMockPromptTokens(messages);
const completionTokens = splitMockReply(DEFAULT_MOCK_REPLY).length;
const expectedTokens = promptTokens + completionTokens;
/** The mock's usage priced by the default price tables. */
const expectedCost = new Billing(
  new SettingsService(memoryStore(), new GatewayEmitter(), {}),
  1024,
).cost("gpt-4o-mini", "default", { inputTokens: promptTokens, outputTokens: completionTokens });

let dir: string;
let dbFile: string;

async function readKeyAndUsage(keyId: number) {
  const store = sqliteStore({ filename: dbFile });
  try {
    return { key: await store.keys.get(keyId), usage: await store.usage.list({ keyId }) };
  } finally {
    await store.close();
  }
}

async function waitFor<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 5_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 50));
  }
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tokenpool-serve-"));
  dbFile = join(dir, "data", "tokenpool.db");
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("tokenpool serve --demo", () => {
  let server: ServerProcess;
  let demoKey: string;
  let keyId: number;
  let quotaAfter: number;

  it("prints a management key once and a demo key, and stores neither in the clear", async () => {
    server = await startCli(
      ["serve", "--port", "0", "--store", `sqlite:${dbFile}`, "--demo", "--log-level", "warn"],
      {
        TOKENPOOL_SECRET: SECRET,
      },
    );
    const mgmt = server.match(/Management key[^:]*: (\S+)/);
    demoKey = server.match(/Demo key: (\S+)/)!;
    expect(mgmt).toMatch(/^tp-mgmt-/);
    expect(demoKey).toMatch(/^sk-/);
    const store = sqliteStore({ filename: dbFile });
    try {
      const settings = JSON.stringify(await store.settings.all());
      expect(settings).not.toContain(mgmt);
      expect(settings).toMatch(/\$2[aby]\$10\$/);
      const { items } = await store.keys.list({ keyword: "demo" });
      expect(items).toHaveLength(1);
      expect(JSON.stringify(items)).not.toContain(demoKey);
      keyId = items[0]!.id;
    } finally {
      await store.close();
    }
  });

  it("serves the official openai client, non-streaming, and bills the upstream's usage", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: demoKey, maxRetries: 0 });
    const before = (await readKeyAndUsage(keyId)).key!.remainQuota;
    const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
    expect(completion.choices[0]!.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(completion.usage!.total_tokens).toBe(expectedTokens);
    const { key, usage } = await waitFor(
      () => readKeyAndUsage(keyId),
      (v) => v.usage.total >= 1 && v.key!.remainQuota === before - expectedCost,
    );
    expect(key!.remainQuota).toBe(before - expectedCost);
    expect(usage.items[0]).toMatchObject({
      model: "gpt-4o-mini",
      stream: false,
      success: true,
      quota: expectedCost,
    });
  });

  it("serves the official openai client, streaming, chunk by chunk", async () => {
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: demoKey, maxRetries: 0 });
    const before = (await readKeyAndUsage(keyId)).key!.remainQuota;
    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages,
      stream: true,
    });
    const parts: string[] = [];
    for await (const chunk of stream) parts.push(chunk.choices[0]?.delta.content ?? "");
    expect(parts.join("")).toBe(DEFAULT_MOCK_REPLY);
    expect(parts.filter(Boolean).length).toBe(splitMockReply(DEFAULT_MOCK_REPLY).length);
    const { key, usage } = await waitFor(
      () => readKeyAndUsage(keyId),
      (v) => v.usage.total >= 2 && v.key!.remainQuota === before - expectedCost,
    );
    expect(key!.remainQuota).toBe(before - expectedCost);
    expect(usage.items[0]).toMatchObject({ stream: true, success: true, quota: expectedCost });
    quotaAfter = key!.remainQuota;
  });

  it("answers bad input with OpenAI errors and keeps serving", async () => {
    const post = (body: string, auth?: string) =>
      fetch(`${server.url}/v1/chat/completions`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(auth ? { authorization: `Bearer ${auth}` } : {}),
        },
        body,
      });
    const good = JSON.stringify({ model: "gpt-4o-mini", messages });
    for (const [res, status] of [
      [await post(good), 401],
      [await post(good, "sk-not-a-real-key-123456789"), 401],
      [await post("{oops", demoKey), 400],
      [await post(JSON.stringify({ messages }), demoKey), 400],
      [await post("x".repeat(21 * 1024 * 1024), demoKey), 413],
    ] as const) {
      expect(res.status).toBe(status);
      const body = (await res.json()) as { error: { message: string; type: string; code: string } };
      expect(body.error).toMatchObject({ message: expect.any(String), type: expect.any(String) });
    }
    const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: demoKey, maxRetries: 0 });
    const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
    expect(completion.choices[0]!.message.content).toBe(DEFAULT_MOCK_REPLY);
    quotaAfter -= expectedCost;
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toContain("gpt-4o-mini");
  });

  it("keeps quota and usage across a restart on the same SQLite file", async () => {
    expect(await server.stop("SIGTERM")).toBe(0);
    expect(statSync(dbFile).size).toBeGreaterThan(0);
    const { key, usage } = await readKeyAndUsage(keyId);
    expect(key!.remainQuota).toBe(quotaAfter);
    expect(usage.total).toBe(3);

    server = await startCli(
      ["serve", "--port", "0", "--store", `sqlite:${dbFile}`, "--demo", "--log-level", "warn"],
      {
        TOKENPOOL_SECRET: SECRET,
      },
    );
    try {
      // No second management key, and the same demo key, revealed from its encrypted copy.
      expect(server.match(/Management key[^:]*: (\S+)/)).toBeNull();
      expect(server.match(/Demo key: (\S+)/)).toBe(demoKey);
      const after = await readKeyAndUsage(keyId);
      expect(after.key!.remainQuota).toBe(quotaAfter);
      expect(after.usage.total).toBe(3);
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: demoKey, maxRetries: 0 });
      const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
      expect(completion.usage!.total_tokens).toBe(expectedTokens);
    } finally {
      expect(await server.stop("SIGTERM")).toBe(0);
    }
  });
});

describe("tokenpool CLI", () => {
  it("refuses bad flags with a message and exit code 2", async () => {
    await expect(startCli(["serve", "--port", "abc"])).rejects.toThrow(
      /exited with 2[\s\S]*--port must be an integer/,
    );
    await expect(startCli(["serve", "--store", "mysql://x"])).rejects.toThrow(/unknown --store/);
  });

  it("refuses a postgres store without TOKENPOOL_SECRET, naming the variable", async () => {
    await expect(
      startCli(["serve", "--port", "0", "--store", "postgres://tp:hunter2@127.0.0.1:1/db"], {
        TOKENPOOL_SECRET: "",
      }),
    ).rejects.toThrow(/exited with 1[\s\S]*shared store[\s\S]*TOKENPOOL_SECRET/);
  });
});

describe("tokenpool serve --store postgres://", () => {
  it("opens the schema named in the URL and hands the other parameters to node-postgres", async () => {
    const postgres = await startPostgresServer();
    // Trust authentication ignores the password; it is there to be hidden from the output.
    const url = postgres.url.replace("postgres@", "postgres:hunter2@");
    const server = await startCli(
      [
        "serve",
        "--port",
        "0",
        "--store",
        `${url}?schema=tp_cli&application_name=tokenpool-cli-test`,
        "--log-level",
        "warn",
      ],
      { TOKENPOOL_SECRET: SECRET },
    );
    const client = new pg.Client({ connectionString: postgres.url });
    try {
      expect(server.stdout()).toContain("(store: postgres://postgres:***@127.0.0.1:");
      expect(server.stdout() + server.stderr()).not.toContain("hunter2");
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
      await client.connect();
      const schemas = await client.query(
        "SELECT 1 FROM information_schema.tables WHERE table_schema = 'tp_cli' AND table_name = 'keys'",
      );
      expect(schemas.rowCount).toBe(1);
      const apps = await client.query(
        "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'tokenpool-cli-test'",
      );
      expect(apps.rows[0].n).toBeGreaterThan(0);
    } finally {
      await client.end();
      expect(await server.stop("SIGTERM")).toBe(0);
      await postgres.stop();
    }
  });
});

describe("--store specs", () => {
  it("take only prefix out of a redis URL and keep its other parameters", () => {
    expect(parseStoreSpec("redis://127.0.0.1:6379")).toEqual({
      kind: "redis",
      url: "redis://127.0.0.1:6379",
    });
    expect(parseStoreSpec("redis://:pw@127.0.0.1:6379/2?prefix=tp-a")).toEqual({
      kind: "redis",
      url: "redis://:pw@127.0.0.1:6379/2",
      prefix: "tp-a",
    });
    expect(parseStoreSpec("rediss://h:6380/0?cluster=true&prefix=tp%3Ab&family=6")).toEqual({
      kind: "redis",
      url: "rediss://h:6380/0?cluster=true&family=6",
      prefix: "tp:b",
    });
  });

  it("keep a cluster's comma-separated hosts, which are no WHATWG URL", () => {
    expect(parseStoreSpec("redis://10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002?prefix=tp")).toEqual({
      kind: "redis",
      url: "redis://10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002",
      prefix: "tp",
    });
    expect(parseStoreSpec("redis://:s3cret@h1:7000,h2:7001?cluster=true")).toEqual({
      kind: "redis",
      url: "redis://:s3cret@h1:7000,h2:7001?cluster=true",
    });
  });

  it("take only schema out of a postgres URL and pass sslmode and the rest to node-postgres", () => {
    expect(parseStoreSpec("postgres://tp:pw@db.internal:5432/gateway")).toEqual({
      kind: "postgres",
      connectionString: "postgres://tp:pw@db.internal:5432/gateway",
    });
    expect(
      parseStoreSpec(
        "postgresql://tp:p%40ss@db:5432/app?sslmode=require&schema=tokenpool_eu&application_name=tp",
      ),
    ).toEqual({
      kind: "postgres",
      connectionString: "postgresql://tp:p%40ss@db:5432/app?sslmode=require&application_name=tp",
      schema: "tokenpool_eu",
    });
  });

  it("name the local stores by their paths", () => {
    expect(parseStoreSpec("sqlite:./data/x.db")).toEqual({
      kind: "sqlite",
      filename: "./data/x.db",
    });
    expect(parseStoreSpec("file:/srv/tp")).toEqual({ kind: "file", dir: "/srv/tp" });
    expect(parseStoreSpec("memory")).toEqual({ kind: "memory" });
  });

  it("refuse an unknown spec without printing its password", () => {
    expect(() => parseStoreSpec("mysql://root:hunter2@db/x")).toThrow(
      /unknown --store "mysql:\/\/root:\*\*\*@db\/x"[\s\S]*postgres:\/\//,
    );
    expect(redactSpec("postgres://tp:hunter2@db:5432/x?sslmode=require")).toBe(
      "postgres://tp:***@db:5432/x?sslmode=require",
    );
    expect(redactSpec("redis://:hunter2@h1:7000,h2:7001")).toBe("redis://:***@h1:7000,h2:7001");
    expect(redactSpec("redis://127.0.0.1:6379")).toBe("redis://127.0.0.1:6379");
  });
});
