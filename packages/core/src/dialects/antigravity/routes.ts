/**
 * The antigravity dialect's routes: antigravity2api's token API (seed 000) under `/v1/tokens`,
 * a view over the credential pool's OAuth accounts, with its `{ success, message }` /
 * `{ success, data }` envelopes and messages.
 *
 * Differences from the seed, all on the side of not spreading secrets:
 * - the list shows `refresh_token` masked (e.g. `1//0****wxYZ`) and adds the credential's `id`;
 * - every `{refresh_token}` in a path may be the credential's `id` instead, so that secrets need
 *   not travel in URLs (a refresh token with slashes may also be sent as is, or percent-encoded);
 * - an add answers with `data: { id }` besides the seed's message;
 * - the limits of a credential ({@link ANTIGRAVITY_LIMIT_FIELDS}: `rpm_limit`, `tpm_limit`,
 *   `max_concurrency`, `spend_limit_day`, `spend_limit_month`) are extra snake_case fields of the
 *   add and update bodies and of the list (shown when set).
 *
 * Credentials added here are OAuth accounts (`kind: "oauth"`) of the dialect's provider and base
 * URL (gateway option `antigravityDialect`, default `antigravity` at
 * `https://daily-cloudcode-pa.sandbox.googleapis.com`), and the dialect lists and edits only
 * those. Their id is derived from the refresh token (a keyed hash, so it reveals nothing), which
 * makes a duplicate add fail atomically in the store, across instances too.
 *
 * @module
 */
import { scrub } from "../../credentials/oauth.js";
import type { CredentialPool } from "../../credentials/pool.js";
import { GatewayError, isGatewayError } from "../../errors.js";
import { type Exchange, header, json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import {
  MANAGEMENT_KEY_HOWTO,
  type ManagementGate,
  type ManagementRefusal,
} from "../../keys/management-gate.js";
import type { UserView } from "../../keys/service.js";
import type { Logger } from "../../logger.js";
import type { CredentialLimits, CredentialPatch, CredentialRecord } from "../../store/types.js";
import { emptyCredentialState } from "../../store/util.js";
import { maskSecret, safeEqual } from "../../util/secrets.js";
import { readObjectBody } from "../object-body.js";

/** The messages of the seed (and of antigravity2api for its errors). */
export const ANTIGRAVITY_MESSAGES = {
  added: "Token添加成功",
  updated: "Token更新成功",
  deleted: "Token删除成功",
  reloaded: "Token已热重载",
  badRequest: "请求参数错误",
  unauthorized: "API Key 验证失败",
  forbidden: "权限不足: 需要管理员",
  notFound: "Token不存在",
  duplicate: "Token已存在: refresh_token 不可重复",
  internal: "服务器内部错误",
} as const;

/** Lifetime assumed for an access token added without `expires_in` (Google's, as in the seed). */
export const ANTIGRAVITY_DEFAULT_EXPIRES_IN = 3599;
/** Largest body the antigravity dialect reads. */
const ANTIGRAVITY_BODY_MAX = 64 * 1024;

const bad = (detail: string) =>
  new GatewayError("INVALID_REQUEST", `${ANTIGRAVITY_MESSAGES.badRequest}: ${detail}`);
const notFound = () => new GatewayError("NOT_FOUND", ANTIGRAVITY_MESSAGES.notFound);

/**
 * Renders any error as `{ success: false, message }`: 4xx with the error's message, 5xx as the
 * seed's "internal error" (details go to the log, not to the client).
 */
export function antigravityError(error: unknown): Reply {
  const e = isGatewayError(error)
    ? error
    : new GatewayError("INTERNAL", ANTIGRAVITY_MESSAGES.internal);
  const message = e.status >= 500 ? ANTIGRAVITY_MESSAGES.internal : e.message;
  return json(e.status, { success: false, message });
}

const ok = (message: string, data?: unknown) =>
  json(200, data === undefined ? { success: true, message } : { success: true, message, data });

/** What the antigravity dialect needs. */
export interface AntigravityDialectDeps {
  pool: CredentialPool;
  users: { findByAccessToken(token: string): Promise<UserView | null> };
  /** The gateway's management gate (the management key is accepted here under its rules). */
  gate: ManagementGate;
  /** Provider of the credentials this dialect shows and adds. */
  provider: string;
  /** Base URL given to credentials added here. */
  baseUrl: string;
  /** The credential id for a refresh token: stable and revealing nothing (a keyed hash). */
  idFor(refreshToken: string): string;
  /** Enables or disables a credential (through the pool, so that it stops or starts rotating). */
  setEnabled(id: string, enabled: boolean): Promise<void>;
  /** Called after a credential's tokens were edited here (forget past refresh failures). */
  secretChanged(id: string): void;
  /** Whether the store holds a credential with this id. */
  exists(id: string): Promise<boolean>;
  /** Reloads the pool from the store (the seed's hot reload). */
  reload(): Promise<void>;
  maxBodyBytes: number;
  logger: Logger;
}

/** The presented credential: `Authorization: Bearer <key>` (or a bare key). */
function presented(ex: Exchange): string | undefined {
  const raw = header(ex.headers, "authorization")?.trim();
  if (!raw) return undefined;
  const parts = raw.split(/\s+/);
  if (parts.length === 2 && parts[0]!.toLowerCase() === "bearer") return parts[1];
  return parts.length === 1 ? parts[0] : undefined;
}

/**
 * A refusal of the management gate in the antigravity dialect's words: 403 for a banned address and
 * for remote management, the seed's 401 for anything else (naming how to set a management key
 * when none is set).
 */
function gateError(refusal: ManagementRefusal): GatewayError {
  if (refusal.reason === "banned" || refusal.reason === "remote")
    return new GatewayError(
      "FORBIDDEN",
      `${ANTIGRAVITY_MESSAGES.unauthorized}: ${refusal.message}`,
    );
  if (refusal.reason === "disabled")
    return new GatewayError(
      "UNAUTHORIZED",
      `${ANTIGRAVITY_MESSAGES.unauthorized}: no management key is set; ${MANAGEMENT_KEY_HOWTO}`,
    );
  return new GatewayError("UNAUTHORIZED", ANTIGRAVITY_MESSAGES.unauthorized);
}

/**
 * Authenticates a antigravity dialect request: the management key (under the management gate's rules:
 * loopback unless `management.allowRemote`, never when no key is set), or the access token of
 * an enabled admin user (a `new-api-user` header, when sent, must name that user). 401
 * otherwise; 403 for a valid token of a user who is not an admin, and for a banned address
 * whatever it presents. A credential that is neither counts as a failure towards the ban.
 */
async function authenticate(ex: Exchange, deps: AntigravityDialectDeps): Promise<void> {
  const ban = await deps.gate.banned(ex);
  if (ban) throw gateError(ban);
  const token = presented(ex);
  if (!token)
    throw new GatewayError(
      "UNAUTHORIZED",
      `${ANTIGRAVITY_MESSAGES.unauthorized}: send Authorization: Bearer <management key>`,
    );
  const user = await deps.users.findByAccessToken(token);
  if (user) {
    const claimed = header(ex.headers, "new-api-user")?.trim();
    if (claimed && claimed !== String(user.id))
      throw new GatewayError(
        "UNAUTHORIZED",
        `${ANTIGRAVITY_MESSAGES.unauthorized}: New-Api-User does not match the access token`,
      );
    if (user.status !== 1 || user.role !== "admin")
      throw new GatewayError("FORBIDDEN", ANTIGRAVITY_MESSAGES.forbidden);
    return;
  }
  const refusal = await deps.gate.admit(ex, token, { countEveryRefusal: true });
  if (refusal) throw gateError(refusal);
}

function readBody(ex: Exchange, maxBodyBytes: number): Promise<Record<string, unknown>> {
  return readObjectBody(ex, Math.min(maxBodyBytes, ANTIGRAVITY_BODY_MAX), bad);
}

/** The last characters of an access token, as the seed shows them (`...abc12345`); fewer for short tokens. */
export function accessTokenSuffix(token: string | undefined): string {
  if (!token) return "";
  const n = Math.min(8, Math.floor(token.length / 4));
  return n > 0 ? `...${token.slice(-n)}` : "...";
}

/** The field of the token API for each credential limit (snake_case, as its other fields). */
export const ANTIGRAVITY_LIMIT_FIELDS = {
  rpm: "rpm_limit",
  tpm: "tpm_limit",
  maxConcurrency: "max_concurrency",
  spendPerDay: "spend_limit_day",
  spendPerMonth: "spend_limit_month",
} as const satisfies Record<keyof CredentialLimits, string>;

const LIMIT_ENTRIES = Object.entries(ANTIGRAVITY_LIMIT_FIELDS) as [
  keyof CredentialLimits,
  (typeof ANTIGRAVITY_LIMIT_FIELDS)[keyof CredentialLimits],
][];

/**
 * The limits of a credential in the token API: requests per minute, tokens per minute, requests
 * in flight at once, quota units spent per calendar day and per calendar month (in the
 * `quota-refill-time-zone` setting). Non-negative integers, 0 = none. An update keeps the limits
 * it does not name.
 */
export interface AntigravityLimitFields {
  rpm_limit?: number;
  tpm_limit?: number;
  max_concurrency?: number;
  spend_limit_day?: number;
  spend_limit_month?: number;
}

/** A pool credential as `GET /v1/tokens` lists it (limit fields only when set). */
export interface AntigravityTokenView extends AntigravityLimitFields {
  /** The credential id (usable in place of the refresh token in paths). */
  id: string;
  /** Masked, e.g. `1//0****wxYZ`. */
  refresh_token: string;
  /** The last characters of the access token, e.g. `...abc12345`. */
  access_token_suffix: string;
  /** Lifetime of the access token, seconds. */
  expires_in: number;
  /** When the access token was issued, ms. */
  timestamp: number;
  enable: boolean;
  projectId: string | null;
}

/** The fields of `POST /v1/tokens` and `PUT /v1/tokens/{key}`. */
export interface AntigravityTokenFields extends AntigravityLimitFields {
  access_token?: string;
  refresh_token?: string;
  /** Seconds. @default 3599 with an access token */
  expires_in?: number;
  /** When the access token was issued, ms. @default now */
  timestamp?: number;
  /** @default true */
  enable?: boolean;
  /** null clears it. */
  projectId?: string | null;
}

/** Body of `POST /v1/tokens`. */
export interface AntigravityTokenAddBody extends AntigravityTokenFields {
  refresh_token: string;
}

/** Body of `PUT /v1/tokens/{key}`. */
export type AntigravityTokenUpdateBody = AntigravityTokenFields;

/** Reply of `GET /v1/tokens`. */
export interface AntigravityTokenListResponse {
  success: true;
  data: AntigravityTokenView[];
}

/** Reply of the antigravity dialect's writes; an add also carries `data: { id }`. */
export interface AntigravityMessageResponse<T = undefined> {
  success: true;
  message: string;
  data?: T;
}

/** `data` of `POST /v1/tokens`. */
export interface AntigravityTokenAddedData {
  id: string;
}

/** A failed antigravity dialect reply. */
export interface AntigravityErrorResponse {
  success: false;
  message: string;
}

/**
 * A credential as the seed lists it. `timestamp` (when the access token was issued, ms) and
 * `expires_in` (its lifetime, s) are derived from the stored expiry and the lifetime recorded
 * at add or refresh (`secret.extra.expiresIn`), so that `timestamp + expires_in * 1000` is the
 * expiry as antigravity2api computes it.
 */
export function antigravityTokenView(c: CredentialRecord, now = Date.now()): AntigravityTokenView {
  const s = c.secret;
  const lifetime = Number(s.extra?.expiresIn);
  let expiresIn = 0;
  let timestamp = c.updatedAt;
  if (s.expiresAt !== undefined && Number.isFinite(lifetime) && lifetime > 0) {
    expiresIn = lifetime;
    timestamp = s.expiresAt - lifetime * 1000;
  } else if (s.expiresAt !== undefined) {
    expiresIn = Math.max(0, Math.round((s.expiresAt - now) / 1000));
    timestamp = now;
  }
  const view: AntigravityTokenView = {
    id: c.id,
    refresh_token: s.refreshToken ? maskSecret(s.refreshToken) : "",
    access_token_suffix: accessTokenSuffix(s.accessToken),
    expires_in: expiresIn,
    timestamp,
    enable: c.enabled,
    projectId: c.projectIds[0] ?? null,
  };
  for (const [field, wire] of LIMIT_ENTRIES) {
    const n = c.limits?.[field];
    if (n !== undefined && n > 0) view[wire] = n;
  }
  return view;
}

/** Fields of an add or update body, validated; absent fields stay undefined. */
interface TokenFields {
  accessToken?: string;
  refreshToken?: string;
  expiresIn?: number;
  timestamp?: number;
  enable?: boolean;
  /** null clears it. */
  projectId?: string | null;
  /** The limits named (0 removes one). */
  limits?: CredentialLimits;
}

function parseFields(b: Record<string, unknown>): TokenFields {
  const out: TokenFields = {};
  const str = (k: string) => {
    const v = b[k];
    if (typeof v !== "string" || v.trim() === "") throw bad(`${k} must be a non-empty string`);
    if (/\s/.test(v)) throw bad(`${k} must not contain whitespace`);
    return v;
  };
  const int = (k: string) => {
    const v = b[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw bad(`${k} must be a non-negative integer`);
    return v;
  };
  if (b.access_token !== undefined) out.accessToken = str("access_token");
  if (b.refresh_token !== undefined) out.refreshToken = str("refresh_token");
  if (b.expires_in !== undefined) out.expiresIn = int("expires_in");
  if (b.timestamp !== undefined) out.timestamp = int("timestamp");
  if (b.enable !== undefined) {
    if (typeof b.enable !== "boolean") throw bad("enable must be a boolean");
    out.enable = b.enable;
  }
  if (b.projectId !== undefined) {
    if (b.projectId !== null && (typeof b.projectId !== "string" || b.projectId === ""))
      throw bad("projectId must be a non-empty string or null");
    out.projectId = b.projectId as string | null;
  }
  for (const [field, wire] of LIMIT_ENTRIES) {
    if (b[wire] === undefined) continue;
    const v = b[wire];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw bad(`${wire} must be a non-negative integer (0 = none)`);
    out.limits = { ...out.limits, [field]: v };
  }
  return out;
}

/**
 * The antigravity dialect's routes: `GET /v1/tokens`, `POST /v1/tokens`, `PUT /v1/tokens/{key}`,
 * `DELETE /v1/tokens/{key}`, `POST /v1/tokens/reload`, where `{key}` is a refresh token or a
 * credential id. See the module comment.
 */
export function antigravityRoutes(deps: AntigravityDialectDeps): Route[] {
  const { pool } = deps;
  const mine = (c: CredentialRecord) => c.kind === "oauth" && c.provider === deps.provider;
  const route = (method: string, path: string, handle: Route["handle"]): Route => ({
    method,
    path,
    onError: antigravityError,
    async handle(ex, params) {
      await authenticate(ex, deps);
      try {
        return await handle(ex, params);
      } catch (error) {
        if (isGatewayError(error) && error.status < 500) throw error;
        // A store failure's text may quote what was being written: log it redacted, answer
        // the seed's bare "internal error".
        deps.logger.error("antigravity dialect request failed", {
          route: `${method} ${path}`,
          error: scrub(String(error), []),
        });
        throw new GatewayError("INTERNAL", ANTIGRAVITY_MESSAGES.internal);
      }
    },
  });

  /** Any credential (of any provider) holding this refresh token. */
  const holderOf = (refreshToken: string, except?: string) =>
    pool
      .list()
      .find(
        (c) =>
          c.id !== except &&
          c.secret.refreshToken !== undefined &&
          safeEqual(c.secret.refreshToken, refreshToken),
      ) ?? null;

  /** The credential a path names: by id first, then by refresh token. */
  const find = (key: string): CredentialRecord => {
    const byId = pool.get(key);
    if (byId && mine(byId)) return byId;
    const byToken = holderOf(key);
    if (byToken && mine(byToken)) return byToken;
    throw notFound();
  };

  return [
    route("GET", "/v1/tokens", async () => {
      const now = Date.now();
      const data = pool
        .list()
        .filter(mine)
        .map((c) => antigravityTokenView(c, now));
      return json(200, { success: true, data });
    }),

    route("POST", "/v1/tokens", async (ex) => {
      const f = parseFields(await readBody(ex, deps.maxBodyBytes));
      if (f.refreshToken === undefined) throw bad("refresh_token is required");
      if (holderOf(f.refreshToken)) throw bad(ANTIGRAVITY_MESSAGES.duplicate);
      const id = deps.idFor(f.refreshToken);
      const expiresIn = f.expiresIn ?? (f.accessToken ? ANTIGRAVITY_DEFAULT_EXPIRES_IN : 0);
      // Without an access token the credential counts as expired: refreshed on first use.
      const expiresAt = f.accessToken ? (f.timestamp ?? Date.now()) + expiresIn * 1000 : 0;
      try {
        await pool.add({
          id,
          provider: deps.provider,
          kind: "oauth",
          baseUrl: deps.baseUrl,
          secret: {
            refreshToken: f.refreshToken,
            ...(f.accessToken ? { accessToken: f.accessToken } : {}),
            expiresAt,
            extra: { expiresIn: String(expiresIn) },
          },
          projectIds: f.projectId ? [f.projectId] : [],
          enabled: f.enable ?? true,
          state: emptyCredentialState(),
          ...(f.limits ? { limits: f.limits } : {}),
        });
      } catch (error) {
        // The id is derived from the refresh token: an existing one means a duplicate (perhaps
        // added by another instance a moment ago).
        if (await deps.exists(id)) throw bad(ANTIGRAVITY_MESSAGES.duplicate);
        throw error;
      }
      return ok(ANTIGRAVITY_MESSAGES.added, { id });
    }),

    route("PUT", "/v1/tokens/*key", async (ex, params) => {
      const current = find(params.key!);
      const f = parseFields(await readBody(ex, deps.maxBodyBytes));
      if (f.refreshToken !== undefined && holderOf(f.refreshToken, current.id))
        throw bad(ANTIGRAVITY_MESSAGES.duplicate);

      const patch: CredentialPatch = {};
      const tokensChanged =
        f.accessToken !== undefined ||
        f.refreshToken !== undefined ||
        f.expiresIn !== undefined ||
        f.timestamp !== undefined;
      if (tokensChanged) {
        const s = structuredClone(current.secret);
        const view = antigravityTokenView(current);
        if (f.refreshToken !== undefined) s.refreshToken = f.refreshToken;
        if (f.accessToken !== undefined) s.accessToken = f.accessToken;
        if (f.accessToken !== undefined || f.expiresIn !== undefined || f.timestamp !== undefined) {
          const lifetime =
            f.expiresIn ?? (view.expires_in > 0 ? view.expires_in : ANTIGRAVITY_DEFAULT_EXPIRES_IN);
          // A new access token without a timestamp was issued now; otherwise keep the issue time.
          const issued = f.timestamp ?? (f.accessToken !== undefined ? Date.now() : view.timestamp);
          s.expiresAt = issued + lifetime * 1000;
          s.extra = { ...s.extra, expiresIn: String(lifetime) };
        }
        patch.secret = s;
      }
      if (f.projectId !== undefined) {
        const rest = current.projectIds.filter((p) => p !== f.projectId);
        patch.projectIds = f.projectId === null ? [] : [f.projectId, ...rest];
      }
      // Merged into the stored limits by the pool: the fields not sent keep their values.
      if (f.limits) patch.limits = f.limits;
      if (Object.keys(patch).length > 0) {
        if (!(await pool.update(current.id, patch))) throw notFound();
      }
      if (tokensChanged) deps.secretChanged(current.id);
      if (f.enable !== undefined && f.enable !== current.enabled)
        await deps.setEnabled(current.id, f.enable);
      return ok(ANTIGRAVITY_MESSAGES.updated);
    }),

    route("DELETE", "/v1/tokens/*key", async (_ex, params) => {
      const current = find(params.key!);
      if (!(await pool.remove(current.id))) throw notFound();
      return ok(ANTIGRAVITY_MESSAGES.deleted);
    }),

    route("POST", "/v1/tokens/reload", async () => {
      await deps.reload();
      return ok(ANTIGRAVITY_MESSAGES.reloaded);
    }),
  ];
}
