import type { AddressInfo } from "node:net";
import {
  createGateway,
  type Exchange,
  type Gateway,
  memoryStore,
  type Reply,
} from "@tokenpool/core";
import {
  createMockUpstream,
  DEFAULT_MOCK_REPLY,
  type MockUpstream,
  sendRawBody,
} from "@tokenpool/testing";
import Fastify, { type FastifyInstance, type FastifyServerOptions } from "fastify";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { tokenpoolPlugin } from "../src/index.js";

const SECRET = "fastify-secret-0123456789-0123456789-abc";

const apps: FastifyInstance[] = [];

afterEach(async () => {
  for (const a of apps.splice(0)) {
    a.server.closeAllConnections();
    await a.close();
  }
});

async function start(
  gateway: Pick<Gateway, "serve">,
  options: FastifyServerOptions = {},
): Promise<{ app: FastifyInstance; base: string }> {
  const app = Fastify(options);
  apps.push(app);
  app.post("/echo", async (request) => ({ parsed: request.body }));
  await app.register(tokenpoolPlugin, { gateway, prefix: "/llm" });
  await app.listen({ port: 0, host: "127.0.0.1" });
  return { app, base: `http://127.0.0.1:${(app.server.address() as AddressInfo).port}` };
}

describe("tokenpoolPlugin with a real gateway", () => {
  let mock: MockUpstream;
  let gateway: Gateway;
  let key: string;

  beforeAll(async () => {
    mock = await createMockUpstream({ chunkDelayMs: 100 });
    gateway = createGateway({ store: memoryStore(), secret: SECRET, logger: false });
    await gateway.credentials.add({
      provider: "openai",
      baseUrl: mock.url,
      secret: { apiKey: "k" },
    });
    ({ key } = await gateway.keys.create({ name: "fastify", unlimitedQuota: true }));
  });

  afterAll(async () => {
    await gateway.close();
    await mock.close();
  });

  it("serves the openai client under the prefix (JSON and stream)", async () => {
    const { base } = await start(gateway);
    const client = new OpenAI({ apiKey: key, baseURL: `${base}/llm/v1`, maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hello" }],
    });
    expect(completion.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(completion.usage?.total_tokens).toBeGreaterThan(0);
    expect(mock.requests.at(-1)?.body).toMatchObject({
      messages: [{ role: "user", content: "hello" }],
    });

    const stream = await client.chat.completions.create({
      model: "gpt-4o-mini",
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: "user", content: "stream please" }],
    });
    let text = "";
    let total = 0;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      total = chunk.usage?.total_tokens ?? total;
    }
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(total).toBeGreaterThan(0);
  });

  it("delivers the first SSE chunk before the upstream has sent the last one", async () => {
    const { base } = await start(gateway);
    const started = Date.now();
    const res = await fetch(`${base}/llm/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({
        model: "gpt-4o-mini",
        stream: true,
        messages: [{ role: "user", content: "stream please" }],
      }),
    });
    const reader = res.body!.getReader();
    const first = await reader.read();
    const firstAt = Date.now() - started;
    expect(new TextDecoder().decode(first.value)).toContain("chat.completion.chunk");
    let rest = "";
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      rest += new TextDecoder().decode(value);
    }
    const total = Date.now() - started;
    expect(rest).toContain("[DONE]");
    expect(firstAt).toBeLessThan(total / 2);
  });

  it("serves management routes under the prefix with the management key", async () => {
    const { base } = await start(gateway);
    const managementKey = await gateway.management.generateKey();
    const res = await fetch(`${base}/llm/api/token/`, {
      method: "POST",
      headers: { authorization: `Bearer ${managementKey}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "made-through-fastify", unlimited_quota: true }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { success: boolean; data: { key: string } };
    expect(body.success).toBe(true);
    const client = new OpenAI({ apiKey: body.data.key, baseURL: `${base}/llm/v1` });
    const completion = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hello" }],
    });
    expect(completion.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
  });

  it("honours trustProxy: the X-Forwarded-For client meets the key's IP allowlist", async () => {
    const { key: limited } = await gateway.keys.create({
      name: "office-only",
      unlimitedQuota: true,
      allowIps: ["203.0.113.0/24"],
    });
    const ask = (base: string, forwardedFor: string) =>
      fetch(`${base}/llm/v1/chat/completions`, {
        method: "POST",
        headers: {
          authorization: `Bearer ${limited}`,
          "content-type": "application/json",
          "x-forwarded-for": forwardedFor,
        },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
      });
    const trusting = await start(gateway, { trustProxy: "127.0.0.1" });
    expect((await ask(trusting.base, "203.0.113.7")).status).toBe(200);
    const refused = await ask(trusting.base, "198.51.100.9");
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain(
      "198.51.100.9",
    );
    const plain = await start(gateway);
    expect((await ask(plain.base, "203.0.113.7")).status).toBe(403);
  });

  it("answers malformed JSON with a 400 in OpenAI's format", async () => {
    const { base } = await start(gateway);
    const res = await fetch(`${base}/llm/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: '{"model": "gpt-4o-mini", "messages": [',
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { message: string; type: string } };
    expect(body.error.type).toBe("invalid_request_error");
  });

  it("answers a readable 413 in OpenAI's format while the client is still sending", async () => {
    const small = createGateway({
      store: memoryStore(),
      secret: SECRET,
      logger: false,
      maxBodyBytes: 64 * 1024,
    });
    const { key: smallKey } = await small.keys.create({ name: "big", unlimitedQuota: true });
    const { base } = await start(small);
    const port = Number(new URL(base).port);
    for (const chunked of [false, true]) {
      for (const close of [false, true]) {
        const r = await sendRawBody({
          port,
          path: "/llm/v1/chat/completions",
          headers: { authorization: `Bearer ${smallKey}`, "content-type": "application/json" },
          bytes: 5 * 1024 * 1024,
          chunked,
          close,
        });
        expect(r.error, `chunked=${chunked} close=${close}`).toBe("");
        expect(r.status).toBe(413);
        expect(r.headers).toContain("connection: close");
        expect(JSON.parse(r.body)).toMatchObject({
          error: { type: "invalid_request_error", code: "body_too_large" },
        });
      }
    }
    await small.close();
  });

  it("keeps its parsers to itself: host routes still get Fastify's JSON parsing", async () => {
    const { base } = await start(gateway);
    const ok = await fetch(`${base}/echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: '{"a": [1, 2]}',
    });
    expect(await ok.json()).toEqual({ parsed: { a: [1, 2] } });
    // Fastify's own JSON errors and content-type checks still apply outside the prefix.
    const bad = await fetch(`${base}/echo`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: "{",
    });
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { code: string }).code).toBe("FST_ERR_CTP_INVALID_JSON_BODY");
    const unsupported = await fetch(`${base}/echo`, {
      method: "POST",
      headers: { "content-type": "application/x-unknown" },
      body: "x",
    });
    expect(unsupported.status).toBe(415);
  });
});

describe("tokenpoolPlugin conversions", () => {
  const echo = {
    async serve(ex: Exchange): Promise<Reply> {
      const body = await ex.body(1_000_000);
      return {
        status: 200,
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          method: ex.method,
          path: ex.path,
          search: ex.search,
          ip: ex.remoteAddress,
          body: body.toString("base64"),
        }),
      };
    },
  };
  type Echo = { method: string; path: string; search: string; ip: string; body: string };

  it("routes every method on the path after the prefix, query kept", async () => {
    const { base } = await start(echo);
    for (const method of ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]) {
      const res = await fetch(`${base}/llm/api/token/7?x=1&y=2`, { method });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ method, path: "/api/token/7", search: "x=1&y=2" });
    }
    const root = (await (await fetch(`${base}/llm?q=1`)).json()) as Echo;
    expect(root).toMatchObject({ path: "/", search: "q=1" });
    const head = await fetch(`${base}/llm/v1/models`, { method: "HEAD" });
    expect(head.status).toBe(200);
  });

  it("hands the gateway the raw body whatever its content type", async () => {
    const { base } = await start(echo);
    const bodies: [string | undefined, Buffer][] = [
      ["application/json", Buffer.from('{"a": 1,  "b": "é"}')],
      ["text/plain; charset=utf-8", Buffer.from("héllo")],
      ["application/octet-stream", Buffer.from([0, 1, 2, 255])],
      ["application/x-www-form-urlencoded", Buffer.from("a=1&b=2")],
      ["multipart/form-data; boundary=x", Buffer.from("--x\r\n\r\nv\r\n--x--")],
      [undefined, Buffer.from("no content type")],
    ];
    for (const [type, body] of bodies) {
      const res = await fetch(`${base}/llm/v1/chat/completions`, {
        method: "POST",
        headers: type ? { "content-type": type } : {},
        body: type ? body : new Blob([body]),
      });
      expect(res.status).toBe(200);
      const got = (await res.json()) as Echo;
      expect(Buffer.from(got.body, "base64")).toEqual(body);
    }
  });

  it("uses clientIp when given", async () => {
    const app = Fastify();
    apps.push(app);
    await app.register(tokenpoolPlugin, {
      gateway: echo,
      prefix: "/llm",
      clientIp: () => "192.0.2.1",
    });
    const res = await app.inject({ method: "GET", url: "/llm/v1/models" });
    expect(res.json()).toMatchObject({ ip: "192.0.2.1", path: "/v1/models" });
  });

  it("refuses to register without a gateway", async () => {
    const app = Fastify();
    apps.push(app);
    await expect(
      app.register(tokenpoolPlugin, { prefix: "/llm" } as never).ready(),
    ).rejects.toThrow(/gateway/);
  });
});

describe("Fastify's app.log as the gateway's logger", () => {
  it("plugs in as it is: one JSON line per request with the fields, no key in any line", async () => {
    const mock = await createMockUpstream();
    const raw: string[] = [];
    const app = Fastify({
      logger: { level: "info", stream: { write: (s: string) => raw.push(s) } },
    });
    apps.push(app);
    const gateway = createGateway({ store: memoryStore(), secret: SECRET, logger: app.log });
    try {
      await gateway.ready;
      await gateway.settings.set({ "request-log": true });
      await gateway.credentials.add({
        provider: "openai",
        baseUrl: mock.url,
        secret: { apiKey: "sk-fastify-upstream-0123456789abcdef" },
      });
      const { key, record } = await gateway.keys.create({ name: "log", unlimitedQuota: true });
      await app.register(tokenpoolPlugin, { gateway, prefix: "/llm" });
      await app.listen({ port: 0, host: "127.0.0.1" });
      const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
      const client = new OpenAI({ baseURL: `${base}/llm/v1`, apiKey: key, maxRetries: 0 });
      const pasted = "sk-pasted-into-a-prompt-0123456789abcdef";
      await client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: `here: ${pasted}` }],
      });
      // The request line is written when the request settles, which may follow the answer.
      const requestLine = () =>
        raw.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === "request");
      for (let i = 0; i < 100 && !requestLine(); i++) await new Promise((r) => setTimeout(r, 20));
      const line = requestLine();
      expect(line).toMatchObject({
        level: 30,
        keyId: record.id,
        status: 200,
        model: "gpt-4o-mini",
        request: expect.stringContaining("here: [redacted]"),
      });
      const all = raw.join("");
      expect(all).not.toContain(pasted);
      expect(all).not.toContain(key);
      expect(all).not.toContain("sk-fastify-upstream-0123456789abcdef");
    } finally {
      await gateway.close();
      await mock.close();
    }
  });
});
