import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const KEY = "tp-cpa-api-call-key-0123456789";
const UPSTREAM_KEY = "sk-upstream-api-call-0123456789";

/** An upstream that echoes what it got (including the key: the answer must be redacted). */
let echo: Server;
let echoUrl: string;
const seen: { method: string; url: string; headers: Record<string, unknown>; body: string }[] = [];
const open: { gateway: Gateway; server: Server }[] = [];

beforeAll(async () => {
  echo = createServer((req, res) => {
    let body = "";
    req.on("data", (c) => {
      body += c;
    });
    req.on("end", () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      res.setHeader("x-echo-auth", String(req.headers.authorization ?? ""));
      res.setHeader("content-type", "application/json");
      res.statusCode = req.url?.includes("missing") ? 404 : 200;
      res.end(
        JSON.stringify({ auth: req.headers.authorization ?? null, body, data: [{ id: "m1" }] }),
      );
    });
  });
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r));
  echoUrl = `http://127.0.0.1:${(echo.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((r) => echo.close(r));
});
afterEach(async () => {
  seen.length = 0;
  for (const r of open.splice(0)) {
    await new Promise((res) => r.server.close(res));
    await r.gateway.close();
  }
});

async function start() {
  const gateway = createGateway({
    store: memoryStore(),
    secret: "cpa-api-call-secret-0123456789-0123456789",
    logger: false,
  });
  await gateway.ready;
  await gateway.management.setKey(KEY);
  const cred = await gateway.credentials.add({
    provider: "openai",
    baseUrl: `${echoUrl}/v1`,
    secret: { apiKey: UPSTREAM_KEY },
  });
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  open.push({ gateway, server });
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v0/management`;
  const call = async (body: unknown, auth = true) => {
    const res = await fetch(`${base}/api-call`, {
      method: "POST",
      headers: {
        ...(auth ? { authorization: `Bearer ${KEY}` } : {}),
        "content-type": "application/json",
      },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    return { status: res.status, body: (await res.json()) as any };
  };
  return { gateway, cred, call };
}

describe("POST /api-call", () => {
  it("calls the credential's own upstream with $TOKEN$ and redacts the key in the answer", async () => {
    const { cred, call } = await start();
    const res = await call({
      authIndex: cred.id,
      method: "POST",
      url: `${echoUrl}/v1/models?x=1`,
      header: { Authorization: "Bearer $TOKEN$", "X-Other": "a" },
      data: '{"q":1}',
    });
    expect(res.status).toBe(200);
    expect(seen[0]).toMatchObject({ method: "POST", url: "/v1/models?x=1", body: '{"q":1}' });
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(res.body.status_code).toBe(200);
    expect(res.body.header["content-type"]).toEqual(["application/json"]);
    expect(res.body.header["x-echo-auth"]).toEqual(["Bearer [redacted]"]);
    expect(JSON.parse(res.body.body)).toMatchObject({
      auth: "Bearer [redacted]",
      data: [{ id: "m1" }],
    });
    expect(JSON.stringify(res.body)).not.toContain(UPSTREAM_KEY);
    // Any upstream status is a 200 with status_code.
    const missing = await call({ auth_index: cred.id, method: "GET", url: `${echoUrl}/missing` });
    expect(missing.body.status_code).toBe(404);
  });

  it("without authIndex, goes through the credential whose key a header carries, on its upstream only", async () => {
    const { call } = await start();
    const res = await call({
      method: "GET",
      url: `${echoUrl}/v1/models`,
      header: { Authorization: `Bearer ${UPSTREAM_KEY}` },
    });
    expect(res.status).toBe(200);
    expect(res.body.status_code).toBe(200);
    expect(JSON.stringify(res.body)).not.toContain(UPSTREAM_KEY);
    expect(
      await call({
        method: "GET",
        url: "http://example.com/v1/models",
        header: { Authorization: `Bearer ${UPSTREAM_KEY}` },
      }),
    ).toEqual({ status: 400, body: { error: "auth_index is required" } });
    expect(
      await call({
        method: "GET",
        url: `${echoUrl}/v1/models`,
        header: { Authorization: "Bearer sk-someone-else-0123456789" },
      }),
    ).toEqual({ status: 400, body: { error: "auth_index is required" } });
    expect(seen).toHaveLength(1);
  });

  it("is never an open proxy: other hosts, no credential, Host overrides are refused", async () => {
    const { cred, call } = await start();
    const cases: [unknown, number, string][] = [
      [{ method: "GET", url: `${echoUrl}/v1/models` }, 400, "auth_index is required"],
      [
        { authIndex: "nope", method: "GET", url: `${echoUrl}/v1/models` },
        404,
        "credential not found",
      ],
      [
        { authIndex: cred.id, method: "GET", url: "http://example.com/v1/models" },
        400,
        "url is not on the credential's upstream",
      ],
      [
        { authIndex: cred.id, method: "GET", url: "http://127.0.0.1:1/v1/models" },
        400,
        "url is not on the credential's upstream",
      ],
      [
        {
          authIndex: cred.id,
          method: "GET",
          url: `${echoUrl.replace("http://", "http://u:p@")}/v1`,
        },
        400,
        "url is not on the credential's upstream",
      ],
      [{ authIndex: cred.id, method: "GET", url: "file:///etc/passwd" }, 400, "invalid url"],
      [{ authIndex: cred.id, method: "GET", url: "not a url" }, 400, "invalid url"],
      [{ authIndex: cred.id, url: `${echoUrl}/v1` }, 400, "missing method"],
      [{ authIndex: cred.id, method: "CONNECT", url: `${echoUrl}/v1` }, 400, "invalid method"],
      [{ authIndex: cred.id, method: "GET" }, 400, "missing url"],
      [
        {
          authIndex: cred.id,
          method: "GET",
          url: `${echoUrl}/v1`,
          header: { Host: "example.com" },
        },
        400,
        "header Host is not allowed",
      ],
      [
        {
          authIndex: cred.id,
          method: "GET",
          url: `${echoUrl}/v1`,
          header: { "X-A": "a\r\nX-B: b" },
        },
        400,
        "header X-A is not allowed",
      ],
      [
        { authIndex: cred.id, method: "GET", url: `${echoUrl}/v1`, header: { "X-A": 1 } },
        400,
        "invalid body",
      ],
      ["[1]", 400, "invalid body"],
    ];
    for (const [body, status, error] of cases)
      expect(await call(body)).toEqual({ status, body: { error } });
    expect(seen).toEqual([]);
    expect(
      (await call({ authIndex: cred.id, method: "GET", url: `${echoUrl}/v1` }, false)).status,
    ).toBe(401);
    expect(seen).toEqual([]);
  });
});
