import { mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGateway, type Gateway } from "@tokenpool/core";
import { tokenpoolErrorHandler, tokenpoolRouter } from "@tokenpool/express";
import { sqliteStore } from "@tokenpool/store-sqlite";
import express from "express";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dashboard } from "../src/index.js";
import { launchBrowser, openPage, screenshot } from "./harness.js";

const KEY = "mgmt-mount-test-key-0123456789abcdef";
let dir: string;
let gateway: Gateway;
let server: Server;
let base: string;
let browser: Browser;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tokenpool-mount-"));
  gateway = createGateway({
    store: sqliteStore({ filename: join(dir, "gw.db") }),
    secret: "mount-test-secret-0123456789abcdef0123456789",
    logger: false,
    dialects: [dashboard({ path: "/ops/console" })],
  });
  await gateway.management.setKey(KEY);
  const app = express();
  app.get("/", (_req, res) => {
    res.send("the app's own page");
  });
  app.use("/gw", tokenpoolRouter(gateway), tokenpoolErrorHandler(gateway));
  server = app.listen(0, "127.0.0.1");
  await new Promise<void>((ok) => server.once("listening", () => ok()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchBrowser();
});
afterAll(async () => {
  await browser?.close();
  server?.closeAllConnections();
  await new Promise<void>((ok) => (server ? server.close(() => ok()) : ok()));
  await gateway?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("the console under an Express mount path and a path of its own", () => {
  it("redirects /gw/ops/console to its slash form and works there: login, the APIs found beside it", async () => {
    const { page, problems, context } = await openPage(browser);
    const res = await page.goto(`${base}/gw/ops/console`);
    expect(res?.status()).toBe(200);
    expect(new URL(page.url()).pathname).toBe("/gw/ops/console/");
    await page.getByLabel("Management key").fill(KEY);
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
    await screenshot(page, "mount-express");
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
