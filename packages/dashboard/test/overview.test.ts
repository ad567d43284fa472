import OpenAI from "openai";
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
let client: OpenAI;

beforeAll(async () => {
  [server, browser] = await Promise.all([startConsoleServer(), launchBrowser()]);
  const { key } = await server.gateway.keys.create({
    name: "overview-key",
    remainQuota: 5_000_000,
  });
  client = new OpenAI({ apiKey: key, baseURL: `${server.url}/v1`, maxRetries: 0 });
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

const chat = (model = "gpt-4o") =>
  client.chat.completions.create({ model, messages: [{ role: "user", content: "hello there" }] });

interface SummaryRow {
  id: string | null;
  requests: number;
  failures: number;
  quota: number;
}

/** The gateway's own answer: the summary of the last 24 hours. */
async function summary(): Promise<{ requests: number; failures: number; quota: number }> {
  const from = Math.floor(Date.now() / 1000) - 24 * 3600;
  const res = await fetch(`${server.url}/v0/management/usage/summary?by=hour&from=${from}`, {
    headers: { authorization: `Bearer ${server.managementKey}` },
  });
  const body = (await res.json()) as { rows: SummaryRow[] };
  return body.rows.reduce(
    (a, r) => ({
      requests: a.requests + r.requests,
      failures: a.failures + r.failures,
      quota: a.quota + r.quota,
    }),
    { requests: 0, failures: 0, quota: 0 },
  );
}

const usd = (quota: number) =>
  `$${(quota / 500_000).toLocaleString("en-US", {
    maximumFractionDigits: quota !== 0 && Math.abs(quota) < 5000 ? 4 : 2,
  })}`;

describe("the overview", () => {
  it("shows the summary's request count and cost, the top key and model, and a new request after the live refresh", async () => {
    await chat();
    await chat();
    server.upstream.fail({ status: 400 });
    await expect(chat("gpt-4o-mini")).rejects.toThrow();
    const expected = await summary();
    expect(expected.requests).toBe(3);
    expect(expected.failures).toBe(1);
    expect(expected.quota).toBeGreaterThan(0);

    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    const requests = page.getByTestId("stat-requests");
    await expect.poll(() => requests.textContent()).toBe(String(expected.requests));
    expect(await page.getByTestId("stat-cost").textContent()).toBe(usd(expected.quota));
    expect(await page.getByTestId("stat-error-rate").textContent()).toBe("33.3%");
    const topKeys = page.getByRole("region", { name: "Top keys" });
    await expect.poll(() => topKeys.textContent()).toContain("overview-key");
    // Most expensive first.
    expect(await page.getByRole("region", { name: "Top models" }).textContent()).toMatch(
      /gpt-4o\d.*gpt-4o-mini/,
    );
    // The charts are drawn (canvas) and have text alternatives.
    expect(await page.locator(".chart canvas").count()).toBeGreaterThanOrEqual(4);
    expect(
      await page.getByRole("img", { name: /Requests 3, errors 1, over the last 24 hours/ }).count(),
    ).toBeGreaterThanOrEqual(1);
    await page.getByText("Latency is computed from the latest").waitFor();
    await screenshot(page, "overview");
    expect(await seriousA11yViolations(page)).toEqual([]);

    // Live: a new request shows up without a reload.
    const before = await page.getByTestId("updated-at").textContent();
    await chat();
    const after = await summary();
    await expect
      .poll(() => requests.textContent(), { timeout: 20_000 })
      .toBe(String(after.requests));
    expect(await page.getByTestId("updated-at").textContent()).not.toBe(before);

    // Paused: no refresh.
    await page.getByRole("button", { name: "Pause live updates" }).click();
    await page.getByRole("button", { name: "Resume live updates", pressed: true }).waitFor();
    await chat();
    await page.waitForTimeout(9_000);
    expect(await requests.textContent()).toBe(String(after.requests));
    await page.getByRole("button", { name: "Resume live updates" }).click();
    await expect
      .poll(() => requests.textContent(), { timeout: 20_000 })
      .toBe(String(after.requests + 1));

    // Another range reads the summary by day.
    await page.getByLabel("Time range").selectOption("7d");
    await expect
      .poll(() => page.getByRole("img", { name: /over the last 7 days/ }).count())
      .toBe(1);
    expect(await requests.textContent()).toBe(String(after.requests + 1));

    // A top key links to its request logs.
    await topKeys.getByRole("link", { name: "overview-key" }).click();
    await page.getByRole("heading", { level: 1, name: "Request logs" }).waitFor();
    expect(await page.getByLabel("Key name").inputValue()).toBe("overview-key");
    await expect
      .poll(() => page.getByRole("region", { name: "Request log records" }).textContent())
      .toContain("overview-key");
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("in dark mode and in Chinese has no serious axe violations", async () => {
    const { page, problems, context } = await openPage(browser, {
      colorScheme: "dark",
      locale: "zh-CN",
    });
    await page.goto(server.consoleUrl);
    await page.getByLabel("管理密钥").fill(server.managementKey);
    await page.getByRole("button", { name: "登录" }).click();
    await page.getByRole("heading", { level: 1, name: "概览" }).waitFor();
    await page.getByTestId("stat-requests").waitFor();
    await page.getByText("用量最多的模型").first().waitFor();
    await screenshot(page, "overview-dark-zh");
    expect(await seriousA11yViolations(page)).toEqual([]);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("fits a 360 px wide screen", async () => {
    const { page, problems, context } = await openPage(browser, {
      viewport: { width: 360, height: 780 },
    });
    await loginAsOperator(page, server);
    await page.getByTestId("stat-requests").waitFor();
    await page.locator(".chart canvas").first().waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
      360,
    );
    await screenshot(page, "overview-360");
    expect(await seriousA11yViolations(page)).toEqual([]);
    expect(problems.list).toEqual([]);
    await context.close();
  });
});

describe("the overview, as a user", () => {
  it("a user without management access sees their own numbers from their request log", async () => {
    const alice = await server.gateway.users.create({ username: "alice-ov", quota: 5_000_000 });
    const bob = await server.gateway.users.create({ username: "bob-ov", quota: 5_000_000 });
    const own = await server.gateway.keys.create({
      name: "alice-ov-key",
      userId: alice.record.id,
      remainQuota: 5_000_000,
    });
    const other = await server.gateway.keys.create({
      name: "bob-ov-key",
      userId: bob.record.id,
      remainQuota: 5_000_000,
    });
    const ask = (key: string) =>
      new OpenAI({
        apiKey: key,
        baseURL: `${server.url}/v1`,
        maxRetries: 0,
      }).chat.completions.create({ model: "gpt-4o", messages: [{ role: "user", content: "hi" }] });
    await ask(own.key);
    await ask(own.key);
    await ask(other.key);
    // The gateway's own answer for alice.
    const res = await fetch(`${server.url}/api/log/self?page_size=1`, {
      headers: {
        authorization: `Bearer ${alice.accessToken}`,
        "new-api-user": String(alice.record.id),
      },
    });
    const { data } = (await res.json()) as { data: { total: number } };
    expect(data.total).toBe(2);

    const { page, problems, context } = await openPage(browser);
    await page.goto(server.consoleUrl);
    await page.getByRole("button", { name: "User access token" }).click();
    await page.getByLabel("Access token").fill(alice.accessToken);
    await page.getByLabel("User id").fill(String(alice.record.id));
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
    await expect
      .poll(() => page.getByTestId("stat-requests").textContent())
      .toBe(String(data.total));
    const recent = page.getByRole("region", { name: "Recent requests" });
    expect(await recent.textContent()).toContain("alice-ov-key");
    expect(await page.locator("main").textContent()).not.toContain("bob-ov-key");
    expect(await page.getByRole("alert").count()).toBe(0);
    await screenshot(page, "overview-user");
    expect(await seriousA11yViolations(page)).toEqual([]);
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
