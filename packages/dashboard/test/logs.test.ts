import { readFileSync } from "node:fs";
import OpenAI from "openai";
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

interface LogItem {
  request_id: string;
  token_name: string;
  model_name: string;
  type: number;
  other: string;
}

/** The gateway's own answer: the log API with the management key. */
async function logs(query = ""): Promise<{ items: LogItem[]; total: number }> {
  const res = await fetch(`${server.url}/api/log/?page_size=100${query}`, {
    headers: { authorization: `Bearer ${server.managementKey}` },
  });
  return ((await res.json()) as { data: { items: LogItem[]; total: number } }).data;
}

const client = (key: string) =>
  new OpenAI({ apiKey: key, baseURL: `${server.url}/v1`, maxRetries: 0 });
const chat = (c: OpenAI, model: string) =>
  c.chat.completions.create({ model, messages: [{ role: "user", content: "hello" }] });

beforeAll(async () => {
  [server, browser] = await Promise.all([startConsoleServer(), launchBrowser()]);
  const alpha = await server.gateway.keys.create({ name: "alpha-key", remainQuota: 5_000_000 });
  const beta = await server.gateway.keys.create({ name: "beta-key", remainQuota: 5_000_000 });
  await chat(client(alpha.key), "gpt-4o-mini");
  await chat(client(alpha.key), "gpt-4o");
  await chat(client(beta.key), "gpt-4o-mini");
  server.upstream.fail({ status: 400 });
  await expect(chat(client(beta.key), "gpt-4o")).rejects.toThrow();
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

/** The request ids in the table, in order. */
async function rowsOf(page: Page): Promise<string[]> {
  return page
    .getByRole("region", { name: "Request log records" })
    .locator("tbody tr")
    .allTextContents();
}

async function openLogs(page: Page) {
  await loginAsOperator(page, server);
  await page
    .getByRole("navigation", { name: "Main" })
    .getByRole("link", { name: "Request logs" })
    .click();
  await page.getByRole("heading", { level: 1, name: "Request logs" }).waitFor();
  await page.getByTestId("log-stat").waitFor();
}

describe("the request logs", () => {
  it("lists the requests with key and model, filters them, shows a record's details and exports the filtered CSV", async () => {
    const all = await logs();
    expect(all.total).toBe(4);
    const { page, problems, context } = await openPage(browser);
    await openLogs(page);
    let rows = await rowsOf(page);
    expect(rows).toHaveLength(4);
    expect(rows.some((r) => r.includes("alpha-key") && r.includes("gpt-4o-mini"))).toBe(true);
    expect(rows.some((r) => r.includes("beta-key") && r.includes("Error"))).toBe(true);
    expect(await page.getByText("Page 1 of 1 · 4 in all").count()).toBe(1);
    await screenshot(page, "logs");
    expect(await seriousA11yViolations(page)).toEqual([]);

    // Model filter.
    await page.getByLabel("Model").fill("gpt-4o-mini");
    await page.getByRole("button", { name: "Apply" }).click();
    await expect.poll(async () => (await rowsOf(page)).length).toBe(2);
    rows = await rowsOf(page);
    expect(rows.every((r) => r.includes("gpt-4o-mini"))).toBe(true);

    // Key filter too.
    await page.getByLabel("Key name").fill("alpha-key");
    await page.getByRole("button", { name: "Apply" }).click();
    await expect.poll(async () => (await rowsOf(page)).length).toBe(1);
    expect((await rowsOf(page))[0]).toContain("alpha-key");

    // Errors only.
    await page.getByRole("button", { name: "Reset" }).click();
    await expect.poll(async () => (await rowsOf(page)).length).toBe(4);
    await page.getByLabel("Result").selectOption("5");
    await page.getByRole("button", { name: "Apply" }).click();
    await expect.poll(async () => (await rowsOf(page)).length).toBe(1);
    const failed = (await logs("&type=5")).items[0]!;
    expect(failed.token_name).toBe("beta-key");
    rows = await rowsOf(page);
    expect(rows[0]).toContain("beta-key");
    const errorType = (JSON.parse(failed.other) as { error_type: string }).error_type;
    expect(errorType).toBeTruthy();
    expect(rows[0]).toContain(errorType);

    // The credential filter lists the credentials by name.
    await page.getByLabel("Credential").selectOption({ label: "mock upstream (openai)" });
    await page.getByRole("button", { name: "Apply" }).click();
    const byCredential = await logs(`&type=5&channel=${server.credentialId}`);
    expect(byCredential.total).toBe(1);
    await expect.poll(async () => (await rowsOf(page)).length).toBe(byCredential.total);

    // The record's details.
    await page.getByRole("button", { name: `Details of request ${failed.request_id}` }).click();
    const dialog = page.getByRole("dialog", { name: /Request \d+/ });
    await dialog.waitFor();
    expect(await dialog.getByTestId("log-detail").textContent()).toContain(failed.request_id);
    await screenshot(page, "logs-detail");
    expect(await seriousA11yViolations(page)).toEqual([]);
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });

    // CSV export of the current filter (errors only).
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Export CSV" }).click(),
    ]);
    expect(download.suggestedFilename()).toBe("request-log.csv");
    const csv = readFileSync((await download.path())!, "utf8");
    expect(csv).toContain(failed.request_id);
    expect(csv).toContain("beta-key");
    const lines = csv.trim().split(/\r?\n/);
    expect(lines).toHaveLength(2);
    expect(page.url()).not.toContain(server.managementKey);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("fits a 360 px wide screen, in Chinese and dark", async () => {
    const { page, problems, context } = await openPage(browser, {
      viewport: { width: 360, height: 780 },
      colorScheme: "dark",
    });
    await openLogs(page);
    await (
      await page.getByRole("region", { name: "Request log records" }).locator("tbody tr").all()
    )[0]!.waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
      360,
    );
    await page.getByLabel("Language").selectOption("zh");
    await page.getByRole("heading", { level: 1, name: "请求日志" }).waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
      360,
    );
    await screenshot(page, "logs-360-zh-dark");
    expect(await seriousA11yViolations(page)).toEqual([]);
    expect(problems.list).toEqual([]);
    await context.close();
  });
});

describe("the request logs, as a user", () => {
  it("a non-admin user sees and exports only their own records, without the username filter", async () => {
    const carol = await server.gateway.users.create({ username: "carol-logs", quota: 5_000_000 });
    const own = await server.gateway.keys.create({
      name: "carol-key",
      userId: carol.record.id,
      remainQuota: 5_000_000,
    });
    await chat(client(own.key), "gpt-4o-mini");

    const { page, problems, context } = await openPage(browser);
    await page.goto(server.consoleUrl);
    await page.getByRole("button", { name: "User access token" }).click();
    await page.getByLabel("Access token").fill(carol.accessToken);
    await page.getByLabel("User id").fill(String(carol.record.id));
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
    await page
      .getByRole("navigation", { name: "Main" })
      .getByRole("link", { name: "Request logs" })
      .click();
    await page.getByTestId("log-stat").waitFor();
    await expect.poll(async () => (await rowsOf(page)).length).toBe(1);
    expect((await rowsOf(page))[0]).toContain("carol-key");
    expect(await page.getByLabel("Username").count()).toBe(0);

    // A time range after the request finds nothing; one around it finds it.
    const local = (ms: number) => {
      const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60_000);
      return d.toISOString().slice(0, 16);
    };
    await page.getByLabel("From").fill(local(Date.now() + 3_600_000));
    await page.getByRole("button", { name: "Apply" }).click();
    await expect.poll(async () => (await rowsOf(page)).join("")).toContain("Nothing here yet.");
    await page.getByLabel("From").fill(local(Date.now() - 3_600_000));
    await page.getByLabel("To").fill(local(Date.now() + 3_600_000));
    await page.getByRole("button", { name: "Apply" }).click();
    await expect.poll(async () => (await rowsOf(page)).join("")).toContain("carol-key");
    const [download] = await Promise.all([
      page.waitForEvent("download"),
      page.getByRole("button", { name: "Export CSV" }).click(),
    ]);
    const csv = readFileSync((await download.path())!, "utf8");
    expect(csv).toContain("carol-key");
    expect(csv).not.toContain("alpha-key");
    expect(await seriousA11yViolations(page)).toEqual([]);
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
