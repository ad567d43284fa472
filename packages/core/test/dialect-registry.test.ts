import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BUILTIN_DIALECTS } from "../src/dialects/registry.js";
import { json } from "../src/exchange.js";
import { Router } from "../src/http/router.js";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { silentLogger } from "../src/logger.js";
import { resolveOptions } from "../src/options.js";

const SECRET = "dialects-secret-0123456789-0123456789-abc";

let gateway: Gateway;

beforeAll(async () => {
  gateway = createGateway({ store: memoryStore(), secret: SECRET, logger: false });
  await gateway.ready;
});
afterAll(() => gateway.close());

const call = async (method: string, path: string) => {
  const res = await gateway.handler(new Request(`http://gw${path}`, { method }));
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

describe("dialect registry", () => {
  it("names every built-in dialect once, with the one name used in folders and docs", () => {
    expect(BUILTIN_DIALECTS.map((d) => d.name)).toEqual([
      "new-api",
      "antigravity",
      "cliproxy",
      "openrouter",
      "openai",
      "anthropic",
      "gemini",
      "metrics",
    ]);
  });

  it("renders a 404 in the format of the dialect whose prefix the path is under", async () => {
    expect(await call("GET", "/api/nothing")).toMatchObject({
      status: 404,
      body: { success: false },
    });
    expect(await call("PATCH", "/v1/tokens")).toMatchObject({
      status: 405,
      body: { success: false },
    });
    expect(await call("GET", "/v1beta/nothing")).toMatchObject({
      status: 404,
      body: { error: { code: 404, status: "NOT_FOUND" } },
    });
    expect(await call("GET", "/v1/messages/nothing")).toMatchObject({
      status: 404,
      body: { type: "error" },
    });
    expect(await call("GET", "/v1/messagesx")).toMatchObject({
      status: 404,
      body: { type: "error" },
    });
    expect((await call("GET", "/nothing")).body.error).toMatchObject({ code: "not_found" });
  });

  it("takes a prefix as a whole path segment unless it ends in *", async () => {
    expect((await call("GET", "/apis")).body.error).toMatchObject({ code: "not_found" });
    expect((await call("GET", "/v1beta")).body.error).toMatchObject({ code: "not_found" });
    expect((await call("GET", "/v1/tokensx")).body.error).toMatchObject({ code: "not_found" });
  });

  it("answers 404 on every management path and method while no management key is set", async () => {
    expect(await call("DELETE", "/v0/management/usage")).toEqual({
      status: 404,
      body: {
        error: expect.stringMatching(
          /^not found: no management key is set; set one with `await gateway\.management\.setKey\(key\)`/,
        ),
      },
    });
  });

  it("answers 405 on a known management path once a management key is set", async () => {
    const gw = createGateway({ store: memoryStore(), secret: SECRET, logger: false });
    await gw.management.setKey("a-management-key-0123456789");
    const res = await gw.handler(
      new Request("http://gw/v0/management/usage", { method: "DELETE" }),
    );
    expect(res.status).toBe(405);
    expect(await res.json()).toEqual({ error: "method not allowed" });
    await gw.close();
  });
});

describe("Router scopes", () => {
  it("chooses the renderer of the longest matching prefix", async () => {
    const router = new Router(silentLogger)
      .scope(["/*"], () => json(404, { by: "root" }))
      .scope(["/v1"], () => json(404, { by: "v1" }))
      .scope(["/v1/tokens"], () => json(404, { by: "tokens" }));
    const by = async (path: string) => {
      const reply = await router.handle({
        method: "GET",
        path,
        search: "",
        headers: {},
      } as unknown as Parameters<Router["handle"]>[0]);
      return JSON.parse(String(reply.body)).by;
    };
    expect(await by("/v1/tokens/x")).toBe("tokens");
    expect(await by("/v1/models")).toBe("v1");
    expect(await by("/v1x")).toBe("root");
  });
});

describe("antigravityDialect option", () => {
  const base = { store: memoryStore(), secret: SECRET };
  it("sets the antigravity dialect's provider and base URL", () => {
    const { antigravityDialect } = resolveOptions({
      ...base,
      antigravityDialect: { provider: "x", baseUrl: "http://127.0.0.1:1" },
    });
    expect(antigravityDialect).toEqual({ provider: "x", baseUrl: "http://127.0.0.1:1" });
  });

  it("still takes the deprecated poolDialect, the new name winning field by field", () => {
    expect(
      resolveOptions({ ...base, poolDialect: { provider: "old" } }).antigravityDialect,
    ).toEqual({
      provider: "old",
      baseUrl: "https://daily-cloudcode-pa.sandbox.googleapis.com",
    });
    expect(
      resolveOptions({
        ...base,
        poolDialect: { provider: "old", baseUrl: "http://old" },
        antigravityDialect: { provider: "new" },
      }).antigravityDialect,
    ).toEqual({ provider: "new", baseUrl: "http://old" });
  });

  it("validates the new name like the old one", () => {
    expect(() => resolveOptions({ ...base, antigravityDialect: { baseUrl: "ftp://x" } })).toThrow(
      /antigravityDialect/,
    );
  });
});
