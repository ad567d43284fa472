import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createGateway, type Gateway, memoryStore } from "@tokenpool/core";
import express from "express";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { tokenpoolRouter } from "../src/index.js";

const MGMT = "express-cors-management-key-0123456789";

describe("the management API's CORS through tokenpoolRouter", () => {
  let gateway: Gateway;
  let server: Server;
  let base: string;

  beforeAll(async () => {
    gateway = createGateway({
      store: memoryStore(),
      secret: "express-cors-secret-0123456789-0123456789",
      logger: false,
    });
    await gateway.management.setKey(MGMT);
    const app = express();
    app.use(express.json());
    app.use("/llm", tokenpoolRouter(gateway));
    server = await new Promise<Server>((resolve) => {
      const s = app.listen(0, "127.0.0.1", () => resolve(s));
    });
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/llm`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await gateway.close();
  });

  it("lets the preflight reach the gateway (204 with the CORS headers, not Express's own OPTIONS answer)", async () => {
    const res = await fetch(`${base}/v0/management/openai-compatibility`, {
      method: "OPTIONS",
      headers: {
        origin: "https://panel.example.com",
        "access-control-request-method": "PATCH",
        "access-control-request-headers": "authorization, content-type",
      },
    });
    expect(res.status).toBe(204);
    expect(await res.text()).toBe("");
    expect(res.headers.get("access-control-allow-origin")).toBe("*");
    expect(res.headers.get("access-control-allow-methods")).toContain("PATCH");
    expect(res.headers.get("access-control-allow-headers")).toContain("Authorization");
  });

  it("sends the CORS and version headers on a cross-origin call with the key and on its 401", async () => {
    const ok = await fetch(`${base}/v0/management/config`, {
      headers: { origin: "https://panel.example.com", authorization: `Bearer ${MGMT}` },
    });
    expect(ok.status).toBe(200);
    expect(ok.headers.get("access-control-allow-origin")).toBe("*");
    expect(ok.headers.get("access-control-expose-headers")).toContain("X-CPA-VERSION");
    expect(ok.headers.get("x-cpa-version")).toMatch(/^\d+\.\d+\.\d+/);
    await ok.arrayBuffer();
    const denied = await fetch(`${base}/v0/management/config`, {
      headers: { origin: "https://panel.example.com" },
    });
    expect(denied.status).toBe(401);
    expect(denied.headers.get("access-control-allow-origin")).toBe("*");
    expect(denied.headers.get("x-cpa-version")).toMatch(/^\d+\.\d+\.\d+/);
    await denied.arrayBuffer();
  });
});
