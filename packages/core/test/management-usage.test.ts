import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
// By path: @tokenpool/store-sqlite depends on core, so core cannot list it as a dependency.
import { sqliteStore } from "../../store-sqlite/src/index.js";
import { createGateway, type Gateway, memoryStore, type Store } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "management-usage-secret-0123456789-abcdef";
const KEY = "tp-mgmt-usage-key-0123456789";
const UPSTREAM_KEY = "sk-upstream-usage";

let mock: MockUpstream;
let dir: string;
const open: { gateway: Gateway; server: Server }[] = [];

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  dir = mkdtempSync(join(tmpdir(), "tokenpool-usage-"));
});
afterAll(async () => {
  await mock.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(async () => {
  for (const r of open.splice(0)) {
    await new Promise((res) => r.server.close(res));
    await r.gateway.close();
  }
  mock.reset();
});

async function start(store: Store, setup = true) {
  const gateway = createGateway({
    store,
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
    management: { usageDetailsPerModel: 3 },
  });
  await gateway.ready;
  if (setup) {
    await gateway.management.setKey(KEY);
    await gateway.credentials.add({
      provider: "openai",
      baseUrl: mock.url,
      secret: { apiKey: UPSTREAM_KEY },
    });
  }
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const entry = { gateway, server };
  open.push(entry);
  return { gateway, base, stop: () => stopOne(entry) };
}

async function stopOne(entry: { gateway: Gateway; server: Server }) {
  open.splice(open.indexOf(entry), 1);
  await new Promise((res) => entry.server.close(res));
  await entry.gateway.close();
}

async function usage(base: string): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}/v0/management/usage`, {
    headers: { authorization: `Bearer ${KEY}` },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

function chat(base: string, key: string, model: string, stream = false) {
  return fetch(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({
      model,
      stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
      messages: [{ role: "user", content: "Hello usage" }],
    }),
  }).then(async (r) => {
    await r.text();
    return r.status;
  });
}

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/;

/** Checks the seed's shape: exactly these keys with these types, at every level. */
function expectSeedShape(body: Record<string, unknown>) {
  expect(Object.keys(body)).toEqual(["usage"]);
  const u = body.usage as Record<string, unknown>;
  expect(Object.keys(u).sort()).toEqual(
    [
      "total_requests",
      "success_count",
      "failure_count",
      "total_tokens",
      "requests_by_day",
      "requests_by_hour",
      "tokens_by_day",
      "tokens_by_hour",
      "apis",
    ].sort(),
  );
  for (const k of ["total_requests", "success_count", "failure_count", "total_tokens"])
    expect(typeof u[k]).toBe("number");
  for (const k of ["requests_by_day", "tokens_by_day"])
    for (const [day, n] of Object.entries(u[k] as object)) {
      expect(day).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(typeof n).toBe("number");
    }
  for (const k of ["requests_by_hour", "tokens_by_hour"])
    for (const [hour, n] of Object.entries(u[k] as object)) {
      expect(hour).toMatch(/^([01]\d|2[0-3])$/);
      expect(typeof n).toBe("number");
    }
  for (const api of Object.values(u.apis as Record<string, Record<string, unknown>>)) {
    // The seed's fields plus CLIProxyAPI's later per-API counts.
    expect(Object.keys(api).sort()).toEqual(
      ["failure_count", "models", "success_count", "total_requests", "total_tokens"].sort(),
    );
    for (const m of Object.values(api.models as Record<string, Record<string, unknown>>)) {
      expect(Object.keys(m).sort()).toEqual(["details", "total_requests", "total_tokens"]);
      for (const d of m.details as Record<string, unknown>[]) {
        // The seed's fields plus CLIProxyAPI's later `source` and `failed`.
        expect(Object.keys(d).sort()).toEqual(["failed", "source", "timestamp", "tokens"]);
        expect(typeof d.source).toBe("string");
        expect(typeof d.failed).toBe("boolean");
        expect(d.timestamp).toMatch(TIMESTAMP);
        const t = d.tokens as Record<string, unknown>;
        expect(Object.keys(t).sort()).toEqual(
          [
            "cached_tokens",
            "input_tokens",
            "output_tokens",
            "reasoning_tokens",
            "total_tokens",
          ].sort(),
        );
        for (const v of Object.values(t)) expect(typeof v).toBe("number");
      }
    }
  }
}

describe("GET /v0/management/usage", () => {
  it("reports proxied requests in the seed's exact shape", async () => {
    const { gateway, base } = await start(memoryStore());
    const { key } = await gateway.keys.create({ name: "u", unlimitedQuota: true });
    const before = new Date().toISOString();
    expect(await chat(base, key, "gpt-4o-mini")).toBe(200);
    expect(await chat(base, key, "gpt-4o-mini", true)).toBe(200);
    expect(await chat(base, key, "gpt-4o")).toBe(200);
    mock.fail({ status: 400 });
    expect(await chat(base, key, "gpt-4o")).toBe(400);

    const body = await usage(base);
    expectSeedShape(body);
    const u = body.usage as {
      total_requests: number;
      success_count: number;
      failure_count: number;
      total_tokens: number;
      requests_by_day: Record<string, number>;
      requests_by_hour: Record<string, number>;
      tokens_by_day: Record<string, number>;
      apis: Record<
        string,
        {
          total_requests: number;
          total_tokens: number;
          models: Record<
            string,
            {
              total_requests: number;
              total_tokens: number;
              details: { timestamp: string; tokens: { total_tokens: number } }[];
            }
          >;
        }
      >;
    };
    expect(u.total_requests).toBe(4);
    expect(u.success_count).toBe(3);
    expect(u.failure_count).toBe(1);
    expect(u.total_tokens).toBeGreaterThan(0);
    // UTC buckets.
    expect(u.requests_by_day).toEqual({ [before.slice(0, 10)]: 4 });
    expect(Object.values(u.requests_by_hour).reduce((a, b) => a + b, 0)).toBe(4);
    expect(u.tokens_by_day[before.slice(0, 10)]).toBe(u.total_tokens);
    const api = u.apis["POST /v1/chat/completions"]!;
    expect(api.total_requests).toBe(4);
    expect(api.total_tokens).toBe(u.total_tokens);
    const mini = api.models["gpt-4o-mini"]!;
    expect(mini.total_requests).toBe(2);
    expect(mini.details).toHaveLength(2);
    expect(mini.details.reduce((a, d) => a + d.tokens.total_tokens, 0)).toBe(mini.total_tokens);
    expect(mini.details[0]!.timestamp <= mini.details[1]!.timestamp).toBe(true);
    expect(api.models["gpt-4o"]!.total_requests).toBe(2);
  });

  it("bounds the details per model to the most recent ones", async () => {
    const { gateway, base } = await start(memoryStore());
    const { key } = await gateway.keys.create({ name: "u", unlimitedQuota: true });
    for (let i = 0; i < 5; i++) expect(await chat(base, key, "gpt-4o-mini")).toBe(200);
    const u = (await usage(base)).usage as {
      apis: Record<
        string,
        { models: Record<string, { total_requests: number; details: unknown[] }> }
      >;
    };
    const m = u.apis["POST /v1/chat/completions"]!.models["gpt-4o-mini"]!;
    expect(m.total_requests).toBe(5);
    expect(m.details).toHaveLength(3);
  });

  it("survives a restart (SQLite), and pruning drops details but keeps the totals", async () => {
    const file = join(dir, "usage.db");
    const first = await start(sqliteStore({ filename: file }));
    const { key } = await first.gateway.keys.create({ name: "u", unlimitedQuota: true });
    expect(await chat(first.base, key, "gpt-4o-mini")).toBe(200);
    expect(await chat(first.base, key, "gpt-4o-mini")).toBe(200);
    const was = await usage(first.base);
    await first.stop();

    const second = await start(sqliteStore({ filename: file }), false);
    const now = await usage(second.base);
    expect(now).toEqual(was);
    expectSeedShape(now);

    // Retention 0 days would keep everything; a record older than the retention goes.
    await second.gateway.settings.set({ "usage-retention-days": 1 });
    expect(await second.gateway.usage.prune()).toBe(0);
    const page = await second.gateway.usage.list();
    expect(page.total).toBe(2);
    // Pretend the details are two days old by pruning "from the future".
    const store = second.gateway.store;
    expect(await store.usage.prune(Date.now() + 1)).toBe(2);
    const after = (await usage(second.base)).usage as {
      total_requests: number;
      apis: Record<
        string,
        { models: Record<string, { total_requests: number; details: unknown[] }> }
      >;
    };
    expect(after.total_requests).toBe(2);
    const m = after.apis["POST /v1/chat/completions"]!.models["gpt-4o-mini"]!;
    expect(m.total_requests).toBe(2);
    expect(m.details).toEqual([]);
  });
});
