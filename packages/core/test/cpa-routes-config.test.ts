import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "cpa-routes-config-secret-0123456789-abcdef";
const KEY = "tp-cpa-config-key-0123456789";
const open: { gateway: Gateway; server: Server }[] = [];

afterEach(async () => {
  for (const r of open.splice(0)) {
    await new Promise((res) => r.server.close(res));
    await r.gateway.close();
  }
});

async function start() {
  const gateway = createGateway({ store: memoryStore(), secret: SECRET, logger: false });
  await gateway.ready;
  await gateway.management.setKey(KEY);
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  open.push({ gateway, server });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v0/management`;
  const call = async (
    method: string,
    path: string,
    body?: unknown,
    headers: Record<string, string> = {},
  ) => {
    const res = await fetch(`${base}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${KEY}`,
        ...(body !== undefined && typeof body !== "string"
          ? { "content-type": "application/json" }
          : {}),
        ...headers,
      },
      ...(body !== undefined
        ? { body: typeof body === "string" ? body : JSON.stringify(body) }
        : {}),
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
  return { gateway, base, call };
}

describe("GET/PUT /config.yaml", () => {
  it("answers the /config view as YAML with CLIProxyAPI's headers", async () => {
    const { call } = await start();
    await call("PUT", "/api-keys", ["k1"]);
    const res = await call("GET", "/config.yaml", undefined, { accept: "application/yaml" });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/yaml; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("no-store");
    const yaml = parse(res.text);
    const config = (await call("GET", "/config")).body;
    expect(yaml).toEqual(config);
    expect(yaml["api-keys"]).toEqual(["k1"]);
    expect(res.text).not.toContain("$2");
  });

  it("applies what the YAML holds, keeps what it omits, and answers the changed fields", async () => {
    const { call } = await start();
    await call("PUT", "/api-keys", ["k1", "k2"]);
    await call("PUT", "/codex-api-key", [{ "api-key": "sk-codex-1" }]);
    const res = await call(
      "PUT",
      "/config.yaml",
      "debug: true\nrequest-retry: 5\nlogging-to-file: true\n# no api-keys, no codex-api-key\nport: 9999\nremote-management:\n  secret-key: other\n",
      { "content-type": "application/yaml" },
    );
    expect(res.status).toBe(200);
    expect(res.body).toEqual({
      ok: true,
      changed: expect.arrayContaining(["debug", "request-retry", "logging-to-file"]),
    });
    expect(res.body.changed).toHaveLength(3);
    const config = (await call("GET", "/config")).body;
    expect(config).toMatchObject({ debug: true, "request-retry": 5, "logging-to-file": true });
    // Omitted sections are untouched (the store-file hot reload's semantics).
    expect(config["api-keys"]).toEqual(["k1", "k2"]);
    expect(config["codex-api-key"].map((e: any) => e["api-key"])).toEqual(["sk-codex-1"]);
    // File-only fields are ignored: the management key still works.
    expect((await call("GET", "/debug")).body).toEqual({ debug: true });
    // A list the YAML names replaces the list, as in config.yaml.
    const wipe = await call("PUT", "/config.yaml", "api-keys: [k3]\n");
    expect(wipe.body).toEqual({ ok: true, changed: ["api-keys"] });
    expect((await call("GET", "/api-keys")).body).toEqual({ "api-keys": ["k3"] });
    // The same YAML again changes nothing.
    expect((await call("PUT", "/config.yaml", "api-keys: [k3]\n")).body).toEqual({
      ok: true,
      changed: [],
    });
  });

  it("refuses bad YAML (400) and bad values (422) without writing anything", async () => {
    const { call } = await start();
    await call("PUT", "/api-keys", ["k1"]);
    const before = (await call("GET", "/config")).body;
    const bad = await call("PUT", "/config.yaml", "debug: [true\n");
    expect(bad.status).toBe(400);
    expect(bad.body.error).toBe("invalid_yaml");
    expect(typeof bad.body.message).toBe("string");
    expect((await call("PUT", "/config.yaml", "- a\n- b\n")).status).toBe(400);
    const invalid = await call(
      "PUT",
      "/config.yaml",
      "debug: true\napi-keys: [k9]\nrequest-retry: lots\nproxy-url: ftp://x\n",
    );
    expect(invalid.status).toBe(422);
    expect(invalid.body.error).toBe("invalid_config");
    expect(invalid.body.message).toContain("request-retry");
    expect(invalid.body.message).toContain("proxy-url");
    expect((await call("GET", "/config")).body).toEqual(before);
  });

  it("needs the management key", async () => {
    const { base } = await start();
    expect((await fetch(`${base}/config.yaml`)).status).toBe(401);
    const put = await fetch(`${base}/config.yaml`, { method: "PUT", body: "debug: true\n" });
    expect(put.status).toBe(401);
  });
});

describe("usage-statistics-enabled, logging-to-file", () => {
  it("PUT/PATCH { value: bool }, GET, and the fields of /config", async () => {
    const { call, gateway } = await start();
    expect((await call("GET", "/usage-statistics-enabled")).body).toEqual({
      "usage-statistics-enabled": true,
    });
    expect((await call("GET", "/logging-to-file")).body).toEqual({ "logging-to-file": false });
    expect((await call("PUT", "/usage-statistics-enabled", { value: false })).body).toEqual({
      status: "ok",
    });
    expect((await call("PATCH", "/logging-to-file", { value: true })).body).toEqual({
      status: "ok",
    });
    expect(gateway.settings.get("logging-to-file")).toBe(true);
    const config = (await call("GET", "/config")).body;
    expect(config["usage-statistics-enabled"]).toBe(false);
    expect(config["logging-to-file"]).toBe(true);
    for (const value of ["true", 1, null]) {
      const res = await call("PUT", "/logging-to-file", { value });
      expect(res).toMatchObject({ status: 400, body: { error: "invalid body" } });
    }
    expect(gateway.settings.get("logging-to-file")).toBe(true);
  });
});

describe("GET /latest-version", () => {
  it("answers this gateway's own version", async () => {
    const { call } = await start();
    const res = await call("GET", "/latest-version");
    expect(res.status).toBe(200);
    expect(typeof res.body["latest-version"]).toBe("string");
    expect(res.body["latest-version"]).not.toBe("");
  });
});

describe("/oauth-excluded-models", () => {
  it("GET, PUT (map or items), PATCH (set, empty deletes), DELETE as CLIProxyAPI", async () => {
    const { call } = await start();
    const get = async () => (await call("GET", "/oauth-excluded-models")).body;
    expect(await get()).toEqual({ "oauth-excluded-models": {} });
    expect(
      (await call("PUT", "/oauth-excluded-models", { "Gemini-CLI": ["m1", " m2 ", "m1"] })).body,
    ).toEqual({ status: "ok" });
    expect(await get()).toEqual({ "oauth-excluded-models": { "gemini-cli": ["m1", "m2"] } });
    await call("PUT", "/oauth-excluded-models", { items: { codex: "a,b" } });
    expect(await get()).toEqual({ "oauth-excluded-models": { codex: ["a", "b"] } });
    expect(
      (await call("PATCH", "/oauth-excluded-models", { provider: "claude", models: ["x"] })).body,
    ).toEqual({
      status: "ok",
    });
    expect(
      (await call("PATCH", "/oauth-excluded-models", { provider: "codex", models: [] })).body,
    ).toEqual({
      status: "ok",
    });
    expect(await get()).toEqual({ "oauth-excluded-models": { claude: ["x"] } });
    expect(
      await call("PATCH", "/oauth-excluded-models", { provider: "codex", models: [] }),
    ).toMatchObject({
      status: 404,
      body: { error: "provider not found" },
    });
    expect(await call("PATCH", "/oauth-excluded-models", { models: ["x"] })).toMatchObject({
      status: 400,
      body: { error: "invalid body" },
    });
    expect(
      await call("PATCH", "/oauth-excluded-models", { provider: " ", models: ["x"] }),
    ).toMatchObject({
      status: 400,
      body: { error: "invalid provider" },
    });
    expect(await call("PUT", "/oauth-excluded-models", ["x"])).toMatchObject({ status: 400 });
    expect(await call("PUT", "/oauth-excluded-models", { a: [1] })).toMatchObject({ status: 400 });
    expect(await call("DELETE", "/oauth-excluded-models")).toMatchObject({
      status: 400,
      body: { error: "missing provider" },
    });
    expect(await call("DELETE", "/oauth-excluded-models?provider=nope")).toMatchObject({
      status: 404,
      body: { error: "provider not found" },
    });
    expect((await call("DELETE", "/oauth-excluded-models?provider=claude")).body).toEqual({
      status: "ok",
    });
    expect(await get()).toEqual({ "oauth-excluded-models": {} });
    expect((await call("GET", "/config")).body["oauth-excluded-models"]).toEqual({});
  });
});

describe("/oauth-model-alias", () => {
  it("GET, PATCH (set, empty deletes or 404), DELETE, PUT, bad shapes are 400", async () => {
    const { call } = await start();
    const get = async () => (await call("GET", "/oauth-model-alias")).body;
    expect(await get()).toEqual({ "oauth-model-alias": {} });
    const aliases = [{ name: "gemini-2.5-pro", alias: "g-pro", fork: true }];
    expect(
      (await call("PATCH", "/oauth-model-alias", { channel: "gemini-cli", aliases })).body,
    ).toEqual({
      status: "ok",
    });
    expect(await get()).toEqual({ "oauth-model-alias": { "gemini-cli": aliases } });
    expect((await call("GET", "/config")).body["oauth-model-alias"]).toEqual({
      "gemini-cli": aliases,
    });
    expect(
      await call("PATCH", "/oauth-model-alias", { channel: "codex", aliases: [] }),
    ).toMatchObject({
      status: 404,
      body: { error: "channel not found" },
    });
    expect(await call("PATCH", "/oauth-model-alias", { aliases })).toMatchObject({
      status: 400,
      body: { error: "invalid channel" },
    });
    expect(
      await call("PATCH", "/oauth-model-alias", { channel: "x", aliases: [{ name: "a" }] }),
    ).toMatchObject({ status: 400, body: { error: "invalid body" } });
    expect(await call("DELETE", "/oauth-model-alias")).toMatchObject({
      status: 400,
      body: { error: "missing channel" },
    });
    expect((await call("DELETE", "/oauth-model-alias?channel=gemini-cli")).body).toEqual({
      status: "ok",
    });
    expect(await get()).toEqual({ "oauth-model-alias": {} });
    await call("PUT", "/oauth-model-alias", { items: { codex: [{ name: "a", alias: "b" }] } });
    expect(await get()).toEqual({ "oauth-model-alias": { codex: [{ name: "a", alias: "b" }] } });
  });
});
