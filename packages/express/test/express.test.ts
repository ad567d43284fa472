import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Exchange, Reply } from "@tokenpool/core";
import { createGateway, type Gateway, memoryStore } from "@tokenpool/core";
import {
  createMockUpstream,
  DEFAULT_MOCK_REPLY,
  type MockUpstream,
  sendRawBody,
} from "@tokenpool/testing";
import express, { type Express } from "express";
import OpenAI from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { tokenpoolErrorHandler, tokenpoolRouter } from "../src/index.js";

const SECRET = "express-secret-0123456789-0123456789-abc";

const servers: Server[] = [];

async function listen(app: Express): Promise<string> {
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, "127.0.0.1", () => resolve(s));
  });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

afterEach(async () => {
  for (const s of servers.splice(0)) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

describe("tokenpoolRouter with a real gateway", () => {
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
    ({ key } = await gateway.keys.create({ name: "express", unlimitedQuota: true }));
  });

  afterAll(async () => {
    await gateway.close();
    await mock.close();
  });

  /** An app as people write them: a JSON parser for everything, the gateway under /llm. */
  function app(configure?: (app: Express) => void): Express {
    const a = express();
    configure?.(a);
    a.use(express.json());
    a.get("/health", (_req, res) => {
      res.json({ ok: true });
    });
    a.use("/llm", tokenpoolRouter(gateway), tokenpoolErrorHandler(gateway));
    return a;
  }

  it("serves the openai client through the mount prefix after express.json()", async () => {
    const base = await listen(app());
    const client = new OpenAI({ apiKey: key, baseURL: `${base}/llm/v1`, maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hello" }],
    });
    expect(completion.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(completion.usage?.total_tokens).toBeGreaterThan(0);
    // The upstream got the body as the client sent it, re-encoded from req.body.
    const sent = mock.requests.at(-1)!;
    expect(sent.body).toMatchObject({ messages: [{ role: "user", content: "hello" }] });
    // A body whose re-encoding is shorter than what was sent (content-length no longer matches).
    const pretty = await fetch(`${base}/llm/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(
        { model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] },
        null,
        8,
      ),
    });
    expect(pretty.status).toBe(200);
    // The host app's own routes are untouched.
    expect(await (await fetch(`${base}/health`)).json()).toEqual({ ok: true });
  });

  it("serves a key's own balance through the mount: /v1/dashboard/billing, /v1/key, /api/usage/token", async () => {
    const base = await listen(app());
    const client = new OpenAI({ apiKey: key, baseURL: `${base}/llm/v1`, maxRetries: 0 });
    expect(await client.get("/dashboard/billing/subscription")).toMatchObject({
      object: "billing_subscription",
      hard_limit_usd: 100_000_000,
    });
    expect(await client.get("/key")).toMatchObject({ data: { label: "express", limit: null } });
    const usage = await fetch(`${base}/llm/api/usage/token`, {
      headers: { authorization: `Bearer ${key}` },
    });
    expect(await usage.json()).toMatchObject({
      code: true,
      data: { object: "token_usage", name: "express", unlimited_quota: true },
    });
  });

  it("streams with the openai client", async () => {
    const base = await listen(app());
    const client = new OpenAI({ apiKey: key, baseURL: `${base}/llm/v1`, maxRetries: 0 });
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
    const base = await listen(app());
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

  it("serves management routes under the mount with the management key", async () => {
    const base = await listen(app());
    const managementKey = await gateway.management.generateKey();
    const res = await fetch(`${base}/llm/api/token/`, {
      method: "POST",
      headers: { authorization: `Bearer ${managementKey}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "made-through-express", unlimited_quota: true }),
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

  it("honours trust proxy: the X-Forwarded-For client meets the key's IP allowlist", async () => {
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
    const trusting = await listen(app((a) => a.set("trust proxy", "loopback")));
    expect((await ask(trusting, "203.0.113.7")).status).toBe(200);
    const refused = await ask(trusting, "198.51.100.9");
    expect(refused.status).toBe(403);
    expect(((await refused.json()) as { error: { message: string } }).error.message).toContain(
      "198.51.100.9",
    );
    // Without trust proxy the header is ignored: the peer (127.0.0.1) is not on the list.
    const plain = await listen(app());
    expect((await ask(plain, "203.0.113.7")).status).toBe(403);
  });

  it("answers malformed JSON with a 400 in OpenAI's format, parser or not", async () => {
    const withParser = await listen(app());
    const bare = express();
    bare.use("/llm", tokenpoolRouter(gateway));
    const withoutParser = await listen(bare);
    for (const base of [withParser, withoutParser]) {
      const res = await fetch(`${base}/llm/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: '{"model": "gpt-4o-mini", "messages": [',
      });
      expect(res.status).toBe(400);
      const body = (await res.json()) as { error: { message: string; type: string } };
      expect(body.error.type).toBe("invalid_request_error");
      expect(body.error.message).toBeTruthy();
    }
  });
  it("answers a deeply nested body with a 400 in OpenAI's format after express.json(), not a 500", async () => {
    // express.json() parses it fine; re-encoding 5000 levels with JSON.stringify would overflow.
    const withParser = await listen(app());
    const bare = express();
    bare.use("/llm", tokenpoolRouter(gateway));
    const withoutParser = await listen(bare);
    const deep = `${"[".repeat(5000)}${"]".repeat(5000)}`;
    for (const base of [withParser, withoutParser]) {
      const res = await fetch(`${base}/llm/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}],"x":${deep}}`,
      });
      expect(res.status).toBe(400);
      expect(await res.json()).toMatchObject({
        error: { type: "invalid_request_error", code: "json_too_deep" },
      });
    }
  });
});

describe("tokenpoolRouter and oversized bodies", () => {
  it("answers a readable 413 in OpenAI's format while the client is still sending", async () => {
    const gateway = createGateway({
      store: memoryStore(),
      secret: SECRET,
      logger: false,
      maxBodyBytes: 64 * 1024,
    });
    const { key } = await gateway.keys.create({ name: "big", unlimitedQuota: true });
    const app = express();
    app.use("/llm", tokenpoolRouter(gateway));
    const base = await listen(app);
    const port = Number(new URL(base).port);
    for (const chunked of [false, true]) {
      for (const close of [false, true]) {
        const r = await sendRawBody({
          port,
          path: "/llm/v1/chat/completions",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
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
    await gateway.close();
  });
});

describe("tokenpoolRouter conversions", () => {
  /** A gateway stand-in that echoes what it was given. */
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
          body: body.toString("latin1"),
        }),
      };
    },
  };
  type Echo = { method: string; path: string; search: string; ip: string; body: string };

  async function send(app: Express, path: string, init?: RequestInit): Promise<Echo> {
    const base = await listen(app);
    const res = await fetch(`${base}${path}`, init);
    expect(res.status).toBe(200);
    return (await res.json()) as Echo;
  }

  it("routes on the path relative to the mount and keeps the query string", async () => {
    const app = express();
    app.use("/llm", tokenpoolRouter(echo));
    expect(await send(app, "/llm/v1beta/models/x:generateContent?alt=sse&key=k")).toMatchObject({
      method: "GET",
      path: "/v1beta/models/x:generateContent",
      search: "alt=sse&key=k",
    });
    expect(await send(app, "/llm?x=1")).toMatchObject({ path: "/", search: "x=1" });
  });

  it("uses clientIp when given", async () => {
    const app = express();
    app.use("/llm", tokenpoolRouter(echo, { clientIp: () => "192.0.2.1" }));
    expect((await send(app, "/llm/v1/models")).ip).toBe("192.0.2.1");
  });

  const cases: {
    name: string;
    parser: express.RequestHandler | null;
    type: string;
    body: string | Buffer;
    expected: string;
  }[] = [
    {
      name: "no parser",
      parser: null,
      type: "application/json",
      body: '{"a": 1}',
      expected: '{"a": 1}',
    },
    {
      name: "json()",
      parser: express.json(),
      type: "application/json",
      body: '{"a": [1, "é"]}',
      expected: '{"a":[1,"é"]}',
    },
    {
      name: "json({ strict: false }) with a string",
      parser: express.json({ strict: false }),
      type: "application/json",
      body: '"just text"',
      expected: '"just text"',
    },
    {
      name: "text()",
      parser: express.text(),
      type: "text/plain",
      body: "héllo",
      expected: "héllo",
    },
    {
      name: "text() in latin1",
      parser: express.text(),
      type: "text/plain; charset=latin1",
      body: Buffer.from("héllo", "latin1"),
      expected: "héllo",
    },
    {
      name: "raw()",
      parser: express.raw({ type: "*/*" }),
      type: "application/octet-stream",
      body: Buffer.from([0, 1, 2, 255]),
      expected: Buffer.from([0, 1, 2, 255]).toString("latin1"),
    },
    {
      name: "urlencoded({ extended: true })",
      parser: express.urlencoded({ extended: true }),
      type: "application/x-www-form-urlencoded",
      body: "a=1&b%5Bc%5D=x+y&d%5B0%5D=p&d%5B1%5D=q",
      expected: "a=1&b%5Bc%5D=x+y&d%5B0%5D=p&d%5B1%5D=q",
    },
    {
      name: "a json() parser that skips another content type",
      parser: express.json(),
      type: "text/plain",
      body: "left in the stream",
      expected: "left in the stream",
    },
    {
      // Express 4's parsers set `req.body = {}` even for requests they skip.
      name: "a parser that set req.body = {} without reading (Express 4)",
      parser: (req, _res, next) => {
        req.body = {};
        next();
      },
      type: "application/json",
      body: '{"still": "in the stream"}',
      expected: '{"still": "in the stream"}',
    },
  ];

  for (const c of cases) {
    it(`hands the gateway the body after ${c.name}`, async () => {
      const app = express();
      if (c.parser) app.use(c.parser);
      app.use("/llm", tokenpoolRouter(echo));
      const got = await send(app, "/llm/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": c.type },
        body: c.body,
      });
      // The echo decodes as latin1: compare bytes, not text.
      const bytes = Buffer.from(got.body, "latin1");
      const expected =
        c.name === "raw()" ? Buffer.from(c.expected, "latin1") : Buffer.from(c.expected, "utf8");
      if (c.name === "text() in latin1") expect(bytes).toEqual(Buffer.from("héllo", "latin1"));
      else expect(bytes).toEqual(expected);
    });
  }
});
