/**
 * The console from end to end, as an operator, a user and a key holder use it, in one browser
 * against one gateway (SQLite, node:http, the mock upstream), with the official `openai` client
 * for the proxied requests. Each step checks the gateway's own APIs, runs axe-core, and saves a
 * screenshot under `.tmp/screenshots/journey-*.png`.
 */
import OpenAI from "openai";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { seriousA11yViolations } from "./a11y.js";
import {
  type ConsoleServer,
  launchBrowser,
  loginAsOperator,
  openPage,
  type PageProblems,
  screenshot,
  startConsoleServer,
} from "./harness.js";

let server: ConsoleServer;
let browser: Browser;
let page: Page;
let problems: PageProblems;
/** The key the operator creates in the console (its plain text, shown once). */
let plainKey = "";

beforeAll(async () => {
  [server, browser] = await Promise.all([startConsoleServer(), launchBrowser()]);
  ({ page, problems } = await openPage(browser));
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

const openai = (key: string) =>
  new OpenAI({ apiKey: key, baseURL: `${server.url}/v1`, maxRetries: 0, timeout: 10_000 });

/** A route of the gateway, as the management key. */
async function asOperator<T>(path: string): Promise<T> {
  const res = await fetch(`${server.url}${path}`, {
    headers: { authorization: `Bearer ${server.managementKey}` },
  });
  expect(res.status, path).toBe(200);
  return (await res.json()) as T;
}

async function go(name: string) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name }).click();
  await page.getByRole("heading", { level: 1, name }).waitFor();
}

/** The checks of every step: no serious a11y violation, no CSP violation or page error; a screenshot. */
async function step(name: string) {
  expect(await seriousA11yViolations(page), name).toEqual([]);
  expect(problems.list, name).toEqual([]);
  await screenshot(page, `journey-${name}`);
}

describe("the console, end to end", () => {
  it("the operator logs in and creates a key with a quota and a rate limit", async () => {
    await loginAsOperator(page, server);
    await step("login");
    await go("Keys");
    await page.getByRole("button", { name: "Create key" }).click();
    const dialog = page.getByRole("dialog", { name: "Create key" });
    await dialog.getByLabel("Name", { exact: true }).fill("journey-key");
    await dialog.getByLabel("Remaining quota (USD)").fill("2");
    await dialog.getByLabel("Requests per minute (RPM)").fill("30");
    await step("create-key");
    await dialog.getByRole("button", { name: "Create", exact: true }).click();
    const shown = page.getByRole("dialog", { name: "Key journey-key created" });
    await shown.waitFor();
    plainKey = (await shown.locator("code").first().textContent()) ?? "";
    expect(plainKey).toMatch(/^sk-/);
    await shown.getByRole("button", { name: "Close" }).first().click();

    const { data } = await asOperator<{
      data: { name: string; remain_quota: number; rpm_limit: number }[];
    }>("/api/token/search?keyword=journey-key");
    expect(data).toEqual([
      expect.objectContaining({ name: "journey-key", remain_quota: 1_000_000, rpm_limit: 30 }),
    ]);
  });

  it("a request with the official openai client shows in the overview numbers and the request log", async () => {
    const reply = await openai(plainKey).chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "Hello from the journey" }],
    });
    expect(reply.choices[0]?.message.content).toBeTruthy();
    const stream = await openai(plainKey).chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "And a stream" }],
      stream: true,
    });
    for await (const _chunk of stream) {
      // drain
    }

    await go("Overview");
    // The overview's count is the gateway's own: the summary of the last 24 hours.
    const from = Math.floor(Date.now() / 1000) - 24 * 3600;
    await expect
      .poll(
        async () => {
          const { rows } = await asOperator<{ rows: { requests: number }[] }>(
            `/v0/management/usage/summary?by=hour&from=${from}`,
          );
          return rows.reduce((n, r) => n + r.requests, 0);
        },
        { timeout: 10_000 },
      )
      .toBe(2);
    await expect
      .poll(() => page.getByTestId("stat-requests").textContent(), { timeout: 20_000 })
      .toBe("2");
    await page.getByRole("region", { name: "Top keys" }).getByText("journey-key").waitFor();
    await step("overview");

    await go("Request logs");
    const records = page.getByRole("region", { name: "Request log records" });
    await expect.poll(async () => (await records.locator("tbody tr").all()).length).toBe(2);
    expect(await records.textContent()).toContain("journey-key");
    expect(await records.textContent()).toContain("gpt-4o-mini");
    await step("request-log");
  });

  it("the key disabled from the UI is refused on the next request", async () => {
    await go("Keys");
    await page.getByRole("button", { name: "Disable key journey-key" }).click();
    await page.getByTestId("confirm-ok").click();
    await page.getByRole("button", { name: "Enable key journey-key" }).waitFor();
    await step("key-disabled");
    await expect(
      openai(plainKey).chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "Still there?" }],
      }),
    ).rejects.toMatchObject({ status: expect.toSatisfy((s: number) => s === 401 || s === 403) });
  });

  it("an upstream credential added in the UI is in the pool", async () => {
    await go("Upstream credentials");
    await page.getByRole("button", { name: "Add API key" }).click();
    const dialog = page.getByRole("dialog", { name: "Add an API key" });
    await dialog.getByLabel("Provider").selectOption("anthropic");
    await dialog.getByLabel("API key").fill("sk-ant-journey-0123456789abcdef");
    await dialog.getByLabel("Label").fill("journey claude");
    await dialog.getByRole("button", { name: "Add", exact: true }).click();
    await page.getByText("journey claude").first().waitFor();
    await step("credential-added");
    const { credentials } = await asOperator<{
      credentials: { label: string; provider: string; masked_key: string }[];
    }>("/v0/management/credentials");
    const added = credentials.find((c) => c.label === "journey claude");
    expect(added).toMatchObject({ provider: "anthropic" });
    expect(added?.masked_key).not.toContain("0123456789abcdef");
    expect(await page.content()).not.toContain("sk-ant-journey-0123456789abcdef");
  });

  it("a setting changed in the UI is in GET /v0/management/config", async () => {
    await go("Settings");
    await page.getByLabel("request-retry", { exact: true }).fill("5");
    await page.getByRole("button", { name: "Save request-retry", exact: true }).click();
    await page.locator('[data-setting="request-retry"]').getByText("Saved.").waitFor();
    expect(
      (await asOperator<Record<string, unknown>>("/v0/management/config"))["request-retry"],
    ).toBe(5);
    await step("setting-saved");
  });

  it("a user logged in with an access token sees only their own keys, not another user's", async () => {
    const ann = await server.gateway.users.create({ username: "ann" });
    const bob = await server.gateway.users.create({ username: "bob" });
    await server.gateway.keys.create({
      name: "ann-key",
      remainQuota: 100_000,
      userId: ann.record.id,
    });
    const bobKey = await server.gateway.keys.create({
      name: "bob-secret-key",
      remainQuota: 100_000,
      userId: bob.record.id,
    });

    await page.getByRole("button", { name: "Log out" }).click();
    await page.getByRole("button", { name: "User access token" }).click();
    await page.getByLabel("Access token").fill(ann.accessToken);
    await page.getByLabel("User id").fill(String(ann.record.id));
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
    // No operator pages for a user.
    const nav = page.getByRole("navigation", { name: "Main" });
    expect(await nav.getByRole("link", { name: "Users" }).count()).toBe(0);
    expect(await nav.getByRole("link", { name: "Settings" }).count()).toBe(0);
    await go("Keys");
    const table = page.getByRole("region", { name: "API keys" });
    await table.getByText("ann-key").waitFor();
    expect(await table.textContent()).not.toContain("bob-secret-key");
    // Searching for it finds nothing either.
    await page.getByLabel("Search by name").fill("bob-secret-key");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.getByText("No key matches this search.").waitFor();
    await step("user-keys");
    // The API the console uses refuses the other user's key by id.
    const res = await fetch(`${server.url}/api/token/${bobKey.record.id}`, {
      headers: {
        authorization: `Bearer ${ann.accessToken}`,
        "new-api-user": String(ann.record.id),
      },
    });
    expect((await res.json()) as { success: boolean }).toMatchObject({ success: false });
    // An operator page by its address is not shown to a user.
    await page.goto(`${server.consoleUrl}#/users`);
    await page.getByText("There is no such page.").waitFor();
    await page.getByRole("button", { name: "Log out" }).click();
  });

  it("the key holder's page shows the key's balance as the gateway reports it", async () => {
    const { key } = await server.gateway.keys.create({ name: "holder-key", remainQuota: 750_000 });
    await openai(key).chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "What is my balance?" }],
    });
    const usage = (await (
      await fetch(`${server.url}/api/usage/token/`, { headers: { authorization: `Bearer ${key}` } })
    ).json()) as { data: { total_available: number } };

    await page.goto(`${server.consoleUrl}#/mykey`);
    await page.getByRole("heading", { level: 1, name: "Check a key" }).waitFor();
    await page.getByLabel("API key").fill(key);
    await page.getByRole("button", { name: "Check", exact: true }).click();
    // The remaining balance in quota units, exactly as the gateway reports it.
    const units = `${usage.data.total_available.toLocaleString("en-US")} quota units`;
    await page.getByText(units, { exact: true }).waitFor();
    await page
      .getByRole("region", { name: "Recent requests" })
      .getByText("gpt-4o-mini")
      .first()
      .waitFor();
    expect(page.url()).not.toContain(key);
    await step("key-holder");
  });
});
