import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { authFileRoutes, parseMultipartFile } from "../src/dialects/cliproxy/auth-files.js";
import type { GatewayError } from "../src/errors.js";
import { json } from "../src/exchange.js";
import { Router } from "../src/http/router.js";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { silentLogger } from "../src/logger.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "authfiles-secret-0123456789-0123456789-ab";
const MGMT = "/v0/management";

const CLAUDE_FILE = {
  id_token: "",
  access_token: "sk-ant-oat01-access-AAAA",
  refresh_token: "sk-ant-ort01-refresh-BBBB",
  last_refresh: "2025-08-30T12:00:00Z",
  email: "alice@example.com",
  type: "claude",
  expired: "2025-08-30T20:00:00.000Z",
};
const GEMINI_FILE = {
  token: {
    access_token: "ya29.access-gemini",
    refresh_token: "1//refresh-gemini",
    token_type: "Bearer",
    expiry: "2025-08-30T13:34:56.000Z",
  },
  project_id: "my-project",
  email: "bob@example.com",
  type: "gemini",
};

let gateway: Gateway;
let server: Server;
let base: string;

beforeEach(async () => {
  gateway = createGateway({ store: memoryStore(), secret: SECRET, logger: false });
  await gateway.ready;
  const router = new Router(silentLogger, (_ex, err: GatewayError) =>
    json(err.status, { error: err.message }),
  );
  router.add(authFileRoutes({ guard: async () => {}, pool: gateway.credentials.pool }));
  server = createServer(toNodeHandler({ serve: (ex) => router.handle(ex) }));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}${MGMT}`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
});

async function uploadMultipart(name: string, content: string) {
  const form = new FormData();
  form.append("file", new Blob([content], { type: "application/json" }), name);
  const res = await fetch(`${base}/auth-files`, { method: "POST", body: form });
  return { status: res.status, body: await res.json() };
}

async function uploadRaw(name: string, content: string) {
  const res = await fetch(`${base}/auth-files?name=${name}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: content,
  });
  return { status: res.status, body: await res.json() };
}

interface FileRow {
  name: string;
  size: number;
  modtime: string;
  type: string;
}

async function get(path: string): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}${path}`);
  return { status: res.status, body: await res.json() };
}

async function del(query: string) {
  const res = await fetch(`${base}/auth-files?${query}`, { method: "DELETE" });
  return { status: res.status, body: await res.json() };
}

describe("auth files", () => {
  it("multipart upload creates an OAuth credential named after the file, listed with type", async () => {
    expect(await uploadMultipart("acc1.json", JSON.stringify(CLAUDE_FILE))).toEqual({
      status: 200,
      body: { status: "ok" },
    });
    const c = gateway.credentials.pool.get("acc1.json")!;
    expect(c).toMatchObject({
      provider: "anthropic",
      kind: "oauth",
      label: "alice@example.com",
      secret: {
        accessToken: CLAUDE_FILE.access_token,
        refreshToken: CLAUDE_FILE.refresh_token,
        expiresAt: Date.parse(CLAUDE_FILE.expired),
      },
    });
    const list = await get("/auth-files");
    expect(list.status).toBe(200);
    expect(list.body.files).toHaveLength(1);
    expect(list.body.files[0]).toMatchObject({ name: "acc1.json", type: "claude" });
    expect(list.body.files[0].size).toBeGreaterThan(0);
    expect(new Date(list.body.files[0].modtime).toISOString()).toBe(list.body.files[0].modtime);
  });

  it("raw JSON upload with ?name= and a download round trip", async () => {
    expect(await uploadRaw("gem.json", JSON.stringify(GEMINI_FILE))).toEqual({
      status: 200,
      body: { status: "ok" },
    });
    const res = await fetch(`${base}/auth-files/download?name=gem.json`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-disposition")).toBe('attachment; filename="gem.json"');
    const text = await res.text();
    const file = JSON.parse(text);
    expect(file).toMatchObject({
      type: "gemini",
      email: "bob@example.com",
      project_id: "my-project",
      token: {
        access_token: GEMINI_FILE.token.access_token,
        refresh_token: GEMINI_FILE.token.refresh_token,
        expiry: GEMINI_FILE.token.expiry,
      },
    });
    // The listed size is the downloaded file's size.
    const list = await get("/auth-files");
    expect(list.body.files[0]).toMatchObject({
      name: "gem.json",
      type: "gemini",
      size: text.length,
    });
    // Uploading the download again replaces the same credential.
    expect(await uploadRaw("gem.json", text)).toEqual({ status: 200, body: { status: "ok" } });
    expect(gateway.credentials.pool.list().map((c) => c.id)).toEqual(["gem.json"]);
    const claude = await (async () => {
      await uploadRaw("c.json", JSON.stringify(CLAUDE_FILE));
      return (await fetch(`${base}/auth-files/download?name=c.json`)).json();
    })();
    expect(claude).toMatchObject({
      type: "claude",
      access_token: CLAUDE_FILE.access_token,
      refresh_token: CLAUDE_FILE.refresh_token,
      expired: CLAUDE_FILE.expired,
      email: CLAUDE_FILE.email,
    });
  });

  it("lists OAuth credentials created elsewhere under a safe name", async () => {
    await gateway.credentials.add({
      id: "tok/odd id",
      provider: "codex",
      kind: "oauth",
      baseUrl: "https://chatgpt.com/backend-api/codex",
      secret: { accessToken: "at-x" },
    });
    await gateway.credentials.add({
      provider: "openai",
      baseUrl: "https://api.openai.com/v1",
      secret: { apiKey: "sk-not-a-file" },
    });
    const list = await get("/auth-files");
    expect((list.body.files as FileRow[]).map((f) => [f.name, f.type])).toEqual([
      ["tok_odd_id.json", "codex"],
    ]);
    const dl = await get("/auth-files/download?name=tok_odd_id.json");
    expect(dl.body).toMatchObject({ type: "codex", access_token: "at-x" });
    expect(await del("name=tok_odd_id.json")).toEqual({ status: 200, body: { status: "ok" } });
    expect(gateway.credentials.pool.list()).toHaveLength(1);
  });

  it("deletes one file and then all of them", async () => {
    await uploadRaw("a.json", JSON.stringify(CLAUDE_FILE));
    await uploadRaw("b.json", JSON.stringify(GEMINI_FILE));
    await uploadRaw("c.json", JSON.stringify({ ...CLAUDE_FILE, type: "codex" }));
    await uploadRaw("d.json", JSON.stringify({ ...CLAUDE_FILE, type: "qwen" }));
    expect(await del("name=a.json")).toEqual({ status: 200, body: { status: "ok" } });
    expect(await del("name=a.json")).toEqual({ status: 404, body: { error: "file not found" } });
    expect(await del("all=true")).toEqual({ status: 200, body: { status: "ok", deleted: 3 } });
    expect((await get("/auth-files")).body).toEqual({ files: [] });
  });

  it("answers 404 file not found for unknown names", async () => {
    expect(await get("/auth-files/download?name=nope.json")).toMatchObject({
      status: 404,
      body: { error: "file not found" },
    });
    expect(await del("name=nope.json")).toEqual({ status: 404, body: { error: "file not found" } });
  });

  it.each([
    "../x.json",
    "..%2Fx.json",
    "a%2Fb.json",
    "%2Fetc%2Fpasswd.json",
    "a%5Cb.json",
    "a%00.json",
    "x.txt",
    ".json.",
    "..json",
    `${"a".repeat(130)}.json`,
    "",
  ])("refuses the name %j with 400", async (name) => {
    const q = `name=${name}`;
    expect((await get(`/auth-files/download?${q}`)).status).toBe(400);
    expect((await del(q)).status).toBe(400);
    expect((await uploadRaw(name, JSON.stringify(CLAUDE_FILE))).status).toBe(400);
    expect(gateway.credentials.pool.list()).toEqual([]);
  });

  it("refuses path tricks in a multipart file name", async () => {
    expect((await uploadMultipart("../evil.json", JSON.stringify(CLAUDE_FILE))).status).toBe(400);
    expect((await uploadMultipart("evil.txt", JSON.stringify(CLAUDE_FILE))).status).toBe(400);
    expect(gateway.credentials.pool.list()).toEqual([]);
  });

  it("refuses invalid files: not JSON, unknown type, no token, no file part, too large", async () => {
    expect(await uploadRaw("a.json", "{nope")).toEqual({
      status: 400,
      body: { error: "invalid body" },
    });
    expect(await uploadRaw("a.json", JSON.stringify({ ...CLAUDE_FILE, type: "martian" }))).toEqual({
      status: 400,
      body: { error: "unknown auth file type" },
    });
    expect(await uploadRaw("a.json", JSON.stringify({ type: "claude", email: "x" }))).toEqual({
      status: 400,
      body: { error: "auth file holds no token" },
    });
    expect(await uploadRaw("a.json", "[1,2]")).toMatchObject({ status: 400 });
    const form = new FormData();
    form.append("other", "x");
    const res = await fetch(`${base}/auth-files`, { method: "POST", body: form });
    expect(res.status).toBe(400);
    const big = await uploadRaw(
      "a.json",
      JSON.stringify({ ...CLAUDE_FILE, pad: "x".repeat(2 << 20) }),
    );
    expect(big.status).toBe(413);
    expect(gateway.credentials.pool.list()).toEqual([]);
  });
});

describe("parseMultipartFile", () => {
  it("finds the file part among others and handles a quoted boundary", () => {
    const body = Buffer.from(
      '--xyz\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n' +
        '--xyz\r\nContent-Disposition: form-data; name="file"; filename="a.json"\r\n' +
        'Content-Type: application/json\r\n\r\n{"a":1}\r\n--xyz--\r\n',
    );
    const part = parseMultipartFile(body, 'multipart/form-data; boundary="xyz"');
    expect(part?.filename).toBe("a.json");
    expect(part?.data.toString()).toBe('{"a":1}');
    expect(parseMultipartFile(body, "multipart/form-data")).toBeNull();
    expect(
      parseMultipartFile(Buffer.from("--xyz\r\ngarbage"), "multipart/form-data; boundary=xyz"),
    ).toBeNull();
  });
});
