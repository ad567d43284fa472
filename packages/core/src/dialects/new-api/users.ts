/**
 * The new-api dialect's user admin routes under `/api/user/`, modelled on new-api's user
 * administration: the same `{ success, message, data }` envelope, pagination and
 * authentication as its token routes, admin-only.
 *
 * @module
 */
import { GatewayError } from "../../errors.js";
import type { Exchange } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { ManagementGate } from "../../keys/management-gate.js";
import type { UserView } from "../../keys/service.js";
import type { UserPatch, UserRecord } from "../../store/types.js";
import type { UserService } from "../../users/service.js";
import { authenticateNewApi, type NewApiPrincipal } from "./auth.js";
import { type LimitFields, limitView, parseLimitFields, resolveRefill } from "./limits.js";
import {
  newApiError,
  newApiOk,
  pageQuery,
  parseBodyId,
  parseId,
  readNewApiBody,
} from "./tokens.js";
import type { UserView as UserWire } from "./wire.js";

/** A user as the user routes show it. The access token itself is never shown after it is issued. */
export function userView(u: UserView): UserWire {
  return {
    id: u.id,
    username: u.username,
    display_name: u.displayName,
    role: u.role,
    status: u.status,
    group: u.group,
    quota: u.quota,
    used_quota: u.usedQuota,
    created_time: u.createdTime,
    has_access_token: u.hasAccessToken,
    ...limitView(u),
  };
}

const bad = (message: string) => new GatewayError("INVALID_REQUEST", message);
const param = (detail: string) => bad(`Parameter error: ${detail}`);
const userNotFound = () => new GatewayError("USER_NOT_FOUND", "User does not exist");

/**
 * The writable fields of a user present in `body`, type-checked (the service checks the rest),
 * and its limit and refill fields (resolved against the stored user by the route).
 */
function parseUserFields(body: Record<string, unknown>): UserPatch & { limitFields?: LimitFields } {
  const out: UserPatch & { limitFields?: LimitFields } = {};
  const present = (k: string) => body[k] !== undefined && body[k] !== null;
  const str = (k: string) => {
    if (typeof body[k] !== "string") throw bad(`Parameter error: ${k} must be a string`);
    return body[k] as string;
  };
  const int = (k: string) => {
    const v = body[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v))
      throw bad(`Parameter error: ${k} must be an integer`);
    return v;
  };
  if (present("username")) out.username = str("username");
  if (present("display_name")) out.displayName = str("display_name");
  if (present("role")) out.role = str("role") as UserRecord["role"];
  if (present("status")) out.status = int("status") as UserRecord["status"];
  if (present("group")) out.group = str("group");
  if (present("quota")) out.quota = int("quota");
  const limitFields = parseLimitFields(body, param);
  if (Object.keys(limitFields).length > 0) out.limitFields = limitFields;
  return out;
}

/** A user patch with the limit fields resolved against the stored user (null on creation). */
function withLimits(
  f: UserPatch & { limitFields?: LimitFields },
  stored: UserView | null,
): UserPatch {
  const { limitFields, ...patch } = f;
  if (!limitFields) return patch;
  if (limitFields.limits) patch.limits = limitFields.limits;
  const refill = resolveRefill(limitFields, stored?.quotaRefill ?? null, param);
  if (refill !== undefined) patch.quotaRefill = refill;
  return patch;
}

/** Context the user routes need. */
export interface UserDialectDeps {
  users: UserService;
  /** The gateway's management gate (the management key is accepted here under its rules). */
  gate: ManagementGate;
  maxBodyBytes: number;
}

/**
 * Admin routes for users:
 * - `GET /api/user/?p=1&size=20` → `{ items, total, page, page_size }`
 * - `GET /api/user/search?keyword=` → the same page shape
 * - `GET /api/user/self` → the caller's own user (any user, with its access token; the
 *   management key without `new-api-user` has no user: 404)
 * - `GET /api/user/:id`
 * - `POST /api/user/` `{ username, display_name?, role?, status?, group?, quota? }` and the
 *   limit and refill fields of tokens (`rpm_limit` … `quota_refill_amount`) → the user and its
 *   `access_token` (shown this once)
 * - `PUT /api/user/` `{ id, ...fields }` → the updated user (fields left out keep their value)
 * - `DELETE /api/user/:id` (deletes the user's keys too)
 * - `POST /api/user/:id/token` → `{ access_token }`, a new one (the old one stops working)
 */
export function userRoutes(deps: UserDialectDeps): Route[] {
  const { users } = deps;
  const admin = async (ex: Exchange): Promise<NewApiPrincipal> => {
    const p = await authenticateNewApi(ex, deps);
    if (!p.admin)
      throw new GatewayError(
        "FORBIDDEN",
        "Insufficient privileges: this route is for administrators",
      );
    return p;
  };
  const body = (ex: Exchange) => readNewApiBody(ex, deps.maxBodyBytes);
  const route = (method: string, path: string, handle: Route["handle"]): Route[] => {
    const r = { method, path, handle, onError: newApiError };
    return path.endsWith("/") ? [r, { ...r, path: path.slice(0, -1) }] : [r];
  };
  const list = async (ex: Exchange, keyword?: string) => {
    await admin(ex);
    const { page, size, offset } = pageQuery(new URLSearchParams(ex.search));
    const res = await users.list({ offset, limit: size, ...(keyword ? { keyword } : {}) });
    return newApiOk({ items: res.items.map(userView), total: res.total, page, page_size: size });
  };
  /** An admin acting through its own access token must not lock itself out. */
  const guardSelf = (p: NewApiPrincipal, id: number, patch: UserPatch | null) => {
    if (p.via !== "access-token" || p.user?.id !== id) return;
    if (patch === null || patch.status === 2 || patch.role === "user")
      throw new GatewayError("FORBIDDEN", "You cannot delete, disable or demote yourself");
  };

  return [
    ...route("GET", "/api/user/", (ex) => list(ex)),
    ...route("GET", "/api/user/search", (ex) =>
      list(ex, new URLSearchParams(ex.search).get("keyword") ?? ""),
    ),
    ...route("GET", "/api/user/self", async (ex) => {
      const p = await authenticateNewApi(ex, deps);
      if (!p.user) throw userNotFound();
      return newApiOk(userView(p.user));
    }),
    ...route("GET", "/api/user/:id", async (ex, params) => {
      await admin(ex);
      const u = await users.get(parseId(params.id));
      if (!u) throw userNotFound();
      return newApiOk(userView(u));
    }),
    ...route("POST", "/api/user/", async (ex) => {
      await admin(ex);
      const f = withLimits(parseUserFields(await body(ex)), null);
      if (f.username === undefined) throw bad("Parameter error: username is required");
      const { accessToken, record } = await users.create({ ...f, username: f.username });
      return newApiOk({ ...userView(record), access_token: accessToken });
    }),
    ...route("PUT", "/api/user/", async (ex) => {
      const p = await admin(ex);
      const b = await body(ex);
      const id = parseBodyId(b.id);
      const parsed = parseUserFields(b);
      guardSelf(p, id, parsed);
      const { limitFields: _, ...plain } = parsed;
      users.validate(plain);
      const current = await users.get(id);
      if (!current) throw userNotFound();
      // Fields left out keep their stored values (an older client sends fewer fields).
      const updated = await users.update(id, withLimits(parsed, current));
      if (!updated) throw userNotFound();
      return newApiOk(userView(updated));
    }),
    ...route("DELETE", "/api/user/:id", async (ex, params) => {
      const p = await admin(ex);
      const id = parseId(params.id);
      guardSelf(p, id, null);
      if (!(await users.delete(id))) throw userNotFound();
      return newApiOk();
    }),
    ...route("POST", "/api/user/:id/token", async (ex, params) => {
      await admin(ex);
      const token = await users.issueAccessToken(parseId(params.id));
      if (token === null) throw userNotFound();
      return newApiOk({ access_token: token });
    }),
  ];
}
