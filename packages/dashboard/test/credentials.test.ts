import { createMockOAuth, type MockOAuthServer } from "@tokenpool/testing";
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
/** The providers' login side: authorize page, device authorization and token endpoint. */
let oauth: MockOAuthServer;
/** The account that logs in at the mock provider. */
const LOGIN_EMAIL = "login@example.com";

beforeAll(async () => {
  oauth = await createMockOAuth({ email: LOGIN_EMAIL, deviceInterval: 0.05 });
  [server, browser] = await Promise.all([
    startConsoleServer({
      // Every login of the page runs against the mock; the provider redirects to the gateway.
      oauth: (url) => {
        const code = {
          authorizeUrl: oauth.authorizeUrl,
          tokenUrl: oauth.url,
          redirectUri: `${url}/v0/management/oauth/callback`,
        };
        return {
          scanIntervalMs: 0,
          providers: {
            anthropic: code,
            codex: code,
            gemini: code,
            qwen: { deviceCodeUrl: oauth.deviceCodeUrl, tokenUrl: oauth.url },
          },
        };
      },
    }),
    launchBrowser(),
  ]);
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
  await oauth?.close();
});

interface CredentialView {
  id: string;
  label: string;
  provider: string;
  kind: string;
  enabled: boolean;
  status: string;
  masked_key: string | null;
  base_url: string;
  priority: number;
  weight: number;
  models: string[];
  email: string | null;
  limits: Record<string, number>;
}

async function credentials(): Promise<CredentialView[]> {
  const res = await fetch(`${server.url}/v0/management/credentials`, {
    headers: { authorization: `Bearer ${server.managementKey}` },
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { credentials: CredentialView[] }).credentials;
}

/** The gateway's `get-auth-status` answer for a login's state. */
async function authStatus(state: string): Promise<unknown> {
  const res = await fetch(
    `${server.url}/v0/management/get-auth-status?state=${encodeURIComponent(state)}`,
    { headers: { authorization: `Bearer ${server.managementKey}` } },
  );
  return res.json();
}

async function openCredentials(page: Page): Promise<void> {
  await loginAsOperator(page, server);
  await page.goto(`${server.consoleUrl}#/credentials`);
  await page.getByRole("heading", { level: 1, name: "Upstream credentials" }).waitFor();
  await page.getByRole("cell", { name: /^mock upstream/ }).waitFor();
}

const row = (page: Page, name: string) => page.getByRole("row").filter({ hasText: name });

describe("the upstream credentials page", () => {
  it("adds an API-key credential through the dialog; the key is never on the page", async () => {
    const plainKey = "sk-console-plain-secret-9f8e7d6c5b4a";
    const { page, problems, context } = await openPage(browser);
    await openCredentials(page);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "credentials-list");

    await page.getByRole("button", { name: "Add API key" }).click();
    const dialog = page.getByRole("dialog", { name: "Add an API key" });
    // The form checks itself before sending.
    await dialog.getByRole("button", { name: "Add", exact: true }).click();
    await dialog.getByText("Enter the API key.").waitFor();
    await dialog.getByLabel("Provider").selectOption("openai");
    await dialog.getByLabel("API key").fill(plainKey);
    await dialog.getByLabel("Base URL").fill(`${server.upstream.url}/v1`);
    await dialog.getByLabel("Label").fill("added in the console");
    await dialog.getByLabel("Models").fill("gpt-4o-mini, gpt-4o");
    await dialog.getByLabel("Priority").fill("2");
    await dialog.getByLabel("Weight").fill("3");
    await dialog.getByLabel("Requests per minute").fill("60");
    await dialog.getByLabel("Spend per day").fill("500000");
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "credentials-add");
    await dialog.getByRole("button", { name: "Add", exact: true }).click();
    await dialog.waitFor({ state: "detached" });
    await page.getByRole("cell", { name: /^added in the console/ }).waitFor();

    const added = (await credentials()).find((c) => c.label === "added in the console");
    expect(added).toMatchObject({
      provider: "openai",
      kind: "api-key",
      enabled: true,
      base_url: `${server.upstream.url}/v1`,
      priority: 2,
      weight: 3,
      models: ["gpt-4o-mini", "gpt-4o"],
    });
    expect(added?.limits).toMatchObject({ rpm_limit: 60, spend_per_day: 500000 });
    expect(added?.masked_key).not.toContain(plainKey);
    // The row shows the masked key, the page never the plain one.
    await row(page, "added in the console")
      .getByText(added?.masked_key ?? "?")
      .waitFor();
    expect(await page.content()).not.toContain(plainKey);
    expect(await page.content()).not.toContain("sk-upstream-mock-0123456789");
    expect(
      await page.evaluate<string>(
        "JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage })",
      ),
    ).not.toContain(plainKey);

    // Edit: label and limits; the rest is kept.
    await page.getByRole("button", { name: /^Edit\W+added in the console/ }).click();
    const edit = page.getByRole("dialog", { name: /^Edit added in the console/ });
    await edit.getByLabel("Label").fill("edited in the console");
    await edit.getByLabel("Requests per minute").fill("");
    await edit.getByLabel("Concurrent requests").fill("4");
    expect(await seriousA11yViolations(page)).toEqual([]);
    await edit.getByRole("button", { name: "Save" }).click();
    await edit.waitFor({ state: "detached" });
    await page.getByRole("cell", { name: /^edited in the console/ }).waitFor();
    const edited = (await credentials()).find((c) => c.id === added?.id);
    expect(edited).toMatchObject({ label: "edited in the console", priority: 2, weight: 3 });
    expect(edited?.limits).toMatchObject({ rpm_limit: 0, max_concurrency: 4 });
    expect(edited?.masked_key).toBe(added?.masked_key);

    // Delete asks first.
    await page.getByRole("button", { name: /^Delete\W+edited in the console/ }).click();
    await page.getByRole("dialog", { name: /^Delete edited in the console/ }).waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await page.getByTestId("confirm-ok").click();
    await page.getByRole("cell", { name: /^edited in the console/ }).waitFor({ state: "detached" });
    expect((await credentials()).some((c) => c.id === added?.id)).toBe(false);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("shows a cooling credential's end, a disabled one's reason, an erroring one's error; filters by state", async () => {
    const pool = server.gateway.credentials.pool;
    const cooling = await server.gateway.credentials.add({
      provider: "anthropic",
      kind: "api-key",
      label: "cooling one",
      baseUrl: `${server.upstream.url}`,
      secret: { apiKey: "sk-ant-cooling-0123456789" },
    });
    const held = await server.gateway.credentials.add({
      provider: "gemini",
      kind: "api-key",
      label: "held one",
      baseUrl: `${server.upstream.url}`,
      secret: { apiKey: "gm-held-0123456789" },
    });
    const failing = await server.gateway.credentials.add({
      provider: "openai",
      kind: "api-key",
      label: "failing one",
      baseUrl: `${server.upstream.url}/v1`,
      secret: { apiKey: "sk-failing-0123456789" },
    });
    pool.reportFailure(cooling.id, "*", 429, "rate limited upstream", { retryAfterMs: 3_600_000 });
    await pool.setEnabled(held.id, false, "billing hold until March");
    pool.reportFailure(failing.id, "gpt-4o", 500, "upstream exploded", { kind: "server" });

    const { page, problems, context } = await openPage(browser);
    await openCredentials(page);
    await row(page, "cooling one").getByText("Cooling", { exact: true }).waitFor();
    await row(page, "cooling one")
      .getByText(/^Cooling until /)
      .waitFor();
    await row(page, "cooling one").getByText("rate limited upstream").waitFor();
    await row(page, "held one").getByText("Disabled", { exact: true }).waitFor();
    await row(page, "held one").getByText("billing hold until March").waitFor();
    await row(page, "failing one").getByText("Error", { exact: true }).waitFor();
    await row(page, "failing one").getByText("upstream exploded").waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "credentials-states");

    await page.getByLabel("State").selectOption("cooling");
    await page.getByRole("cell", { name: /^held one/ }).waitFor({ state: "detached" });
    expect(await page.getByRole("cell", { name: /^cooling one/ }).count()).toBe(1);
    await page.getByLabel("State").selectOption("");
    await page.getByLabel("Provider", { exact: true }).selectOption("gemini");
    await page.getByRole("cell", { name: /^cooling one/ }).waitFor({ state: "detached" });
    await page.getByRole("cell", { name: /^held one/ }).waitFor();
    await page.getByLabel("Provider", { exact: true }).selectOption("");

    // Enable the held one; disable the mock one after a confirm.
    await page.getByRole("button", { name: /^Enable\W+held one/ }).click();
    await row(page, "held one").getByText("Active", { exact: true }).waitFor();
    expect((await credentials()).find((c) => c.id === held.id)?.enabled).toBe(true);
    await page.getByRole("button", { name: /^Disable\W+mock upstream/ }).click();
    await page.getByRole("dialog", { name: "Disable mock upstream?" }).waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await page.getByTestId("confirm-ok").click();
    await row(page, "mock upstream").getByText("Disabled", { exact: true }).waitFor();
    expect((await credentials()).find((c) => c.id === server.credentialId)?.enabled).toBe(false);
    await page.getByRole("button", { name: /^Enable\W+mock upstream/ }).click();
    await row(page, "mock upstream").getByText("Active", { exact: true }).waitFor();
    expect(problems.list).toEqual([]);
    await context.close();
    for (const c of [cooling, held, failing]) await server.gateway.credentials.remove(c.id);
  });

  it("uploads an auth file as an OAuth account", async () => {
    const { page, problems, context } = await openPage(browser);
    await openCredentials(page);
    const accessToken = "oauth-access-token-never-shown-0123456789";
    await page.getByLabel("Upload auth file").setInputFiles({
      name: "claude-person.json",
      mimeType: "application/json",
      buffer: Buffer.from(
        JSON.stringify({
          type: "claude",
          email: "person@example.com",
          access_token: accessToken,
          refresh_token: "oauth-refresh-token-never-shown-0123456789",
          expired: "2099-01-01T00:00:00Z",
        }),
      ),
    });
    await page.getByText(/Uploaded: .*claude-person\.json/).waitFor();
    const account = row(page, "person@example.com");
    await account.getByText("OAuth", { exact: true }).waitFor();
    await account.getByRole("button", { name: /^Refresh now/ }).waitFor();
    expect(await page.content()).not.toContain(accessToken);
    const listed = (await credentials()).find((c) => c.email === "person@example.com");
    expect(listed).toMatchObject({ kind: "oauth", provider: "anthropic" });
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("logs in with Claude end to end: new tab → provider consent → gateway callback → account listed, tokens never on the page", async () => {
    const { page, problems, context } = await openPage(browser);
    // Nothing leaves the machine: every page and request goes to the gateway or the mock provider.
    const outside: string[] = [];
    context.on("request", (r) => {
      if (!r.url().startsWith("http://127.0.0.1:")) outside.push(r.url());
    });
    await openCredentials(page);
    oauth.reset();

    const popup = context.waitForEvent("page");
    await page.getByRole("button", { name: "Log in with Claude" }).click();
    const tab = await popup;
    // The tab went to the provider's authorize page (PKCE) and came back to the gateway's callback.
    await tab.waitForURL(/\/v0\/management\/oauth\/callback\?code=/);
    const id = "claude-login_example.com.json";
    expect(await tab.textContent("body")).toContain(`"file":"${id}"`);
    const exchange = oauth.requests.find((r) => r.grantType === "authorization_code");
    expect(exchange).toMatchObject({ status: 200, format: "json" });
    expect(exchange?.codeVerifier).toBeTruthy();
    await tab.close();

    // The page polled the login's status and reloaded the list.
    await page.getByText("Claude account added.").waitFor();
    const added = row(page, id);
    await added.getByText("Active", { exact: true }).waitFor();
    await added.getByText("OAuth", { exact: true }).waitFor();
    await added.getByText(LOGIN_EMAIL, { exact: true }).waitFor();
    await added.getByRole("button", { name: /^Refresh now/ }).waitFor();
    const listed = (await credentials()).find((c) => c.id === id);
    expect(listed).toMatchObject({
      provider: "anthropic",
      kind: "oauth",
      enabled: true,
      status: "active",
      email: LOGIN_EMAIL,
    });
    expect(listed?.masked_key).toBeTruthy();
    await added.getByText(listed?.masked_key ?? "?", { exact: true }).waitFor();
    const secret = server.gateway.credentials.pool.get(id)?.secret;
    const plain = [secret?.accessToken, secret?.refreshToken, secret?.idToken];
    expect(secret?.accessToken).toBe(oauth.issued[0]);
    expect(secret?.refreshToken).toMatch(/^1\/\/mock-/);
    const html = await page.content();
    const stored = await page.evaluate<string>(
      "JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage })",
    );
    for (const token of plain) {
      expect(token).toBeTruthy();
      expect(listed?.masked_key).not.toContain(token);
      expect(html).not.toContain(token);
      expect(stored).not.toContain(token);
    }
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "credentials-oauth-added");
    expect(outside).toEqual([]);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("a device login (Qwen) waits for the person, can be left, and adds the account once approved", async () => {
    const { page, problems, context } = await openPage(browser);
    await openCredentials(page);
    const userCodeOf = (url: string) => new URL(url).searchParams.get("user_code") ?? "";

    // Left waiting. A status request is held on its way while the person stops waiting and
    // then denies the device at the provider: its (real) answer comes too late and is dropped.
    let requested!: (state: string) => void;
    const seen = new Promise<string>((ok) => {
      requested = ok;
    });
    let release!: () => void;
    const held = new Promise<void>((ok) => {
      release = ok;
    });
    await page.route("**/v0/management/get-auth-status?*", async (route) => {
      requested(new URL(route.request().url()).searchParams.get("state") ?? "");
      await held;
      await route.continue();
    });
    let popup = context.waitForEvent("page");
    await page.getByRole("button", { name: "Log in with Qwen" }).click();
    let tab = await popup;
    expect(tab.url()).toMatch(new RegExp(`^${oauth.origin}/device\\?user_code=`));
    const abandoned = userCodeOf(tab.url());
    await page.getByText("Waiting for the Qwen login to finish in the other tab…").waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "credentials-oauth-waiting");
    const state = await seen;
    oauth.deny(abandoned);
    await expect.poll(() => authStatus(state)).toEqual({ status: "error", error: "access denied" });
    await page.getByRole("button", { name: "Stop waiting" }).click();
    await page.getByRole("button", { name: "Log in with Qwen" }).waitFor();
    expect(await page.getByRole("button", { name: "Log in with Qwen" }).isEnabled()).toBe(true);
    const answered = page.waitForResponse("**/v0/management/get-auth-status?*");
    release();
    await answered;
    await page.unroute("**/v0/management/get-auth-status?*");
    await page.waitForTimeout(300);
    expect(await page.getByText(/Qwen login failed/).count()).toBe(0);
    await tab.close();

    popup = context.waitForEvent("page");
    await page.getByRole("button", { name: "Log in with Qwen" }).click();
    tab = await popup;
    const userCode = userCodeOf(tab.url());
    expect(userCode).not.toBe(abandoned);
    await page.getByText("Waiting for the Qwen login to finish in the other tab…").waitFor();
    // The person approves the device at the provider; the gateway's poll picks the tokens up.
    oauth.approve(userCode);
    await page.getByText("Qwen account added.").waitFor();
    const id = "qwen-login_example.com.json";
    await row(page, id).getByText("Active", { exact: true }).waitFor();
    expect((await credentials()).find((c) => c.id === id)).toMatchObject({
      provider: "qwen",
      kind: "oauth",
      status: "active",
    });
    const secret = server.gateway.credentials.pool.get(id)?.secret;
    expect(secret?.accessToken).toBeTruthy();
    expect(await page.content()).not.toContain(secret?.accessToken ?? "?");
    expect(await page.content()).not.toContain(secret?.refreshToken ?? "?");
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("shows a failed login: consent denied at the provider, code refused by the token endpoint", async () => {
    const { page, problems, context } = await openPage(browser);
    await openCredentials(page);
    const before = (await credentials()).map((c) => c.id);

    // The person says no on the provider's page.
    oauth.denyNextAuthorization();
    let popup = context.waitForEvent("page");
    await page.getByRole("button", { name: "Log in with Codex" }).click();
    let tab = await popup;
    await tab.waitForURL(/\/v0\/management\/oauth\/callback\?error=access_denied/);
    await tab.close();
    await page.getByText("Codex login failed: authorization denied: access_denied").waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "credentials-oauth-denied");

    // The provider's token endpoint refuses the code.
    oauth.fail({
      status: 400,
      body: {
        error: "invalid_grant",
        error_description: "Authorization code was already redeemed.",
      },
    });
    popup = context.waitForEvent("page");
    await page.getByRole("button", { name: "Log in with Gemini CLI" }).click();
    tab = await popup;
    await tab.waitForURL(/\/v0\/management\/oauth\/callback\?code=/);
    await tab.close();
    await page
      .getByText("Gemini CLI login failed: Authorization code was already redeemed.")
      .waitFor();
    expect(oauth.requests.at(-1)).toMatchObject({ grantType: "authorization_code", status: 400 });
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "credentials-oauth-failed");
    // Nothing was added.
    expect((await credentials()).map((c) => c.id)).toEqual(before);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("fits a 360 px wide screen, list and dialog, in Chinese, dark theme", async () => {
    const { page, problems, context } = await openPage(browser, {
      viewport: { width: 360, height: 780 },
      colorScheme: "dark",
      locale: "zh-CN",
    });
    await page.goto(server.consoleUrl);
    await page.getByLabel("管理密钥").fill(server.managementKey);
    await page.getByRole("button", { name: "登录" }).click();
    await page.getByRole("heading", { level: 1, name: "概览" }).waitFor();
    await page.goto(`${server.consoleUrl}#/credentials`);
    await page.getByRole("heading", { level: 1, name: "上游凭据" }).waitFor();
    await page.getByRole("cell", { name: /^mock upstream/ }).waitFor();
    const width = () => page.evaluate(() => document.documentElement.scrollWidth);
    expect(await width()).toBeLessThanOrEqual(360);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "credentials-360-zh");
    await page.getByRole("button", { name: "添加 API 密钥" }).click();
    await page.getByRole("dialog", { name: "添加 API 密钥" }).waitFor();
    expect(await width()).toBeLessThanOrEqual(360);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "credentials-360-zh-add");
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
