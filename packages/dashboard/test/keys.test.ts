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

beforeAll(async () => {
  [server, browser] = await Promise.all([startConsoleServer(), launchBrowser()]);
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
});

interface Token {
  id: number;
  user_id: number;
  name: string;
  status: number;
  remain_quota: number;
  unlimited_quota: boolean;
  expired_time: number;
  model_limits_enabled: boolean;
  model_limits: string;
  allow_ips: string;
  group: string;
  rpm_limit: number;
  tpm_limit: number;
  rpd_limit: number;
  max_concurrency: number;
  queue_timeout_ms: number;
  quota_refill_interval: string;
  quota_refill_amount: number;
  next_refill_time: number;
}

/** The gateway's new-api token route, as the management key. */
async function tokenApi<T>(path: string, init: RequestInit = {}): Promise<T> {
  const res = await fetch(`${server.url}${path}`, {
    ...init,
    headers: {
      authorization: `Bearer ${server.managementKey}`,
      "content-type": "application/json",
    },
  });
  const body = (await res.json()) as { success: boolean; data: T; message: string };
  if (!body.success) throw new Error(`${path}: ${res.status} ${body.message}`);
  return body.data;
}

async function tokenByName(name: string): Promise<Token | undefined> {
  const found = await tokenApi<Token[]>(`/api/token/search?keyword=${encodeURIComponent(name)}`);
  return found.find((k) => k.name === name);
}

function chat(key: string) {
  const client = new OpenAI({
    apiKey: key,
    baseURL: `${server.url}/v1`,
    maxRetries: 0,
    timeout: 5_000,
  });
  return client.chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: "hello" }],
  });
}

async function openKeys(page: Page) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Keys" }).click();
  await page.getByRole("heading", { level: 1, name: "Keys" }).waitFor();
  await page.getByRole("region", { name: "API keys" }).waitFor();
}

const row = (page: Page, name: string) =>
  page.getByRole("row").filter({ has: page.getByText(name, { exact: true }) });

describe("the keys page, as the operator", () => {
  let plainKey = "";

  it("creates a key with a quota, an rpm limit, a monthly refill and an IP allowlist through the form; every field is stored and the key shown once works with the openai client", async () => {
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await openKeys(page);
    expect(await seriousA11yViolations(page)).toEqual([]);

    await page.getByRole("button", { name: "Create key" }).click();
    const dialog = page.getByRole("dialog", { name: "Create key" });
    await dialog.waitFor();
    await dialog.getByLabel("Name", { exact: true }).fill("ci-key");
    await dialog.getByLabel("Remaining quota (USD)").fill("5");
    await dialog.getByLabel("Refill", { exact: true }).selectOption("month");
    await dialog.getByLabel("Refill to (USD)").fill("5");
    // A bad number is refused in the form, before anything is sent.
    await dialog.getByLabel("Requests per minute (RPM)").fill("-3");
    await dialog.getByRole("button", { name: "Create", exact: true }).click();
    await dialog.getByText("Enter a whole number of 0 or more.").waitFor();
    expect(await tokenByName("ci-key")).toBeUndefined();
    await dialog.getByLabel("Requests per minute (RPM)").fill("60");
    await dialog.getByLabel("Max concurrent requests").fill("4");
    await dialog.getByLabel("IP allowlist").fill("127.0.0.1\n10.0.0.0/8");
    await dialog.getByLabel("Limit models").check();
    await dialog.getByLabel("Allowed models").fill("gpt-4o-mini\ngpt-4o");
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "keys-create");
    await dialog.getByRole("button", { name: "Create", exact: true }).click();

    const shown = page.getByRole("dialog", { name: "Key ci-key created" });
    await shown.waitFor();
    await shown.getByText("it will not be shown again").waitFor();
    await shown.getByRole("button", { name: "Copy" }).waitFor();
    plainKey = (await shown.locator("code").first().textContent()) ?? "";
    expect(plainKey).toMatch(/^sk-/);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "keys-created");

    const stored = await tokenByName("ci-key");
    expect(stored).toMatchObject({
      remain_quota: 2_500_000,
      unlimited_quota: false,
      expired_time: -1,
      rpm_limit: 60,
      tpm_limit: 0,
      max_concurrency: 4,
      quota_refill_interval: "month",
      quota_refill_amount: 2_500_000,
      allow_ips: "127.0.0.1\n10.0.0.0/8",
      model_limits_enabled: true,
      model_limits: "gpt-4o-mini,gpt-4o",
      status: 1,
      user_id: 0,
    });
    expect(stored!.next_refill_time).toBeGreaterThan(Date.now() / 1000);

    const answer = await chat(plainKey);
    expect(answer.choices[0]?.message).toBeDefined();

    // Closing the dialog drops the key: it is nowhere in the page, the URL or storage.
    await shown.getByRole("button", { name: "Done" }).click();
    await shown.waitFor({ state: "detached" });
    expect(await page.content()).not.toContain(plainKey);
    expect(page.url()).not.toContain(plainKey);
    const stash = await page.evaluate<string>(
      "JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + document.cookie",
    );
    expect(stash).not.toContain(plainKey);

    await row(page, "ci-key").getByText("Enabled").waitFor();
    await row(page, "ci-key").getByText("60 rpm · 4 at once").waitFor();
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("edits a key: the PUT sends only the changed fields and every other field is kept", async () => {
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await openKeys(page);
    const puts: string[] = [];
    page.on("request", (r) => {
      if (r.method() === "PUT" && r.url().includes("/api/token")) puts.push(r.postData() ?? "");
    });
    await page.getByRole("button", { name: "Edit key ci-key" }).click();
    const dialog = page.getByRole("dialog", { name: "Edit key ci-key" });
    await dialog.waitFor();
    await expect(dialog.getByLabel("Requests per minute (RPM)").inputValue()).resolves.toBe("60");
    await expect(dialog.getByLabel("Refill", { exact: true }).inputValue()).resolves.toBe("month");
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "keys-edit");
    await dialog.getByLabel("Name", { exact: true }).fill("ci-key-2");
    await dialog.getByLabel("Tokens per minute (TPM)").fill("10000");
    await dialog.getByRole("button", { name: "Save" }).click();
    await dialog.waitFor({ state: "detached" });
    await page.getByText("Key ci-key-2 saved.").waitFor();

    expect(puts).toHaveLength(1);
    const sent = JSON.parse(puts[0]!) as Record<string, unknown>;
    expect(Object.keys(sent).sort()).toEqual(["id", "name", "tpm_limit"]);
    expect(await tokenByName("ci-key-2")).toMatchObject({
      rpm_limit: 60,
      tpm_limit: 10_000,
      max_concurrency: 4,
      remain_quota: expect.any(Number),
      quota_refill_interval: "month",
      quota_refill_amount: 2_500_000,
      allow_ips: "127.0.0.1\n10.0.0.0/8",
      model_limits: "gpt-4o-mini,gpt-4o",
    });
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("disables a key after a confirm (the openai client is then refused) and enables it again", async () => {
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await openKeys(page);
    await page.getByRole("button", { name: "Disable key ci-key-2" }).click();
    const ask = page.getByRole("dialog", { name: "Disable key ci-key-2?" });
    await ask.waitFor();
    await ask.getByTestId("confirm-ok").click();
    await page.getByText("Key ci-key-2 disabled.").waitFor();
    await row(page, "ci-key-2").getByText("Disabled").waitFor();
    expect((await tokenByName("ci-key-2"))?.status).toBe(2);
    const refused = await chat(plainKey).then(
      () => 200,
      (e: unknown) => (e as { status?: number }).status,
    );
    expect([401, 403]).toContain(refused);

    await page.getByRole("button", { name: "Enable key ci-key-2" }).click();
    await page.getByText("Key ci-key-2 enabled.").waitFor();
    expect((await tokenByName("ci-key-2"))?.status).toBe(1);
    await chat(plainKey);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("reveals the full key after a confirm, in a dialog only", async () => {
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await openKeys(page);
    await page.getByRole("button", { name: "Reveal key ci-key-2" }).click();
    await page
      .getByRole("dialog", { name: "Show the full key ci-key-2?" })
      .getByTestId("confirm-ok")
      .click();
    const shown = page.getByRole("dialog", { name: "Key ci-key-2" });
    await shown.waitFor();
    await expect(shown.locator("code").first().textContent()).resolves.toBe(plainKey);
    expect(page.url()).not.toContain(plainKey);
    await shown.getByRole("button", { name: "Close" }).click();
    await shown.waitFor({ state: "detached" });
    expect(await page.content()).not.toContain(plainKey);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("searches by name and deletes the selected keys in one batch after a confirm naming how many; deletes one key after a confirm", async () => {
    for (const n of [1, 2, 3])
      await server.gateway.keys.create({ name: `batch-${n}`, remainQuota: 1000 });
    await server.gateway.keys.create({ name: "lonely", remainQuota: 1000 });
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await openKeys(page);
    await page.getByLabel("Search by name").fill("batch");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await row(page, "batch-3").waitFor();
    await expect
      .poll(() => page.getByRole("region", { name: "API keys" }).locator("tbody tr").count())
      .toBe(3);
    await page.getByLabel("Select all on this page").check();
    await page.getByRole("button", { name: "Delete selected (3)" }).click();
    const ask = page.getByRole("dialog", { name: "Delete 3 keys?" });
    await ask.waitFor();
    await ask.getByTestId("confirm-ok").click();
    await page.getByText("3 key(s) deleted.").waitFor();
    expect(await tokenApi<Token[]>("/api/token/search?keyword=batch")).toEqual([]);
    await page.getByText("No key matches this search.").waitFor();

    await page.getByRole("button", { name: "Clear" }).click();
    await page.getByRole("button", { name: "Delete key lonely" }).click();
    await page
      .getByRole("dialog", { name: "Delete key lonely?" })
      .getByTestId("confirm-ok")
      .click();
    await page.getByText("1 key(s) deleted.").waitFor();
    expect(await tokenByName("lonely")).toBeUndefined();
    expect(await tokenByName("ci-key-2")).toBeDefined();
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("shows a README screenshot of about ten keys, and an API error as an error notice", async () => {
    const alice = await server.gateway.users.create({ username: "alice" });
    const day = 24 * 3600;
    const now = Math.floor(Date.now() / 1000);
    const seeds = [
      { name: "prod-backend", remainQuota: 50_000_000, limits: { rpm: 600, tpm: 200_000 } },
      {
        name: "staging",
        remainQuota: 5_000_000,
        quotaRefill: { interval: "1d", amount: 5_000_000 },
      },
      { name: "ci-runner", unlimitedQuota: true, limits: { maxConcurrency: 4 } },
      { name: "mobile-app", remainQuota: 12_345_678, expiredTime: now + 30 * day },
      { name: "old-intern", remainQuota: 1_000_000, expiredTime: now - day },
      { name: "retired", remainQuota: 1_000_000, expiredTime: now - day, status: 2 },
      { name: "batch-jobs", remainQuota: 0 },
      {
        name: "alice-laptop",
        remainQuota: 2_000_000,
        userId: alice.record.id,
        quotaRefill: { interval: "month", amount: 2_000_000 },
      },
      { name: "analytics", remainQuota: 8_000_000, limits: { rpd: 10_000 } },
      { name: "support-bot", remainQuota: 3_000_000, status: 2 },
    ] as const;
    for (const s of seeds)
      await server.gateway.keys.create(s as Parameters<typeof server.gateway.keys.create>[0]);
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await openKeys(page);
    await row(page, "support-bot").waitFor();
    await row(page, "alice-laptop").getByRole("cell", { name: "alice", exact: true }).waitFor();
    await row(page, "old-intern").getByText("Expired").waitFor();
    await row(page, "batch-jobs").getByText("Exhausted").waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "keys");

    // Enabling an expired key: the gateway's refusal is shown as an error notice.
    await page.getByRole("button", { name: "Enable key retired" }).click();
    await page.getByRole("alert").filter({ hasText: "expired" }).waitFor();
    // Chromium logs the refused request (the 400 the test asked for) as a console error.
    expect(problems.list).toEqual([
      "console: Failed to load resource: the server responded with a status of 400 (Bad Request)",
    ]);
    await context.close();
  });
});

describe("the keys page with 10,000 keys", () => {
  let big: ConsoleServer;
  beforeAll(async () => {
    big = await startConsoleServer();
    for (let i = 0; i < 10_000; i++)
      await big.gateway.keys.create({
        name: `bulk-${String(i).padStart(5, "0")}`,
        remainQuota: 1000,
      });
  });
  afterAll(async () => {
    await big?.close();
  });

  it("shows page 1 of 500 from the server (one page fetched, never the whole list), pages, changes the page size and searches", async () => {
    const { page, problems, context } = await openPage(browser);
    // Every list call the page makes asks for one page of at most 100 keys.
    const listCalls: URL[] = [];
    page.on("request", (r) => {
      const url = new URL(r.url());
      if (url.pathname.startsWith("/api/token")) listCalls.push(url);
    });
    await loginAsOperator(page, big);
    const started = Date.now();
    await openKeys(page);
    await page.getByText("Page 1 of 500 · 10,000 in all").waitFor();
    expect(Date.now() - started).toBeLessThan(5_000);
    const rows = page.getByRole("region", { name: "API keys" }).locator("tbody tr");
    await expect.poll(() => rows.count()).toBe(20);
    await page.getByRole("button", { name: "Next" }).click();
    await page.getByText("Page 2 of 500 · 10,000 in all").waitFor();
    await page.getByLabel("Per page").selectOption("100");
    await page.getByText("Page 1 of 100 · 10,000 in all").waitFor();
    await expect.poll(() => rows.count()).toBe(100);
    expect(await seriousA11yViolations(page)).toEqual([]);

    await page.getByLabel("Search by name").fill("bulk-0012");
    await page.getByLabel("Search by name").press("Enter");
    await row(page, "bulk-00129").waitFor();
    // bulk-00120 … bulk-00129
    await expect.poll(() => rows.count()).toBe(10);
    await screenshot(page, "keys-search");
    expect(listCalls.length).toBeGreaterThanOrEqual(4);
    for (const url of listCalls) {
      const size = Number(url.searchParams.get("size"));
      expect(size, url.search).toBeGreaterThan(0);
      expect(size, url.search).toBeLessThanOrEqual(100);
    }
    expect(problems.list).toEqual([]);
    await context.close();
  });
});

describe("the keys page, as a user", () => {
  it("a non-admin user sees only their own keys, and the keys it creates are its own", async () => {
    const alice = await server.gateway.users.create({ username: "alice-user" });
    const bob = await server.gateway.users.create({ username: "bob-user" });
    await server.gateway.keys.create({
      name: "alice-own",
      userId: alice.record.id,
      remainQuota: 1000,
    });
    const bobKey = await server.gateway.keys.create({
      name: "bob-secret",
      userId: bob.record.id,
      remainQuota: 1000,
    });

    const { page, problems, context } = await openPage(browser);
    await page.goto(server.consoleUrl);
    await page.getByRole("button", { name: "User access token" }).click();
    await page.getByLabel("Access token").fill(alice.accessToken);
    await page.getByLabel("User id").fill(String(alice.record.id));
    await page.getByRole("button", { name: "Log in" }).click();
    await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
    await openKeys(page);
    await row(page, "alice-own").waitFor();
    await expect(page.getByText("bob-secret").count()).resolves.toBe(0);
    await expect(page.getByText("ci-key-2").count()).resolves.toBe(0);
    await expect(page.getByRole("columnheader", { name: "Owner" }).count()).resolves.toBe(0);
    await page.getByText("Page 1 of 1 · 1 in all").waitFor();

    await page.getByLabel("Search by name").fill("bob");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.getByText("No key matches this search.").waitFor();

    // The same API the page uses refuses another user's key.
    const res = await fetch(`${server.url}/api/token/${bobKey.record.id}`, {
      headers: {
        authorization: `Bearer ${alice.accessToken}`,
        "new-api-user": String(alice.record.id),
      },
    });
    expect(res.status).toBe(404);

    await page.getByRole("button", { name: "Clear" }).click();
    await page.getByRole("button", { name: "Create key" }).click();
    const dialog = page.getByRole("dialog", { name: "Create key" });
    await dialog.getByLabel("Name", { exact: true }).fill("alice-new");
    await dialog.getByLabel("Remaining quota (USD)").fill("1");
    await dialog.getByRole("button", { name: "Create", exact: true }).click();
    await page
      .getByRole("dialog", { name: "Key alice-new created" })
      .getByRole("button", { name: "Done" })
      .click();
    expect((await tokenByName("alice-new"))?.user_id).toBe(alice.record.id);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "keys-user");
    expect(problems.list).toEqual([]);
    await context.close();
  });
});

describe("the keys page on a phone", () => {
  it("fits 360 px: no horizontal page overflow, the table scrolls inside its wrapper, the dialog fits", async () => {
    const { page, problems, context } = await openPage(browser, {
      viewport: { width: 360, height: 740 },
    });
    await loginAsOperator(page, server);
    await openKeys(page);
    expect(await page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(360);
    await screenshot(page, "keys-narrow");
    await page.getByRole("button", { name: "Create key" }).click();
    const dialog = page.getByRole("dialog", { name: "Create key" });
    await dialog.waitFor();
    const box = await dialog.boundingBox();
    expect(box!.x).toBeGreaterThanOrEqual(0);
    expect(box!.x + box!.width).toBeLessThanOrEqual(360);
    expect(await page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(360);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "keys-narrow-create");
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
