import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { Readable } from "node:stream";
import { sendRawBody } from "@tokenpool/testing";
import { Agent, request } from "undici";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { EARLY_REPLY_DRAIN_MAX_BYTES, toNodeHandler } from "../src/node.js";

/** The gateway's body limit in these tests; every body sent is several MB over it. */
const LIMIT = 64 * 1024;
const BIG = Buffer.alloc(5 * 1024 * 1024, 0x61);
const CHUNK = 64 * 1024;

let gateway: Gateway;
let server: Server;
let port: number;
let base: string;
let key: string;
let mgmt: string;

beforeAll(async () => {
  gateway = createGateway({
    store: memoryStore(),
    secret: "body-limit-secret-0123456789-0123456789-abc",
    logger: false,
    maxBodyBytes: LIMIT,
  });
  await gateway.ready;
  ({ key } = await gateway.keys.create({ name: "big", unlimitedQuota: true }));
  mgmt = await gateway.management.generateKey();
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
});

async function* chunks(): AsyncGenerator<Buffer> {
  for (let at = 0; at < BIG.length; at += CHUNK) yield BIG.subarray(at, at + CHUNK);
}

/** The surfaces and the error shape each answers in. */
const SURFACES = [
  {
    name: "OpenAI",
    path: "/v1/chat/completions",
    auth: () => `Bearer ${key}`,
    check: (b: unknown) =>
      expect(b).toMatchObject({
        error: { type: "invalid_request_error", code: "body_too_large" },
      }),
  },
  {
    name: "Anthropic",
    path: "/v1/messages",
    auth: () => `Bearer ${key}`,
    check: (b: unknown) =>
      expect(b).toMatchObject({ type: "error", error: { type: "request_too_large" } }),
  },
  {
    name: "Gemini",
    path: "/v1beta/models/gpt-4o-mini:generateContent",
    auth: () => `Bearer ${key}`,
    check: (b: unknown) => expect(b).toMatchObject({ error: { code: 413 } }),
  },
  {
    name: "management",
    path: "/v0/management/api-keys",
    method: "PUT",
    auth: () => `Bearer ${mgmt}`,
    check: (b: unknown) => expect(b).toEqual({ error: expect.stringContaining("larger") }),
  },
] as const;

describe("oversized bodies on node:http", () => {
  for (const s of SURFACES) {
    const method = "method" in s ? s.method : "POST";

    it(`answers a readable 413 in the ${s.name} format to undici, declared length or chunked`, async () => {
      for (const body of [BIG, Readable.from(chunks())]) {
        const res = await request(`${base}${s.path}`, {
          method,
          headers: { authorization: s.auth(), "content-type": "application/json" },
          body,
        });
        expect(res.statusCode).toBe(413);
        expect(res.headers.connection).toBe("close");
        s.check(await res.body.json());
      }
    });

    it(`answers a readable 413 in the ${s.name} format to fetch, declared length or chunked`, async () => {
      for (const body of [BIG, ReadableStream.from(chunks())]) {
        const res = await fetch(`${base}${s.path}`, {
          method,
          headers: { authorization: s.auth(), "content-type": "application/json" },
          body,
          duplex: "half",
        } as RequestInit);
        expect(res.status).toBe(413);
        s.check(await res.json());
      }
    });

    it(`lets a raw ${s.name} client finish sending and read the 413, keep-alive or not`, async () => {
      for (const chunked of [false, true]) {
        for (const close of [false, true]) {
          const r = await sendRawBody({
            port,
            method,
            path: s.path,
            headers: { authorization: s.auth(), "content-type": "application/json" },
            bytes: BIG.length,
            chunked,
            close,
          });
          expect(r.error, `chunked=${chunked} close=${close}`).toBe("");
          expect(r.status).toBe(413);
          expect(r.headers).toContain("connection: close");
          s.check(JSON.parse(r.body));
        }
      }
    });
  }

  it("cuts a client that keeps sending far past the limit, after the 413", async () => {
    const { status, written } = await sendRawBody({
      port,
      path: "/v1/chat/completions",
      headers: { authorization: `Bearer ${key}` },
      bytes: 0,
      endless: true,
    });
    expect(status).toBe(413);
    // The server read (and threw away) a bounded amount, then closed.
    expect(written).toBeLessThan(EARLY_REPLY_DRAIN_MAX_BYTES + 16 * 1024 * 1024);
  });

  it("keeps serving: the next request on a fresh connection succeeds", async () => {
    const agent = new Agent();
    await request(`${base}/v1/chat/completions`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}` },
      body: BIG,
      dispatcher: agent,
    }).then((r) => r.body.dump());
    const res = await request(`${base}/healthz`, { dispatcher: agent });
    expect(res.statusCode).toBe(200);
    expect(await res.body.json()).toEqual({ status: "ok" });
    await agent.close();
  });
});
