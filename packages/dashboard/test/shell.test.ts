import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seriousA11yViolations } from "./a11y.js";
import {
  type ConsoleServer,
  launchBrowser,
  loginAsOperator,
  openPage,
  screenshot,
  startConsoleServer,
} from "./harness.js";

let server: ConsoleServer;
let browser: Browser;

beforeAll(async () => {
  [server, browser] = await Promise.all([startConsoleServer(), launchBrowser()]);
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

describe("the console's shell", () => {
  it("logs in with the management key, keeps it out of the URL and storage, and logs out on reload", async () => {
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    expect(page.url()).not.toContain(server.managementKey);
    const stored = await page.evaluate<string>(
      "JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie",
    );
    expect(stored).not.toContain(server.managementKey);
    await screenshot(page, "shell-overview");
    await page.reload();
    await page.getByRole("heading", { level: 1, name: "Log in to the console" }).waitFor();
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("refuses a wrong management key with the gateway's message", async () => {
    const { page, context } = await openPage(browser);
    await page.goto(server.consoleUrl);
    await page.getByLabel("Management key").fill("wrong-key");
    await page.getByRole("button", { name: "Log in" }).click();
    await expect(page.getByRole("alert").textContent()).resolves.toMatch(/did not work/);
    await context.close();
  });
});

describe("the console's shell, accessibility", () => {
  it("the login page and the overview have no serious or critical axe violations, light and dark", async () => {
    for (const colorScheme of ["light", "dark"] as const) {
      const { page, context } = await openPage(browser, { colorScheme });
      await page.goto(server.consoleUrl);
      await page.getByRole("heading", { level: 1 }).waitFor();
      expect(await seriousA11yViolations(page)).toEqual([]);
      await loginAsOperator(page, server);
      expect(await seriousA11yViolations(page)).toEqual([]);
      await context.close();
    }
  });
});
