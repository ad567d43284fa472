import OpenAI from "openai";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seriousA11yViolations } from "./a11y.js";
import {
  type ConsoleServer,
  launchBrowser,
  openPage,
  screenshot,
  startConsoleServer,
} from "./harness.js";

let server: ConsoleServer;
let browser: Browser;
let key: string;

beforeAll(async () => {
  [server, browser] = await Promise.all([startConsoleServer(), launchBrowser()]);
  ({ key } = await server.gateway.keys.create({
    name: "holder-key",
    remainQuota: 2_500_000,
    limits: { rpm: 60, maxConcurrency: 4 },
    quotaRefill: { interval: "1d", amount: 2_500_000 },
  }));
  const client = new OpenAI({ apiKey: key, baseURL: `${server.url}/v1`, maxRetries: 0 });
  await client.chat.completions.create({
    model: "gpt-4o",
    messages: [{ role: "user", content: "hello" }],
  });
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

const usd = (quota: number) =>
  `$${(quota / 500_000).toLocaleString("en-US", {
    maximumFractionDigits: quota !== 0 && Math.abs(quota) < 5000 ? 4 : 2,
  })}`;

/** The gateway's own answer for the key. */
async function tokenUsage(): Promise<{ total_available: number; total_used: number }> {
  const res = await fetch(`${server.url}/api/usage/token/`, {
    headers: { authorization: `Bearer ${key}` },
  });
  return ((await res.json()) as { data: { total_available: number; total_used: number } }).data;
}

async function check(page: Page, value: string) {
  await page.getByLabel("API key").fill(value);
  await page.getByRole("button", { name: "Check", exact: true }).click();
}

describe("the key holder's page", () => {
  it("shows the key's balance, limits, refill, usage and recent requests without a login, and forgets the key", async () => {
    const { page, problems, context } = await openPage(browser);
    await page.goto(`${server.consoleUrl}#/mykey`);
    await page.getByRole("heading", { level: 1, name: "Check a key" }).waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);

    await check(page, key);
    const remaining = page.getByTestId("key-remaining");
    await remaining.waitFor();
    const expected = await tokenUsage();
    expect(expected.total_used).toBeGreaterThan(0);
    expect(await remaining.textContent()).toBe(usd(expected.total_available));
    expect(await page.getByTestId("key-used").textContent()).toBe(usd(expected.total_used));
    await page.getByRole("heading", { name: "Key “holder-key”" }).waitFor();
    const text = (await page.locator("main").textContent()) ?? "";
    expect(text).toContain("Requests per minute60");
    expect(text).toContain("Requests at once4");
    expect(text).toContain("Every day: the balance starts again at $5.");
    const recent = page.getByRole("region", { name: "Recent requests" });
    expect(await recent.textContent()).toContain("gpt-4o");
    expect(
      await page.getByRole("region", { name: "Usage by model (last 30 days)" }).textContent(),
    ).toContain("gpt-4o");
    expect(
      await page.getByRole("region", { name: "Usage by day (last 30 days, UTC)" }).textContent(),
    ).toMatch(/\d{4}-\d\d-\d\d\s*1/);
    expect(page.url()).not.toContain(key);
    const stored = await page.evaluate<string>(
      "JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie",
    );
    expect(stored).not.toContain(key);
    await screenshot(page, "keyholder");
    expect(await seriousA11yViolations(page)).toEqual([]);

    await page.getByRole("button", { name: "Forget the key" }).click();
    await remaining.waitFor({ state: "detached" });
    expect(await page.getByLabel("API key").inputValue()).toBe("");
    expect(await page.content()).not.toContain(key);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("shows the gateway's message for a wrong key", async () => {
    const { page, problems, context } = await openPage(browser);
    await page.goto(`${server.consoleUrl}#/mykey`);
    await check(page, "sk-not-a-real-key-0000000000000000");
    const alert = page.getByRole("alert");
    await alert.waitFor();
    const res = await fetch(`${server.url}/api/usage/token/`, {
      headers: { authorization: "Bearer sk-not-a-real-key-0000000000000000" },
    });
    const { message } = (await res.json()) as { message: string };
    expect(message).toBeTruthy();
    expect(await alert.textContent()).toContain(message);
    await screenshot(page, "keyholder-wrong-key");
    expect(await seriousA11yViolations(page)).toEqual([]);
    // A failed key check is an answer, not a page error (the 401 is logged by the browser only).
    expect(problems.list.filter((p) => !p.includes("401"))).toEqual([]);
    await context.close();
  });

  it("fits a 360 px wide screen, in Chinese", async () => {
    const { page, problems, context } = await openPage(browser, {
      viewport: { width: 360, height: 780 },
      locale: "zh-CN",
    });
    await page.goto(`${server.consoleUrl}#/mykey`);
    await page.getByLabel("API 令牌").fill(key);
    await page.getByRole("button", { name: "查询", exact: true }).click();
    await page.getByTestId("key-remaining").waitFor();
    await page.locator(".chart canvas").first().waitFor();
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(
      360,
    );
    await screenshot(page, "keyholder-360-zh");
    expect(await seriousA11yViolations(page)).toEqual([]);
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
