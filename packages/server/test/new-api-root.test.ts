/**
 * new-api clients on a fresh install (issue 14, point 6): seed 003 marks `new-api-user` as
 * required and new-api's root user is id 1, so the management key with `new-api-user: 1` must
 * work on `/api/token/` and `/api/user/` of a fresh server, on every store. The old paths keep
 * working: the management key without the header, with another user's id, a user's access token
 * with its own id; and once a stored user 1 exists, `new-api-user: 1` names that user.
 * `tokenpool` servers on port 0 with a fresh store each, the management key they print.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "@tokenpool/core";
import { type PostgresServer, startPostgresServer } from "@tokenpool/testing/postgres-server";
import { type RedisServer, startRedisServer } from "@tokenpool/testing/redis-server";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../src/serve.js";

let redis: RedisServer;
let postgres: PostgresServer;
const running: RunningServer[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  redis = await startRedisServer();
  postgres = await startPostgresServer();
});
afterAll(async () => {
  await redis.stop();
  await postgres.stop();
});
afterEach(async () => {
  for (const s of running.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A server on a fresh store of the kind `kind`, with the management key it printed. */
async function fresh(kind: string): Promise<{ url: string; mgmt: string }> {
  const dir = mkdtempSync(join(tmpdir(), "tokenpool-root-"));
  dirs.push(dir);
  const store =
    kind === "sqlite"
      ? `sqlite:${join(dir, "tokenpool.db")}`
      : kind === "file"
        ? `file:${join(dir, "data")}`
        : kind === "redis"
          ? `${redis.url}?prefix=root-${dirs.length}-${Date.now()}-`
          : kind === "postgres"
            ? `${postgres.url}?schema=tp_root_${dirs.length}_${Date.now()}`
            : "memory";
  const config = join(dir, "config.yaml");
  writeFileSync(config, `secret: "new-api-root-secret-0123456789-abcdefghijkl"\n`);
  const printed: string[] = [];
  const s = await startServer({
    port: 0,
    store,
    config,
    logger: silentLogger,
    print: (line) => printed.push(line),
  });
  running.push(s);
  expect(s.managementKey).not.toBeNull();
  expect(printed.join("\n")).toContain(s.managementKey!);
  return { url: s.url, mgmt: s.managementKey! };
}

interface Envelope<T = Record<string, unknown>> {
  success: boolean;
  message: string;
  data?: T;
}

async function api<T = Record<string, unknown>>(
  url: string,
  method: string,
  path: string,
  auth: { token: string; user?: string },
  body?: unknown,
): Promise<{ status: number; body: Envelope<T> }> {
  const headers: Record<string, string> = {
    authorization: `Bearer ${auth.token}`,
    "content-type": "application/json",
  };
  if (auth.user !== undefined) headers["new-api-user"] = auth.user;
  const res = await fetch(`${url}${path}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Envelope<T> };
}

/** A token body as seed 003's update call sends it (all its required fields). */
const seed003 = (id: number, name: string) => ({
  id,
  name,
  remain_quota: 250_000,
  expired_time: -1,
  unlimited_quota: false,
  model_limits_enabled: false,
  model_limits: "",
  allow_ips: "",
  group: "",
  mj_image_mode: "default",
  mj_custom_proxy: "",
  selected_groups: [],
});

describe.each(["memory", "sqlite", "file", "redis", "postgres"])(
  "new-api's root user on a fresh %s store",
  (kind) => {
    it("takes the management key with new-api-user: 1 on /api/token/ and /api/user/", async () => {
      const { url, mgmt } = await fresh(kind);
      const root = { token: mgmt, user: "1" };

      const list = await api<{ items: unknown[]; total: number }>(
        url,
        "GET",
        "/api/token/?p=1&size=20",
        root,
      );
      expect(list.status, JSON.stringify(list.body)).toBe(200);
      expect(list.body).toMatchObject({ success: true, data: { items: [], total: 0 } });

      const created = await api<{ id: number; key: string; user_id: number }>(
        url,
        "POST",
        "/api/token/",
        root,
        { name: "from new-api client", remain_quota: 500_000, expired_time: -1 },
      );
      expect(created.status, JSON.stringify(created.body)).toBe(200);
      // The built-in root owns nothing, as the management key without the header.
      expect(created.body.data!.user_id).toBe(0);
      const id = created.body.data!.id;

      // Seed 003's update call, headers as the spec has them.
      const updated = await api<{ name: string; remain_quota: number }>(
        url,
        "PUT",
        "/api/token/",
        root,
        seed003(id, "renamed"),
      );
      expect(updated.status, JSON.stringify(updated.body)).toBe(200);
      expect(updated.body.data).toMatchObject({ name: "renamed", remain_quota: 250_000 });
      const status = await api(url, "PUT", "/api/token/?status_only=true", root, { id, status: 2 });
      expect(status.status).toBe(200);

      const users = await api<{ items: unknown[]; total: number }>(url, "GET", "/api/user/", root);
      expect(users.status, JSON.stringify(users.body)).toBe(200);
      expect(users.body.data!.total).toBe(0);

      // The old paths: the management key without the header is the same admin.
      const plain = await api<{ total: number }>(url, "GET", "/api/token/", { token: mgmt });
      expect(plain.body.data!.total).toBe(1);
      // An id that names no user is refused, as before.
      const nobody = await api(url, "GET", "/api/token/", { token: mgmt, user: "2" });
      expect(nobody.status).toBe(401);
      expect(nobody.body).toEqual({
        success: false,
        message: "Unauthorized: New-Api-User does not match any user",
      });
      // new-api-user: 1 is the root only with the management key.
      const guess = await api(url, "GET", "/api/token/", { token: "sk-not-a-token", user: "1" });
      expect(guess.status).toBe(401);
    });

    it("keeps stored users' ids: once user 1 exists, new-api-user: 1 names it; access tokens need their own id", async () => {
      const { url, mgmt } = await fresh(kind);
      const root = { token: mgmt, user: "1" };
      const mk = async (username: string, role: string) => {
        const r = await api<{ id: number; access_token: string }>(url, "POST", "/api/user/", root, {
          username,
          role,
        });
        expect(r.status, JSON.stringify(r.body)).toBe(200);
        return r.body.data!;
      };
      const first = await mk("first", "admin");
      const second = await mk("second", "user");
      // The stores allocate ids as before: the first user is 1.
      expect([first.id, second.id]).toEqual([1, 2]);

      // The management key with new-api-user: 1 now acts as that user: tokens default to it.
      const owned = await api<{ user_id: number }>(url, "POST", "/api/token/", root, {
        name: "for first",
      });
      expect(owned.body.data!.user_id).toBe(1);
      // With another stored user's id it acts as that one.
      const forSecond = await api<{ user_id: number }>(
        url,
        "POST",
        "/api/token/",
        { token: mgmt, user: "2" },
        { name: "for second" },
      );
      expect(forSecond.body.data!.user_id).toBe(2);

      // A user's access token with its own id works; with another id (root's 1 included) it does not.
      const own = await api<{ total: number }>(url, "GET", "/api/token/", {
        token: second.access_token,
        user: "2",
      });
      expect(own.status).toBe(200);
      expect(own.body.data!.total).toBe(1);
      for (const user of ["1", undefined]) {
        const res = await api(url, "GET", "/api/token/", {
          token: second.access_token,
          ...(user ? { user } : {}),
        });
        expect(res.status, String(user)).toBe(401);
      }
      const admin = await api(url, "GET", "/api/user/", { token: first.access_token, user: "1" });
      expect(admin.status).toBe(200);
    });
  },
);
