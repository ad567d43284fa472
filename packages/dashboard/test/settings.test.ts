import type { Browser, Page } from "playwright-core";
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

/** `GET /v0/management/config` with the management key, as a script would read it. */
async function config(): Promise<Record<string, unknown>> {
  const res = await fetch(`${server.url}/v0/management/config`, {
    headers: { authorization: `Bearer ${server.managementKey}` },
  });
  expect(res.status).toBe(200);
  return (await res.json()) as Record<string, unknown>;
}

async function openSettings(page: Page): Promise<void> {
  await loginAsOperator(page, server);
  await page.goto(`${server.consoleUrl}#/settings`);
  await page.getByRole("heading", { level: 1, name: "Settings" }).waitFor();
  await page.getByLabel("request-retry", { exact: true }).waitFor();
}

/** A browser logs a refused request as a console error; an expected 400 is not a problem. */
const unexpected = (list: string[]) =>
  list.filter((p) => !/Failed to load resource: the server responded with a status of 400/.test(p));

describe("the settings page", () => {
  it("saves an integer and a boolean setting, which GET /v0/management/config then shows", async () => {
    const { page, problems, context } = await openPage(browser);
    await openSettings(page);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "settings-list");

    const before = await config();
    expect(before["request-retry"]).toBe(3);
    await page.getByLabel("request-retry", { exact: true }).fill("7");
    await page.getByRole("button", { name: "Save request-retry", exact: true }).click();
    await page.locator('[data-setting="request-retry"]').getByText("Saved.").waitFor();
    expect((await config())["request-retry"]).toBe(7);

    const requestLog = page.getByLabel("request-log", { exact: true });
    expect(await requestLog.isChecked()).toBe(false);
    await requestLog.check();
    await page.getByRole("button", { name: "Save request-log", exact: true }).click();
    await page.locator('[data-setting="request-log"]').getByText("Saved.").waitFor();
    expect((await config())["request-log"]).toBe(true);

    // Reset to default goes through a confirm.
    await page.getByRole("button", { name: /^Reset to default\W+request-retry$/ }).click();
    await page.getByTestId("confirm-ok").click();
    await expect.poll(async () => (await config())["request-retry"], { timeout: 5000 }).toBe(3);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("shows the API's message for a bad value and changes nothing", async () => {
    const { page, problems, context } = await openPage(browser);
    await openSettings(page);
    const before = (await config())["request-retry"];
    await page.getByLabel("request-retry", { exact: true }).fill("500");
    await page.getByRole("button", { name: "Save request-retry", exact: true }).click();
    const alert = page.locator('[data-setting="request-retry"] [role="alert"]');
    await expect(alert.textContent()).resolves.toMatch(
      /invalid value for the setting request-retry/,
    );
    expect((await config())["request-retry"]).toBe(before);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "settings-bad-value");

    // A JSON object setting is checked in the page before anything is sent.
    const ratio = page.getByLabel("model-ratio", { exact: true });
    await ratio.fill("{ not json");
    await page.getByRole("button", { name: "Save model-ratio", exact: true }).click();
    await expect(
      page.locator('[data-setting="model-ratio"] [role="alert"]').textContent(),
    ).resolves.toMatch(/Not valid JSON/);
    await ratio.fill("[1, 2]");
    await page.getByRole("button", { name: "Save model-ratio", exact: true }).click();
    await expect(
      page.locator('[data-setting="model-ratio"] [role="alert"]').textContent(),
    ).resolves.toMatch(/JSON object/);
    expect(unexpected(problems.list)).toEqual([]);
    await context.close();
  });

  it("shows config.yaml on demand and applies an edit after a confirm", async () => {
    const { page, problems, context } = await openPage(browser);
    await openSettings(page);
    await page.getByRole("button", { name: "Show config.yaml" }).click();
    const view = page.getByLabel("config.yaml (read-only)");
    await expect(view.textContent()).resolves.toMatch(/request-retry: \d+/);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "settings-config-yaml");

    await page.getByRole("button", { name: "Edit", exact: true }).click();
    const editor = page.getByRole("textbox", { name: "config.yaml", exact: true });
    const text = await editor.inputValue();
    await editor.fill(text.replace(/request-retry: \d+/, "request-retry: 9"));
    await page.getByRole("button", { name: "Save config.yaml" }).click();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await page.getByTestId("confirm-ok").click();
    await page.getByText(/Applied\. Changed: .*request-retry/).waitFor();
    expect((await config())["request-retry"]).toBe(9);
    // The form shows the new value too.
    await expect
      .poll(() => page.getByLabel("request-retry", { exact: true }).inputValue())
      .toBe("9");
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("fits a 360 px wide screen, in Chinese too, dark theme", async () => {
    const { page, problems, context } = await openPage(browser, {
      viewport: { width: 360, height: 780 },
      colorScheme: "dark",
    });
    await openSettings(page);
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
      360,
    );
    await screenshot(page, "settings-360");
    await page.getByLabel("Language").selectOption("zh");
    await page.getByRole("heading", { level: 1, name: "设置" }).waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
      360,
    );
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "settings-360-zh");
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
