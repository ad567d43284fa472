import { createServer as createHttpServer, type Server } from "node:http";
import { type AddressInfo, connect, createServer as createTcpServer, type Socket } from "node:net";
import { createMockOAuth, createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, type Logger, memoryStore } from "../src/index.js";

const SECRET = "proxy-secret-0123456789-0123456789-abcdef";
const hello = { model: "gpt-4o-mini", messages: [{ role: "user", content: "via a proxy" }] };

/** An HTTP proxy that only tunnels (CONNECT), recording the targets it was asked for. */
async function startConnectProxy() {
  const targets: string[] = [];
  const server: Server = createHttpServer((_req, res) => res.writeHead(405).end());
  server.on("connect", (req, client: Socket, head: Buffer) => {
    targets.push(req.url ?? "");
    const [host, port] = (req.url ?? "").split(":");
    const upstream = connect(Number(port), host!, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n");
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.on("error", () => client.destroy());
    client.on("error", () => upstream.destroy());
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, targets, server };
}

/** A minimal SOCKS5 server (no auth, CONNECT to IPv4 or a domain), recording its targets. */
async function startSocks5() {
  const targets: string[] = [];
  const server = createTcpServer((client) => {
    client.once("data", (greeting: Buffer) => {
      if (greeting[0] !== 5) return client.destroy();
      client.write(Buffer.from([5, 0]));
      client.once("data", (req: Buffer) => {
        const atyp = req[3];
        let host: string;
        let at: number;
        if (atyp === 1) {
          host = [...req.subarray(4, 8)].join(".");
          at = 8;
        } else if (atyp === 3) {
          const len = req[4]!;
          host = req.subarray(5, 5 + len).toString();
          at = 5 + len;
        } else return client.destroy();
        const port = req.readUInt16BE(at);
        targets.push(`${host}:${port}`);
        const upstream = connect(port, host, () => {
          client.write(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
          upstream.pipe(client);
          client.pipe(upstream);
        });
        upstream.on("error", () => client.destroy());
        client.on("error", () => upstream.destroy());
      });
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { url: `socks5://127.0.0.1:${(server.address() as AddressInfo).port}`, targets, server };
}

let mock: MockUpstream;
let gateway: Gateway;
let key: string;
let lines: { message: string; fields?: Record<string, unknown> }[];

beforeEach(async () => {
  mock = await createMockUpstream({ apiKeys: ["k"] });
  lines = [];
  const record = (message: string, fields?: Record<string, unknown>) =>
    lines.push({ message, fields });
  const logger: Logger = { debug: record, info: record, warn: record, error: record };
  gateway = createGateway({ store: memoryStore(), secret: SECRET, logger });
  await gateway.credentials.add({
    id: "c",
    provider: "openai",
    baseUrl: mock.url,
    secret: { apiKey: "k" },
  });
  key = (await gateway.keys.create({ name: "p", unlimitedQuota: true })).key;
});

afterEach(async () => {
  await gateway.close();
  await mock.close();
});

const chat = () =>
  gateway.handler(
    new Request("http://gw/v1/chat/completions", {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify(hello),
    }),
    { remoteAddress: "127.0.0.1" },
  );

describe("proxy-url", () => {
  it("routes upstream traffic through an HTTP proxy from the next request on, and directly again once cleared", async () => {
    const proxy = await startConnectProxy();
    try {
      expect((await chat()).status).toBe(200);
      expect(proxy.targets).toHaveLength(0);
      await gateway.settings.set({ "proxy-url": proxy.url });
      expect((await chat()).status).toBe(200);
      expect(proxy.targets).toEqual([`127.0.0.1:${mock.port}`]);
      await gateway.settings.set({ "proxy-url": "" });
      expect((await chat()).status).toBe(200);
      expect(proxy.targets).toHaveLength(1);
    } finally {
      proxy.server.closeAllConnections();
      proxy.server.close();
    }
  });

  it("routes through a SOCKS5 proxy, and a credential's own proxy wins over the global one", async () => {
    const socks = await startSocks5();
    const http = await startConnectProxy();
    try {
      await gateway.settings.set({ "proxy-url": http.url });
      await gateway.credentials.update("c", { proxyUrl: socks.url });
      const res = await chat();
      expect(res.status).toBe(200);
      expect(((await res.json()) as { usage: unknown }).usage).toBeTruthy();
      expect(socks.targets).toEqual([`127.0.0.1:${mock.port}`]);
      expect(http.targets).toHaveLength(0);
    } finally {
      socks.server.close();
      http.server.closeAllConnections();
      http.server.close();
    }
  });
});

describe("proxy-url for count_tokens", () => {
  it("sends Anthropic count_tokens through the same proxy as proxied calls", async () => {
    await gateway.credentials.add({
      id: "a",
      provider: "anthropic",
      baseUrl: mock.origin,
      secret: { apiKey: "k" },
    });
    const proxy = await startConnectProxy();
    try {
      await gateway.settings.set({ "proxy-url": proxy.url });
      const res = await gateway.handler(
        new Request("http://gw/v1/messages/count_tokens", {
          method: "POST",
          headers: { "x-api-key": key, "content-type": "application/json" },
          body: JSON.stringify({
            model: "claude-sonnet-4-5",
            messages: [{ role: "user", content: "via a proxy" }],
          }),
        }),
        { remoteAddress: "127.0.0.1" },
      );
      expect(res.status).toBe(200);
      expect(((await res.json()) as { input_tokens: number }).input_tokens).toBeGreaterThan(0);
      expect(mock.requests.at(-1)?.path).toBe("/v1/messages/count_tokens");
      expect(proxy.targets).toEqual([`127.0.0.1:${mock.port}`]);
    } finally {
      proxy.server.closeAllConnections();
      proxy.server.close();
    }
  });
});

describe("proxy-url for token endpoints", () => {
  it("sends an OAuth refresh and a login's endpoint calls through the proxy-url setting", async () => {
    const oauth = await createMockOAuth({ refreshTokens: ["rt-proxy"], deviceInterval: 0.02 });
    const guarded = await createMockUpstream({ authorize: (t) => oauth.accepts(t) });
    const gw = createGateway({
      store: memoryStore(),
      secret: SECRET,
      logger: false,
      oauth: {
        scanIntervalMs: 0,
        providers: {
          openai: { tokenUrl: oauth.url, clientId: "tokenpool-test" },
          qwen: { deviceCodeUrl: oauth.deviceCodeUrl, tokenUrl: oauth.url },
        },
      },
    });
    const proxy = await startConnectProxy();
    const oauthHost = new URL(oauth.url).host;
    try {
      await gw.ready;
      await gw.settings.set({ "proxy-url": proxy.url });
      await gw.credentials.add({
        provider: "openai",
        kind: "oauth",
        baseUrl: guarded.url,
        secret: { accessToken: "stale", refreshToken: "rt-proxy", expiresAt: Date.now() - 1000 },
      });
      const apiKey = (await gw.keys.create({ name: "r", unlimitedQuota: true })).key;
      const res = await gw.handler(
        new Request("http://gw/v1/chat/completions", {
          method: "POST",
          headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
          body: JSON.stringify(hello),
        }),
        { remoteAddress: "127.0.0.1" },
      );
      expect(res.status).toBe(200);
      expect(oauth.calls("rt-proxy")).toBe(1);
      expect(proxy.targets).toContain(oauthHost);

      // A device login's first call (the device-code endpoint) takes the proxy the setting
      // names at that moment (another one: a fresh tunnel, not the refresh's).
      const second = await startConnectProxy();
      try {
        await gw.settings.set({ "proxy-url": second.url });
        const mgmt = await gw.management.generateKey();
        const start = await gw.handler(
          new Request("http://gw/v0/management/qwen-auth-url", {
            headers: { authorization: `Bearer ${mgmt}` },
          }),
          { remoteAddress: "127.0.0.1" },
        );
        expect(start.status).toBe(200);
        expect(second.targets).toEqual([oauthHost]);
      } finally {
        second.server.closeAllConnections();
        second.server.close();
      }
    } finally {
      proxy.server.closeAllConnections();
      proxy.server.close();
      await gw.close();
      await guarded.close();
      await oauth.close();
    }
  });
});

describe("request-log", () => {
  it("logs each proxied request with bodies, never the client's key, only while it is on", async () => {
    expect((await chat()).status).toBe(200);
    expect(lines.filter((l) => l.message === "request")).toHaveLength(0);
    await gateway.settings.set({ "request-log": true });
    expect((await chat()).status).toBe(200);
    const logged = lines.filter((l) => l.message === "request");
    expect(logged).toHaveLength(1);
    expect(logged[0]!.fields).toMatchObject({
      route: "POST /v1/chat/completions",
      model: "gpt-4o-mini",
      status: 200,
    });
    expect(String(logged[0]!.fields!.request)).toContain("via a proxy");
    expect(String(logged[0]!.fields!.response)).toContain("chat.completion");
    expect(JSON.stringify(lines)).not.toContain(key);
  });
});

describe("allow-localhost-unauthenticated", () => {
  const anonymous = (remoteAddress: string, headers: Record<string, string> = {}) =>
    gateway.handler(
      new Request("http://gw/v1/chat/completions", {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(hello),
      }),
      { remoteAddress },
    );

  it("lets loopback clients without a key through only while on, and records their usage", async () => {
    expect((await anonymous("127.0.0.1")).status).toBe(401);
    await gateway.settings.set({ "allow-localhost-unauthenticated": true });
    expect((await anonymous("127.0.0.1")).status).toBe(200);
    expect((await anonymous("::1")).status).toBe(200);
    // Not from elsewhere, not even with a forged X-Forwarded-For, and a wrong key is still wrong.
    expect((await anonymous("203.0.113.5")).status).toBe(401);
    expect((await anonymous("203.0.113.5", { "x-forwarded-for": "127.0.0.1" })).status).toBe(401);
    expect(
      (await anonymous("127.0.0.1", { authorization: "Bearer sk-wrong-000000000000" })).status,
    ).toBe(401);
    await gateway.usage.flush();
    const local = (await gateway.keys.list({ keyword: "localhost-unauthenticated" })).items;
    expect(local).toHaveLength(1);
    expect((await gateway.usage.list({ keyId: local[0]!.id })).total).toBe(2);
    await gateway.settings.set({ "allow-localhost-unauthenticated": false });
    expect((await anonymous("127.0.0.1")).status).toBe(401);
  });
});
