import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "cpa-routes-logs-secret-0123456789-abcdef";
const KEY = "tp-cpa-logs-key-0123456789";
const UPSTREAM_KEY = "sk-upstream-logs-0123456789";

let mock: MockUpstream;
const open: { gateway: Gateway; server: Server }[] = [];

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
});
afterAll(async () => {
  await mock.close();
});
afterEach(async () => {
  for (const r of open.splice(0)) {
    await new Promise((res) => r.server.close(res));
    await r.gateway.close();
  }
  mock.reset();
});

async function start() {
  const gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
  });
  await gateway.ready;
  await gateway.management.setKey(KEY);
  await gateway.settings.set({ "request-retry": 0 });
  const cred = await gateway.credentials.add({
    provider: "openai",
    label: "mock",
    baseUrl: mock.url,
    secret: { apiKey: UPSTREAM_KEY },
  });
  const { key } = await gateway.keys.create({ name: "app", unlimitedQuota: true });
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  open.push({ gateway, server });
  const root = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const base = `${root}/v0/management`;
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${KEY}`,
        ...(body !== undefined ? { "content-type": "application/json" } : {}),
      },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: res.status, headers: res.headers, text, body: json as any };
  };
  const chat = async () => {
    const res = await fetch(`${root}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
    });
    await res.text();
    return res.status;
  };
  return { gateway, base, call, chat, cred, key };
}

describe("GET/DELETE /logs", () => {
  it("is 400 `logging to file disabled` while logging-to-file is off", async () => {
    const { call } = await start();
    expect(await call("GET", "/logs")).toMatchObject({
      status: 400,
      body: { error: "logging to file disabled" },
    });
    expect(await call("DELETE", "/logs")).toMatchObject({
      status: 400,
      body: { error: "logging to file disabled" },
    });
  });

  it("serves one line per request, continues from a cursor, and DELETE hides earlier lines", async () => {
    const { call, chat, gateway, key } = await start();
    await call("PUT", "/logging-to-file", { value: true });
    expect(await chat()).toBe(200);
    mock.fail({ status: 500 });
    expect(await chat()).toBeGreaterThanOrEqual(500);
    await gateway.usage.flush();
    const first = await call("GET", "/logs?limit=10000");
    expect(first.status).toBe(200);
    expect(first.body).toEqual({
      lines: [expect.any(String), expect.any(String)],
      "line-count": 2,
      "latest-timestamp": expect.any(Number),
      "next-cursor": expect.any(String),
    });
    const [ok, failed] = first.body.lines as string[];
    expect(ok).toMatch(
      /^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] \[info\] \[[^\]]+\] 200 POST \/v1\/chat\/completions model=gpt-4o-mini key=app /,
    );
    expect(failed).toMatch(/\[warn\].* error=/);
    expect(JSON.stringify(first.body)).not.toContain(UPSTREAM_KEY);
    expect(JSON.stringify(first.body)).not.toContain(key);
    expect(Math.abs(first.body["latest-timestamp"] - Date.now() / 1000)).toBeLessThan(60);

    // Nothing new after the cursor; one new line after another request.
    const none = await call("GET", `/logs?limit=10000&cursor=${first.body["next-cursor"]}`);
    expect(none.body.lines).toEqual([]);
    await chat();
    await gateway.usage.flush();
    const more = await call("GET", `/logs?limit=10000&cursor=${none.body["next-cursor"]}`);
    expect(more.body.lines).toHaveLength(1);
    expect(more.body["line-count"]).toBe(1);
    // A bad cursor: the tail, flagged.
    const reset = await call("GET", "/logs?cursor=garbage");
    expect(reset.body["cursor-reset"]).toBe(true);
    expect(reset.body.lines).toHaveLength(3);
    // v0.1.15's `after`: lines newer than the time given.
    const after = await call("GET", `/logs?after=${Math.floor(Date.now() / 1000) + 5}`);
    expect(after.body.lines).toEqual([]);

    expect(await call("GET", "/logs?limit=0")).toMatchObject({ status: 400 });
    expect(await call("GET", "/logs?limit=x")).toMatchObject({
      status: 400,
      body: { error: "invalid limit: must be a positive integer" },
    });

    expect((await call("DELETE", "/logs")).body).toEqual({
      success: true,
      message: "Logs cleared successfully",
      removed: 0,
    });
    expect((await call("GET", "/logs")).body.lines).toEqual([]);
    // The request log itself is kept.
    expect((await gateway.usage.list({})).total).toBe(3);
  });
});

describe("request error logs", () => {
  it("lists failed requests as files and answers one by name and by request id", async () => {
    const { call, chat, gateway } = await start();
    await chat();
    mock.fail({ status: 500 });
    await chat();
    await gateway.usage.flush();
    const list = await call("GET", "/request-error-logs");
    expect(list.status).toBe(200);
    expect(list.body.files).toHaveLength(1);
    const file = list.body.files[0];
    expect(file).toEqual({
      name: expect.stringMatching(/^error-\d+-[A-Za-z0-9._-]+\.log$/),
      size: expect.any(Number),
      modified: expect.any(Number),
    });
    const one = await call("GET", `/request-error-logs/${encodeURIComponent(file.name)}`);
    expect(one.status).toBe(200);
    expect(one.headers.get("content-disposition")).toBe(`attachment; filename="${file.name}"`);
    expect(one.text).toContain("success: false");
    expect(one.text).not.toContain(UPSTREAM_KEY);
    expect(Buffer.byteLength(one.text)).toBe(file.size);

    const requestId = (await gateway.usage.list({ success: false })).items[0]!.requestId;
    const byId = await call("GET", `/request-log-by-id/${requestId}`);
    expect(byId.status).toBe(200);
    expect(byId.text).toContain(`request id: ${requestId}`);

    expect(await call("GET", "/request-error-logs/error-1-nope.log")).toMatchObject({
      status: 404,
      body: { error: "log file not found" },
    });
    expect(await call("GET", "/request-error-logs/other.txt")).toMatchObject({ status: 404 });
    expect(await call("GET", `/request-error-logs/${encodeURIComponent("a/b")}`)).toMatchObject({
      status: 400,
      body: { error: "invalid log file name" },
    });
    expect(await call("GET", "/request-log-by-id/nope")).toMatchObject({
      status: 404,
      body: { error: "log file not found for the given request ID" },
    });
  });
});

describe("/usage source and failed, /api-key-usage", () => {
  it("adds per-API success/failure counts and per-detail source/failed", async () => {
    const { call, chat } = await start();
    await chat();
    mock.fail({ status: 500 });
    await chat();
    const { usage } = (await call("GET", "/usage")).body;
    const api = usage.apis["POST /v1/chat/completions"];
    expect(api).toMatchObject({ total_requests: 2, success_count: 1, failure_count: 1 });
    const details = api.models["gpt-4o-mini"].details;
    expect(details.map((d: any) => d.failed)).toEqual([false, true]);
    expect(details[0].source).toBe(`${UPSTREAM_KEY.slice(0, 4)}...${UPSTREAM_KEY.slice(-4)}`);
    expect(JSON.stringify(usage)).not.toContain(UPSTREAM_KEY);
  });

  it("answers the dashboard's provider → base|key → counts and 20 recent buckets", async () => {
    const { call, chat, cred } = await start();
    await chat();
    mock.fail({ status: 500 });
    await chat();
    const res = await call("GET", "/api-key-usage");
    expect(res.status).toBe(200);
    const entry = res.body.mock[`${cred.baseUrl}|${UPSTREAM_KEY}`];
    expect(entry).toMatchObject({ success: 1, failed: 1 });
    expect(entry.recent_requests).toHaveLength(20);
    expect(entry.recent_requests[19]).toMatchObject({
      time: expect.stringMatching(/^\d\d:\d\d-\d\d:\d\d$/),
      success: 1,
      failed: 1,
    });
  });

  it("needs the management key", async () => {
    const { base } = await start();
    for (const path of ["/logs", "/api-key-usage", "/request-error-logs", "/request-log-by-id/x"])
      expect((await fetch(`${base}${path}`)).status).toBe(401);
  });
});
