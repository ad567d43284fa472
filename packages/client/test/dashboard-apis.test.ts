/** The client methods of the console APIs: the settings table, credentials and usage summaries. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, createClient, isTokenpoolError, type TokenpoolError } from "../src/index.js";
import { startGateway, type TestGateway, UPSTREAM_KEY } from "./setup.js";

let g: TestGateway;
let client: Client;

beforeAll(async () => {
  g = await startGateway();
  client = createClient({ baseUrl: g.base, managementKey: g.managementKey });
});

afterAll(() => g.close());

async function rejection(p: Promise<unknown>): Promise<TokenpoolError> {
  try {
    await p;
  } catch (e) {
    expect(isTokenpoolError(e)).toBe(true);
    return e as TokenpoolError;
  }
  throw new Error("expected a rejection");
}

describe("client.management settings table", () => {
  it("lists every setting, sets one, refuses a bad value and resets it", async () => {
    const table = await client.management.settingsTable();
    expect(table.find((s) => s.name === "request-retry")).toMatchObject({
      type: "integer",
      default: 3,
    });
    expect(await client.management.setSetting("request-retry", 6)).toMatchObject({
      name: "request-retry",
      value: 6,
    });
    expect(g.gateway.settings.get("request-retry")).toBe(6);
    const e = await rejection(client.management.setSetting("request-retry", "six"));
    expect(e.status).toBe(400);
    expect(e.message).toContain("request-retry");
    expect((await rejection(client.management.setSetting("nope", 1))).status).toBe(404);
    expect(await client.management.resetSetting("request-retry")).toMatchObject({ value: 3 });
  });
});

describe("client.management.credentials", () => {
  it("creates, lists, updates, refuses a refresh of an API key, and removes", async () => {
    const created = await client.management.credentials.create({
      provider: "openai",
      api_key: "sk-client-dash-0123456789abcdefghij",
      base_url: g.mock.url,
      label: "second",
    });
    expect(created).toMatchObject({ kind: "api-key", label: "second", status: "active" });
    expect(JSON.stringify(created)).not.toContain("sk-client-dash-0123456789abcdefghij");
    const list = await client.management.credentials.list({ provider: "openai" });
    expect(list.map((c) => c.label)).toEqual(["mock", "second"]);
    expect(JSON.stringify(list)).not.toContain(UPSTREAM_KEY);
    const updated = await client.management.credentials.update(created.id, { priority: 4 });
    expect(updated).toMatchObject({ priority: 4, label: "second" });
    expect((await rejection(client.management.credentials.refresh(created.id))).status).toBe(400);
    expect(await client.management.credentials.remove(created.id)).toEqual({ status: "ok" });
    expect((await rejection(client.management.credentials.remove(created.id))).status).toBe(404);
  });
});

describe("usage summaries", () => {
  it("a key reads its own summary; the management summary groups by hour", async () => {
    const { key } = await g.gateway.keys.create({ name: "dash", unlimitedQuota: true });
    const proxy = client.proxy(key);
    await proxy.chat({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
    const rows = await proxy.tokenUsageSummary({ by: "model" });
    expect(rows).toEqual([expect.objectContaining({ id: "gpt-4o-mini", requests: 1 })]);
    const hour = new Date().toISOString().slice(0, 13);
    expect(await proxy.tokenUsageSummary({ by: "hour" })).toEqual([
      expect.objectContaining({ id: hour, requests: 1 }),
    ]);
    const summary = await client.management.usageSummary({ by: "hour" });
    expect(summary.rows.map((r) => r.id)).toContain(hour);
  });
});
