/**
 * `client.logs` (new-api's `/api/log/`) and `client.management.usageSummary` against a real
 * gateway: an admin sees every user's records, a user their own.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, createClient, isTokenpoolError } from "../src/index.js";
import { startGateway, type TestGateway } from "./setup.js";

let g: TestGateway;
let admin: Client;
let carol: Client;
const keys: Record<"carol" | "dave", string> = { carol: "", dave: "" };

beforeAll(async () => {
  g = await startGateway();
  admin = createClient({ baseUrl: g.base, managementKey: g.managementKey });
  for (const name of ["carol", "dave"] as const) {
    const user = await admin.users.create({ username: name, quota: 1_000_000_000 });
    const { key } = await g.gateway.keys.create({
      name: `${name}-key`,
      userId: user.id,
      remainQuota: 1_000_000,
    });
    keys[name] = key;
    if (name === "carol")
      carol = createClient({ baseUrl: g.base, accessToken: user.access_token, userId: user.id });
    const proxy = admin.proxy(key);
    await proxy.chat({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] });
  }
  await g.gateway.usage.flush();
});

afterAll(() => g.close());

describe("client.logs", () => {
  it("lists, filters, sums and exports every user's records as an admin", async () => {
    const page = await admin.logs.list({ page_size: 10 });
    expect(page.total).toBe(2);
    expect(page.items.map((i) => i.username).sort()).toEqual(["carol", "dave"]);
    const dave = await admin.logs.list({ username: "dave" });
    expect(dave.items.map((i) => i.token_name)).toEqual(["dave-key"]);
    const stat = await admin.logs.stat({ type: 2 });
    expect(stat.rpm).toBe(2);
    expect(stat.quota).toBe(page.items.reduce((s, i) => s + i.quota, 0));
    const csv = await admin.logs.exportCsv({ token_name: "carol-key" });
    expect(csv.trim().split("\r\n")).toHaveLength(2);
  });

  it("shows a user their own records only", async () => {
    const mine = await carol.logs.self({ username: "dave" });
    expect(mine.items.map((i) => i.username)).toEqual(["carol"]);
    expect((await carol.logs.selfStat()).rpm).toBe(1);
    expect((await carol.logs.selfExportCsv()).trim().split("\r\n")).toHaveLength(2);
    const refused = await carol.logs.list().catch((e: unknown) => e);
    expect(isTokenpoolError(refused) && refused.status).toBe(403);
  });

  it("reads a key's own records with the key", async () => {
    const items = await admin.logs.ofKey(keys.dave);
    expect(items.map((i) => i.token_name)).toEqual(["dave-key"]);
  });

  it("sums usage and cost per model through the management API, then deletes the log", async () => {
    const summary = await admin.management.usageSummary({ by: "model" });
    expect(summary.by).toBe("model");
    expect(summary.rows.map((r) => [r.id, r.requests])).toEqual([["gpt-4o-mini", 2]]);
    expect(summary.rows[0]!.costUsd).toBeGreaterThan(0);
    expect(await admin.logs.deleteBefore(Math.floor(Date.now() / 1000) + 5)).toBe(2);
    expect((await admin.logs.list()).total).toBe(0);
  });
});
