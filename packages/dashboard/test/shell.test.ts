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

describe("the console's shell, in the browser", () => {
  it("the browser enforces the CSP: an injected inline style or script is blocked and reported (the check every test makes can fail)", async () => {
    const { page, problems, context } = await openPage(browser);
    await page.goto(server.consoleUrl);
    await page.getByRole("heading", { level: 1 }).waitFor();
    expect(problems.list).toEqual([]);
    await page.evaluate(`(() => {
      const style = document.createElement("style");
      style.textContent = "body { color: red }";
      document.head.append(style);
      const script = document.createElement("script");
      script.textContent = "window.injected = true";
      document.head.append(script);
    })()`);
    await expect.poll(() => problems.list.length).toBe(2);
    expect(problems.list.join("\n")).toMatch(
      /inline style violates the following Content Security Policy/,
    );
    expect(problems.list.join("\n")).toMatch(
      /inline script violates the following Content Security Policy/,
    );
    expect(await page.evaluate("window.injected")).toBeUndefined();
    await context.close();
  });

  it("works by keyboard alone: log in, reach a page from the menu, open a dialog and close it with Escape, focus back on its button", async () => {
    const { page, problems, context } = await openPage(browser);
    await page.goto(server.consoleUrl);
    await page.getByRole("heading", { level: 1, name: "Log in to the console" }).waitFor();
    // Tab from the top of the page until the key field has focus; every stop is labelled.
    const focusedName = () =>
      page.evaluate<string>(`(() => {
        const el = document.activeElement;
        if (!el) return "";
        const label = el.id ? document.querySelector('label[for="' + el.id + '"]') : null;
        const name = (el.getAttribute("aria-label") || (label && label.textContent) || el.textContent || "").trim();
        return el.tagName === "INPUT" ? "input: " + name : name;
      })()`);
    const seen: string[] = [];
    for (let i = 0; i < 15 && seen.at(-1) !== "input: Management key"; i++) {
      await page.keyboard.press("Tab");
      seen.push(await focusedName());
    }
    expect(seen.at(-1)).toBe("input: Management key");
    expect(seen.every((name) => name.length > 0)).toBe(true);
    await page.keyboard.type(server.managementKey);
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { level: 1, name: "Overview" }).waitFor();
    // The new page's heading has focus, so a screen reader starts there.
    expect(await page.evaluate("document.activeElement && document.activeElement.id")).toBe(
      "page-title",
    );

    // To the Keys link of the menu, by Tab.
    for (let i = 0; i < 20 && (await focusedName()) !== "Keys"; i++)
      await page.keyboard.press("Tab");
    expect(await focusedName()).toBe("Keys");
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { level: 1, name: "Keys" }).waitFor();
    for (let i = 0; i < 30 && (await focusedName()) !== "Create key"; i++)
      await page.keyboard.press("Tab");
    expect(await focusedName()).toBe("Create key");
    await page.keyboard.press("Enter");
    const dialog = page.getByRole("dialog", { name: "Create key" });
    await dialog.waitFor();
    // Focus moved into the dialog.
    expect(await page.evaluate("!!document.activeElement.closest('dialog')")).toBe(true);
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
    expect(await focusedName()).toBe("Create key");
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
