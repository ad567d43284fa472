import { createGateway, type Gateway, memoryStore } from "@tokenpool/core";
import { createMockUpstream, DEFAULT_MOCK_REPLY, type MockUpstream } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  forgetGateway,
  getGateway,
  type NextRouteHandlers,
  toNextRouteHandlers,
} from "../src/index.js";

const SECRET = "test-secret-0123456789-0123456789-abcdef";
const UPSTREAM_KEY = "upstream-key-1";
const ORIGIN = "http://localhost:3000";

let mock: MockUpstream;
let gateway: Gateway;
let key: string;
let route: NextRouteHandlers;

/** The `{ params }` argument Next passes to a catch-all route handler. */
function paramsOf(path: string) {
  return { params: Promise.resolve({ path: path.split("/").filter(Boolean).slice(1) }) };
}

function chatRequest(body: object, init: { path?: string; headers?: Record<string, string> } = {}) {
  return new Request(`${ORIGIN}${init.path ?? "/api/v1/chat/completions"}`, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      authorization: `Bearer ${key}`,
      ...init.headers,
    },
    body: JSON.stringify(body),
  });
}

const hello = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello there!" }] };

beforeEach(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY], chunkDelayMs: 100 });
  gateway = createGateway({ store: memoryStore(), secret: SECRET, logger: false });
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    secret: { apiKey: UPSTREAM_KEY },
    models: [{ name: "gpt-4o-mini" }],
  });
  key = (await gateway.keys.create({ name: "next", unlimitedQuota: true })).key;
  route = toNextRouteHandlers(gateway, { basePath: "/api" });
});

afterEach(async () => {
  await gateway.close();
  await mock.close();
});

describe("toNextRouteHandlers", () => {
  it("answers a JSON chat completion under the base path", async () => {
    const res = await route.POST(chatRequest(hello), paramsOf("/api/v1/chat/completions"));
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(body.choices[0]!.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(mock.requests.at(-1)!.path).toBe("/v1/chat/completions");
  });

  it("streams SSE: the first chunk arrives before the upstream sent its last one", async () => {
    const started = Date.now();
    const res = await route.POST(chatRequest({ ...hello, stream: true }));
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const reader = res.body!.getReader();
    const decoder = new TextDecoder();
    const first = await reader.read();
    const firstAt = Date.now() - started;
    let text = decoder.decode(first.value);
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
    const total = Date.now() - started;
    // The reply has ~10 chunks 100 ms apart: a buffered answer would arrive all at the end.
    expect(total).toBeGreaterThan(500);
    expect(firstAt).toBeLessThan(total - 300);
    expect(text).toContain("data: [DONE]");
    const content = text
      .split("\n")
      .filter((l) => l.startsWith("data: {"))
      .map((l) => JSON.parse(l.slice(6)) as { choices: { delta?: { content?: string } }[] })
      .map((c) => c.choices[0]?.delta?.content ?? "")
      .join("");
    expect(content).toBe(DEFAULT_MOCK_REPLY);
  });

  it("serves the management API with the management key", async () => {
    const managementKey = await gateway.management.generateKey();
    const local = toNextRouteHandlers(gateway, { basePath: "/api", trustProxy: true });
    const res = await local.GET(
      new Request(`${ORIGIN}/api/v0/management/api-keys`, {
        headers: { authorization: `Bearer ${managementKey}`, "x-forwarded-for": "127.0.0.1" },
      }),
    );
    expect(res.status).toBe(200);

    const wrong = await local.GET(
      new Request(`${ORIGIN}/api/v0/management/api-keys`, {
        headers: { authorization: "Bearer not-the-key-000000", "x-forwarded-for": "127.0.0.1" },
      }),
    );
    expect(wrong.status).toBe(401);
  });

  it("gives the client address only from trusted proxy headers or clientIp", async () => {
    const managementKey = await gateway.management.generateKey();
    const call = (handlers: NextRouteHandlers, headers: Record<string, string> = {}) =>
      handlers.GET(
        new Request(`${ORIGIN}/api/v0/management/config`, {
          headers: { authorization: `Bearer ${managementKey}`, ...headers },
        }),
      );
    // Not trusted: a forged x-forwarded-for does not make the client local.
    expect((await call(route, { "x-forwarded-for": "127.0.0.1" })).status).toBe(403);
    // Trusted: the entry the nearest proxy appended counts, not the one the client sent.
    const proxied = toNextRouteHandlers(gateway, { basePath: "/api", trustProxy: true });
    expect((await call(proxied, { "x-forwarded-for": "127.0.0.1, 203.0.113.9" })).status).toBe(403);
    expect((await call(proxied, { "x-forwarded-for": "203.0.113.9, 127.0.0.1" })).status).toBe(200);
    expect((await call(proxied, { "x-real-ip": "127.0.0.1" })).status).toBe(200);
    const custom = toNextRouteHandlers(gateway, { basePath: "/api", clientIp: () => "::1" });
    expect((await call(custom)).status).toBe(200);
  });

  it("strips the base path and answers 404 outside it", async () => {
    const health = await route.GET(new Request(`${ORIGIN}/api/healthz`));
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: "ok" });

    const outside = await route.GET(new Request(`${ORIGIN}/healthz`));
    expect(outside.status).toBe(404);
    const lookalike = await route.GET(new Request(`${ORIGIN}/apiv1/healthz`));
    expect(lookalike.status).toBe(404);

    const unknown = await route.GET(new Request(`${ORIGIN}/api/nothing-here`));
    expect(unknown.status).toBe(404);
  });

  it("keeps the query string and accepts a base path with a trailing slash", async () => {
    const handlers = toNextRouteHandlers(gateway, { basePath: "/api/" });
    const res = await handlers.GET(
      new Request(`${ORIGIN}/api/v1/models?x=1`, { headers: { authorization: `Bearer ${key}` } }),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { data: { id: string }[] };
    expect(body.data.map((m) => m.id)).toContain("gpt-4o-mini");
  });

  it("serves the gateway's paths unchanged without a base path and takes a lazy gateway", async () => {
    let calls = 0;
    const handlers = toNextRouteHandlers(async () => {
      calls++;
      return gateway;
    });
    const res = await handlers.GET(new Request(`${ORIGIN}/healthz`));
    expect(res.status).toBe(200);
    expect(calls).toBe(1);
  });
});

describe("getGateway", () => {
  it("returns the same gateway on every call, as after a hot reload", async () => {
    forgetGateway("test-sync");
    let created = 0;
    const factory = () => {
      created++;
      return createGateway({ store: memoryStore(), secret: SECRET, logger: false });
    };
    const a = getGateway(factory, { key: "test-sync", closeOnExit: false });
    const b = getGateway(factory, { key: "test-sync", closeOnExit: false });
    expect(b).toBe(a);
    expect(created).toBe(1);
    // A module evaluated again (as after a hot reload) sees the same registry on globalThis.
    const registry = (globalThis as Record<symbol, Map<string, unknown>>)[
      Symbol.for("tokenpool.next.gateways")
    ];
    expect(registry?.has("test-sync")).toBe(true);
    forgetGateway("test-sync");
    await a.close();
  });

  it("shares one async factory run between concurrent callers and retries after a failure", async () => {
    forgetGateway("test-async");
    let attempts = 0;
    const failing = async (): Promise<Gateway> => {
      attempts++;
      throw new Error("store unavailable");
    };
    await expect(getGateway(failing, { key: "test-async" })).rejects.toThrow("store unavailable");
    const factory = async () => {
      attempts++;
      await new Promise((r) => setTimeout(r, 20));
      return createGateway({ store: memoryStore(), secret: SECRET, logger: false });
    };
    const [a, b] = await Promise.all([
      getGateway(factory, { key: "test-async", closeOnExit: false }),
      getGateway(factory, { key: "test-async", closeOnExit: false }),
    ]);
    expect(b).toBe(a);
    expect(attempts).toBe(2);
    // Once resolved, the gateway itself is returned, not a promise.
    expect(getGateway(factory, { key: "test-async" })).toBe(a);
    forgetGateway("test-async");
    await a.close();
  });
});
