import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "users-secret-0123456789-0123456789-abcdef";
const MGMT = "management-key-0123456789-abcdef";
/** tokenpool's limit and refill fields (issue 15), on users as on tokens. */
const LIMIT_FIELDS = [
  "max_concurrency",
  "next_refill_time",
  "queue_timeout_ms",
  "quota_refill_amount",
  "quota_refill_interval",
  "rpd_limit",
  "rpm_limit",
  "tpm_limit",
];
const USER_FIELDS = [
  "created_time",
  "display_name",
  "group",
  "has_access_token",
  "id",
  "quota",
  "role",
  "status",
  "used_quota",
  "username",
  ...LIMIT_FIELDS,
].sort();

interface Caller {
  token: string;
  userId?: number;
}
interface Envelope<T = unknown> {
  success: boolean;
  message: string;
  data?: T;
}
interface UserView {
  id: number;
  username: string;
  display_name: string;
  role: "admin" | "user";
  status: number;
  group: string;
  quota: number;
  used_quota: number;
  created_time: number;
  has_access_token: boolean;
  access_token?: string;
}
interface PageOf<T> {
  items: T[];
  total: number;
  page: number;
  page_size: number;
}

let gateway: Gateway;
let server: Server;
let base: string;
let admin: Caller;
let alice: Caller;
const mgmt: Caller = { token: MGMT };

beforeEach(async () => {
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    settings: { "group-ratio": { default: 1, vip: 2 } },
  });
  await gateway.ready;
  await gateway.management.setKey(MGMT);
  const a = await gateway.users.create({ username: "admin", role: "admin" });
  admin = { token: a.accessToken, userId: a.record.id };
  const u = await gateway.users.create({ username: "alice", quota: 1000 });
  alice = { token: u.accessToken, userId: u.record.id };
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
});

async function api<T = unknown>(
  method: string,
  path: string,
  opts: { as?: Caller | null; body?: unknown; raw?: string } = {},
): Promise<{ status: number; body: Envelope<T> }> {
  const as = opts.as === undefined ? admin : opts.as;
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (as) {
    headers.authorization = `Bearer ${as.token}`;
    if (as.userId !== undefined) headers["new-api-user"] = String(as.userId);
  }
  const res = await fetch(`${base}${path}`, {
    method,
    headers,
    ...(opts.raw !== undefined
      ? { body: opts.raw }
      : opts.body !== undefined
        ? { body: JSON.stringify(opts.body) }
        : {}),
  });
  return { status: res.status, body: (await res.json()) as Envelope<T> };
}

function expectFailure(res: { status: number; body: Envelope }, status: number, message?: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.success).toBe(false);
  expect(Object.keys(res.body).sort()).toEqual(["message", "success"]);
  expect(res.body.message.length).toBeGreaterThan(0);
  if (message !== undefined) expect(res.body.message).toBe(message);
}

async function snapshot(): Promise<string> {
  return JSON.stringify(await gateway.store.users.list({ limit: 10_000 }));
}

describe("gateway.users", () => {
  it("issues an access token once and stores only its keyed hash", async () => {
    const { accessToken, record } = await gateway.users.create({ username: "carol", group: "vip" });
    expect(accessToken).toMatch(/^tpu-[A-Za-z0-9]{40}$/);
    expect(record).toMatchObject({
      username: "carol",
      displayName: "carol",
      role: "user",
      status: 1,
      group: "vip",
      quota: 0,
      usedQuota: 0,
    });
    expect(JSON.stringify(await gateway.store.users.get(record.id))).not.toContain(accessToken);
    // The API's view has no hash; the store keeps it as a keyed hash.
    expect(record).not.toHaveProperty("accessTokenHash");
    expect(record.hasAccessToken).toBe(true);
    expect((await gateway.store.users.get(record.id))?.accessTokenHash).toMatch(/^[0-9a-f]{64}$/);
    const listed = (await gateway.users.list()).items.find((u) => u.id === record.id);
    expect(listed).not.toHaveProperty("accessTokenHash");
    expect(await gateway.users.get(record.id)).not.toHaveProperty("accessTokenHash");
    expect((await gateway.users.findByAccessToken(accessToken))?.id).toBe(record.id);
    expect(await gateway.users.findByAccessToken(`${accessToken}x`)).toBeNull();
  });

  it("validates before writing: unknown group, bad role, negative quota, duplicate username", async () => {
    const before = await snapshot();
    await expect(gateway.users.create({ username: "x", group: "gold" })).rejects.toThrow(
      'Group "gold" does not exist',
    );
    await expect(
      gateway.users.create({ username: "x", role: "root" as unknown as "admin" }),
    ).rejects.toThrow(/role/);
    await expect(gateway.users.create({ username: "x", quota: -1 })).rejects.toThrow(/negative/);
    await expect(gateway.users.create({ username: "alice" })).rejects.toThrow(
      "Username already exists",
    );
    await expect(gateway.users.update(alice.userId!, { group: "gold" })).rejects.toThrow(/gold/);
    expect(await snapshot()).toBe(before);
  });
});

describe("user admin routes", () => {
  it("are for admins only: 401 without credentials, 403 for a regular user, open to the management key", async () => {
    expectFailure(await api("GET", "/api/user/", { as: null }), 401);
    expectFailure(await api("GET", "/api/user/", { as: { token: "tpu-wrong", userId: 1 } }), 401);
    expectFailure(await api("GET", "/api/user/", { as: alice }), 403);
    expectFailure(await api("POST", "/api/user/", { as: alice, body: { username: "x" } }), 403);
    expectFailure(await api("POST", `/api/user/${alice.userId}/token`, { as: alice }), 403);
    expect((await api("GET", "/api/user/", { as: mgmt })).status).toBe(200);
    expect((await api("GET", "/api/user/", { as: admin })).status).toBe(200);
  });

  it("lists users with p and size, total, page and page_size", async () => {
    for (let i = 0; i < 23; i++) await gateway.users.create({ username: `u${i}` });
    const first = await api<PageOf<UserView>>("GET", "/api/user/");
    expect(first.status).toBe(200);
    expect(first.body).toMatchObject({ success: true, message: "" });
    const page = first.body.data!;
    expect(page).toMatchObject({ total: 25, page: 1, page_size: 20 });
    expect(page.items).toHaveLength(20);
    expect(page.items[0]!.username).toBe("admin");
    expect(Object.keys(page.items[0]!).sort()).toEqual(USER_FIELDS);
    const last = (await api<PageOf<UserView>>("GET", "/api/user?p=3&size=10")).body.data!;
    expect(last).toMatchObject({ total: 25, page: 3, page_size: 10 });
    expect(last.items.map((u) => u.username)).toEqual(["u18", "u19", "u20", "u21", "u22"]);
  });

  it("searches users by keyword in the username or display name", async () => {
    await gateway.users.create({ username: "bob", displayName: "Robert" });
    const hits = (await api<PageOf<UserView>>("GET", "/api/user/search?keyword=rob")).body.data!;
    expect(hits.items.map((u) => u.username)).toEqual(["bob"]);
    const ali = (await api<PageOf<UserView>>("GET", "/api/user/search?keyword=ALI")).body.data!;
    expect(ali.items.map((u) => u.username)).toEqual(["alice"]);
  });

  it("gets a user by id; an unknown id is 404, a non-numeric id 400", async () => {
    const res = await api<UserView>("GET", `/api/user/${alice.userId}`);
    expect(res.status).toBe(200);
    expect(res.body.data).toEqual({
      id: alice.userId,
      username: "alice",
      display_name: "alice",
      role: "user",
      status: 1,
      group: "default",
      quota: 1000,
      used_quota: 0,
      created_time: expect.any(Number),
      has_access_token: true,
      rpm_limit: 0,
      tpm_limit: 0,
      rpd_limit: 0,
      max_concurrency: 0,
      queue_timeout_ms: 0,
      quota_refill_interval: "",
      quota_refill_amount: 0,
      next_refill_time: 0,
    });
    expect(JSON.stringify(res.body)).not.toContain(alice.token);
    expectFailure(await api("GET", "/api/user/999"), 404, "User does not exist");
    expectFailure(await api("GET", "/api/user/abc"), 400);
  });

  it("creates a user whose access token, shown once, works on the token dialect", async () => {
    const res = await api<UserView>("POST", "/api/user/", {
      body: { username: "dave", display_name: "Dave", group: "vip", quota: 500_000, role: "user" },
    });
    expect(res.status).toBe(200);
    const dave = res.body.data!;
    expect(dave).toMatchObject({
      username: "dave",
      display_name: "Dave",
      group: "vip",
      quota: 500_000,
      role: "user",
      status: 1,
    });
    expect(dave.access_token).toMatch(/^tpu-/);
    const again = await api<UserView>("GET", `/api/user/${dave.id}`);
    expect(again.body.data!.access_token).toBeUndefined();

    const asDave = { token: dave.access_token!, userId: dave.id };
    const made = await api<{ user_id: number }>("POST", "/api/token/", {
      as: asDave,
      body: { name: "dave's" },
    });
    expect(made.status).toBe(200);
    expect(made.body.data!.user_id).toBe(dave.id);
  });

  it("rejects bad user input with 400 and writes nothing", async () => {
    const before = await snapshot();
    const cases: [unknown, string?][] = [
      ["{oops"],
      ["[]"],
      [{}, "Parameter error: username is required"],
      [{ username: "" }],
      [{ username: "has space" }],
      [{ username: 5 }],
      [{ username: "x".repeat(65) }],
      [{ username: "alice" }, "Username already exists"],
      [{ username: "e", role: "root" }],
      [{ username: "e", status: 3 }],
      [{ username: "e", status: "1" }],
      [{ username: "e", group: "gold" }, 'Group "gold" does not exist'],
      [{ username: "e", quota: -1 }],
      [{ username: "e", quota: "10" }],
      [{ username: "e", quota: 0.5 }],
    ];
    for (const [body, message] of cases) {
      const res = await api(
        "POST",
        "/api/user/",
        typeof body === "string" ? { raw: body } : { body },
      );
      expectFailure(res, 400, message);
    }
    expect(await snapshot()).toBe(before);
  });

  it("updates the fields sent, and rejects bad input or unknown ids without writing", async () => {
    const res = await api<UserView>("PUT", "/api/user/", {
      body: { id: alice.userId, quota: 42, group: "vip", display_name: "Alice A." },
    });
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({
      username: "alice",
      quota: 42,
      group: "vip",
      display_name: "Alice A.",
    });

    const before = await snapshot();
    expectFailure(await api("PUT", "/api/user/", { body: { quota: 1 } }), 400);
    expectFailure(await api("PUT", "/api/user/", { body: { id: "1", quota: 1 } }), 400);
    expectFailure(await api("PUT", "/api/user/", { body: { id: alice.userId, quota: -1 } }), 400);
    expectFailure(
      await api("PUT", "/api/user/", { body: { id: alice.userId, role: "owner" } }),
      400,
    );
    expectFailure(
      await api("PUT", "/api/user/", { body: { id: alice.userId, group: "gold" } }),
      400,
    );
    expectFailure(
      await api("PUT", "/api/user/", { body: { id: alice.userId, username: "admin" } }),
      400,
      "Username already exists",
    );
    expectFailure(
      await api("PUT", "/api/user/", { body: { id: 999, quota: 1 } }),
      404,
      "User does not exist",
    );
    expectFailure(await api("PUT", "/api/user/", { raw: "{" }), 400);
    expect(await snapshot()).toBe(before);
  });

  it("reissues an access token: the new one works, the old one stops at once", async () => {
    const res = await api<{ access_token: string }>("POST", `/api/user/${alice.userId}/token`);
    expect(res.status).toBe(200);
    const fresh = res.body.data!.access_token;
    expect(fresh).toMatch(/^tpu-/);
    expect(fresh).not.toBe(alice.token);
    expectFailure(await api("GET", "/api/token/", { as: alice }), 401);
    expect(
      (await api("GET", "/api/token/", { as: { token: fresh, userId: alice.userId } })).status,
    ).toBe(200);
    expectFailure(await api("POST", "/api/user/999/token"), 404, "User does not exist");
    expectFailure(await api("POST", "/api/user/x/token"), 400);
  });

  it("deletes a user together with their tokens", async () => {
    const { key } = await gateway.keys.create({ name: "alice's", userId: alice.userId! });
    await gateway.keys.create({ name: "alice's 2", userId: alice.userId! });
    const other = await gateway.keys.create({ name: "admin's", userId: admin.userId! });
    const res = await api("DELETE", `/api/user/${alice.userId}`);
    expect(res).toEqual({ status: 200, body: { success: true, message: "" } });
    expect(await gateway.store.users.get(alice.userId!)).toBeNull();
    expect((await gateway.store.keys.list({ userId: alice.userId! })).total).toBe(0);
    expect(await gateway.keys.findByPlain(key)).toBeNull();
    expect(await gateway.store.keys.get(other.record.id)).not.toBeNull();
    expectFailure(await api("DELETE", `/api/user/${alice.userId}`), 404, "User does not exist");
    expectFailure(await api("DELETE", "/api/user/abc"), 400);
  });

  it("does not let an admin delete, disable or demote itself, but allows other edits", async () => {
    const before = await snapshot();
    expectFailure(await api("DELETE", `/api/user/${admin.userId}`), 403);
    expectFailure(await api("PUT", "/api/user/", { body: { id: admin.userId, status: 2 } }), 403);
    expectFailure(
      await api("PUT", "/api/user/", { body: { id: admin.userId, role: "user" } }),
      403,
    );
    expect(await snapshot()).toBe(before);
    const ok = await api<UserView>("PUT", "/api/user/", { body: { id: admin.userId, quota: 9 } });
    expect(ok.body.data!.quota).toBe(9);
    // The management key may do it.
    expect(
      (await api("PUT", "/api/user/", { as: mgmt, body: { id: admin.userId, role: "user" } }))
        .status,
    ).toBe(200);
    expectFailure(await api("GET", "/api/user/", { as: admin }), 403);
  });

  it("a disabled user's access token is refused with 403", async () => {
    await api("PUT", "/api/user/", { body: { id: alice.userId, status: 2 } });
    expectFailure(await api("GET", "/api/token/", { as: alice }), 403);
    await api("PUT", "/api/user/", { body: { id: alice.userId, status: 1 } });
    expect((await api("GET", "/api/token/", { as: alice })).status).toBe(200);
  });
});
