import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
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
let receiver: Server;
let receiverUrl: string;
const received: { headers: Record<string, unknown>; body: { type: string } }[] = [];

beforeAll(async () => {
  [server, browser] = await Promise.all([startConsoleServer(), launchBrowser()]);
  receiver = createServer((req, res) => {
    let text = "";
    req.on("data", (c: Buffer) => {
      text += c.toString("utf8");
    });
    req.on("end", () => {
      received.push({ headers: req.headers, body: JSON.parse(text) as { type: string } });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((ok) => receiver.listen(0, "127.0.0.1", ok));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/tokenpool`;
});
afterAll(async () => {
  await browser?.close();
  await server?.close();
  receiver?.closeAllConnections();
  await new Promise<void>((ok) => (receiver ? receiver.close(() => ok()) : ok()));
});

interface WebhookView {
  id: string;
  url: string;
  events: string[];
  enabled: boolean;
  secret: string;
}

async function webhooks(): Promise<WebhookView[]> {
  const res = await fetch(`${server.url}/v0/management/webhooks`, {
    headers: { authorization: `Bearer ${server.managementKey}` },
  });
  expect(res.status).toBe(200);
  return ((await res.json()) as { webhooks: WebhookView[] }).webhooks;
}

describe("the webhooks page", () => {
  it("creates a webhook (secret shown once), sends a test the receiver gets, edits, disables, rotates and deletes it", async () => {
    const { page, problems, context } = await openPage(browser);
    await loginAsOperator(page, server);
    await page.goto(`${server.consoleUrl}#/webhooks`);
    await page.getByRole("heading", { level: 1, name: "Webhooks" }).waitFor();
    await page.getByText("No webhook yet.").waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "webhooks-empty");

    // Create: the form checks itself first.
    await page.getByRole("button", { name: "Add webhook" }).click();
    const form = page.getByRole("dialog", { name: "Add a webhook" });
    await form.getByRole("button", { name: "Create" }).click();
    await form.getByText("Enter the URL.").waitFor();
    await form.getByText("Pick at least one event.").waitFor();
    await form.getByLabel("URL", { exact: true }).fill(receiverUrl);
    await form.getByLabel("credential.disabled", { exact: true }).check();
    await form.getByLabel("Description").fill("on-call pager");
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "webhooks-create");
    await form.getByRole("button", { name: "Create" }).click();

    const secretDialog = page.getByRole("dialog", { name: "Signing secret" });
    const secret = (await secretDialog.locator("code").textContent()) ?? "";
    expect(secret).toMatch(/^whsec_/);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "webhooks-secret-once");
    await secretDialog.getByRole("button", { name: "Done" }).click();

    const [hook] = await webhooks();
    expect(hook).toMatchObject({
      url: receiverUrl,
      events: ["credential.disabled"],
      enabled: true,
    });
    expect(hook?.secret).not.toBe(secret);
    // The secret is not on the page any more.
    expect(await page.content()).not.toContain(secret);

    // Send test: the receiver gets a signed webhook.test.
    await page.getByRole("button", { name: /^Send test/ }).click();
    await page.getByText(/Test delivered to .*HTTP 204/).waitFor();
    expect(received.map((r) => r.body.type)).toContain("webhook.test");
    expect(received[0]?.headers["webhook-signature"]).toMatch(/^v1,/);

    // Deliveries.
    await page.getByRole("button", { name: /^Deliveries/ }).click();
    const history = page.getByRole("dialog", { name: /Recent deliveries/ });
    await history.getByRole("cell", { name: "webhook.test" }).waitFor();
    await history.getByText("Delivered").waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "webhooks-deliveries");
    await history.getByRole("button", { name: "Close" }).first().click();

    // Edit: one more event.
    await page.getByRole("button", { name: /^Edit/ }).click();
    const edit = page.getByRole("dialog", { name: "Edit webhook" });
    await edit.getByLabel("key.exhausted", { exact: true }).check();
    await edit.getByRole("button", { name: "Save" }).click();
    await edit.waitFor({ state: "detached" });
    expect((await webhooks())[0]?.events.sort()).toEqual(["credential.disabled", "key.exhausted"]);

    // Disable asks first.
    await page.getByRole("button", { name: /^Disable/ }).click();
    await page.getByRole("dialog", { name: "Disable this webhook?" }).waitFor();
    expect(await seriousA11yViolations(page)).toEqual([]);
    await page.getByTestId("confirm-ok").click();
    await page.getByRole("button", { name: /^Enable/ }).waitFor();
    expect((await webhooks())[0]?.enabled).toBe(false);

    // Rotate: a new secret, shown once.
    await page.getByRole("button", { name: /^Rotate secret/ }).click();
    await page.getByTestId("confirm-ok").click();
    const rotated = page.getByRole("dialog", { name: "Signing secret" });
    const secret2 = (await rotated.locator("code").textContent()) ?? "";
    expect(secret2).toMatch(/^whsec_/);
    expect(secret2).not.toBe(secret);
    await rotated.getByRole("button", { name: "Done" }).click();
    await screenshot(page, "webhooks-list");

    // Delete asks first.
    await page.getByRole("button", { name: /^Delete/ }).click();
    await page.getByRole("dialog", { name: "Delete this webhook?" }).waitFor();
    await page.getByTestId("confirm-ok").click();
    await page.getByText("No webhook yet.").waitFor();
    expect(await webhooks()).toEqual([]);
    expect(problems.list).toEqual([]);
    await context.close();
  });

  it("fits a 360 px wide screen with a webhook listed and its dialog open, dark theme", async () => {
    const res = await fetch(`${server.url}/v0/management/webhooks`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${server.managementKey}`,
        "content-type": "application/json",
      },
      body: JSON.stringify({
        url: `${receiverUrl}/with/a/rather/long/path/that/must/wrap/somewhere`,
        events: ["*"],
      }),
    });
    expect(res.status).toBe(200);
    const { page, problems, context } = await openPage(browser, {
      viewport: { width: 360, height: 780 },
      colorScheme: "dark",
      locale: "zh-CN",
    });
    await page.goto(server.consoleUrl);
    await page.getByLabel("管理密钥").fill(server.managementKey);
    await page.getByRole("button", { name: "登录" }).click();
    await page.getByRole("heading", { level: 1, name: "概览" }).waitFor();
    await page.goto(`${server.consoleUrl}#/webhooks`);
    await page.getByRole("heading", { level: 1, name: "Webhooks" }).waitFor();
    await page.getByText("全部事件").first().waitFor();
    const width = () => page.evaluate(() => document.documentElement.scrollWidth);
    expect(await width()).toBeLessThanOrEqual(360);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "webhooks-360-zh");
    await page.getByRole("button", { name: "编辑" }).click();
    await page.getByRole("dialog", { name: "编辑 Webhook" }).waitFor();
    expect(await width()).toBeLessThanOrEqual(360);
    expect(await seriousA11yViolations(page)).toEqual([]);
    await screenshot(page, "webhooks-360-zh-edit");
    expect(problems.list).toEqual([]);
    await context.close();
  });
});
