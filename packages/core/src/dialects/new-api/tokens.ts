/**
 * The new-api dialect's token routes: new-api's `/api/token/` over the key service, with its
 * `{ success, message, data }` envelope, snake_case fields and messages, and the helpers the
 * dialect's user routes share.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { GatewayError, isGatewayError } from "../../errors.js";
import { type Exchange, json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import { validateIpEntry } from "../../keys/ip.js";
import type { ManagementGate } from "../../keys/management-gate.js";
import type { ApiKeyView, CreateKeyInput, KeyService } from "../../keys/service.js";
import { type ApiKeyPatch, KeyStatus } from "../../store/types.js";
import type { UserService } from "../../users/service.js";
import { readObjectBody } from "../object-body.js";
import { authenticateNewApi, type NewApiPrincipal } from "./auth.js";
import { type LimitFields, limitView, parseLimitFields, resolveRefill } from "./limits.js";
import type { TokenView } from "./wire.js";

/** Longest token name, in characters (the seed's limit). */
export const TOKEN_NAME_MAX = 30;
/** Largest `remain_quota`: one billion US dollars at 500000 units each, as new-api allows. */
export const TOKEN_QUOTA_MAX = 500_000 * 1_000_000_000;
/** Most tokens one batch creation makes. */
export const TOKEN_BATCH_CREATE_MAX = 100;
/** Most ids one batch deletion takes. */
export const TOKEN_BATCH_DELETE_MAX = 1000;
/** Largest body the new-api dialect reads (it never needs more), unless `maxBodyBytes` is lower. */
const NEW_API_BODY_MAX = 1024 * 1024;

/** The exact messages of the seeds and new-api. */
export const TOKEN_MESSAGES = {
  notFound: "Token does not exist",
  nameTooLong: "Token name is too long",
  parameterError: "Parameter error",
  quotaNegative: "Quota value cannot be negative",
  quotaTooLarge: `Quota value exceeds valid range, maximum is ${TOKEN_QUOTA_MAX}`,
  expiredCannotEnable:
    "Token has expired and cannot be enabled. Please modify the token expiration time or set it to never expire first.",
  exhaustedCannotEnable:
    "Token quota is exhausted and cannot be enabled. Please modify the remaining quota or set it to unlimited",
} as const;

const bad = (message: string) => new GatewayError("INVALID_REQUEST", message);
/** A shape or type error: new-api's "Parameter error", with what was wrong. */
const param = (detail: string) => bad(`${TOKEN_MESSAGES.parameterError}: ${detail}`);
const tokenNotFound = () => new GatewayError("KEY_NOT_FOUND", TOKEN_MESSAGES.notFound);

/** Renders any error as `{ success: false, message }` with the error's 4xx/5xx status. */
export function newApiError(error: unknown): Reply {
  const e = isGatewayError(error) ? error : new GatewayError("INTERNAL", "internal error");
  return json(e.status, { success: false, message: e.message });
}

/** A success envelope: `{ success: true, message: "", data }` (`data` left out when undefined). */
export function newApiOk(data?: unknown): Reply {
  return json(
    200,
    data === undefined ? { success: true, message: "" } : { success: true, message: "", data },
  );
}

/** Reads a JSON object body or throws the dialect's 400 (413 beyond the size limit). */
export async function readNewApiBody(
  ex: Exchange,
  maxBodyBytes: number,
): Promise<Record<string, unknown>> {
  return readObjectBody(ex, Math.min(maxBodyBytes, NEW_API_BODY_MAX), param);
}

/** A positive integer id from a path segment or a query value (digits only). */
export function parseId(value: string | undefined, what = "id"): number {
  const n = value !== undefined && /^\d{1,15}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(n) || n <= 0) throw param(`${what} must be a positive integer`);
  return n;
}

/** A positive integer id from a JSON field: a number, not a string of digits (as new-api binds it). */
export function parseBodyId(value: unknown, what = "id"): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value <= 0)
    throw param(`${what} must be a positive integer`);
  return value;
}

/** Pagination of new-api: `p` (from 1) and `size` (alias `page_size`), lenient like new-api. */
export function pageQuery(
  q: URLSearchParams,
  defaultSize = 20,
): { page: number; size: number; offset: number } {
  const int = (v: string | null) => (v !== null && /^\d{1,9}$/.test(v) ? Number(v) : 0);
  const page = Math.max(1, int(q.get("p")));
  const asked = int(q.get("size") ?? q.get("page_size"));
  const size = asked > 0 ? Math.min(asked, 100) : defaultSize;
  return { page, size, offset: (page - 1) * size };
}

/** A key as the new-api token routes show it; `key` is the masked hint unless the caller passes the plain key. */
export function tokenView(k: ApiKeyView, key: string = k.keyHint): TokenView {
  return {
    id: k.id,
    user_id: k.userId ?? 0,
    key,
    status: k.status,
    name: k.name,
    created_time: k.createdTime,
    accessed_time: k.accessedTime,
    expired_time: k.expiredTime,
    remain_quota: k.remainQuota,
    unlimited_quota: k.unlimitedQuota,
    used_quota: k.usedQuota,
    model_limits_enabled: k.modelLimitsEnabled,
    // new-api's own forms: a comma-separated string, and one address or range per line.
    model_limits: k.modelLimits.join(","),
    allow_ips: k.allowIps.join("\n"),
    group: k.group,
    ...limitView(k),
  };
}

/** The writable fields of a token, parsed and validated. Absent (or null) fields stay undefined. */
interface TokenFields {
  name?: string;
  expiredTime?: number;
  remainQuota?: number;
  unlimitedQuota?: boolean;
  modelLimitsEnabled?: boolean;
  modelLimits?: string[];
  allowIps?: string[];
  group?: string;
  status?: KeyStatus;
  /** The limit and refill fields (resolved against the stored key by the route). */
  limitFields?: LimitFields;
}

const STATUSES: readonly number[] = Object.values(KeyStatus);

/** Splits a list given as an array of strings or as one string with separators. */
function splitList(value: unknown, sep: RegExp, field: string): string[] {
  if (value === null) return [];
  const parts = typeof value === "string" ? [value] : value;
  if (!Array.isArray(parts) || !parts.every((p) => typeof p === "string"))
    throw param(`${field} must be a string or an array of strings`);
  return [
    ...new Set(
      parts
        .flatMap((p: string) => p.split(sep))
        .map((s) => s.trim())
        .filter(Boolean),
    ),
  ];
}

/**
 * Parses every writable field present in `body` (unknown fields are ignored, as new-api does:
 * clients send back whole records, and AnyAPI's example adds `mj_*` fields). Throws on the
 * first invalid field; writes nothing.
 */
function parseTokenFields(
  body: Record<string, unknown>,
  users: UserService,
  only?: "status",
): TokenFields {
  const out: TokenFields = {};
  const has = (k: string) =>
    body[k] !== undefined && (body[k] !== null || k === "allow_ips" || k === "model_limits");
  const bool = (k: string) => {
    if (typeof body[k] !== "boolean") throw param(`${k} must be a boolean`);
    return body[k] as boolean;
  };
  const int = (k: string) => {
    const v = body[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v)) throw param(`${k} must be an integer`);
    return v;
  };
  if (has("status")) {
    const s = int("status");
    if (!STATUSES.includes(s))
      throw param("status must be 1 (enabled), 2 (disabled), 3 (expired) or 4 (exhausted)");
    out.status = s as KeyStatus;
  }
  if (only === "status") {
    if (out.status === undefined) throw param("status is required");
    return out;
  }
  if (has("name")) {
    if (typeof body.name !== "string") throw param("name must be a string");
    if ([...body.name].length > TOKEN_NAME_MAX) throw bad(TOKEN_MESSAGES.nameTooLong);
    out.name = body.name;
  }
  if (has("expired_time")) {
    const t = int("expired_time");
    if (t < -1) throw param("expired_time must be -1 (never) or a Unix time in seconds");
    out.expiredTime = t;
  }
  if (has("remain_quota")) {
    const q = int("remain_quota");
    if (q < 0) throw bad(TOKEN_MESSAGES.quotaNegative);
    if (q > TOKEN_QUOTA_MAX) throw bad(TOKEN_MESSAGES.quotaTooLarge);
    out.remainQuota = q;
  }
  if (has("unlimited_quota")) out.unlimitedQuota = bool("unlimited_quota");
  if (has("model_limits_enabled")) out.modelLimitsEnabled = bool("model_limits_enabled");
  if (has("model_limits")) out.modelLimits = splitList(body.model_limits, /,/, "model_limits");
  if (has("allow_ips")) {
    const ips = splitList(body.allow_ips, /[\s,]+/, "allow_ips");
    for (const ip of ips) {
      if (validateIpEntry(ip) !== null)
        throw bad(`Invalid IP address or CIDR range in allow_ips: ${ip}`);
    }
    out.allowIps = ips;
  }
  if (has("group")) {
    if (typeof body.group !== "string") throw param("group must be a string");
    // "" is new-api's "the owner's group"; anything else must be a known group.
    if (body.group !== "" && !users.isKnownGroup(body.group))
      throw bad(`Group "${body.group}" does not exist`);
    out.group = body.group;
  }
  const limitFields = parseLimitFields(body, param);
  if (Object.keys(limitFields).length > 0) out.limitFields = limitFields;
  return out;
}

function isExpired(k: Pick<ApiKeyView, "expiredTime">, now: number): boolean {
  return k.expiredTime !== -1 && k.expiredTime <= now;
}

/**
 * new-api refuses to enable a key that could not serve a request. Expired: whatever the current
 * status (an enabled key past its time is expired too). Exhausted: only on an actual transition
 * to enabled, so that clients which send the whole record back (status 1 included) can still
 * edit a fresh key created with no quota.
 */
function checkEnable(current: ApiKeyView, patch: TokenFields, now: number): void {
  if (patch.status !== KeyStatus.Enabled) return;
  const next = { ...current, ...patch };
  if (isExpired(next, now)) throw bad(TOKEN_MESSAGES.expiredCannotEnable);
  if (current.status !== KeyStatus.Enabled && !next.unlimitedQuota && next.remainQuota <= 0)
    throw bad(TOKEN_MESSAGES.exhaustedCannotEnable);
}

/** A random suffix for batch-created names (new-api's console appends `-` and six characters). */
function nameSuffix(): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  return [...randomBytes(6)].map((b) => alphabet[b % 62]).join("");
}

/** The query value as a flag: present and not `""`, `false` or `0`. */
function flag(q: URLSearchParams, name: string): boolean {
  const v = q.get(name);
  return v !== null && v !== "" && v !== "false" && v !== "0";
}

/** Context the new-api dialect needs. */
export interface NewApiDialectDeps {
  keys: KeyService;
  users: UserService;
  /** The gateway's management gate (the management key is accepted here under its rules). */
  gate: ManagementGate;
  maxBodyBytes: number;
}

/**
 * The new-api token routes under `/api/token/` (new-api's token module, seeds 002 and 003).
 *
 * Authentication: `Authorization: Bearer <access token>` with `new-api-user: <id>` (a user acts
 * on its own keys; an admin on all), or the management key (an admin). Every failure is
 * `{ success: false, message }` with a 4xx status, and is detected before anything is written.
 */
export function tokenRoutes(deps: NewApiDialectDeps): Route[] {
  const { keys, users } = deps;
  const auth = (ex: Exchange) => authenticateNewApi(ex, deps);
  const body = (ex: Exchange) => readNewApiBody(ex, deps.maxBodyBytes);
  const query = (ex: Exchange) => new URLSearchParams(ex.search);
  const visible = (p: NewApiPrincipal, k: ApiKeyView) =>
    p.admin || (p.user !== null && k.userId === p.user.id);

  /** The key with this id if the caller may see it; an unknown and a foreign id look the same. */
  const visibleKey = async (p: NewApiPrincipal, id: number) => {
    const k = await keys.get(id);
    if (!k || !visible(p, k)) throw tokenNotFound();
    return k;
  };

  /** Whose keys a listing covers: a user's own; an admin's all, or one user's with `?user_id=`. */
  const scope = (p: NewApiPrincipal, q: URLSearchParams): number | undefined => {
    if (!p.admin) return p.user!.id;
    const u = q.get("user_id");
    return u === null || u === "" ? undefined : parseId(u, "user_id");
  };

  const route = (method: string, path: string, handle: Route["handle"]): Route[] => {
    const r = { method, path, handle, onError: newApiError };
    // `/api/token/` is new-api's spelling; accept it without the trailing slash too.
    return path.endsWith("/") ? [r, { ...r, path: path.slice(0, -1) }] : [r];
  };

  return [
    ...route("GET", "/api/token/", async (ex) => {
      const p = await auth(ex);
      const q = query(ex);
      const { page, size, offset } = pageQuery(q);
      const res = await keys.list({ userId: scope(p, q), offset, limit: size });
      return newApiOk({
        items: res.items.map((k) => tokenView(k)),
        total: res.total,
        page,
        page_size: size,
      });
    }),

    ...route("GET", "/api/token/search", async (ex) => {
      const p = await auth(ex);
      const q = query(ex);
      const { offset, size } = pageQuery(q, 100);
      const keyword = q.get("keyword") ?? "";
      const token = (q.get("token") ?? "").trim();
      const userId = scope(p, q);
      if (token) {
        // A whole key is found by its keyed hash. Plain keys are not stored, so a fragment can
        // only match the masked hint (e.g. `sk-Ab12****wxYZ`: its head or its last four).
        const exact = await keys.findByPlain(token);
        if (exact) {
          const hit =
            visible(p, exact) &&
            (userId === undefined || exact.userId === userId) &&
            exact.name.toLowerCase().includes(keyword.toLowerCase());
          return newApiOk(hit && offset === 0 ? [tokenView(exact)] : []);
        }
      }
      const res = await keys.list({
        userId,
        ...(keyword ? { keyword } : {}),
        ...(token ? { hint: token } : {}),
        offset,
        limit: size,
      });
      return newApiOk(res.items.map((k) => tokenView(k)));
    }),

    ...route("GET", "/api/token/:id", async (ex, params) => {
      const p = await auth(ex);
      return newApiOk(tokenView(await visibleKey(p, parseId(params.id))));
    }),

    ...route("POST", "/api/token/:id/key", async (ex, params) => {
      const p = await auth(ex);
      const k = await visibleKey(p, parseId(params.id));
      const plain = await keys.reveal(k.id);
      if (plain === null)
        throw new GatewayError(
          "KEY_NOT_FOUND",
          "The full key of this token is not available (it was stored without its encrypted copy, or under another server secret)",
        );
      return newApiOk({ key: plain });
    }),

    ...route("POST", "/api/token/", async (ex) => {
      const p = await auth(ex);
      const b = await body(ex);
      const f = parseTokenFields(b, users);

      // The owner: the caller by default. An admin may name another user with `user_id`, or
      // none with `user_id: 0` (new-api's "no user"); a user may only name itself.
      let owner: number | null = p.user?.id ?? null;
      const uidRaw = b.user_id;
      if (uidRaw !== undefined && uidRaw !== null && uidRaw !== 0) {
        const uid = parseBodyId(uidRaw, "user_id");
        if (p.admin) {
          if (!(await users.get(uid))) throw bad("User does not exist");
          owner = uid;
        } else if (uid !== p.user!.id) {
          throw new GatewayError(
            "FORBIDDEN",
            "Only an administrator can create tokens for another user",
          );
        }
      } else if (p.admin && uidRaw !== undefined) owner = null;

      // Batch creation as new-api's console does it (one name as given, the others with a
      // random suffix), but in one all-or-nothing request.
      const batch = b.count !== undefined;
      let names = [f.name ?? ""];
      if (batch) {
        const n = b.count;
        if (
          typeof n !== "number" ||
          !Number.isSafeInteger(n) ||
          n < 1 ||
          n > TOKEN_BATCH_CREATE_MAX
        )
          throw param(`count must be an integer from 1 to ${TOKEN_BATCH_CREATE_MAX}`);
        const given = (f.name ?? "").trim();
        const base = given || "default";
        names = Array.from({ length: n }, (_, i) =>
          i === 0 && given ? base : `${base}-${nameSuffix()}`,
        );
        if (names.some((name) => [...name].length > TOKEN_NAME_MAX))
          throw bad(TOKEN_MESSAGES.nameTooLong);
      }

      const refill = f.limitFields ? resolveRefill(f.limitFields, null, param) : undefined;
      const input = (name: string): CreateKeyInput => ({
        name,
        userId: owner,
        ...(f.expiredTime !== undefined ? { expiredTime: f.expiredTime } : {}),
        ...(f.remainQuota !== undefined ? { remainQuota: f.remainQuota } : {}),
        ...(f.unlimitedQuota !== undefined ? { unlimitedQuota: f.unlimitedQuota } : {}),
        ...(f.modelLimitsEnabled !== undefined ? { modelLimitsEnabled: f.modelLimitsEnabled } : {}),
        ...(f.modelLimits !== undefined ? { modelLimits: f.modelLimits } : {}),
        ...(f.allowIps !== undefined ? { allowIps: f.allowIps } : {}),
        ...(f.group !== undefined ? { group: f.group } : {}),
        ...(f.status !== undefined ? { status: f.status } : {}),
        ...(f.limitFields?.limits ? { limits: f.limitFields.limits } : {}),
        ...(refill !== undefined ? { quotaRefill: refill } : {}),
      });
      const created: { key: string; record: ApiKeyView }[] = [];
      try {
        for (const name of names) created.push(await keys.create(input(name)));
      } catch (error) {
        // Everything was validated above; this is a store failure. Undo the part that was written.
        await keys.delete(created.map((c) => c.record.id)).catch(() => {});
        throw error;
      }
      const views = created.map((c) => tokenView(c.record, c.key));
      return newApiOk(batch ? views : views[0]);
    }),

    ...route("PUT", "/api/token/", async (ex) => {
      const p = await auth(ex);
      const q = query(ex);
      const b = await body(ex);
      const id = parseBodyId(b.id);
      const f = parseTokenFields(b, users, flag(q, "status_only") ? "status" : undefined);
      const current = await visibleKey(p, id);
      checkEnable(current, f, Math.floor(Date.now() / 1000));
      const { limitFields, ...fields } = f;
      const patch: ApiKeyPatch = {};
      for (const [k, v] of Object.entries(fields))
        if (v !== undefined) (patch as Record<string, unknown>)[k] = v;
      // Fields left out keep their stored values (an older client sends the seed's fields only).
      if (limitFields?.limits) patch.limits = limitFields.limits;
      const refill = limitFields && resolveRefill(limitFields, current.quotaRefill, param);
      if (refill !== undefined) patch.quotaRefill = refill;
      const updated = await keys.update(id, patch);
      if (!updated) throw tokenNotFound();
      return newApiOk(tokenView(updated));
    }),

    ...route("DELETE", "/api/token/:id", async (ex, params) => {
      const p = await auth(ex);
      const k = await visibleKey(p, parseId(params.id));
      await keys.delete([k.id]);
      return newApiOk();
    }),

    ...route("POST", "/api/token/batch", async (ex) => {
      const p = await auth(ex);
      const b = await body(ex);
      const ids = b.ids;
      if (!Array.isArray(ids) || ids.length === 0) throw bad(TOKEN_MESSAGES.parameterError);
      if (ids.length > TOKEN_BATCH_DELETE_MAX)
        throw bad(`Too many items in batch request, maximum is ${TOKEN_BATCH_DELETE_MAX}`);
      if (!ids.every((id) => typeof id === "number" && Number.isSafeInteger(id) && id > 0))
        throw bad(TOKEN_MESSAGES.parameterError);
      const unique = [...new Set(ids as number[])];
      // All or nothing: one id the caller may not see (unknown, or another user's) refuses the batch.
      await Promise.all(unique.map((id) => visibleKey(p, id)));
      return newApiOk(await keys.delete(unique));
    }),
  ];
}
