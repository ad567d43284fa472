import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockOAuth, type MockOAuthServer } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const KEY = "tp-cpa-auth-files-key-0123456789";
let oauth: MockOAuthServer;
let gateway: Gateway;
let server: Server;
let base: string;

beforeEach(async () => {
  oauth = await createMockOAuth({ email: "user@example.com" });
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, res) => res.end();
  server = createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v0/management`;
  gateway = createGateway({
    store: memoryStore(),
    secret: "cpa-auth-files-secret-0123456789-0123456789",
    logger: false,
    oauth: {
      scanIntervalMs: 0,
      providers: {
        codex: {
          authorizeUrl: oauth.authorizeUrl,
          tokenUrl: oauth.url,
          redirectUri: "http://localhost:1455/auth/callback",
        },
      },
    },
  });
  await gateway.ready;
  await gateway.management.setKey(KEY);
  handler = toNodeHandler(gateway);
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
  await oauth.close();
});

async function call(method: string, path: string, body?: unknown, auth = true) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: {
      ...(auth ? { authorization: `Bearer ${KEY}` } : {}),
      ...(body !== undefined ? { "content-type": "application/json" } : {}),
    },
    ...(body !== undefined ? { body: typeof body === "string" ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, body: json as any };
}

async function upload(name: string, extra: Record<string, unknown> = {}) {
  const res = await fetch(`${base}/auth-files?name=${name}`, {
    method: "POST",
    headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
    body: JSON.stringify({
      type: "codex",
      access_token: `at-${name}`,
      refresh_token: `rt-${name}`,
      email: "a@example.com",
      ...extra,
    }),
  });
  expect(res.status).toBe(200);
}

describe("GET /auth-files (HEAD UI fields)", () => {
  it("adds id, auth_index, status, disabled, source, counts and 20 recent buckets", async () => {
    await upload("codex-a.json");
    const { body } = await call("GET", "/auth-files");
    expect(body.files).toHaveLength(1);
    const f = body.files[0];
    expect(f).toMatchObject({
      name: "codex-a.json",
      type: "codex",
      id: "codex-a.json",
      auth_index: "codex-a.json",
      provider: "codex",
      email: "a@example.com",
      status: "active",
      status_message: "",
      disabled: false,
      unavailable: false,
      runtime_only: false,
      source: "file",
      success: 0,
      failed: 0,
    });
    expect(f.recent_requests).toHaveLength(20);
    expect(JSON.stringify(body)).not.toContain("at-codex-a");
  });
});

describe("PATCH /auth-files/status", () => {
  it("disables and enables; bad bodies are 400, unknown names 404", async () => {
    await upload("codex-a.json");
    expect(
      (await call("PATCH", "/auth-files/status", { name: "codex-a.json", disabled: true })).body,
    ).toEqual({
      status: "ok",
      disabled: true,
    });
    expect(gateway.credentials.get("codex-a.json")?.enabled).toBe(false);
    expect((await call("GET", "/auth-files")).body.files[0]).toMatchObject({
      disabled: true,
      status: "disabled",
    });
    await call("PATCH", "/auth-files/status", { name: "codex-a.json", disabled: false });
    expect(gateway.credentials.get("codex-a.json")?.enabled).toBe(true);
    expect(await call("PATCH", "/auth-files/status", "{nope")).toMatchObject({
      status: 400,
      body: { error: "invalid request body" },
    });
    expect(await call("PATCH", "/auth-files/status", { disabled: true })).toMatchObject({
      status: 400,
      body: { error: "name is required" },
    });
    expect(await call("PATCH", "/auth-files/status", { name: "codex-a.json" })).toMatchObject({
      status: 400,
      body: { error: "disabled is required" },
    });
    expect(
      await call("PATCH", "/auth-files/status", { name: "x.json", disabled: true }),
    ).toMatchObject({
      status: 404,
      body: { error: "auth file not found" },
    });
  });
});

describe("PATCH /auth-files/fields", () => {
  it("sets the fields tokenpool has, accepts empty values of the others, refuses the rest whole", async () => {
    await upload("codex-a.json");
    const res = await call("PATCH", "/auth-files/fields", {
      name: "codex-a.json",
      priority: 7,
      weight: 3,
      proxy_url: "socks5://127.0.0.1:1080",
      headers: { "X-A": "1" },
      "excluded-models": "m1, m2",
      note: "",
      prefix: "",
      websockets: false,
    });
    expect(res).toEqual({ status: 200, body: { status: "ok" } });
    const c = gateway.credentials.get("codex-a.json")!;
    expect(c).toMatchObject({
      priority: 7,
      weight: 3,
      proxyUrl: "socks5://127.0.0.1:1080",
      headers: { "X-A": "1" },
      excludedModels: ["m1", "m2"],
    });
    const expired = new Date(Date.now() - 60_000).toISOString();
    await call("PATCH", "/auth-files/fields", { name: "codex-a.json", expired });
    expect(gateway.credentials.get("codex-a.json")!.secret.expiresAt).toBe(Date.parse(expired));

    for (const [body, error] of [
      [
        { name: "codex-a.json", priority: 1, note: "hello" },
        'auth file field "note" is not supported by tokenpool',
      ],
      [{ name: "codex-a.json", priority: 1, colour: "red" }, 'unknown auth file field "colour"'],
      [{ name: "codex-a.json", weight: 1.5 }, "weight must be an integer"],
      [{ name: "codex-a.json", proxy_url: "ftp://x" }, expect.stringContaining("proxy_url")],
      [{ name: "codex-a.json" }, "no fields to update"],
      [
        { name: "codex-a.json", excluded_models: [], "excluded-models": [] },
        'auth file fields "excluded_models" and "excluded-models" refer to the same field',
      ],
    ] as const) {
      expect(await call("PATCH", "/auth-files/fields", body)).toMatchObject({
        status: 400,
        body: { error },
      });
    }
    // Nothing of the refused bodies was written.
    expect(gateway.credentials.get("codex-a.json")!.priority).toBe(7);
    expect(
      await call("PATCH", "/auth-files/fields", { name: "x.json", priority: 1 }),
    ).toMatchObject({
      status: 404,
    });
  });
});

describe("GET /auth-files/models", () => {
  it("answers the models of the credential, [] for unknown names, 400 without a name", async () => {
    await upload("codex-a.json");
    await gateway.credentials.update("codex-a.json", {
      models: [{ name: "gpt-5" }, { name: "gpt-5-codex", alias: "codex" }],
    });
    expect((await call("GET", "/auth-files/models?name=codex-a.json")).body).toEqual({
      models: [
        { id: "gpt-5", owned_by: "codex" },
        { id: "codex", owned_by: "codex" },
      ],
    });
    expect((await call("GET", "/auth-files/models?name=nope.json")).body).toEqual({ models: [] });
    expect(await call("GET", "/auth-files/models")).toMatchObject({
      status: 400,
      body: { error: "name is required" },
    });
  });
});

describe("DELETE /auth-files with a { names } body", () => {
  it("deletes several (200), reports the missing ones (207), one name as before", async () => {
    for (const n of ["a.json", "b.json", "c.json", "d.json"]) await upload(n);
    expect((await call("DELETE", "/auth-files", { names: ["a.json", "b.json"] })).body).toEqual({
      status: "ok",
      deleted: 2,
      files: ["a.json", "b.json"],
    });
    const partial = await call("DELETE", "/auth-files", { names: ["c.json", "zz.json", "../x"] });
    expect(partial).toEqual({
      status: 207,
      body: {
        status: "partial",
        deleted: 1,
        files: ["c.json"],
        failed: [
          { name: "zz.json", error: "auth file not found" },
          { name: "../x", error: "invalid name" },
        ],
      },
    });
    expect(await call("DELETE", "/auth-files", { names: ["d.json"] })).toEqual({
      status: 200,
      body: { status: "ok" },
    });
    expect(await call("DELETE", "/auth-files", { names: ["d.json"] })).toMatchObject({
      status: 404,
    });
    expect(await call("DELETE", "/auth-files", "{bad")).toMatchObject({
      status: 400,
      body: { error: "invalid request body" },
    });
    expect(await call("DELETE", "/auth-files", { names: [1] })).toMatchObject({ status: 400 });
    expect((await call("GET", "/auth-files")).body.files).toEqual([]);
  });

  it("needs the management key", async () => {
    await upload("a.json");
    expect((await call("DELETE", "/auth-files", { names: ["a.json"] }, false)).status).toBe(401);
    expect(
      (await call("PATCH", "/auth-files/status", { name: "a.json", disabled: true }, false)).status,
    ).toBe(401);
    expect(
      (await call("PATCH", "/auth-files/fields", { name: "a.json", priority: 1 }, false)).status,
    ).toBe(401);
    expect((await call("GET", "/auth-files/models?name=a.json", undefined, false)).status).toBe(
      401,
    );
    expect(gateway.credentials.get("a.json")).toMatchObject({
      enabled: true,
      priority: expect.any(Number),
    });
  });
});

describe("login URLs and POST /oauth-callback", () => {
  it("answers 501 with a message for the logins tokenpool has no flow for", async () => {
    for (const login of ["antigravity", "iflow", "kimi", "xai"]) {
      const res = await call("GET", `/${login}-auth-url?is_webui=true`);
      expect(res.status).toBe(501);
      expect(res.body.error).toContain(login);
    }
    expect((await call("GET", "/kimi-auth-url", undefined, false)).status).toBe(401);
  });

  it("completes a code flow this gateway started from a relayed redirect, without a key", async () => {
    const start = (await call("GET", "/codex-auth-url?is_webui=true")).body;
    expect(start).toMatchObject({ status: "ok", state: expect.any(String) });
    // The user consents; the provider redirects to the (unreachable) loopback redirect URI,
    // and the user pastes that URL into the UI.
    const consent = await fetch(start.url, { redirect: "manual" });
    const redirect = consent.headers.get("location")!;
    expect(new URL(redirect).searchParams.get("state")).toBe(start.state);
    const res = await call(
      "POST",
      "/oauth-callback",
      { provider: "codex", redirect_url: redirect },
      false,
    );
    expect(res).toEqual({ status: 200, body: { status: "ok" } });
    expect((await call("GET", `/get-auth-status?state=${start.state}`)).body).toEqual({
      status: "ok",
    });
    expect((await call("GET", "/auth-files")).body.files).toHaveLength(1);
    // Single use.
    expect(
      await call("POST", "/oauth-callback", { provider: "codex", redirect_url: redirect }, false),
    ).toMatchObject({ status: 404, body: { status: "error", error: "unknown or expired state" } });
  });

  it("refuses states it did not issue and bad bodies, changing nothing", async () => {
    const cases: [unknown, number, string][] = [
      [
        {
          provider: "codex",
          redirect_url: "http://localhost:1455/auth/callback?code=c&state=forged",
        },
        404,
        "unknown or expired state",
      ],
      [{ provider: "codex", code: "c" }, 400, "state is required"],
      [{ provider: "codex", state: "s" }, 400, "code or error is required"],
      [{ provider: "codex", state: "a/b", code: "c" }, 400, "invalid state"],
      [{ provider: "kimi", state: "s", code: "c" }, 400, "unsupported provider"],
      [{ provider: "codex", redirect_url: "::" }, 400, "invalid redirect_url"],
      ["[1]", 400, "invalid body"],
    ];
    for (const [body, status, error] of cases)
      expect(await call("POST", "/oauth-callback", body, false)).toEqual({
        status,
        body: { status: "error", error },
      });
    expect((await call("GET", "/auth-files")).body.files).toEqual([]);
  });
});

describe("POST /auth-files with several files (HEAD UI)", () => {
  const form = (files: [string, unknown][], field = "file") => {
    const f = new FormData();
    for (const [name, json] of files)
      f.append(field, new Blob([typeof json === "string" ? json : JSON.stringify(json)]), name);
    return f;
  };
  const post = async (body: FormData) => {
    const res = await fetch(`${base}/auth-files`, {
      method: "POST",
      headers: { authorization: `Bearer ${KEY}` },
      body,
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  const token = (email: string) => ({
    type: "codex",
    access_token: "at",
    refresh_token: "rt",
    email,
  });

  it("saves every file part and says so: uploaded and files", async () => {
    const res = await post(
      form([
        ["codex-x.json", token("x@example.com")],
        ["codex-y.json", token("y@example.com")],
      ]),
    );
    expect(res).toEqual({
      status: 200,
      body: { status: "ok", uploaded: 2, files: ["codex-x.json", "codex-y.json"] },
    });
    expect((await call("GET", "/auth-files")).body.files.map((f: any) => f.name)).toEqual([
      "codex-x.json",
      "codex-y.json",
    ]);
  });

  it("reports refused files by name with a 207 and keeps the good ones", async () => {
    const res = await post(
      form([
        ["codex-x.json", token("x@example.com")],
        ["notes.txt", token("n@example.com")],
        ["codex-z.json", "{not json"],
      ]),
    );
    expect(res.status).toBe(207);
    expect(res.body).toEqual({
      status: "partial",
      uploaded: 1,
      files: ["codex-x.json"],
      failed: [
        { name: "notes.txt", error: expect.any(String) },
        { name: "codex-z.json", error: "invalid body" },
      ],
    });
    expect((await call("GET", "/auth-files")).body.files.map((f: any) => f.name)).toEqual([
      "codex-x.json",
    ]);
  });

  it("a form without a file part is a 400", async () => {
    const f = new FormData();
    f.append("note", "hello");
    expect(await post(f)).toEqual({ status: 400, body: { error: "no files uploaded" } });
  });
});
