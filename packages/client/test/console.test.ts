/**
 * `client.tokens`, `client.users` and `client.pool` against a real gateway, as an admin (the
 * management key) and as a user (access token + New-Api-User).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, createClient, isTokenpoolError, type TokenpoolError } from "../src/index.js";
import { startGateway, type TestGateway } from "./setup.js";

let g: TestGateway;
let admin: Client;

beforeAll(async () => {
  g = await startGateway();
  admin = createClient({ baseUrl: g.base, managementKey: g.managementKey });
});

afterAll(() => g.close());

/** The error a promise rejects with (fails when it resolves). */
async function rejection(p: Promise<unknown>): Promise<TokenpoolError> {
  try {
    await p;
  } catch (e) {
    expect(isTokenpoolError(e)).toBe(true);
    return e as TokenpoolError;
  }
  throw new Error("expected a rejection");
}

describe("client.users", () => {
  it("creates, reads, searches, updates (quota), reissues and deletes a user", async () => {
    const created = await admin.users.create({ username: "alice", quota: 1_000_000 });
    expect(created.username).toBe("alice");
    expect(created.quota).toBe(1_000_000);
    expect(created.access_token).toEqual(expect.any(String));

    expect((await admin.users.get(created.id)).username).toBe("alice");
    const page = await admin.users.list({ p: 1, size: 10 });
    expect(page.items.map((u) => u.username)).toContain("alice");
    expect(page.page_size).toBe(10);
    const found = await admin.users.search({ keyword: "ali" });
    expect(found.items.map((u) => u.id)).toEqual([created.id]);

    const updated = await admin.users.update({ id: created.id, quota: 2_000_000 });
    expect(updated.quota).toBe(2_000_000);

    const token = await admin.users.issueAccessToken(created.id);
    expect(token).not.toBe(created.access_token);

    const temp = await admin.users.create({ username: "temp-user" });
    await admin.users.delete(temp.id);
    expect((await rejection(admin.users.get(temp.id))).status).toBe(404);
  });
});

describe("client.tokens", () => {
  it("creates a key for a user, lists, searches, reveals, sets its quota and status, deletes", async () => {
    const user = await admin.users.create({ username: "bob" });
    const t = await admin.tokens.create({
      name: "bob app",
      user_id: user.id,
      remain_quota: 500_000,
      expired_time: -1,
    });
    expect(t.key).toMatch(/^sk-/);
    expect(t.user_id).toBe(user.id);

    const page = await admin.tokens.list({ user_id: user.id });
    expect(page.total).toBe(1);
    expect(page.items[0]!.key).not.toBe(t.key); // masked
    expect(await admin.tokens.search({ keyword: "bob" })).toHaveLength(1);
    expect((await admin.tokens.search({ token: t.key }))[0]!.id).toBe(t.id);
    expect((await admin.tokens.get(t.id)).name).toBe("bob app");
    expect(await admin.tokens.reveal(t.id)).toBe(t.key);

    const quota = await admin.tokens.update({ id: t.id, remain_quota: 123_456 });
    expect(quota.remain_quota).toBe(123_456);
    expect((await admin.tokens.setStatus(t.id, 2)).status).toBe(2);
    expect((await admin.tokens.setStatus(t.id, 1)).status).toBe(1);

    await admin.tokens.delete(t.id);
    const e = await rejection(admin.tokens.get(t.id));
    expect(e.status).toBe(404);
    expect(e.message).toBe("Token does not exist");
    expect(e.body).toEqual({ success: false, message: "Token does not exist" });
  });

  it("creates a batch with count and deletes it with deleteBatch", async () => {
    const batch = await admin.tokens.create({ name: "batch", count: 3, remain_quota: 10 });
    expect(batch).toHaveLength(3);
    expect(await admin.tokens.deleteBatch(batch.map((b) => b.id))).toBe(3);
  });

  it("acts as a user with an access token and New-Api-User", async () => {
    const user = await admin.users.create({ username: "carol" });
    const other = await admin.tokens.create({ name: "not carol's" });
    const carol = createClient({
      baseUrl: g.base,
      accessToken: user.access_token,
      userId: user.id,
    });
    const mine = await carol.tokens.create({ name: "carol key", remain_quota: 1000 });
    expect(mine.user_id).toBe(user.id);
    const page = await carol.tokens.list();
    expect(page.items.map((i) => i.id)).toEqual([mine.id]);
    expect((await rejection(carol.tokens.get(other.id))).status).toBe(404);
    // The user routes are for admins.
    expect((await rejection(carol.users.list())).status).toBe(403);
  });
});

describe("limit and refill fields", () => {
  it("a token carries its limits and refill; an update that names one keeps the others", async () => {
    const t = await admin.tokens.create({
      name: "plan",
      remain_quota: 2_500_000,
      rpm_limit: 60,
      tpm_limit: 100_000,
      max_concurrency: 2,
      quota_refill_interval: "month",
      quota_refill_amount: 2_500_000,
    });
    const now = new Date();
    const firstOfNextMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1) / 1000;
    expect(t).toMatchObject({
      rpm_limit: 60,
      tpm_limit: 100_000,
      rpd_limit: 0,
      max_concurrency: 2,
      queue_timeout_ms: 0,
      quota_refill_interval: "month",
      quota_refill_amount: 2_500_000,
      next_refill_time: firstOfNextMonth,
    });
    const updated = await admin.tokens.update({ id: t.id, rpm_limit: 30, queue_timeout_ms: 500 });
    expect(updated).toMatchObject({
      rpm_limit: 30,
      tpm_limit: 100_000,
      max_concurrency: 2,
      queue_timeout_ms: 500,
      quota_refill_interval: "month",
    });
    expect(await admin.tokens.get(t.id)).toEqual(updated);
    const off = await admin.tokens.update({ id: t.id, quota_refill_interval: "" });
    expect(off).toMatchObject({ quota_refill_interval: "", next_refill_time: 0, rpm_limit: 30 });

    const e = await rejection(admin.tokens.update({ id: t.id, rpm_limit: -1 }));
    expect(e.status).toBe(400);
    expect(e.body).toEqual({ success: false, message: expect.stringMatching(/rpm_limit/) });
    expect((await admin.tokens.get(t.id)).rpm_limit).toBe(30);
  });

  it("a user carries its limits and refill in snake_case", async () => {
    const u = await admin.users.create({
      username: "limited-user",
      quota: 10,
      max_concurrency: 3,
      quota_refill_interval: "1d",
      quota_refill_amount: 1_000,
    });
    expect(u).toMatchObject({
      display_name: "limited-user",
      max_concurrency: 3,
      quota_refill_interval: "1d",
      quota_refill_amount: 1_000,
    });
    expect(u.next_refill_time).toBeGreaterThan(Date.now() / 1000);
    const updated = await admin.users.update({ id: u.id, rpd_limit: 500 });
    expect(updated).toMatchObject({
      rpd_limit: 500,
      max_concurrency: 3,
      quota_refill_amount: 1_000,
    });
    expect((await admin.users.get(u.id)).rpd_limit).toBe(500);
  });
});

describe("client.pool", () => {
  it("adds, lists, updates, reloads and deletes an OAuth account", async () => {
    const { id } = await admin.pool.add({
      refresh_token: "1//pool-refresh-token-client-test",
      access_token: "ya29.pool-access-token-client-test",
      expires_in: 3599,
      projectId: "proj-a",
    });
    expect(id).toEqual(expect.any(String));
    let list = await admin.pool.list();
    const row = list.find((r) => r.id === id)!;
    expect(row.enable).toBe(true);
    expect(row.projectId).toBe("proj-a");
    expect(row.refresh_token).not.toContain("pool-refresh-token-client-test");

    await admin.pool.update(id, { enable: false, projectId: "proj-b" });
    // A refresh token with slashes works as the path key too.
    await admin.pool.update("1//pool-refresh-token-client-test", { expires_in: 1800 });
    await admin.pool.reload();
    list = await admin.pool.list();
    expect(list.find((r) => r.id === id)).toMatchObject({
      enable: false,
      projectId: "proj-b",
      expires_in: 1800,
    });

    const dup = await rejection(
      admin.pool.add({ refresh_token: "1//pool-refresh-token-client-test" }),
    );
    expect(dup.status).toBe(400);
    expect(dup.message).toContain("Token已存在");

    await admin.pool.delete(id);
    expect((await admin.pool.list()).find((r) => r.id === id)).toBeUndefined();
    expect((await rejection(admin.pool.delete(id))).status).toBe(404);
  });
});
