/** Errors in every envelope, and the retry policy: idempotent calls only. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClient, isTokenpoolError, parseSse, TokenpoolError } from "../src/index.js";
import { startGateway, type TestGateway, tinyServer } from "./setup.js";

let g: TestGateway;

beforeAll(async () => {
  g = await startGateway();
});

afterAll(() => g.close());

async function rejection(p: Promise<unknown>): Promise<TokenpoolError> {
  try {
    await p;
  } catch (e) {
    expect(isTokenpoolError(e)).toBe(true);
    expect(e).toBeInstanceOf(TokenpoolError);
    return e as TokenpoolError;
  }
  throw new Error("expected a rejection");
}

/** A fetch that counts its calls and answers every one with `answer()`. */
function countingFetch(answer: () => Response) {
  const calls: string[] = [];
  const f: typeof fetch = async (input, init) => {
    const req = new Request(input, init);
    calls.push(`${req.method} ${new URL(req.url).pathname}`);
    return answer();
  };
  return { fetch: f, calls };
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });

describe("TokenpoolError", () => {
  it("401 from the token dialect carries the server's message and body", async () => {
    const client = createClient({ baseUrl: g.base, managementKey: "tp-mgmt-wrong" });
    const e = await rejection(client.tokens.list());
    expect(e.status).toBe(401);
    expect(e.name).toBe("TokenpoolError");
    expect(e.body).toMatchObject({ success: false });
    expect(e.message).toBe((e.body as { message: string }).message);
  });

  it("404 and 400 from the token dialect", async () => {
    const client = createClient({ baseUrl: g.base, managementKey: g.managementKey });
    expect((await rejection(client.tokens.get(987654))).status).toBe(404);
    const e = await rejection(client.tokens.create({ name: "x".repeat(31) }));
    expect(e.status).toBe(400);
    expect(e.message).toBe("Token name is too long");
    expect(e.code).toBeUndefined();
  });

  it("HTTP 200 with success: false is an error too", async () => {
    const { fetch } = countingFetch(() =>
      json(200, { success: false, message: "无权进行此操作，未登录且未提供 access token" }),
    );
    const client = createClient({ baseUrl: "http://gateway.test", fetch, managementKey: "k" });
    const e = await rejection(client.tokens.list());
    expect(e.status).toBe(200);
    expect(e.message).toBe("无权进行此操作，未登录且未提供 access token");
  });

  it("reads { error: { message, code } } and plain-text bodies", async () => {
    const openai = countingFetch(() =>
      json(429, {
        error: { message: "slow down", type: "rate_limit_error", code: "rate_limited" },
      }),
    );
    const a = createClient({ baseUrl: "http://gateway.test", fetch: openai.fetch, retry: 0 });
    const e = await rejection(a.proxy("sk-x").chat({ model: "m", messages: [] }));
    expect(e).toMatchObject({ status: 429, message: "slow down", code: "rate_limited" });

    const text = countingFetch(() => new Response("Bad Gateway", { status: 502 }));
    const b = createClient({ baseUrl: "http://gateway.test", fetch: text.fetch, retry: 0 });
    const t = await rejection(b.management.usage());
    expect(t).toMatchObject({ status: 502, message: "Bad Gateway", body: "Bad Gateway" });
  });

  it("a network failure is a TokenpoolError with status 0", async () => {
    const down = await tinyServer((_req, res) => res.end());
    await down.close();
    const client = createClient({ baseUrl: down.base, retry: 0 });
    const e = await rejection(client.management.config());
    expect(e).toMatchObject({ status: 0, code: "NETWORK_ERROR" });
  });

  it("createClient names the option when baseUrl is missing or invalid", () => {
    expect(() => createClient({} as never)).toThrow(/baseUrl/);
    expect(() => createClient({ baseUrl: "not a url" })).toThrow(/baseUrl/);
  });
});

describe("retries", () => {
  it("never retries a POST or a PATCH on 500", async () => {
    const c = countingFetch(() => json(500, { success: false, message: "boom" }));
    const client = createClient({ baseUrl: "http://gateway.test", fetch: c.fetch });
    expect((await rejection(client.tokens.create({ name: "once" }))).status).toBe(500);
    expect((await rejection(client.tokens.reveal(1))).status).toBe(500);
    expect(
      (await rejection(client.management.apiKeys.patch({ index: 0, value: "v" }))).status,
    ).toBe(500);
    expect((await rejection(client.proxy("sk").chat({ model: "m", messages: [] }))).status).toBe(
      500,
    );
    expect(c.calls).toEqual([
      "POST /api/token/",
      "POST /api/token/1/key",
      "PATCH /v0/management/api-keys",
      "POST /v1/chat/completions",
    ]);
  });

  it("retries a GET on 500 up to the limit", async () => {
    const c = countingFetch(() => json(500, { error: "boom" }));
    const client = createClient({ baseUrl: "http://gateway.test", fetch: c.fetch, retry: 1 });
    expect((await rejection(client.management.usage())).message).toBe("boom");
    expect(c.calls).toEqual(["GET /v0/management/usage", "GET /v0/management/usage"]);
  });

  it("retries a GET on 503 until the server answers", async () => {
    let hits = 0;
    const server = await tinyServer((_req, res) => {
      hits++;
      if (hits <= 2) {
        res.writeHead(503, { "content-type": "application/json", "retry-after": "0" });
        res.end(JSON.stringify({ success: false, message: "busy" }));
        return;
      }
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ success: true, message: "", data: { id: 7, name: "seven" } }));
    });
    try {
      const client = createClient({ baseUrl: server.base, managementKey: "k" });
      expect(await client.tokens.get(7)).toEqual({ id: 7, name: "seven" });
      expect(hits).toBe(3);
    } finally {
      await server.close();
    }
  });

  it("retries a PUT and a DELETE (idempotent) on 503", async () => {
    const c = countingFetch(() => json(503, { error: "busy" }));
    const client = createClient({ baseUrl: "http://gateway.test", fetch: c.fetch, retry: 1 });
    await rejection(client.management.settings.set("debug", true));
    await rejection(client.pool.delete("id-1"));
    expect(c.calls).toEqual([
      "PUT /v0/management/debug",
      "PUT /v0/management/debug",
      "DELETE /v1/tokens/id-1",
      "DELETE /v1/tokens/id-1",
    ]);
  });
});

describe("parseSse", () => {
  const encode = (s: string) => new TextEncoder().encode(s);
  const streamOf = (parts: string[]) =>
    new ReadableStream<Uint8Array>({
      start(c) {
        for (const p of parts) c.enqueue(encode(p));
        c.close();
      },
    });
  const all = async (parts: string[]) => {
    const out = [];
    for await (const e of parseSse(streamOf(parts))) out.push(e);
    return out;
  };

  it("parses events split anywhere, with any line ending", async () => {
    const text =
      ': comment\r\nevent: a\r\ndata: {"x":1}\r\n\r\ndata: line1\ndata: line2\n\ndata:no-space\r\rdata: last';
    const expected = [
      { event: "a", data: '{"x":1}' },
      { event: undefined, data: "line1\nline2" },
      { event: undefined, data: "no-space" },
      { event: undefined, data: "last" },
    ];
    expect(await all([text])).toEqual(expected);
    expect(await all([...text])).toEqual(expected); // one character at a time
  });
});
