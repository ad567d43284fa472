import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

let gateway: Gateway;
let server: Server;
let base: string;
let mgmt: string;

beforeEach(async () => {
  gateway = createGateway({
    store: memoryStore(),
    secret: "mgmt-gw-secret-0123456789-0123456789-abcdef",
    logger: false,
  });
  await gateway.ready;
  mgmt = await gateway.management.generateKey();
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v0/management`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
});

const call = (path: string, init: RequestInit = {}, key: string | null = mgmt) =>
  fetch(`${base}${path}`, {
    ...init,
    headers: {
      "content-type": "application/json",
      ...(key === null ? {} : { authorization: `Bearer ${key}` }),
      ...(init.headers as Record<string, string>),
    },
  });

describe("management dialect through the real gateway", () => {
  it("serves the object lists, auth files and /config behind the management key", async () => {
    expect((await call("/claude-api-key", {}, null)).status).toBe(401);
    expect((await call("/claude-api-key", {}, "wrong-key-0123456789")).status).toBe(401);

    const put = await call("/claude-api-key", {
      method: "PUT",
      body: JSON.stringify([
        { "api-key": "sk-a" },
        { "api-key": "sk-b", "base-url": "https://c.example.com" },
      ]),
    });
    expect(await put.json()).toEqual({ status: "ok" });
    expect(await (await call("/claude-api-key")).json()).toEqual({
      "claude-api-key": [
        { "api-key": "sk-a", "base-url": "" },
        { "api-key": "sk-b", "base-url": "https://c.example.com" },
      ],
    });

    const upload = await call("/auth-files?name=acc1.json", {
      method: "POST",
      body: JSON.stringify({
        type: "claude",
        access_token: "at-1",
        refresh_token: "rt-1",
        email: "a@example.com",
      }),
    });
    expect(await upload.json()).toEqual({ status: "ok" });
    const files = (await (await call("/auth-files")).json()) as {
      files: { name: string; type: string }[];
    };
    expect(files.files.map((f) => [f.name, f.type])).toEqual([["acc1.json", "claude"]]);
    expect((await call("/auth-files/download?name=../acc1.json")).status).toBe(400);

    const config = (await (await call("/config")).json()) as Record<string, unknown>;
    expect(config["claude-api-key"]).toHaveLength(2);
    expect(JSON.stringify(config)).not.toMatch(/\$2[aby]\$/);
    expect(config).toHaveProperty("request-retry");
  });

  it("answers 404 for every management route when no management key is set", async () => {
    const g = createGateway({ store: memoryStore(), secret: "x".repeat(40), logger: false });
    try {
      const res = await g.handler(new Request("http://x/v0/management/config"), {
        remoteAddress: "127.0.0.1",
      });
      expect(res.status).toBe(404);
      expect(await res.json()).toHaveProperty("error");
    } finally {
      await g.close();
    }
  });
});
