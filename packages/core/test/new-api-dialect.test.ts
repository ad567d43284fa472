import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "token-dialect-secret-0123456789-abcdefgh";
const MGMT = "management-key-0123456789-abcdef";
const EXPIRED_MESSAGE =
  "Token has expired and cannot be enabled. Please modify the token expiration time or set it to never expire first.";
const EXHAUSTED_MESSAGE =
  "Token quota is exhausted and cannot be enabled. Please modify the remaining quota or set it to unlimited";
const SEED_FIELDS = [
  "accessed_time",
  "allow_ips",
  "created_time",
  "expired_time",
  "group",
  "id",
  "key",
  "model_limits",
  "model_limits_enabled",
  "name",
  "remain_quota",
  "status",
  "unlimited_quota",
  "used_quota",
  "user_id",
];
/** tokenpool's limit and refill fields (issue 15), after the seed's. */
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
const TOKEN_FIELDS = [...SEED_FIELDS, ...LIMIT_FIELDS].sort();

interface Caller {
  token: string;
  userId?: number;
}
interface Envelope<T = unknown> {
  success: boolean;
  message: string;
  data?: T;
}
interface TokenView {
  id: number;
  user_id: number;
  key: string;
  name: string;
  status: number;
  remain_quota: number;
  unlimited_quota: boolean;
  used_quota: number;
  expired_time: number;
  created_time: number;
  accessed_time: number;
  model_limits_enabled: boolean;
  model_limits: string;
  allow_ips: string;
  group: string;
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
let alice: Caller;
let bob: Caller;
let root: Caller;
const mgmt: Caller = { token: MGMT };

beforeEach(async () => {
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    settings: { "group-ratio": { default: 1, vip: 1.5 } },
  });
  await gateway.ready;
  await gateway.management.setKey(MGMT);
  const mk = async (username: string, role: "admin" | "user") => {
    const { accessToken, record } = await gateway.users.create({ username, role, quota: 1_000 });
    return { token: accessToken, userId: record.id };
  };
  alice = await mk("alice", "user");
  bob = await mk("bob", "user");
  root = await mk("root", "admin");
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
  opts: { as?: Caller | null; body?: unknown; raw?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: Envelope<T> }> {
  const as = opts.as === undefined ? alice : opts.as;
  const headers: Record<string, string> = { "content-type": "application/json", ...opts.headers };
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
  const text = await res.text();
  let body: Envelope<T>;
  try {
    body = JSON.parse(text) as Envelope<T>;
  } catch {
    throw new Error(`not JSON (${res.status}): ${text}`);
  }
  return { status: res.status, body };
}

/** Creates a token through the dialect and returns it with its full key. */
async function create(fields: Record<string, unknown>, as: Caller = alice): Promise<TokenView> {
  const res = await api<TokenView>("POST", "/api/token/", { as, body: fields });
  expect(res.status, JSON.stringify(res.body)).toBe(200);
  return res.body.data!;
}

/** Everything the store holds for keys, to prove a rejected request changed nothing. */
async function snapshot(): Promise<string> {
  return JSON.stringify(await gateway.store.keys.list({ limit: 10_000 }));
}

function expectFailure(res: { status: number; body: Envelope }, status: number, message?: string) {
  expect(res.status, JSON.stringify(res.body)).toBe(status);
  expect(res.body.success).toBe(false);
  expect(typeof res.body.message).toBe("string");
  expect(res.body.message.length).toBeGreaterThan(0);
  expect(Object.keys(res.body).sort()).toEqual(["message", "success"]);
  if (message !== undefined) expect(res.body.message).toBe(message);
}

describe("new-api dialect: token authentication", () => {
  it("refuses a request without an access token with 401 in the {success,message} format", async () => {
    expectFailure(await api("GET", "/api/token/", { as: null }), 401);
    expectFailure(
      await api("GET", "/api/token/", { as: null, headers: { authorization: "Basic abc def" } }),
      401,
    );
  });

  it("refuses an unknown access token with 401", async () => {
    expectFailure(await api("GET", "/api/token/", { as: { token: "tpu-nope", userId: 1 } }), 401);
  });

  it("requires a new-api-user header that names the access token's own user", async () => {
    expectFailure(await api("GET", "/api/token/", { as: { token: alice.token } }), 401);
    expectFailure(
      await api("GET", "/api/token/", { as: { token: alice.token, userId: bob.userId! } }),
      401,
    );
    expectFailure(
      await api("GET", "/api/token/", {
        as: { token: alice.token },
        headers: { "new-api-user": "alice" },
      }),
      401,
    );
    expect((await api("GET", "/api/token/", { as: alice })).status).toBe(200);
  });

  it("refuses a disabled user with 403", async () => {
    await gateway.users.update(alice.userId!, { status: 2 });
    expectFailure(await api("GET", "/api/token/", { as: alice }), 403);
  });

  it("accepts the management key as an admin, with or without new-api-user", async () => {
    await create({ name: "a" }, alice);
    await create({ name: "b" }, bob);
    const all = await api<PageOf<TokenView>>("GET", "/api/token/", { as: mgmt });
    expect(all.status).toBe(200);
    expect(all.body.data!.total).toBe(2);
    const withUser = await api<PageOf<TokenView>>("GET", "/api/token/", {
      as: { token: MGMT, userId: bob.userId! },
    });
    expect(withUser.body.data!.total).toBe(2);
    // Created with the management key and new-api-user, a token belongs to that user.
    const made = await create({ name: "for bob" }, { token: MGMT, userId: bob.userId! });
    expect(made.user_id).toBe(bob.userId);
    // Without new-api-user it belongs to nobody (user_id 0).
    expect((await create({ name: "ownerless" }, mgmt)).user_id).toBe(0);
    expectFailure(await api("GET", "/api/token/", { as: { token: MGMT, userId: 999 } }), 401);
    expectFailure(await api("GET", "/api/token/", { as: { token: `${MGMT}x` } }), 401);
  });

  it("remembers a successful management key check, so that later requests skip bcrypt", async () => {
    expect((await api("GET", "/api/token/", { as: mgmt })).status).toBe(200);
    const started = performance.now();
    for (let i = 0; i < 10; i++) {
      expect((await api("GET", "/api/token/", { as: mgmt })).status).toBe(200);
    }
    // bcrypt with cost 10 takes ~50 ms or more per check: ten uncached checks take >= 500 ms.
    expect(performance.now() - started).toBeLessThan(400);
  });

  it("forgets remembered management key checks when the key changes, here or on another instance", async () => {
    expect(await gateway.management.verify(MGMT)).toBe(true);
    const next = "management-key-next-0123456789-abc";
    await gateway.management.setKey(next);
    expect(await gateway.management.verify(MGMT)).toBe(false);
    expectFailure(await api("GET", "/api/token/", { as: mgmt }), 401);
    expect((await api("GET", "/api/token/", { as: { token: next } })).status).toBe(200);

    // A second gateway on the same store caches the key, then the first one changes it.
    const other = createGateway({ store: gateway.store, secret: SECRET, logger: false });
    await other.ready;
    expect(await other.management.verify(next)).toBe(true);
    await gateway.management.setKey("management-key-third-0123456789-ab");
    await new Promise((r) => setTimeout(r, 20));
    expect(await other.management.verify(next)).toBe(false);
    await other.close();
  });
});

describe("GET /api/token/", () => {
  it("lists the caller's own tokens newest first, 20 a page by default, with total, page and page_size", async () => {
    for (let i = 0; i < 25; i++) await create({ name: `a${i}` }, alice);
    for (let i = 0; i < 3; i++) await create({ name: `b${i}` }, bob);
    const first = await api<PageOf<TokenView>>("GET", "/api/token/");
    expect(first.status).toBe(200);
    expect(first.body.success).toBe(true);
    expect(first.body.message).toBe("");
    const page = first.body.data!;
    expect(page.total).toBe(25);
    expect(page.page).toBe(1);
    expect(page.page_size).toBe(20);
    expect(page.items).toHaveLength(20);
    expect(page.items.every((t) => t.user_id === alice.userId)).toBe(true);
    expect(page.items[0]!.name).toBe("a24");
    const ids = page.items.map((t) => t.id);
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);

    const second = (await api<PageOf<TokenView>>("GET", "/api/token/?p=2&size=20")).body.data!;
    expect(second.items.map((t) => t.name)).toEqual(["a4", "a3", "a2", "a1", "a0"]);
    expect(second.page).toBe(2);
    const small = (await api<PageOf<TokenView>>("GET", "/api/token/?p=3&size=10")).body.data!;
    expect(small).toMatchObject({ total: 25, page: 3, page_size: 10 });
    expect(small.items).toHaveLength(5);
    const capped = (await api<PageOf<TokenView>>("GET", "/api/token?size=1000")).body.data!;
    expect(capped.page_size).toBe(100);
    expect(capped.items).toHaveLength(25);
    const bobs = (await api<PageOf<TokenView>>("GET", "/api/token/", { as: bob })).body.data!;
    expect(bobs.total).toBe(3);
  });

  it("shows every seed field with the key masked", async () => {
    const made = await create({ name: "masked" });
    const item = (await api<PageOf<TokenView>>("GET", "/api/token/")).body.data!.items[0]!;
    expect(Object.keys(item).sort()).toEqual(TOKEN_FIELDS);
    expect(item.key).not.toBe(made.key);
    expect(item.key).toContain("****");
    expect(made.key.startsWith(item.key.split("****")[0]!)).toBe(true);
    expect(made.key.endsWith(item.key.split("****")[1]!)).toBe(true);
  });

  it("lets an admin list every user's tokens and filter them by user_id", async () => {
    await create({ name: "a" }, alice);
    await create({ name: "b" }, bob);
    await create({ name: "r" }, root);
    const all = (await api<PageOf<TokenView>>("GET", "/api/token/", { as: root })).body.data!;
    expect(all.total).toBe(3);
    const filtered = (
      await api<PageOf<TokenView>>("GET", `/api/token/?user_id=${bob.userId}`, { as: root })
    ).body.data!;
    expect(filtered.items.map((t) => t.name)).toEqual(["b"]);
    expectFailure(await api("GET", "/api/token/?user_id=abc", { as: root }), 400);
    // A user's user_id filter cannot widen what it sees.
    const self = (
      await api<PageOf<TokenView>>("GET", `/api/token/?user_id=${bob.userId}`, { as: alice })
    ).body.data!;
    expect(self.items.map((t) => t.name)).toEqual(["a"]);
  });
});

describe("GET /api/token/:id", () => {
  it("returns one token with every field in new-api's form", async () => {
    const made = await create({
      name: "full",
      expired_time: 4_102_444_800,
      remain_quota: 1_000_000,
      unlimited_quota: false,
      model_limits_enabled: true,
      model_limits: ["gpt-4o-mini", "gpt-4o"],
      allow_ips: "192.168.1.1\n10.0.0.0/8,2001:db8::/32",
      group: "vip",
    });
    const res = await api<TokenView>("GET", `/api/token/${made.id}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, message: "" });
    const t = res.body.data!;
    expect(Object.keys(t).sort()).toEqual(TOKEN_FIELDS);
    expect(t).toMatchObject({
      id: made.id,
      user_id: alice.userId,
      name: "full",
      status: 1,
      expired_time: 4_102_444_800,
      remain_quota: 1_000_000,
      unlimited_quota: false,
      used_quota: 0,
      model_limits_enabled: true,
      model_limits: "gpt-4o-mini,gpt-4o",
      allow_ips: "192.168.1.1\n10.0.0.0/8\n2001:db8::/32",
      group: "vip",
      accessed_time: 0,
    });
    expect(Math.abs(t.created_time - Date.now() / 1000)).toBeLessThan(5);
    expect(t.key).not.toBe(made.key);
    expect(t.key).toContain("****");
  });

  it("answers an unknown id and another user's id with the same 404 'Token does not exist'", async () => {
    const bobs = await create({ name: "bob's" }, bob);
    const foreign = await api("GET", `/api/token/${bobs.id}`, { as: alice });
    const unknown = await api("GET", "/api/token/9999", { as: alice });
    expectFailure(foreign, 404, "Token does not exist");
    expect(unknown).toEqual(foreign);
    expect((await api("GET", `/api/token/${bobs.id}`, { as: root })).status).toBe(200);
  });

  it("rejects ids that are not positive integers with 400", async () => {
    for (const id of ["abc", "1.5", "-1", "0", "1e3", "%E0%A4%A", "99999999999999999999"]) {
      expectFailure(await api("GET", `/api/token/${id}`), 400);
    }
  });
});

describe("POST /api/token/", () => {
  it("creates a token and returns its full key this once; the store keeps only hash, cipher and hint", async () => {
    const res = await api<TokenView>("POST", "/api/token/", {
      body: { name: "My API Token", remain_quota: 500_000 },
    });
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ success: true, message: "" });
    const t = res.body.data!;
    expect(t.key).toMatch(/^sk-[A-Za-z0-9]{48}$/);
    expect(t).toMatchObject({
      name: "My API Token",
      remain_quota: 500_000,
      expired_time: -1,
      unlimited_quota: false,
      model_limits_enabled: false,
      model_limits: "",
      allow_ips: "",
      group: "default",
      status: 1,
      user_id: alice.userId,
    });
    const stored = await gateway.store.keys.get(t.id);
    expect(JSON.stringify(stored)).not.toContain(t.key);
    expect((await gateway.keys.findByPlain(t.key))?.id).toBe(t.id);
  });

  it("accepts model_limits and allow_ips as arrays or as separated strings", async () => {
    const a = await create({ model_limits: "m1, m2,,m3", allow_ips: ["10.0.0.1", "::1"] });
    expect(a.model_limits).toBe("m1,m2,m3");
    expect(a.allow_ips).toBe("10.0.0.1\n::1");
    const b = await create({
      model_limits: ["m1"],
      allow_ips: "10.0.0.1,10.0.0.2\n 2001:db8::/48 ",
    });
    expect(b.model_limits).toBe("m1");
    expect(b.allow_ips).toBe("10.0.0.1\n10.0.0.2\n2001:db8::/48");
    const c = await create({ model_limits: null, allow_ips: null, group: "" });
    expect(c).toMatchObject({ model_limits: "", allow_ips: "", group: "" });
  });

  it("accepts a name of 30 characters (emoji count as one) and refuses 31 with the seed's message", async () => {
    expect((await create({ name: "x".repeat(30) })).name).toHaveLength(30);
    expect((await create({ name: "🙂".repeat(30) })).name).toBe("🙂".repeat(30));
    const before = await snapshot();
    expectFailure(
      await api("POST", "/api/token/", { body: { name: "x".repeat(31) } }),
      400,
      "Token name is too long",
    );
    expect(await snapshot()).toBe(before);
  });

  it("creates several tokens with count, all or nothing, named as new-api's console names them", async () => {
    const res = await api<TokenView[]>("POST", "/api/token/", {
      body: { name: "batch", count: 5, remain_quota: 10 },
    });
    expect(res.status).toBe(200);
    const made = res.body.data!;
    expect(made).toHaveLength(5);
    expect(made[0]!.name).toBe("batch");
    for (const t of made.slice(1)) expect(t.name).toMatch(/^batch-[A-Za-z0-9]{6}$/);
    expect(new Set(made.map((t) => t.key)).size).toBe(5);
    expect(made.every((t) => t.key.startsWith("sk-") && t.remain_quota === 10)).toBe(true);
    expect((await api<PageOf<TokenView>>("GET", "/api/token/")).body.data!.total).toBe(5);
    // No name: every token is default-XXXXXX.
    const unnamed = (await api<TokenView[]>("POST", "/api/token/", { body: { count: 2 } })).body
      .data!;
    expect(unnamed.every((t) => /^default-[A-Za-z0-9]{6}$/.test(t.name))).toBe(true);

    const before = await snapshot();
    for (const count of [0, 101, "3", 2.5, -1, null]) {
      expectFailure(await api("POST", "/api/token/", { body: { name: "x", count } }), 400);
    }
    // The suffix would take a 24-character name past 30: refused before anything is written.
    expectFailure(
      await api("POST", "/api/token/", { body: { name: "y".repeat(24), count: 3 } }),
      400,
      "Token name is too long",
    );
    // One bad field refuses the whole batch.
    expectFailure(
      await api("POST", "/api/token/", { body: { name: "z", count: 3, allow_ips: "10.0.0.0/33" } }),
      400,
    );
    expect(await snapshot()).toBe(before);
  });

  it("lets an admin create a token for another user with user_id, but not a user", async () => {
    const forBob = await create({ name: "given", user_id: bob.userId }, root);
    expect(forBob.user_id).toBe(bob.userId);
    expect((await api<PageOf<TokenView>>("GET", "/api/token/", { as: bob })).body.data!.total).toBe(
      1,
    );
    const before = await snapshot();
    expectFailure(
      await api("POST", "/api/token/", { as: alice, body: { name: "steal", user_id: bob.userId } }),
      403,
    );
    expectFailure(
      await api("POST", "/api/token/", { as: root, body: { name: "x", user_id: 999 } }),
      400,
      "User does not exist",
    );
    expectFailure(await api("POST", "/api/token/", { as: root, body: { user_id: "2" } }), 400);
    expect(await snapshot()).toBe(before);
    // A user naming itself is fine.
    expect((await create({ name: "self", user_id: alice.userId }, alice)).user_id).toBe(
      alice.userId,
    );
  });

  it("rejects bad input with 400 {success:false} and writes nothing", async () => {
    await create({ name: "existing" });
    const before = await snapshot();
    const cases: [string, unknown, string?][] = [
      ["malformed JSON", "{not json"],
      ["an array body", "[1,2]"],
      ["a string body", '"hello"'],
      ["a numeric name", { name: 12 }],
      ["negative quota", { remain_quota: -1 }, "Quota value cannot be negative"],
      [
        "quota over the maximum",
        { remain_quota: 500_000_000_000_001 },
        "Quota value exceeds valid range, maximum is 500000000000000",
      ],
      ["a quota as a string", { remain_quota: "100" }],
      ["a fractional quota", { remain_quota: 1.5 }],
      ["unlimited_quota as a string", { unlimited_quota: "yes" }],
      ["model_limits_enabled as a number", { model_limits_enabled: 1 }],
      ["expired_time below -1", { expired_time: -2 }],
      ["expired_time as a string", { expired_time: "-1" }],
      ["model_limits as a number", { model_limits: 5 }],
      ["model_limits with a number", { model_limits: ["a", 1] }],
      ["a CIDR prefix over 32", { allow_ips: "10.0.0.0/33" }],
      ["a CIDR prefix over 128", { allow_ips: "2001:db8::/129" }],
      ["an address out of range", { allow_ips: "999.1.1.1" }],
      ["not an address", { allow_ips: "localhost" }],
      ["an address with a port", { allow_ips: "10.0.0.1:80" }],
      ["an empty prefix", { allow_ips: "10.0.0.0/" }],
      ["allow_ips as a number", { allow_ips: 7 }],
      ["an unknown group", { group: "nope" }, 'Group "nope" does not exist'],
      ["a numeric group", { group: 1 }],
      ["an unknown status", { status: 9 }],
    ];
    for (const [what, body, message] of cases) {
      const res = await api(
        "POST",
        "/api/token/",
        typeof body === "string" ? { raw: body } : { body },
      );
      expect(res.status, what).toBe(400);
      expectFailure(res, 400, message);
    }
    expect(await snapshot()).toBe(before);
  });

  it("rejects a body over the size limit with 413 and writes nothing", async () => {
    const before = await snapshot();
    const res = await api("POST", "/api/token/", {
      body: { name: "big", pad: "x".repeat(1_100_000) },
    });
    expectFailure(res, 413);
    expect(await snapshot()).toBe(before);
  });
});

describe("PUT /api/token/", () => {
  it("updates only the fields sent and answers with the masked token", async () => {
    const made = await create({ name: "before", remain_quota: 5, model_limits: "a" });
    const res = await api<TokenView>("PUT", "/api/token/", {
      body: {
        id: made.id,
        name: "Updated Token",
        remain_quota: 2_000_000,
        model_limits_enabled: true,
        model_limits: ["gpt-3.5-turbo", "gpt-4"],
        allow_ips: "192.168.1.1",
        group: "vip",
        expired_time: 4_102_444_800,
        unlimited_quota: true,
      },
    });
    expect(res.status).toBe(200);
    const t = res.body.data!;
    expect(t).toMatchObject({
      id: made.id,
      name: "Updated Token",
      remain_quota: 2_000_000,
      model_limits_enabled: true,
      model_limits: "gpt-3.5-turbo,gpt-4",
      allow_ips: "192.168.1.1",
      group: "vip",
      expired_time: 4_102_444_800,
      unlimited_quota: true,
      status: 1,
    });
    expect(t.key).not.toBe(made.key);
    expect(t.key).toContain("****");
    const partial = await api<TokenView>("PUT", "/api/token/", {
      body: { id: made.id, name: "renamed" },
    });
    expect(partial.body.data).toMatchObject({
      name: "renamed",
      remain_quota: 2_000_000,
      group: "vip",
    });
    // The key itself never changes.
    expect((await gateway.keys.findByPlain(made.key))?.name).toBe("renamed");
  });

  it("accepts AnyAPI's example body (extra fields ignored, empty model_limits and group)", async () => {
    const made = await create({ name: "x", model_limits: "a,b" });
    const res = await api<TokenView>("PUT", "/api/token/", {
      body: {
        id: made.id,
        remain_quota: 250_000_000_000,
        expired_time: -1,
        unlimited_quota: false,
        model_limits_enabled: false,
        model_limits: "",
        group: "",
        mj_image_mode: "default",
        mj_custom_proxy: "",
        selected_groups: [],
        name: "令牌22名字",
        allow_ips: "",
      },
    });
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({
      name: "令牌22名字",
      remain_quota: 250_000_000_000,
      model_limits: "",
      allow_ips: "",
      group: "",
    });
  });

  it("changes only the status with ?status_only=true", async () => {
    const made = await create({ name: "keep", remain_quota: 7 });
    const res = await api<TokenView>("PUT", "/api/token/?status_only=true", {
      body: { id: made.id, status: 2, name: "ignored", remain_quota: 1 },
    });
    expect(res.status).toBe(200);
    expect(res.body.data).toMatchObject({ id: made.id, name: "keep", status: 2, remain_quota: 7 });
    expectFailure(await api("PUT", "/api/token/?status_only=true", { body: { id: made.id } }), 400);
    expectFailure(
      await api("PUT", "/api/token/?status_only=true", { body: { id: made.id, status: "1" } }),
      400,
    );
  });

  it("refuses to enable an expired token with the seed's exact message", async () => {
    const past = Math.floor(Date.now() / 1000) - 60;
    const made = await create({ name: "old", expired_time: past, status: 2, remain_quota: 100 });
    const before = await snapshot();
    const res = await api("PUT", "/api/token/?status_only=true", {
      body: { id: made.id, status: 1 },
    });
    expectFailure(res, 400, EXPIRED_MESSAGE);
    expectFailure(
      await api("PUT", "/api/token/", { body: { id: made.id, status: 1, name: "still old" } }),
      400,
      EXPIRED_MESSAGE,
    );
    expect(await snapshot()).toBe(before);
    // Setting it to never expire in the same update makes it enable-able.
    const fixed = await api<TokenView>("PUT", "/api/token/", {
      body: { id: made.id, status: 1, expired_time: -1 },
    });
    expect(fixed.status).toBe(200);
    expect(fixed.body.data).toMatchObject({ status: 1, expired_time: -1 });
  });

  it("refuses to enable an exhausted token with new-api's message", async () => {
    const made = await create({ name: "empty", remain_quota: 0, status: 4 });
    const before = await snapshot();
    expectFailure(
      await api("PUT", "/api/token/?status_only=true", { body: { id: made.id, status: 1 } }),
      400,
      EXHAUSTED_MESSAGE,
    );
    expect(await snapshot()).toBe(before);
    const topped = await api<TokenView>("PUT", "/api/token/", {
      body: { id: made.id, status: 1, remain_quota: 10 },
    });
    expect(topped.body.data).toMatchObject({ status: 1, remain_quota: 10 });
    const other = await create({ name: "empty2", remain_quota: 0, status: 2 });
    const unlimited = await api<TokenView>("PUT", "/api/token/", {
      body: { id: other.id, status: 1, unlimited_quota: true },
    });
    expect(unlimited.body.data).toMatchObject({ status: 1, unlimited_quota: true });
  });

  it("rejects bad input and another user's id with a 4xx, changing nothing", async () => {
    const mine = await create({ name: "mine", remain_quota: 5 });
    const bobs = await create({ name: "bob's" }, bob);
    const before = await snapshot();
    const cases: [unknown, number, string?][] = [
      ["{", 400],
      [{ name: "no id" }, 400],
      [{ id: "1", name: "string id" }, 400],
      [{ id: 1.5 }, 400],
      [{ id: -3 }, 400],
      [{ id: mine.id, name: "n".repeat(31) }, 400, "Token name is too long"],
      [{ id: mine.id, remain_quota: -5 }, 400, "Quota value cannot be negative"],
      [{ id: mine.id, group: "gold" }, 400, 'Group "gold" does not exist'],
      [{ id: mine.id, allow_ips: "10.0.0.1\n10.0.0.300" }, 400],
      [{ id: mine.id, allow_ips: "fe80::1%eth0" }, 400],
      [{ id: mine.id, name: "ok", unlimited_quota: "true" }, 400],
      [{ id: bobs.id, name: "hijack" }, 404, "Token does not exist"],
      [{ id: 9999, name: "ghost" }, 404, "Token does not exist"],
    ];
    for (const [body, status, message] of cases) {
      const res = await api(
        "PUT",
        "/api/token/",
        typeof body === "string" ? { raw: body } : { body },
      );
      expectFailure(res, status, message);
    }
    expectFailure(
      await api("PUT", "/api/token/?status_only=true", { body: { id: bobs.id, status: 2 } }),
      404,
      "Token does not exist",
    );
    expect(await snapshot()).toBe(before);
    // An admin may change anyone's token.
    const byAdmin = await api<TokenView>("PUT", "/api/token/", {
      as: root,
      body: { id: bobs.id, name: "by admin" },
    });
    expect(byAdmin.body.data).toMatchObject({ name: "by admin", user_id: bob.userId });
  });
});

describe("DELETE /api/token/:id and POST /api/token/batch", () => {
  it("deletes one token; another user's or an unknown id is a 404 that deletes nothing", async () => {
    const mine = await create({ name: "mine" });
    const bobs = await create({ name: "bob's" }, bob);
    const before = await snapshot();
    expectFailure(await api("DELETE", `/api/token/${bobs.id}`), 404, "Token does not exist");
    expectFailure(await api("DELETE", "/api/token/9999"), 404, "Token does not exist");
    expectFailure(await api("DELETE", "/api/token/abc"), 400);
    expect(await snapshot()).toBe(before);
    const res = await api("DELETE", `/api/token/${mine.id}`);
    expect(res).toEqual({ status: 200, body: { success: true, message: "" } });
    expect(await gateway.store.keys.get(mine.id)).toBeNull();
    expect((await api("DELETE", `/api/token/${bobs.id}`, { as: mgmt })).status).toBe(200);
  });

  it("batch-deletes the listed tokens and answers with the count", async () => {
    const made = await Promise.all([1, 2, 3, 4].map((i) => create({ name: `t${i}` })));
    const res = await api<number>("POST", "/api/token/batch", {
      body: { ids: [made[0]!.id, made[1]!.id, made[2]!.id, made[2]!.id] },
    });
    expect(res).toEqual({ status: 200, body: { success: true, message: "", data: 3 } });
    const left = (await api<PageOf<TokenView>>("GET", "/api/token/")).body.data!;
    expect(left.items.map((t) => t.id)).toEqual([made[3]!.id]);
  });

  it("refuses the whole batch when one id is another user's or unknown, or the ids are malformed", async () => {
    const mine = await create({ name: "mine" });
    const bobs = await create({ name: "bob's" }, bob);
    const before = await snapshot();
    expectFailure(
      await api("POST", "/api/token/batch", { body: { ids: [mine.id, bobs.id] } }),
      404,
      "Token does not exist",
    );
    expectFailure(
      await api("POST", "/api/token/batch", { body: { ids: [mine.id, 9999] } }),
      404,
      "Token does not exist",
    );
    for (const body of [
      {},
      { ids: [] },
      { ids: "1" },
      { ids: [String(mine.id)] },
      { ids: [1.5] },
      { ids: [0] },
    ]) {
      expectFailure(await api("POST", "/api/token/batch", { body }), 400, "Parameter error");
    }
    expectFailure(await api("POST", "/api/token/batch", { raw: "{" }), 400);
    expect(await snapshot()).toBe(before);
    const admin = await api<number>("POST", "/api/token/batch", {
      as: root,
      body: { ids: [mine.id, bobs.id] },
    });
    expect(admin.body.data).toBe(2);
  });
});

describe("POST /api/token/:id/key", () => {
  it("reveals the full key to its owner and to admins, and nothing to anyone else", async () => {
    const made = await create({ name: "secret" });
    const own = await api<{ key: string }>("POST", `/api/token/${made.id}/key`);
    expect(own).toEqual({
      status: 200,
      body: { success: true, message: "", data: { key: made.key } },
    });
    expect(
      (await api<{ key: string }>("POST", `/api/token/${made.id}/key`, { as: root })).body.data!
        .key,
    ).toBe(made.key);
    expect(
      (await api<{ key: string }>("POST", `/api/token/${made.id}/key`, { as: mgmt })).body.data!
        .key,
    ).toBe(made.key);
    expectFailure(
      await api("POST", `/api/token/${made.id}/key`, { as: bob }),
      404,
      "Token does not exist",
    );
    expectFailure(await api("POST", "/api/token/x/key"), 400);
    expectFailure(await api("POST", `/api/token/${made.id}/key`, { as: null }), 401);
  });
});

describe("GET /api/token/search", () => {
  it("matches names by keyword and keys by full value or by a fragment of the masked key", async () => {
    const alpha = await create({ name: "Alpha one" });
    const beta = await create({ name: "beta two" });
    const bobs = await create({ name: "alpha of bob" }, bob);
    const search = async (q: string, as: Caller = alice) => {
      const res = await api<TokenView[]>("GET", `/api/token/search?${q}`, { as });
      expect(res.status).toBe(200);
      expect(Array.isArray(res.body.data)).toBe(true);
      return res.body.data!;
    };
    expect((await search("keyword=alpha")).map((t) => t.id)).toEqual([alpha.id]);
    expect((await search("keyword=ALPHA", root)).map((t) => t.id)).toEqual([bobs.id, alpha.id]);
    expect((await search("keyword=")).map((t) => t.id)).toEqual([beta.id, alpha.id]);

    const full = await search(`token=${encodeURIComponent(beta.key)}`);
    expect(full.map((t) => t.id)).toEqual([beta.id]);
    expect(full[0]!.key).not.toBe(beta.key);
    expect(full[0]!.key).toContain("****");
    expect(await search(`token=${encodeURIComponent(beta.key)}&keyword=alpha`)).toEqual([]);
    // Another user's full key finds nothing for alice, and the token for an admin.
    expect(await search(`token=${encodeURIComponent(bobs.key)}`)).toEqual([]);
    expect((await search(`token=${encodeURIComponent(bobs.key)}`, root)).map((t) => t.id)).toEqual([
      bobs.id,
    ]);

    const tail = alpha.key.slice(-4);
    expect((await search(`token=${tail}`)).map((t) => t.id)).toContain(alpha.id);
    const head = alpha.key.slice(0, 7);
    expect((await search(`token=${head}`)).map((t) => t.id)).toContain(alpha.id);
    expect(await search("token=definitely-not-a-key")).toEqual([]);
    expectFailure(await api("GET", "/api/token/search?keyword=a", { as: null }), 401);
  });
});

describe("unknown paths under /api/", () => {
  it("answers with {success:false}: 404 for an unknown path, 405 for a wrong method", async () => {
    expectFailure(await api("GET", "/api/nothing-here"), 404);
    expectFailure(await api("PATCH", "/api/token/"), 405);
    expectFailure(await api("PATCH", "/api/token/1"), 405);
    // Other paths keep OpenAI's error shape.
    const res = await fetch(`${base}/v1/nothing-here`);
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("not_found");
  });
});
