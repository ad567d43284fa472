/**
 * The request log: every proxied request leaves a record (refusals included), read through
 * new-api's log routes (`/api/log/`, `/api/log/self`, their `stat`, `/api/log/token`, the CSV
 * export, `DELETE /api/log/`) with every filter, a user never seeing another's records; and
 * the usage summary with cost per key, user, model, credential and day
 * (`/v0/management/usage/summary`, `gateway.usage.summary`). One gateway on the memory store
 * behind a real node:http server on port 0, the official `openai` client, two credentials on a
 * mock upstream.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  createGateway,
  type Gateway,
  memoryStore,
  type NewApiLogItem,
  QUOTA_PER_USD,
  type UsageRecord,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const KEY_A = "sk-upstream-logs-aaaaaaaaaaaaaaaaaaaa";
const KEY_B = "sk-upstream-logs-bbbbbbbbbbbbbbbbbbbb";
const MGMT = "logs-management-key-0123456789";

let mock: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;
const users = {} as Record<"ann" | "bob", { id: number; token: string }>;
const keys = {} as Record<"ann" | "ann2" | "bob" | "poor" | "slow", { id: number; key: string }>;
let credA: string;
let credB: string;
let startedAt: number;
/** Every record, newest first, read once the traffic is done. */
let all: UsageRecord[];

async function call(path: string, headers: Record<string, string> = {}, method = "GET") {
  const res = await fetch(`${base}${path}`, { method, headers });
  const text = await res.text();
  let body: any = null;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: res.status, text, body, headers: res.headers };
}
const admin = { authorization: `Bearer ${MGMT}` };
const as = (who: "ann" | "bob") => ({
  authorization: `Bearer ${users[who].token}`,
  "new-api-user": String(users[who].id),
});
const openai = (apiKey: string) =>
  new OpenAI({ apiKey, baseURL: `${base}/v1`, maxRetries: 0, timeout: 5_000 });
const chat = (key: string, model = "gpt-4o-mini", stream = false) =>
  stream
    ? openai(key)
        .chat.completions.create({ model, messages: [{ role: "user", content: "hi" }], stream })
        .then(async (s) => {
          for await (const _ of s);
        })
    : openai(key).chat.completions.create({ model, messages: [{ role: "user", content: "hi" }] });

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [KEY_A, KEY_B] });
  gateway = createGateway({
    store: memoryStore(),
    secret: "request-logs-secret-0123456789-abcdefghij",
    logger: "silent",
    usage: { flushIntervalMs: 10 },
  });
  await gateway.management.setKey(MGMT);
  for (const [secret, name] of [
    [KEY_A, "a"],
    [KEY_B, "b"],
  ] as const) {
    const c = await gateway.credentials.add({
      provider: "openai",
      baseUrl: mock.url,
      kind: "api-key",
      label: name,
      groups: ["default", "vip"],
      secret: { apiKey: secret },
      models: [{ name: "gpt-4o-mini" }, { name: "gpt-4o" }],
    });
    if (name === "a") credA = c.id;
    else credB = c.id;
  }
  await gateway.settings.set({
    "request-retry": 1,
    "routing-strategy": "fill-first",
    "group-ratio": { default: 1, vip: 1 },
  });
  for (const name of ["ann", "bob"] as const) {
    const { accessToken, record } = await gateway.users.create({
      username: name,
      quota: 1_000_000_000,
      group: name === "bob" ? "vip" : "default",
    });
    users[name] = { id: record.id, token: accessToken };
  }
  const mk = async (name: keyof typeof keys, input: Record<string, unknown>) => {
    const { key, record } = await gateway.keys.create({ name, remainQuota: 10_000_000, ...input });
    keys[name] = { id: record.id, key };
  };
  await mk("ann", { userId: users.ann.id });
  await mk("ann2", { userId: users.ann.id });
  await mk("bob", { userId: users.bob.id });
  await mk("poor", { remainQuota: 1 });
  await mk("slow", { limits: { rpm: 1 } });
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  startedAt = Date.now();
  await chat(keys.ann.key);
  await chat(keys.ann.key, "gpt-4o-mini", true);
  await chat(keys.ann2.key, "gpt-4o");
  // The first credential fails once: the request fails over to the second.
  mock.fail({ status: 500 });
  await chat(keys.bob.key, "gpt-4o");
  // A client error the upstream answers: passed through, logged as an error.
  mock.fail({ status: 400 });
  await expect(chat(keys.bob.key)).rejects.toBeInstanceOf(OpenAI.BadRequestError);
  await expect(chat(keys.poor.key)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  await chat(keys.slow.key);
  await expect(chat(keys.slow.key)).rejects.toBeInstanceOf(OpenAI.RateLimitError);
  await gateway.usage.flush();
  all = (await gateway.usage.list({ limit: 1000 })).items;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await gateway.close();
  await mock.close();
});

describe("request log records", () => {
  it("every proxied request left one, refusals included, with its log fields", () => {
    expect(all).toHaveLength(8);
    const ofKey = (k: keyof typeof keys) => all.filter((r) => r.keyId === keys[k].id);
    const [annJson, annStream] = ofKey("ann").reverse();
    expect(annJson).toMatchObject({
      keyName: "ann",
      username: "ann",
      group: "default",
      format: "openai",
      model: "gpt-4o-mini",
      stream: false,
      success: true,
      status: 200,
      retries: 0,
      errorType: null,
      credentialId: credA,
    });
    expect(annJson!.firstTokenMs).toBeGreaterThanOrEqual(0);
    expect(annJson!.firstTokenMs).toBeLessThanOrEqual(annJson!.durationMs);
    expect(annStream).toMatchObject({ stream: true, success: true });
    const [failover, clientError] = ofKey("bob").reverse();
    expect(failover).toMatchObject({
      success: true,
      retries: 1,
      credentialId: credB,
      group: "vip",
      username: "bob",
    });
    expect(clientError).toMatchObject({
      success: false,
      status: 400,
      errorType: "invalid_request",
    });
    expect(ofKey("poor")).toMatchObject([
      { success: false, status: 429, errorType: "quota_exhausted", quota: 0, username: "" },
    ]);
    const slow = ofKey("slow");
    expect(slow.map((r) => r.errorType)).toEqual(["rate_limited", null]);
    // No secret in any record: not the upstream keys, not the clients' keys.
    const text = JSON.stringify(all);
    for (const secret of [KEY_A, KEY_B, MGMT, ...Object.values(keys).map((k) => k.key)])
      expect(text).not.toContain(secret);
    for (const r of all) expect(r).not.toHaveProperty("bodies");
  });
});

describe("GET /api/log/ (admin)", () => {
  const ids = (items: NewApiLogItem[]) => items.map((i) => i.id);
  const want = (pred: (r: UsageRecord) => boolean) => ids(all.filter(pred).map(itemId));
  const itemId = (r: UsageRecord) => ({ id: r.id }) as NewApiLogItem;

  it("lists every record newest first in new-api's shape", async () => {
    const res = await call("/api/log/?p=1&page_size=100", admin);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, message: "", data: { total: 8, page: 1 } });
    expect(res.body.data.page_size).toBe(100);
    expect(ids(res.body.data.items)).toEqual(ids(all.map(itemId)));
    const item: NewApiLogItem = res.body.data.items.find(
      (i: NewApiLogItem) => i.token_id === keys.bob.id && i.type === 2,
    );
    const rec = all.find((r) => r.id === item.id)!;
    expect(item).toMatchObject({
      user_id: users.bob.id,
      created_at: Math.floor(rec.timestamp / 1000),
      type: 2,
      content: "",
      username: "bob",
      token_name: "bob",
      model_name: "gpt-4o",
      quota: rec.quota,
      prompt_tokens: rec.inputTokens,
      completion_tokens: rec.outputTokens,
      is_stream: false,
      channel: credB,
      channel_name: "openai",
      group: "vip",
      request_id: rec.requestId,
    });
    expect(JSON.parse(item.other)).toMatchObject({ retries: 1, format: "openai", status: 200 });
    const error = res.body.data.items.find((i: NewApiLogItem) => i.type === 5);
    expect(error.content).not.toBe("");
  });

  it("applies each filter as new-api names it", async () => {
    const cases: [string, (r: UsageRecord) => boolean][] = [
      ["type=2", (r) => r.success],
      ["type=5", (r) => !r.success],
      ["type=0", () => true],
      ["type=1", () => false],
      ["token_name=ann", (r) => r.keyName === "ann"],
      ["model_name=gpt-4o", (r) => r.model === "gpt-4o"],
      ["username=bob", (r) => r.username === "bob"],
      [`channel=${credB}`, (r) => r.credentialId === credB],
      ["group=vip", (r) => r.group === "vip"],
      ["username=ann&model_name=gpt-4o", (r) => r.username === "ann" && r.model === "gpt-4o"],
      ["type=5&token_name=slow", (r) => !r.success && r.keyName === "slow"],
      ["token_name=", () => true],
      ["username=nobody", () => false],
    ];
    for (const [query, pred] of cases) {
      const res = await call(`/api/log/?page_size=100&${query}`, admin);
      expect(res.status, query).toBe(200);
      expect(ids(res.body.data.items), query).toEqual(want(pred));
      expect(res.body.data.total, query).toBe(all.filter(pred).length);
    }
  });

  it("filters by time in Unix seconds, both bounds inclusive", async () => {
    const s = (ms: number) => Math.floor(ms / 1000);
    const oldest = all[all.length - 1]!;
    const at = s(oldest.timestamp);
    const res = await call(`/api/log/?start_timestamp=${at}&end_timestamp=${at}`, admin);
    expect(ids(res.body.data.items)).toEqual(want((r) => s(r.timestamp) === at));
    const later = await call(`/api/log/?start_timestamp=${s(Date.now()) + 10}`, admin);
    expect(later.body.data).toMatchObject({ items: [], total: 0 });
    const before = await call(`/api/log/?end_timestamp=${s(startedAt) - 10}`, admin);
    expect(before.body.data.total).toBe(0);
  });

  it("paginates with p and page_size (at most 100)", async () => {
    const p1 = await call("/api/log/?p=1&page_size=3", admin);
    const p3 = await call("/api/log/?p=3&page_size=3", admin);
    expect(ids(p1.body.data.items)).toEqual(ids(all.slice(0, 3).map(itemId)));
    expect(ids(p3.body.data.items)).toEqual(ids(all.slice(6, 9).map(itemId)));
    expect(p3.body.data).toMatchObject({ total: 8, page: 3, page_size: 3 });
    const big = await call("/api/log/?page_size=5000", admin);
    expect(big.body.data.page_size).toBe(100);
  });

  it("refuses bad parameters with a 400 in new-api's envelope, and strangers", async () => {
    for (const q of ["type=abc", "start_timestamp=-5", "end_timestamp=1e9", "type=2.5"]) {
      const res = await call(`/api/log/?${q}`, admin);
      expect(res.status, q).toBe(400);
      expect(res.body, q).toMatchObject({ success: false });
    }
    expect((await call("/api/log/")).status).toBe(401);
    expect((await call("/api/log/", { authorization: "Bearer nope" })).status).toBe(401);
    // A user is no admin: every user's logs are not theirs to read.
    expect((await call("/api/log/", as("ann"))).status).toBe(403);
    expect((await call("/api/log/stat", as("ann"))).status).toBe(403);
    expect((await call("/api/log/export", as("ann"))).status).toBe(403);
    expect((await call("/api/log/?target_timestamp=1", as("ann"), "DELETE")).status).toBe(403);
  });
});

describe("GET /api/log/self", () => {
  it("shows a user their own records only, whatever they filter", async () => {
    for (const who of ["ann", "bob"] as const) {
      const mine = all.filter((r) => r.userId === users[who].id).map((r) => r.id);
      const res = await call("/api/log/self?page_size=100", as(who));
      expect(res.status).toBe(200);
      expect(res.body.data.items.map((i: NewApiLogItem) => i.id)).toEqual(mine);
      expect(res.body.data.total).toBe(mine.length);
      // Naming the other user changes nothing.
      const other = who === "ann" ? "bob" : "ann";
      const sneaky = await call(`/api/log/self?username=${other}`, as(who));
      expect(sneaky.body.data.total).toBe(mine.length);
      const theirs = await call(`/api/log/self?token_name=${other}`, as(who));
      expect(theirs.body.data.total).toBe(0);
    }
    const annGpt4o = await call("/api/log/self?model_name=gpt-4o", as("ann"));
    expect(annGpt4o.body.data.items.map((i: NewApiLogItem) => i.token_name)).toEqual(["ann2"]);
  });

  it("works with the management key naming a user, and not without one", async () => {
    const res = await call("/api/log/self", { ...admin, "new-api-user": String(users.bob.id) });
    expect(res.body.data.total).toBe(all.filter((r) => r.userId === users.bob.id).length);
    expect((await call("/api/log/self", admin)).status).toBe(400);
    expect((await call("/api/log/self")).status).toBe(401);
  });

  it("stat sums the user's own records", async () => {
    const mine = all.filter((r) => r.userId === users.ann.id);
    const res = await call("/api/log/self/stat", as("ann"));
    expect(res.body).toEqual({
      success: true,
      message: "",
      data: {
        quota: mine.reduce((s, r) => s + r.quota, 0),
        rpm: mine.length,
        tpm: mine.reduce((s, r) => s + r.totalTokens, 0),
      },
    });
  });
});

describe("GET /api/log/stat", () => {
  it("sums quota for the filters, and rpm / tpm over the last minute", async () => {
    const ok = all.filter((r) => r.success);
    const res = await call("/api/log/stat?type=2", admin);
    expect(res.body.data).toEqual({
      quota: ok.reduce((s, r) => s + r.quota, 0),
      rpm: ok.length,
      tpm: ok.reduce((s, r) => s + r.totalTokens, 0),
    });
    expect((await call("/api/log/stat?type=3", admin)).body.data).toEqual({
      quota: 0,
      rpm: 0,
      tpm: 0,
    });
    const old = await call(
      `/api/log/stat?end_timestamp=${Math.floor(startedAt / 1000) - 120}`,
      admin,
    );
    expect(old.body.data).toEqual({ quota: 0, rpm: 0, tpm: 0 });
  });
});

describe("CSV export", () => {
  const rows = (text: string) => text.trim().split("\r\n");

  it("exports the filtered records with a header", async () => {
    const res = await call("/api/log/export?type=5", admin);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    const lines = rows(res.text);
    expect(lines[0]!.startsWith("id,time,request_id,key_id,key_name")).toBe(true);
    const failed = all.filter((r) => !r.success);
    expect(lines.slice(1).map((l) => Number(l.split(",")[0]))).toEqual(failed.map((r) => r.id));
  });

  it("exports a user's own records only", async () => {
    const res = await call("/api/log/self/export?username=bob", as("ann"));
    const mine = all.filter((r) => r.userId === users.ann.id);
    expect(
      rows(res.text)
        .slice(1)
        .map((l) => Number(l.split(",")[0])),
    ).toEqual(mine.map((r) => r.id));
  });

  it("pages through more records than one store page, none twice, none lost", async () => {
    const g = createGateway({ store: memoryStore(), secret: "x".repeat(40), logger: "silent" });
    const t = Date.UTC(2025, 0, 1);
    const recs = Array.from({ length: 2500 }, (_, i) => ({
      timestamp: t + Math.floor(i / 700), // long runs of one timestamp across page ends
      requestId: `r${i}`,
      keyId: 1,
      userId: null,
      credentialId: null,
      provider: "openai",
      route: "POST /v1/chat/completions",
      model: i % 2 ? "m" : "=cmd()",
      stream: false,
      status: 200,
      success: true,
      inputTokens: 1,
      outputTokens: 1,
      reasoningTokens: 0,
      cachedTokens: 0,
      totalTokens: 2,
      quota: 1,
      durationMs: 1,
      error: null,
    }));
    await g.store.commitUsage(
      recs.map((record) => ({ reservation: null, actualUnits: 1, record })),
      0,
    );
    let text = "";
    for await (const chunk of g.usage.exportCsv()) text += chunk;
    const lines = rows(text).slice(1);
    expect(lines).toHaveLength(2500);
    expect(new Set(lines.map((l) => l.split(",")[0])).size).toBe(2500);
    // A formula is shown, never run.
    expect(lines.some((l) => l.includes(",'=cmd()"))).toBe(true);
    await g.close();
  });
});

describe("GET /api/log/token", () => {
  it("shows a key its own records, read with the key itself", async () => {
    const res = await call("/api/log/token", { authorization: `Bearer ${keys.slow.key}` });
    expect(res.status).toBe(200);
    expect(res.body.data.map((i: NewApiLogItem) => i.token_name)).toEqual(["slow", "slow"]);
    const byQuery = await call(`/api/log/token?key=${keys.ann2.key}`);
    expect(byQuery.body.data.map((i: NewApiLogItem) => i.token_id)).toEqual([keys.ann2.id]);
    expect((await call("/api/log/token")).status).toBe(401);
    expect((await call("/api/log/token", { authorization: "Bearer sk-nope" })).status).toBe(401);
  });
});

describe("usage summary with cost", () => {
  it("sums per key, user, model, credential and day, through the library and the route", async () => {
    const sum = (pred: (r: UsageRecord) => boolean) => {
      const rs = all.filter(pred);
      return { requests: rs.length, quota: rs.reduce((s, r) => s + r.quota, 0) };
    };
    const checks: [string, (row: any) => (r: UsageRecord) => boolean][] = [
      ["key", (row) => (r) => r.keyId === row.id],
      ["user", (row) => (r) => r.userId === row.id],
      ["model", (row) => (r) => r.model === row.id],
      ["credential", (row) => (r) => r.credentialId === row.id],
      ["day", (row) => (r) => new Date(r.timestamp).toISOString().slice(0, 10) === row.id],
    ];
    for (const [by, pred] of checks) {
      const res = await call(`/v0/management/usage/summary?by=${by}`, admin);
      expect(res.status, by).toBe(200);
      const rows = res.body.rows as any[];
      expect(
        rows.reduce((s, r) => s + r.requests, 0),
        by,
      ).toBe(all.length);
      for (const row of rows) {
        expect({ requests: row.requests, quota: row.quota }, `${by} ${row.id}`).toEqual(
          sum(pred(row)),
        );
        expect(row.costUsd).toBe(row.quota / QUOTA_PER_USD);
      }
      expect(await gateway.usage.summary({ by: by as "key" })).toEqual(rows);
    }
    const perUser = await gateway.usage.summary({ by: "user" });
    expect(perUser.map((r) => String(r.id)).sort()).toEqual(
      [...new Set(all.map((r) => String(r.userId)))].sort(),
    );
    const one = await call(`/v0/management/usage/summary?by=model&key_id=${keys.bob.id}`, admin);
    expect(one.body.rows.map((r: any) => r.id).sort()).toEqual(["gpt-4o", "gpt-4o-mini"]);
    const future = new Date(Date.now() + 7_200_000).toISOString();
    expect((await call(`/v0/management/usage/summary?from=${future}`, admin)).body.rows).toEqual(
      [],
    );
  });

  it("refuses bad parameters and strangers", async () => {
    for (const q of ["by=week", "from=yesterday", "key_id=x"])
      expect((await call(`/v0/management/usage/summary?${q}`, admin)).status, q).toBe(400);
    expect((await call("/v0/management/usage/summary")).status).toBe(401);
  });
});

describe("DELETE /api/log/", () => {
  it("deletes records before the target time and keeps the roll-ups", async () => {
    const before = await gateway.usage.summary({ by: "model" });
    expect((await call("/api/log/", admin, "DELETE")).status).toBe(400);
    const res = await call(
      `/api/log/?target_timestamp=${Math.floor(Date.now() / 1000) + 5}`,
      admin,
      "DELETE",
    );
    expect(res.body).toEqual({ success: true, message: "", data: all.length });
    expect((await call("/api/log/", admin)).body.data.total).toBe(0);
    expect(await gateway.usage.summary({ by: "model" })).toEqual(before);
  });
});

// Last: it adds a record.
describe("request log bodies", () => {
  it("keeps bodies only with the request-log setting, redacted", async () => {
    await gateway.settings.set({ "request-log": true });
    try {
      await openai(keys.ann.key).chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: `my key is ${KEY_A}` }],
      });
      await gateway.usage.flush();
      const [rec] = (await gateway.usage.list({ limit: 1 })).items;
      expect(rec!.bodies?.request).toContain('"gpt-4o-mini"');
      expect(rec!.bodies?.request).not.toContain(KEY_A);
      expect(rec!.bodies?.response).toContain("chat.completion");
    } finally {
      await gateway.settings.set({ "request-log": false });
    }
  });
});
