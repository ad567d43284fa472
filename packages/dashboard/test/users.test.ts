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

interface User {
  id: number;
  username: string;
  display_name: string;
  role: string;
  status: number;
  group: string;
  quota: number;
  rpm_limit: number;
  tpm_limit: number;
  max_concurrency: number;
  quota_refill_interval: string;
  quota_refill_amount: number;
  next_refill_time: number;
}

async function userByName(name: string): Promise<User | undefined> {
  const res = await fetch(`${server.url}/api/user/search?keyword=${encodeURIComponent(name)}`, {
    headers: { authorization: `Bearer ${server.managementKey}` },
  });
  const body = (await res.json()) as { data: { items: User[] } };
  return body.data.items.find((u) => u.username === name);
}

/** Whether an access token logs in as this user (GET /api/user/self). */
async function selfStatus(token: string, id: number): Promise<number> {
  const res = await fetch(`${server.url}/api/user/self`, {
    headers: { authorization: `Bearer ${token}`, "new-api-user": String(id) },
  });
  return res.status;
}

async function openUsers(page: Page) {
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Users" }).click();
  await page.getByRole("heading", { level: 1, name: "Users" }).waitFor();
  await page.getByRole("region", { name: "Users" }).waitFor();
}

const row = (page: Page, name: string) =>
  page.getByRole("row").filter({ has: page.getByText(name, { exact: true }) });

describe("the users page", () => {
  let token = "";
  let id = 0;

  it("creates a user with quota, role, group, limits and a daily refill; the access token is shown once and logs in", async () => {
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await openUsers(page);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await page.getByRole("button", { name: "Create user" }).click();
    const dialog = page.getByRole("dialog", { name: "Create user" });
    await dialog.waitFor();
    // The username is required.
    await dialog.getByRole("button", { name: "Create", exact: true }).click();
    await dialog.getByText("Enter a username without spaces.").waitFor();
    await dialog.getByLabel("Username").fill("carol");
    await dialog.getByLabel("Display name").fill("Carol C.");
    await dialog.getByLabel("Role").selectOption("admin");
    await dialog.getByLabel("Quota (USD)").fill("20");
    await dialog.getByLabel("Refill", { exact: true }).selectOption("1d");
    await dialog.getByLabel("Refill to (USD)").fill("20");
    await dialog.getByLabel("Requests per minute (RPM)").fill("120");
    await dialog.getByLabel("Max concurrent requests").fill("3");
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "users-create");
    await dialog.getByRole("button", { name: "Create", exact: true }).click();

    const shown = page.getByRole("dialog", { name: "User carol created" });
    await shown.waitFor();
    await shown.getByText("it will not be shown again").waitFor();
    token = (await shown.locator("code").first().textContent()) ?? "";
    const stored = await userByName("carol");
    expect(stored).toMatchObject({
      display_name: "Carol C.",
      role: "admin",
      group: "default",
      quota: 10_000_000,
      rpm_limit: 120,
      max_concurrency: 3,
      quota_refill_interval: "1d",
      quota_refill_amount: 10_000_000,
      status: 1,
    });
    id = stored!.id;
    await shown.getByText(`User id ${id}`).waitFor();
    expect(await selfStatus(token, id)).toBe(200);
    await shown.getByRole("button", { name: "Done" }).click();
    await shown.waitFor({ state: "detached" });
    expect(await page.content()).not.toContain(token);
    await row(page, "carol").getByText("120 rpm · 3 at once").waitFor();
    await screenshot(page, "users");
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("edits a user (only the changed fields are sent; the others are kept), disables and enables it, issues a new access token", async () => {
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await openUsers(page);
    const puts: string[] = [];
    page.on("request", (r) => {
      if (r.method() === "PUT" && r.url().includes("/api/user")) puts.push(r.postData() ?? "");
    });
    await page.getByRole("button", { name: "Edit user carol" }).click();
    const dialog = page.getByRole("dialog", { name: "Edit user carol" });
    await dialog.waitFor();
    await expect(dialog.getByLabel("Requests per minute (RPM)").inputValue()).resolves.toBe("120");
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "users-edit");
    await dialog.getByLabel("Quota (USD)").fill("30");
    await dialog.getByRole("button", { name: "Save" }).click();
    await page.getByText("User carol saved.").waitFor();
    expect(Object.keys(JSON.parse(puts[0]!)).sort()).toEqual(["id", "quota"]);
    expect(await userByName("carol")).toMatchObject({
      quota: 15_000_000,
      rpm_limit: 120,
      role: "admin",
      quota_refill_interval: "1d",
    });

    await page.getByRole("button", { name: "Disable user carol" }).click();
    await page
      .getByRole("dialog", { name: "Disable user carol?" })
      .getByTestId("confirm-ok")
      .click();
    await page.getByText("User carol disabled.").waitFor();
    expect((await userByName("carol"))?.status).toBe(2);
    await page.getByRole("button", { name: "Enable user carol" }).click();
    await page.getByText("User carol enabled.").waitFor();
    expect((await userByName("carol"))?.status).toBe(1);

    await page.getByRole("button", { name: "New token for carol" }).click();
    await page
      .getByRole("dialog", { name: "Issue a new access token for carol?" })
      .getByTestId("confirm-ok")
      .click();
    const shown = page.getByRole("dialog", { name: "Access token of carol" });
    await shown.waitFor();
    const fresh = (await shown.locator("code").first().textContent()) ?? "";
    expect(fresh).not.toBe(token);
    expect(await selfStatus(fresh, id)).toBe(200);
    expect(await selfStatus(token, id)).toBe(401);
    await shown.getByRole("button", { name: "Done" }).click();
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("searches, links to a user's keys, and deletes a user with its keys after a confirm that says so", async () => {
    const dave = await server.gateway.users.create({ username: "dave" });
    const key = await server.gateway.keys.create({
      name: "dave-key",
      userId: dave.record.id,
      remainQuota: 1000,
    });
    await server.gateway.keys.create({ name: "nobody-key", remainQuota: 1000 });
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await openUsers(page);
    await page.getByLabel("Search by username").fill("dav");
    await page.getByRole("button", { name: "Search", exact: true }).click();
    await page.getByText("Page 1 of 1 · 1 in all").waitFor();
    await row(page, "dave").waitFor();

    await page.getByRole("button", { name: "Keys of dave" }).click();
    await page.getByRole("heading", { level: 1, name: "Keys" }).waitFor();
    await page.getByText("Keys of user dave").waitFor();
    await page.getByText("dave-key", { exact: true }).waitFor();
    await expect(page.getByText("nobody-key").count()).resolves.toBe(0);
    await page.goBack();
    await page.getByRole("heading", { level: 1, name: "Users" }).waitFor();

    await page.getByRole("button", { name: "Delete user dave" }).click();
    const ask = page.getByRole("dialog", { name: "Delete user dave?" });
    await ask.getByText("keys are deleted too").waitFor();
    await ask.getByTestId("confirm-ok").click();
    await page.getByText("User dave and its keys deleted.").waitFor();
    expect(await userByName("dave")).toBeUndefined();
    expect(await server.gateway.keys.get(key.record.id)).toBeNull();
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("fits 360 px and reads in Chinese", async () => {
    const { page, problems, context } = await openPage(browser, {
      viewport: { width: 360, height: 740 },
      locale: "zh-CN",
    });
    await page.goto(server.consoleUrl);
    await page.getByLabel("管理密钥").fill(server.managementKey);
    await page.getByRole("button", { name: "登录" }).click();
    await page.getByRole("heading", { level: 1, name: "概览" }).waitFor();
    await page.getByRole("link", { name: "用户" }).click();
    await page.getByRole("heading", { level: 1, name: "用户" }).waitFor();
    await page.getByRole("button", { name: "编辑用户 carol" }).waitFor();
    expect(await page.evaluate("document.documentElement.scrollWidth")).toBeLessThanOrEqual(360);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "users-narrow-zh");
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
