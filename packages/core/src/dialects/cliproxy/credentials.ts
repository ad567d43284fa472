/**
 * Every credential of the pool with its live state, over the management API (tokenpool's):
 * CLIProxyAPI's key lists show API keys without state and `/auth-files` shows OAuth accounts
 * only; these routes show both kinds alike, for a console.
 *
 * | route | answer |
 * | --- | --- |
 * | `GET /credentials[?provider=]` | `{ credentials: CredentialInfo[] }` |
 * | `POST /credentials` | 201 `{ credential }`: a new API-key credential |
 * | `PATCH /credentials/:id` | `{ credential }`: the fields sent change, every other is kept |
 * | `DELETE /credentials/:id` | `{ status: "ok" }` |
 * | `POST /credentials/:id/refresh` | `{ credential }`: an OAuth account's token refreshed now |
 *
 * No answer holds a secret: keys are shown masked (`masked_key`), error texts are masked by the
 * credential's own secrets. A body that is not JSON, an unknown field or a field of the wrong
 * type is a 400 naming it, and nothing is written; an unknown id is a 404 `credential not
 * found`. A failed refresh is a 502 whose message holds no token.
 *
 * @module
 */
import { PROVIDER_KEY_DEFAULT_BASE_URLS } from "../../config-model/list-items.js";
import { safeErrorText } from "../../credentials/health.js";
import { isOAuthRefreshError, type OAuthRefresher } from "../../credentials/oauth.js";
import type { CredentialPool } from "../../credentials/pool.js";
import { json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type {
  CredentialLimits,
  CredentialModel,
  CredentialPatch,
  CredentialRecord,
} from "../../store/types.js";
import { emptyCredentialState } from "../../store/util.js";
import { maskSecret } from "../../util/secrets.js";
import { type ManagementGuard, type ManagementOkResponse, managementRouteKit } from "./common.js";

/** The pool operations the credential routes need; a gateway's `CredentialPool` fits. */
export type ManagedCredentials = Pick<CredentialPool, "list" | "get" | "add" | "update" | "remove">;

/** Dependencies of {@link credentialRoutes}. */
export interface CredentialRoutesDeps {
  guard: ManagementGuard;
  pool: ManagedCredentials;
  /** Refreshes OAuth accounts (`POST /credentials/:id/refresh`); absent, that route is a 400. */
  refresher?: Pick<OAuthRefresher, "refresh">;
  /** Called after a credential's secret changed (e.g. `oauth.forgetFailure`). */
  secretChanged?: (id: string) => void;
  maxBodyBytes: number;
}

/** A credential's health in one word. */
export type CredentialStatus = "active" | "cooling" | "disabled" | "error";

/** A credential's limits on the wire: non-negative integers, 0 = none. */
export interface CredentialLimitsView {
  rpm_limit: number;
  tpm_limit: number;
  max_concurrency: number;
  /** Quota units per calendar day (in the `quota-refill-time-zone` setting). */
  spend_per_day: number;
  /** Quota units per calendar month. */
  spend_per_month: number;
}

/** One credential as `GET /v0/management/credentials` shows it: no secret, its live state. */
export interface CredentialInfo {
  id: string;
  provider: string;
  kind: "api-key" | "oauth";
  label: string;
  base_url: string;
  enabled: boolean;
  /**
   * `disabled` (not enabled), else `cooling` (a cooldown still running, for some model or all),
   * else `error` (failures since the last success), else `active`.
   */
  status: CredentialStatus;
  /** Why it is disabled (`auto-disabled: ...` when the pool disabled it); null otherwise. */
  disabled_reason: string | null;
  /** The end (ms) of the latest cooldown still running; null when none is. */
  cooling_until: number | null;
  /** The cooldowns still running, by model (`*` = every model), each its end in ms. */
  cooldowns: Record<string, number>;
  /** Consecutive failures since the last success. */
  error_count: number;
  /** The last upstream error, masked; null when none. */
  last_error: string | null;
  /** Higher tiers are used first. */
  priority: number;
  weight: number;
  /** Credential groups; empty = the default group. */
  groups: string[];
  /** The upstream model names served; empty = any model. */
  models: string[];
  /** The API key (API-key credentials) or access token (OAuth), masked; null when none. */
  masked_key: string | null;
  /** When the OAuth access token expires (ms); null for API keys or when unknown. */
  expires_at: number | null;
  /** The OAuth account's e-mail address, when known; null otherwise. */
  email: string | null;
  limits: CredentialLimitsView;
  /** ms */
  updated_at: number;
  /** ms */
  created_at: number;
}

/** Reply of `GET /v0/management/credentials`. */
export interface CredentialListResponse {
  credentials: CredentialInfo[];
}

/** Reply of `POST`, `PATCH /v0/management/credentials[/:id]` and `POST .../:id/refresh`. */
export interface CredentialResponse {
  credential: CredentialInfo;
}

/** Reply of `DELETE /v0/management/credentials/:id`. */
export type CredentialDeleteResponse = ManagementOkResponse;

/** The limit fields of the credential bodies (non-negative integers, 0 = none). */
export type CredentialLimitFields = Partial<CredentialLimitsView>;

/** Body of `POST /v0/management/credentials`: a new API-key credential. */
export interface CredentialCreateBody extends CredentialLimitFields {
  /** One of {@link CREDENTIAL_PROVIDERS}. */
  provider: string;
  api_key: string;
  /** The upstream; default: the provider's own API (required for `qwen`). */
  base_url?: string;
  label?: string;
  /** An integer. @default 0 */
  priority?: number;
  /** An integer ≥ 1. @default 1 */
  weight?: number;
  /** Upstream model names; empty = any model. @default [] */
  models?: string[];
  /** @default [] (the default group) */
  groups?: string[];
  /** @default true */
  enabled?: boolean;
}

/** Body of `PATCH /v0/management/credentials/:id`: any of these; the rest is kept. */
export interface CredentialPatchBody extends CredentialLimitFields {
  enabled?: boolean;
  label?: string;
  priority?: number;
  weight?: number;
  base_url?: string;
  models?: string[];
  groups?: string[];
  /** A new API key (API-key credentials only); its health record starts over. */
  api_key?: string;
}

/**
 * The providers `POST /credentials` creates API-key credentials for (those the gateway has an
 * upstream adapter for that takes an API key), with their default base URL (null: `base_url` is
 * required).
 */
export const CREDENTIAL_PROVIDERS: Readonly<Record<string, string | null>> = Object.freeze({
  openai: "https://api.openai.com/v1",
  anthropic: PROVIDER_KEY_DEFAULT_BASE_URLS["claude-api-key"],
  gemini: PROVIDER_KEY_DEFAULT_BASE_URLS["gemini-api-key"],
  codex: PROVIDER_KEY_DEFAULT_BASE_URLS["codex-api-key"],
  qwen: null,
});

/** Wire limit field → the pool's {@link CredentialLimits} field. */
const LIMIT_FIELDS: Readonly<Record<keyof CredentialLimitsView, keyof CredentialLimits>> = {
  rpm_limit: "rpm",
  tpm_limit: "tpm",
  max_concurrency: "maxConcurrency",
  spend_per_day: "spendPerDay",
  spend_per_month: "spendPerMonth",
};

const LABEL_MAX = 200;
const LIST_MAX = 1000;

/** The e-mail of an OAuth account: `secret.extra.email`, else a label that is an address. */
function emailOf(c: CredentialRecord): string | null {
  if (c.kind !== "oauth") return null;
  const extra = c.secret.extra?.email;
  if (typeof extra === "string" && extra.includes("@")) return extra;
  return /^[^\s@]+@[^\s@]+$/.test(c.label) ? c.label : null;
}

/** A credential as the routes show it (no secret; error texts masked by its own secrets). */
export function credentialInfo(c: CredentialRecord, now = Date.now()): CredentialInfo {
  const cooldowns: Record<string, number> = {};
  let coolingUntil: number | null = null;
  for (const [model, until] of Object.entries(c.state.cooldowns)) {
    if (!(until > now)) continue;
    cooldowns[model] = until;
    if (coolingUntil === null || until > coolingUntil) coolingUntil = until;
  }
  const status: CredentialStatus = !c.enabled
    ? "disabled"
    : coolingUntil !== null
      ? "cooling"
      : c.state.errorCount > 0
        ? "error"
        : "active";
  const key = c.kind === "api-key" ? c.secret.apiKey : c.secret.accessToken;
  const limits = c.limits ?? {};
  return {
    id: c.id,
    provider: c.provider,
    kind: c.kind,
    label: c.label,
    base_url: c.baseUrl,
    enabled: c.enabled,
    status,
    disabled_reason: c.state.disabledReason ? safeErrorText(c, c.state.disabledReason) : null,
    cooling_until: coolingUntil,
    cooldowns,
    error_count: c.state.errorCount,
    last_error: c.state.lastError ? safeErrorText(c, c.state.lastError.message) : null,
    priority: c.priority,
    weight: c.weight,
    groups: [...c.groups],
    models: c.models.map((m) => m.name),
    masked_key: key ? maskSecret(key) : null,
    expires_at: c.kind === "oauth" ? (c.secret.expiresAt ?? null) : null,
    email: emailOf(c),
    limits: Object.fromEntries(
      Object.entries(LIMIT_FIELDS).map(([wire, field]) => [wire, limits[field] ?? 0]),
    ) as unknown as CredentialLimitsView,
    updated_at: c.updatedAt,
    created_at: c.createdAt,
  };
}

// ---------------------------------------------------------------------------------------------
// Body parsing: every field checked before anything is written.

type Body = Record<string, unknown>;

const CREATE_FIELDS = new Set([
  "provider",
  "api_key",
  "base_url",
  "label",
  "priority",
  "weight",
  "models",
  "groups",
  "enabled",
  ...Object.keys(LIMIT_FIELDS),
]);
const PATCH_FIELDS = new Set([
  "enabled",
  "label",
  "priority",
  "weight",
  "base_url",
  "models",
  "groups",
  "api_key",
  ...Object.keys(LIMIT_FIELDS),
]);

/** Reads each known field of a body, throwing a 400 that names the first bad one. */
class BodyReader {
  readonly #body: Body;
  readonly #error: (message: string) => Error;

  constructor(body: unknown, fields: ReadonlySet<string>, error: (message: string) => Error) {
    this.#error = error;
    if (typeof body !== "object" || body === null || Array.isArray(body))
      throw error("invalid body: expected a JSON object");
    for (const k of Object.keys(body))
      if (!fields.has(k))
        throw error(`unknown field ${k.slice(0, 100)} (known: ${[...fields].join(", ")})`);
    this.#body = body as Body;
  }

  has(name: string): boolean {
    return this.#body[name] !== undefined;
  }

  string(name: string, opts: { nonEmpty?: boolean; max?: number } = {}): string | undefined {
    const v = this.#body[name];
    if (v === undefined) return undefined;
    if (typeof v !== "string") throw this.#error(`${name} must be a string`);
    const s = v.trim();
    if (opts.nonEmpty && s === "") throw this.#error(`${name} must not be empty`);
    if (opts.max !== undefined && s.length > opts.max)
      throw this.#error(`${name} must be at most ${opts.max} characters`);
    return s;
  }

  url(name: string): string | undefined {
    const s = this.string(name, { nonEmpty: true });
    if (s === undefined) return undefined;
    let ok = false;
    try {
      const u = new URL(s);
      ok = u.protocol === "http:" || u.protocol === "https:";
    } catch {}
    if (!ok) throw this.#error(`${name} must be an http(s) URL`);
    return s.replace(/\/+$/, "");
  }

  boolean(name: string): boolean | undefined {
    const v = this.#body[name];
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") throw this.#error(`${name} must be a boolean`);
    return v;
  }

  integer(name: string, min: number): number | undefined {
    const v = this.#body[name];
    if (v === undefined) return undefined;
    if (!Number.isSafeInteger(v) || (v as number) < min)
      throw this.#error(
        `${name} must be an integer${min === Number.MIN_SAFE_INTEGER ? "" : ` ≥ ${min}`}`,
      );
    return v as number;
  }

  strings(name: string): string[] | undefined {
    const v = this.#body[name];
    if (v === undefined) return undefined;
    if (
      !Array.isArray(v) ||
      v.length > LIST_MAX ||
      !v.every((x) => typeof x === "string" && x.trim() !== "" && x.length <= LABEL_MAX)
    )
      throw this.#error(`${name} must be an array of non-empty strings`);
    return [...new Set(v.map((x: string) => x.trim()))];
  }

  /** The limit fields sent, as the pool's limits (0 = none, which a patch uses to clear one). */
  limits(): CredentialLimits | undefined {
    let out: CredentialLimits | undefined;
    for (const [wire, field] of Object.entries(LIMIT_FIELDS)) {
      const n = this.integer(wire, 0);
      if (n === undefined) continue;
      out ??= {};
      out[field] = n;
    }
    return out;
  }
}

/** `models` as the pool stores them, keeping the alias of a name that stays. */
function modelsOf(names: string[], existing: readonly CredentialModel[] = []): CredentialModel[] {
  return names.map((name) => existing.find((m) => m.name === name) ?? { name });
}

/**
 * The credential routes of the management API (see the module comment).
 *
 * @example
 * ```ts
 * router.add(credentialRoutes({ guard, pool: gateway.credentials.pool, maxBodyBytes: 1 << 20 }));
 * ```
 */
export function credentialRoutes(deps: CredentialRoutesDeps): Route[] {
  const kit = managementRouteKit(deps.guard, deps.maxBodyBytes);
  const { pool } = deps;
  const bad = (message: string) => kit.error(400, message);
  const found = (params: Record<string, string>): CredentialRecord => {
    const c = pool.get(params.id ?? "");
    if (!c) throw kit.error(404, "credential not found");
    return c;
  };
  const reply = (status: number, c: CredentialRecord): Reply => {
    const body: CredentialResponse = { credential: credentialInfo(c) };
    return json(status, body);
  };

  return [
    kit.route("GET", "/credentials", async (ex) => {
      const provider = new URLSearchParams(ex.search).get("provider")?.trim() || undefined;
      const now = Date.now();
      const body: CredentialListResponse = {
        credentials: pool
          .list()
          .filter((c) => provider === undefined || c.provider === provider)
          .map((c) => credentialInfo(c, now)),
      };
      return json(200, body);
    }),

    kit.route("POST", "/credentials", async (ex) => {
      const b = new BodyReader(await kit.body(ex), CREATE_FIELDS, bad);
      const provider = b.string("provider", { nonEmpty: true });
      if (provider === undefined) throw bad("provider is required");
      if (!Object.hasOwn(CREDENTIAL_PROVIDERS, provider))
        throw bad(
          `unknown provider ${provider.slice(0, 100)} (one of: ${Object.keys(CREDENTIAL_PROVIDERS).join(", ")}; OAuth accounts come from the login routes and /auth-files)`,
        );
      const apiKey = b.string("api_key", { nonEmpty: true });
      if (apiKey === undefined) throw bad("api_key is required");
      const baseUrl = b.url("base_url") ?? CREDENTIAL_PROVIDERS[provider];
      if (!baseUrl) throw bad(`base_url is required for the provider ${provider}`);
      const label = b.string("label", { max: LABEL_MAX });
      const priority = b.integer("priority", Number.MIN_SAFE_INTEGER);
      const weight = b.integer("weight", 1);
      const models = b.strings("models");
      const groups = b.strings("groups");
      const enabled = b.boolean("enabled");
      const limits = b.limits();
      const rec = await pool.add({
        provider,
        kind: "api-key",
        baseUrl,
        secret: { apiKey },
        ...(label !== undefined ? { label } : {}),
        ...(priority !== undefined ? { priority } : {}),
        ...(weight !== undefined ? { weight } : {}),
        ...(models !== undefined ? { models: modelsOf(models) } : {}),
        ...(groups !== undefined ? { groups } : {}),
        ...(enabled !== undefined ? { enabled } : {}),
        ...(limits !== undefined ? { limits } : {}),
      });
      return reply(201, pool.get(rec.id) ?? rec);
    }),

    kit.route("PATCH", "/credentials/:id", async (ex, params) => {
      const c = found(params);
      const b = new BodyReader(await kit.body(ex), PATCH_FIELDS, bad);
      const patch: CredentialPatch = {};
      const enabled = b.boolean("enabled");
      const label = b.string("label", { max: LABEL_MAX });
      const priority = b.integer("priority", Number.MIN_SAFE_INTEGER);
      const weight = b.integer("weight", 1);
      const baseUrl = b.url("base_url");
      const models = b.strings("models");
      const groups = b.strings("groups");
      const apiKey = b.string("api_key", { nonEmpty: true });
      const limits = b.limits();
      if (apiKey !== undefined && c.kind !== "api-key")
        throw bad("api_key applies to API-key credentials only (OAuth accounts: /auth-files)");
      if (enabled !== undefined) patch.enabled = enabled;
      if (label !== undefined) patch.label = label;
      if (priority !== undefined) patch.priority = priority;
      if (weight !== undefined) patch.weight = weight;
      if (baseUrl !== undefined) patch.baseUrl = baseUrl;
      if (models !== undefined) patch.models = modelsOf(models, c.models);
      if (groups !== undefined) patch.groups = groups;
      if (limits !== undefined) patch.limits = limits;
      const keyChanged = apiKey !== undefined && apiKey !== c.secret.apiKey;
      if (keyChanged) {
        patch.secret = { ...c.secret, apiKey };
        // A new key starts with a clean health record; an automatic disable stays (its probe
        // may re-enable it) unless `enabled` is sent, which is an operator's choice.
        patch.state = {
          ...emptyCredentialState(),
          lastUsedAt: c.state.lastUsedAt,
          disabledReason: enabled === undefined ? c.state.disabledReason : null,
        };
      }
      if (Object.keys(patch).length === 0 && apiKey === undefined)
        throw bad("nothing to change: send at least one field");
      // The pool's enable path clears an automatic disable reason and the error count.
      const rec = await pool.update(c.id, patch);
      if (!rec) throw kit.error(404, "credential not found");
      if (keyChanged) deps.secretChanged?.(c.id);
      return reply(200, pool.get(c.id) ?? rec);
    }),

    kit.route("DELETE", "/credentials/:id", async (_ex, params) => {
      const c = found(params);
      if (!(await pool.remove(c.id))) throw kit.error(404, "credential not found");
      return kit.ok();
    }),

    kit.route("POST", "/credentials/:id/refresh", async (_ex, params) => {
      const c = found(params);
      if (c.kind !== "oauth")
        throw bad("only OAuth credentials can be refreshed (this one is an API key)");
      if (!deps.refresher) throw bad("OAuth refresh is not available on this gateway");
      try {
        const rec = await deps.refresher.refresh(c, { reason: "manual" });
        return reply(200, pool.get(c.id) ?? rec);
      } catch (e) {
        const message = isOAuthRefreshError(e) ? e.message : "the refresh could not complete";
        // Rendered here, not thrown: the dialect's 5xx text is about saving the config.
        return json(502, { error: `refresh failed: ${safeErrorText(c, message)}` });
      }
    }),
  ];
}
