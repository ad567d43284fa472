/**
 * The limit and refill fields of keys and users (issue 15) through every way they are set and
 * read: the new-api token and user routes over a real HTTP server, and the library API.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import type { TokenView, UserView } from "../src/dialects/new-api/wire.js";
import { createGateway, type Gateway, isGatewayError, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "limit-fields-secret-0123456789-abcdefgh";
const MGMT = "management-key-limits-0123456789-abcdef";

interface Envelope<T = unknown> {
  success: boolean;
  message: string;
  data?: T;
}

let gateway: Gateway;
let server: Server;
let base: string;

beforeEach(async () => {
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    settings: { "group-ratio": { default: 1, vip: 1.5 } },
  });
  await gateway.ready;
  await gateway.management.setKey(MGMT);
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  vi.useRealTimers();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
});

/** A call as an admin (the management key). */
async function api<T = unknown>(
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; body: Envelope<T> }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${MGMT}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Envelope<T> };
}

async function ok<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await api<T>(method, path, body);
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  expect(res.body.success).toBe(true);
  return res.body.data as T;
}

function expectFailure(res: { status: number; body: Envelope }, pattern: RegExp) {
  expect(res.status, JSON.stringify(res.body)).toBe(400);
  expect(Object.keys(res.body).sort()).toEqual(["message", "success"]);
  expect(res.body.success).toBe(false);
  expect(res.body.message).toMatch(pattern);
}

/** Everything the store holds for keys and users, to prove a refused request changed nothing. */
async function snapshot(): Promise<string> {
  return JSON.stringify([
    await gateway.store.keys.list({ limit: 10_000 }),
    await gateway.store.users.list({ limit: 10_000 }),
  ]);
}

const NO_LIMITS = {
  rpm_limit: 0,
  tpm_limit: 0,
  rpd_limit: 0,
  max_concurrency: 0,
  queue_timeout_ms: 0,
  quota_refill_interval: "",
  quota_refill_amount: 0,
  next_refill_time: 0,
};

const sec = (ms: number) => Math.floor(ms / 1000);

describe("token limit fields (new-api dialect)", () => {
  it("a token created with limits and a refill shows them in get, list and search", async () => {
    const made = await ok<TokenView>("POST", "/api/token/", {
      name: "limited",
      remain_quota: 1_000,
      rpm_limit: 60,
      tpm_limit: 100_000,
      rpd_limit: 5_000,
      max_concurrency: 5,
      queue_timeout_ms: 2_000,
      quota_refill_interval: "month",
      quota_refill_amount: 2_500_000,
    });
    const expected = {
      rpm_limit: 60,
      tpm_limit: 100_000,
      rpd_limit: 5_000,
      max_concurrency: 5,
      queue_timeout_ms: 2_000,
      quota_refill_interval: "month",
      quota_refill_amount: 2_500_000,
      // The current balance lasts until the next boundary: no refill at creation.
      remain_quota: 1_000,
    };
    expect(made).toMatchObject(expected);
    const got = await ok<TokenView>("GET", `/api/token/${made.id}`);
    expect(got).toMatchObject(expected);
    const now = new Date();
    expect(got.next_refill_time).toBe(sec(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1)));
    const listed = await ok<{ items: TokenView[] }>("GET", "/api/token/");
    expect(listed.items[0]).toEqual(got);
    expect(await ok<TokenView[]>("GET", "/api/token/search?keyword=limited")).toEqual([got]);

    const plain = await ok<TokenView>("POST", "/api/token/", { name: "plain" });
    expect(plain).toMatchObject(NO_LIMITS);
    // The library view: limits an object, quotaRefill null, nextRefillTime null.
    const view = (await gateway.keys.get(plain.id))!;
    expect(view).toMatchObject({ limits: {}, quotaRefill: null, nextRefillTime: null });
    expect((await gateway.keys.get(made.id))!).toMatchObject({
      limits: { rpm: 60, tpm: 100_000, rpd: 5_000, maxConcurrency: 5, queueTimeoutMs: 2_000 },
      quotaRefill: { interval: "month", amount: 2_500_000 },
      nextRefillTime: got.next_refill_time * 1000,
    });
  });

  it("an older client's PUT without the new fields keeps them", async () => {
    const made = await ok<TokenView>("POST", "/api/token/", {
      name: "keep",
      rpm_limit: 30,
      max_concurrency: 1,
      quota_refill_interval: "1d",
      quota_refill_amount: 500,
    });
    // AnyAPI's example body: the seed's fields only.
    const updated = await ok<TokenView>("PUT", "/api/token/", {
      id: made.id,
      name: "renamed",
      remain_quota: 9_000,
      expired_time: -1,
      unlimited_quota: false,
      model_limits_enabled: false,
      model_limits: "",
      group: "",
      allow_ips: "",
    });
    expect(updated).toMatchObject({
      name: "renamed",
      remain_quota: 9_000,
      rpm_limit: 30,
      max_concurrency: 1,
      quota_refill_interval: "1d",
      quota_refill_amount: 500,
      next_refill_time: made.next_refill_time,
    });
    // A whole token read and written back (null fields included) changes nothing either.
    const again = await ok<TokenView>("PUT", "/api/token/", {
      ...updated,
      rpm_limit: null,
      quota_refill_interval: null,
    });
    expect(again).toEqual(updated);
    // status_only touches only the status, whatever else the body holds.
    const status = await ok<TokenView>("PUT", "/api/token/?status_only=true", {
      id: made.id,
      status: 2,
      rpm_limit: 0,
      quota_refill_interval: "",
    });
    expect(status).toEqual({ ...updated, status: 2 });
  });

  it("a partial limit update keeps the other limits; 0 clears one; the refill amount alone keeps its interval", async () => {
    const made = await ok<TokenView>("POST", "/api/token/", {
      name: "partial",
      rpm_limit: 60,
      tpm_limit: 1_000,
      max_concurrency: 3,
      quota_refill_interval: "7d",
      quota_refill_amount: 100,
    });
    const before = (await gateway.store.keys.get(made.id))!;
    const t = await ok<TokenView>("PUT", "/api/token/", {
      id: made.id,
      tpm_limit: 0,
      rpd_limit: 10,
      quota_refill_amount: 700,
    });
    expect(t).toMatchObject({
      rpm_limit: 60,
      tpm_limit: 0,
      rpd_limit: 10,
      max_concurrency: 3,
      quota_refill_interval: "7d",
      quota_refill_amount: 700,
      next_refill_time: made.next_refill_time,
    });
    const stored = (await gateway.store.keys.get(made.id))!;
    expect(stored.limits).toEqual({ rpm: 60, rpd: 10, maxConcurrency: 3 });
    // Only the amount changed: the period goes on.
    expect(stored.quotaPeriod).toBe(before.quotaPeriod);

    // Removing the refill: "" (the amount sent with it does not matter).
    const off = await ok<TokenView>("PUT", "/api/token/", {
      id: made.id,
      quota_refill_interval: "",
      quota_refill_amount: 700,
    });
    expect(off).toMatchObject({
      quota_refill_interval: "",
      quota_refill_amount: 0,
      next_refill_time: 0,
      rpm_limit: 60,
    });
    expect((await gateway.store.keys.get(made.id))!.quotaRefill ?? null).toBeNull();
  });

  it("refuses bad limit and refill values with 400 {success:false} and writes nothing", async () => {
    const made = await ok<TokenView>("POST", "/api/token/", { name: "target", rpm_limit: 5 });
    const before = await snapshot();
    const bodies: [Record<string, unknown>, RegExp][] = [
      [{ rpm_limit: "60" }, /rpm_limit must be a non-negative integer/],
      [{ tpm_limit: -1 }, /tpm_limit must be a non-negative integer/],
      [{ rpd_limit: 1.5 }, /rpd_limit must be a non-negative integer/],
      [{ max_concurrency: true }, /max_concurrency/],
      [{ queue_timeout_ms: 2 ** 60 }, /queue_timeout_ms/],
      [{ quota_refill_interval: "weekly" }, /quota_refill_interval must be/],
      [{ quota_refill_interval: 30 }, /quota_refill_interval must be/],
      [{ quota_refill_interval: "1d", quota_refill_amount: -5 }, /quota_refill_amount/],
      [{ quota_refill_amount: 100 }, /quota_refill_amount needs a quota_refill_interval/],
    ];
    for (const [fields, message] of bodies) {
      expectFailure(await api("POST", "/api/token/", { name: "new", ...fields }), message);
      expectFailure(await api("POST", "/api/token/", { count: 3, ...fields }), message);
      expectFailure(
        await api("PUT", "/api/token/", { id: made.id, name: "x", ...fields }),
        message,
      );
    }
    expect(await snapshot()).toBe(before);
  });
});

describe("user limit fields (new-api dialect)", () => {
  it("creates, reads, partially updates and keeps them across an older client's PUT", async () => {
    const created = await ok<UserView & { access_token: string }>("POST", "/api/user/", {
      username: "plan",
      quota: 100,
      rpm_limit: 120,
      max_concurrency: 4,
      quota_refill_interval: "30d",
      quota_refill_amount: 2_500_000,
    });
    expect(created).toMatchObject({
      rpm_limit: 120,
      tpm_limit: 0,
      max_concurrency: 4,
      quota_refill_interval: "30d",
      quota_refill_amount: 2_500_000,
      quota: 100,
    });
    // 30 days from today's 00:00 (UTC, the default zone).
    const today = new Date();
    const midnight = Date.UTC(today.getUTCFullYear(), today.getUTCMonth(), today.getUTCDate());
    expect(created.next_refill_time).toBe(sec(midnight + 30 * 86_400_000));
    const { access_token: _t, ...view } = created;
    expect(await ok<UserView>("GET", `/api/user/${created.id}`)).toEqual(view);

    const older = await ok<UserView>("PUT", "/api/user/", { id: created.id, display_name: "Plan" });
    expect(older).toEqual({ ...view, display_name: "Plan" });

    const partial = await ok<UserView>("PUT", "/api/user/", {
      id: created.id,
      tpm_limit: 50_000,
      rpm_limit: 0,
    });
    expect(partial).toMatchObject({
      rpm_limit: 0,
      tpm_limit: 50_000,
      max_concurrency: 4,
      quota_refill_interval: "30d",
    });
    expect((await gateway.users.get(created.id))!.limits).toEqual({
      tpm: 50_000,
      maxConcurrency: 4,
    });
    const listed = await ok<{ items: UserView[] }>("GET", "/api/user/");
    expect(listed.items.find((u) => u.id === created.id)).toEqual(partial);
  });

  it("refuses bad values with 400 and writes nothing", async () => {
    const u = await gateway.users.create({ username: "target" });
    const before = await snapshot();
    const bodies: [Record<string, unknown>, RegExp][] = [
      [{ rpm_limit: -1 }, /rpm_limit must be a non-negative integer/],
      [{ max_concurrency: "2" }, /max_concurrency must be a non-negative integer/],
      [{ quota_refill_interval: "year" }, /quota_refill_interval must be/],
      [{ quota_refill_interval: "month", quota_refill_amount: 0.5 }, /quota_refill_amount/],
      [{ quota_refill_amount: 5 }, /quota_refill_amount needs a quota_refill_interval/],
    ];
    for (const [fields, message] of bodies) {
      expectFailure(await api("POST", "/api/user/", { username: "new", ...fields }), message);
      expectFailure(await api("PUT", "/api/user/", { id: u.record.id, ...fields }), message);
    }
    expect(await snapshot()).toBe(before);
  });
});

describe("refill periods on reads", () => {
  it("next_refill_time is the next boundary in the quota-refill-time-zone setting", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    // 15:00 UTC is 23:00 in Shanghai (UTC+8).
    vi.setSystemTime(Date.UTC(2026, 11, 4, 15));
    const daily = await ok<TokenView>("POST", "/api/token/", {
      name: "daily",
      quota_refill_interval: "1d",
      quota_refill_amount: 10,
    });
    const monthly = await ok<TokenView>("POST", "/api/token/", {
      name: "monthly",
      quota_refill_interval: "month",
      quota_refill_amount: 10,
    });
    expect(daily.next_refill_time).toBe(sec(Date.UTC(2026, 11, 5)));
    expect(monthly.next_refill_time).toBe(sec(Date.UTC(2027, 0, 1)));

    await gateway.settings.set({ "quota-refill-time-zone": "Asia/Shanghai" });
    // 00:00 in Shanghai is 16:00 UTC the day before.
    expect((await ok<TokenView>("GET", `/api/token/${daily.id}`)).next_refill_time).toBe(
      sec(Date.UTC(2026, 11, 4, 16)),
    );
    expect((await ok<TokenView>("GET", `/api/token/${monthly.id}`)).next_refill_time).toBe(
      sec(Date.UTC(2026, 11, 31, 16)),
    );
    // A refill set up now starts its period in that zone too.
    const fresh = await ok<TokenView>("POST", "/api/token/", {
      name: "shanghai",
      quota_refill_interval: "1d",
      quota_refill_amount: 10,
    });
    expect(fresh.next_refill_time).toBe(sec(Date.UTC(2026, 11, 4, 16)));
    expect((await gateway.store.keys.get(fresh.id))!.quotaPeriod).toBe(Date.UTC(2026, 11, 3, 16));
  });

  it("a get applies a due refill once (balance = amount, used 0) and emits quota.refilled", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.UTC(2026, 11, 4, 15));
    const events: unknown[] = [];
    gateway.events.on("quota.refilled", (e) => events.push(e));
    const made = await ok<TokenView>("POST", "/api/token/", {
      name: "refills",
      remain_quota: 100,
      quota_refill_interval: "1d",
      quota_refill_amount: 5_000,
    });
    // Spent part of today's balance (as settlement would).
    await gateway.store.keys.update(made.id, { remainQuota: 23, usedQuota: 77 });
    expect(await ok<TokenView>("GET", `/api/token/${made.id}`)).toMatchObject({
      remain_quota: 23,
      used_quota: 77,
    });
    expect(events).toEqual([]);

    vi.setSystemTime(Date.UTC(2026, 11, 5, 0, 0, 1));
    const after = await ok<TokenView>("GET", `/api/token/${made.id}`);
    expect(after).toMatchObject({
      remain_quota: 5_000,
      used_quota: 0,
      next_refill_time: sec(Date.UTC(2026, 11, 6)),
    });
    expect(events).toEqual([
      { target: "key", id: made.id, period: Date.UTC(2026, 11, 5), amount: 5_000 },
    ]);
    // Read again, listed, searched: the same period, no second refill.
    await gateway.store.keys.update(made.id, { remainQuota: 4_000, usedQuota: 1_000 });
    expect((await ok<{ items: TokenView[] }>("GET", "/api/token/")).items[0]).toMatchObject({
      remain_quota: 4_000,
    });
    expect(events).toHaveLength(1);

    // A list applies a due refill too (the next day).
    vi.setSystemTime(Date.UTC(2026, 11, 6, 8));
    const listed = (await ok<{ items: TokenView[] }>("GET", "/api/token/")).items[0]!;
    expect(listed).toMatchObject({ remain_quota: 5_000, used_quota: 0 });
    expect(events).toHaveLength(2);
  });

  it("a user's monthly refill is applied by a get across the calendar month boundary", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.UTC(2026, 11, 31, 23, 59));
    const events: unknown[] = [];
    gateway.events.on("quota.refilled", (e) => events.push(e));
    const u = await ok<UserView>("POST", "/api/user/", {
      username: "monthly",
      quota: 3,
      quota_refill_interval: "month",
      quota_refill_amount: 2_500_000,
    });
    expect(u.next_refill_time).toBe(sec(Date.UTC(2027, 0, 1)));
    expect((await ok<UserView>("GET", `/api/user/${u.id}`)).quota).toBe(3);

    vi.setSystemTime(Date.UTC(2027, 0, 1, 0, 0, 5));
    const after = await ok<UserView>("GET", `/api/user/${u.id}`);
    expect(after).toMatchObject({
      quota: 2_500_000,
      used_quota: 0,
      next_refill_time: sec(Date.UTC(2027, 1, 1)),
    });
    expect(events).toEqual([
      { target: "user", id: u.id, period: Date.UTC(2027, 0, 1), amount: 2_500_000 },
    ]);
  });

  it("an update applies a due refill first, so a balance it sets stays", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.UTC(2026, 11, 4, 15));
    const events: unknown[] = [];
    gateway.events.on("quota.refilled", (e) => events.push(e));
    const { record } = await gateway.keys.create({
      name: "set",
      quotaRefill: { interval: "1d", amount: 300 },
    });
    const user = (
      await gateway.users.create({ username: "set", quotaRefill: { interval: "1d", amount: 300 } })
    ).record;
    vi.setSystemTime(Date.UTC(2026, 11, 5, 1));
    expect((await gateway.keys.update(record.id, { remainQuota: 42 }))!).toMatchObject({
      remainQuota: 42,
      quotaPeriod: Date.UTC(2026, 11, 5),
    });
    expect((await gateway.users.update(user.id, { quota: 43 }))!).toMatchObject({
      quota: 43,
      quotaPeriod: Date.UTC(2026, 11, 5),
    });
    expect(events).toHaveLength(2);
    expect((await gateway.keys.get(record.id))!.remainQuota).toBe(42);
    expect((await gateway.users.get(user.id))!.quota).toBe(43);
  });

  it("changing the interval starts a new period now; removing the refill keeps the period", async () => {
    vi.useFakeTimers({ toFake: ["Date"] });
    vi.setSystemTime(Date.UTC(2026, 11, 4, 15));
    const { record } = await gateway.keys.create({
      name: "switch",
      remainQuota: 40,
      quotaRefill: { interval: "month", amount: 1_000 },
    });
    expect(record.quotaPeriod).toBe(Date.UTC(2026, 11, 1));
    expect(record.nextRefillTime).toBe(Date.UTC(2027, 0, 1));

    vi.setSystemTime(Date.UTC(2026, 11, 20, 9));
    const weekly = (await gateway.keys.update(record.id, {
      quotaRefill: { interval: "7d", amount: 1_000 },
    }))!;
    expect(weekly).toMatchObject({
      remainQuota: 40,
      quotaPeriod: Date.UTC(2026, 11, 20),
      nextRefillTime: Date.UTC(2026, 11, 27),
    });
    const off = (await gateway.keys.update(record.id, { quotaRefill: null }))!;
    expect(off).toMatchObject({ quotaRefill: null, nextRefillTime: null });
    expect(off.quotaPeriod).toBe(Date.UTC(2026, 11, 20));
  });
});

describe("the library API", () => {
  /** The GatewayError a call rejects with. */
  async function refusal(p: Promise<unknown>): Promise<{ code: string; message: string }> {
    const e = await p.then(
      () => null,
      (error: unknown) => error,
    );
    expect(isGatewayError(e), String(e)).toBe(true);
    return e as { code: string; message: string };
  }

  it("validates limits and refills, naming the field, and writes nothing", async () => {
    const { record } = await gateway.keys.create({ name: "lib", limits: { rpm: 10 } });
    const user = (await gateway.users.create({ username: "lib" })).record;
    const before = await snapshot();
    const cases: [unknown, RegExp][] = [
      [{ limits: { rpm: -1 } }, /limits\.rpm must be a non-negative integer/],
      [{ limits: { tpm: 1.5 } }, /limits\.tpm/],
      [{ limits: { rps: 1 } }, /limits\.rps is not a rate limit/],
      [{ limits: [] }, /limits must be an object/],
      [{ quotaRefill: { interval: "2d", amount: 1 } }, /quotaRefill\.interval must be one of/],
      [{ quotaRefill: { interval: "1d", amount: -1 } }, /quotaRefill\.amount/],
      [{ quotaRefill: { interval: "1d" } }, /quotaRefill\.amount/],
      [{ quotaRefill: { interval: "1d", amount: 1, at: 0 } }, /quotaRefill\.at is not/],
      [{ quotaRefill: "month" }, /quotaRefill must be null or/],
    ];
    for (const [patch, message] of cases) {
      const calls = [
        gateway.keys.create({ name: "bad", ...(patch as object) }),
        gateway.keys.update(record.id, patch as never),
        gateway.users.create({ username: "bad", ...(patch as object) }),
        gateway.users.update(user.id, patch as never),
      ];
      for (const call of calls) {
        const e = await refusal(call);
        expect(e.code).toBe("INVALID_REQUEST");
        expect(e.message).toMatch(message);
      }
    }
    expect(await snapshot()).toBe(before);
  });

  it("merges an update's limits field by field", async () => {
    const { record } = await gateway.keys.create({
      name: "merge",
      limits: { rpm: 10, tpm: 0, maxConcurrency: 2 },
    });
    expect(record.limits).toEqual({ rpm: 10, maxConcurrency: 2 });
    const next = (await gateway.keys.update(record.id, { limits: { rpm: 0, rpd: 99 } }))!;
    expect(next.limits).toEqual({ rpd: 99, maxConcurrency: 2 });
    const renamed = (await gateway.keys.update(record.id, { name: "merge 2" }))!;
    expect(renamed.limits).toEqual({ rpd: 99, maxConcurrency: 2 });
    expect(await gateway.keys.update(987_654, { limits: { rpm: 1 } })).toBeNull();
    expect(await gateway.users.update(987_654, { limits: { rpm: 1 } })).toBeNull();
  });
});
