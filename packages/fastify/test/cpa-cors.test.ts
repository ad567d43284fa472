import type { AddressInfo } from "node:net";
import { createGateway, type Gateway, memoryStore } from "@tokenpool/core";
import Fastify, { type FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tokenpoolPlugin } from "../src/index.js";

const MGMT = "fastify-cors-management-key-0123456789";

describe("the management API's CORS through tokenpoolPlugin", () => {
  let gateway: Gateway;
  let app: FastifyInstance;
  let base: string;

  beforeAll(async () => {
    gateway = createGateway({
      store: memoryStore(),
      secret: "fastify-cors-secret-0123456789-0123456789",
      logger: false,
    });
    await gateway.management.setKey(MGMT);
    app = Fastify();
    await app.register(tokenpoolPlugin, { gateway, prefix: "/llm" });
    await app.listen({ port: 0, host: "127.0.0.1" });
    base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}/llm`;
  });

  afterAll(async () => {
    app.server.closeAllConnections();
    await app.close();
    await gateway.close();
  });

  it("lets the preflight reach the gateway (204 with the CORS headers)", async () => {
    const res = await fetch(`${base}/v0/management/config`, {
      method: "OPTIONS",
      headers: {
        origin: "https://panel.example.com",
        "access-control-request-method": "PUT",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(res.status).toBe(204);
    expect(await res.text()).toBe("");
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-headers")).toContain("X-Management-Key");
  });

  it("sends the CORS and version headers on a cross-origin call with the key", async () => {
    const res = await fetch(`${base}/v0/management/config`, {
      headers: { origin: "https://panel.example.com", authorization: `Bearer ${MGMT}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("x-cpa-support-plugin")).toBe("0");
    await res.arrayBuffer();
  });
});
