/**
 * What every browser test needs: a real gateway (SQLite store in a temp dir, node:http on port
 * 0, the console mounted by `dashboard()`), a mock upstream behind one credential, a management
 * key, and Debian's Chromium driven by playwright-core. Screenshots go to `.tmp/screenshots/`
 * at the repository root (CI keeps `.tmp/` as an artifact; it is not committed).
 */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import type { Server } from "node:http";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { createGateway, type Gateway, type GatewayOptions } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { dashboard } from "../src/index.js";

/** Where Debian's package puts Chromium (`.ci/run` installs it). */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
/** Screenshots of the test run (repository root `.tmp/screenshots/`). */
export const SCREENSHOTS = fileURLToPath(new URL("../../../.tmp/screenshots/", import.meta.url));

/** A running gateway with the console. */
export interface ConsoleServer {
  /** Base URL of the gateway, e.g. `http://127.0.0.1:40123`. */
  url: string;
  /** The console's address (`<url>/dashboard/`). */
  consoleUrl: string;
  gateway: Gateway;
  upstream: MockUpstream;
  /** The management key (plain). */
  managementKey: string;
  /** The id of the one upstream credential (the mock). */
  credentialId: string;
  close(): Promise<void>;
}

/** Options of {@link startConsoleServer}; all optional. */
export interface ConsoleServerOptions {
  /**
   * The gateway option `oauth` (e.g. login endpoints pointed at a mock OAuth server), or a
   * function of the gateway's base URL that returns it: a login's `redirectUri` names the
   * gateway's own port (`<url>/v0/management/oauth/callback`), known only once it listens.
   */
  oauth?: GatewayOptions["oauth"] | ((url: string) => GatewayOptions["oauth"]);
}

/** Starts a gateway with the console on a fresh SQLite file. */
export async function startConsoleServer(
  options: ConsoleServerOptions = {},
): Promise<ConsoleServer> {
  const dir = mkdtempSync(join(tmpdir(), "tokenpool-console-"));
  const upstream = await createMockUpstream();
  // The server listens first (answering nothing until the gateway is ready), so that options
  // may name its URL.
  let handler: ReturnType<typeof toNodeHandler> | undefined;
  const server: Server = createServer((req, res) => {
    if (handler) handler(req, res);
    else res.writeHead(503).end();
  });
  await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const oauth = typeof options.oauth === "function" ? options.oauth(url) : options.oauth;
  const gateway = await createGateway({
    store: sqliteStore({ filename: join(dir, "tokenpool.db") }),
    secret: "console-test-secret-0123456789abcdef0123456789",
    logger: false,
    dialects: [dashboard()],
    ...(oauth ? { oauth } : {}),
  });
  const managementKey = "mgmt-console-test-key-0123456789";
  await gateway.management.setKey(managementKey);
  const cred = await gateway.credentials.add({
    provider: "openai",
    kind: "api-key",
    label: "mock upstream",
    baseUrl: upstream.url,
    secret: { apiKey: "sk-upstream-mock-0123456789" },
  });
  handler = toNodeHandler(gateway);
  return {
    url,
    consoleUrl: `${url}/dashboard/`,
    gateway,
    upstream,
    managementKey,
    credentialId: cred.id,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((ok) => server.close(() => ok()));
      await gateway.close();
      await upstream.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Launches Debian's Chromium headless (root needs `--no-sandbox`). */
export async function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
  });
}

/** Problems a page reported: CSP violations, uncaught errors, console errors. */
export interface PageProblems {
  list: string[];
}

/**
 * A new page in a fresh context (no shared storage), recording every CSP violation, uncaught
 * error and console error so that a test can assert there were none.
 */
export async function openPage(
  browser: Browser,
  options: {
    locale?: string;
    viewport?: { width: number; height: number };
    colorScheme?: "light" | "dark";
  } = {},
): Promise<{ context: BrowserContext; page: Page; problems: PageProblems }> {
  const context = await browser.newContext({
    locale: options.locale ?? "en-US",
    viewport: options.viewport ?? { width: 1280, height: 860 },
    colorScheme: options.colorScheme ?? "light",
    acceptDownloads: true,
  });
  const page = await context.newPage();
  const problems: PageProblems = { list: [] };
  page.on("pageerror", (e) => problems.list.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.list.push(`console: ${m.text()}`);
  });
  return { context, page, problems };
}

/** Saves a full-page screenshot as `.tmp/screenshots/<name>.png`; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  const path = join(SCREENSHOTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}

/** Logs in with the management key through the login form. */
export async function loginAsOperator(page: Page, server: ConsoleServer): Promise<void> {
  await page.goto(server.consoleUrl);
  await page.getByLabel("Management key").fill(server.managementKey);
  await page.getByRole("button", { name: "Log in" }).click();
  await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
}
