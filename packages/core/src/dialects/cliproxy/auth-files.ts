/**
 * Auth files of the cliproxy dialect. CLIProxyAPI keeps OAuth token files in its `auth-dir`;
 * tokenpool keeps OAuth accounts as credentials of the pool (kind `oauth`) and shows each one
 * as a JSON file in CLIProxyAPI's token file format:
 *
 * - `GET /auth-files` → `{ files: [{ name, size, modtime, type }] }`;
 * - `GET /auth-files/download?name=` → the file (an attachment; it holds the tokens: that is
 *   this route's purpose, it is behind the management key and never logged);
 * - `POST /auth-files` (multipart `file` field, or a raw JSON body with `?name=`) → creates or
 *   replaces the credential of that file name; several file parts (CLIProxyAPI's newer UI) are
 *   saved one by one: 200 `{ status: "ok", uploaded, files }`, or 207
 *   `{ status: "partial", uploaded, files, failed }` when some were refused;
 * - `DELETE /auth-files?name=` / `?all=true` → deletes one / every OAuth credential; a JSON
 *   body `{ names: [...] }` (or an array, or `{ name }`) deletes several: 200
 *   `{ status: "ok", deleted, files }`, or 207 `{ status: "partial", deleted, files, failed }`
 *   when some were not found or invalid (CLIProxyAPI's newer UI);
 * - `PATCH /auth-files/status` `{ name, disabled }` → enables / disables the credential;
 * - `PATCH /auth-files/fields` `{ name, ... }` → sets `proxy_url`, `headers`, `priority`,
 *   `weight`, `excluded_models`, `expired` (an RFC 3339 time: the access token's expiry, so
 *   that a past time makes the next request refresh it). CLIProxyAPI's `prefix`, `note`,
 *   `websockets`, `disable_cooling` and `using_api` have no place in a tokenpool credential:
 *   their empty values are accepted (a UI sends the whole form), any other value is a 400, as
 *   is an unknown field; nothing is written then;
 * - `GET /auth-files/models?name=` → `{ models: [{ id, display_name?, owned_by }] }`: the
 *   models the credential serves (`[]` for one that serves any model, or an unknown name).
 *
 * `GET /auth-files` items also carry what CLIProxyAPI's newer UI reads: `id` and `auth_index`
 * (the credential id, the `authIndex` of `POST /api-call`), `provider`, `label`, `email`,
 * `project_id`, `status` (`active`, `error` or `disabled`), `status_message`, `disabled`,
 * `unavailable` (cooling down), `runtime_only: false`, `source: "file"`, `priority`, `weight`,
 * `updated_at`, and `success` / `failed` / `recent_requests` from the request log.
 *
 * File names and credential ids: a file uploaded as `acc1.json` becomes the credential with the
 * id `acc1.json`. OAuth credentials created otherwise (the antigravity dialect, the SDK) are shown as
 * `<id>.json`, with characters outside `[A-Za-z0-9._-]` replaced by `_`. A name must match
 * `[A-Za-z0-9._-]+\.json`, without `..`, at most 128 characters; anything else (path
 * separators, encoded slashes, NUL, absolute paths) is a 400 before any lookup.
 *
 * @module
 */

import {
  authFileName,
  fileType,
  isValidAuthFileName,
  parseAuthFile,
  renderAuthFile,
} from "../../config-model/auth-file.js";
import type { AddCredentialInput } from "../../credentials/pool.js";
import { isGatewayError } from "../../errors.js";
import { type Exchange, header, json, parseJsonBytes } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import { acceptsSetting } from "../../settings/table.js";
import type { CredentialPatch, CredentialRecord, Store } from "../../store/types.js";
import { emptyCredentialState } from "../../store/util.js";
import { type CredentialActivity, credentialActivity, emptyActivity } from "./activity.js";
import { type ManagementGuard, managementError, managementOk, managementRoute } from "./common.js";

/** The pool operations auth files need; a gateway's `CredentialPool` fits. */
export interface AuthFileCredentials {
  list(): CredentialRecord[];
  get(id: string): CredentialRecord | null;
  add(input: AddCredentialInput): Promise<CredentialRecord>;
  update(id: string, patch: CredentialPatch): Promise<CredentialRecord | null>;
  remove(id: string): Promise<boolean>;
  /** Enables or disables as an operator (a pool's `setEnabled`); absent: `update({ enabled })`. */
  setEnabled?(id: string, enabled: boolean, reason?: string): Promise<void>;
}

/** Dependencies of {@link authFileRoutes}. */
export interface AuthFileRoutesDeps {
  guard: ManagementGuard;
  pool: AuthFileCredentials;
  /**
   * Largest accepted upload (the whole request, multipart envelope included).
   * @default 1048576 (1 MiB)
   */
  maxFileBytes?: number;
  /** Called after a credential's secret changed (e.g. `oauth.forgetFailure`). */
  secretChanged?: (id: string) => void;
  /** The store: request counts of each file in `GET /auth-files`; absent, they are 0. */
  store?: Store;
  /** Largest JSON body of the PATCH and DELETE routes. @default 1048576 */
  maxBodyBytes?: number;
}

/** One row of `GET /auth-files`. */
export interface AuthFileInfo {
  name: string;
  size: number;
  /** ISO time of the credential's last change. */
  modtime: string;
  /** CLIProxyAPI's token type: `claude`, `codex`, `gemini`, `qwen`, `antigravity`, `gemini-web` ... */
  type: string;
  /** The credential id (also `auth_index`). */
  id: string;
  auth_index: string;
  /** tokenpool's provider of the credential. */
  provider: string;
  label: string;
  email?: string;
  project_id?: string;
  status: "active" | "error" | "disabled";
  status_message: string;
  disabled: boolean;
  /** Cooling down after an upstream refusal. */
  unavailable: boolean;
  runtime_only: false;
  source: "file";
  priority: number;
  weight: number;
  /** ISO time of the last change. */
  updated_at: string;
  success: number;
  failed: number;
  recent_requests: CredentialActivity["recent_requests"];
}

/** Reply of `POST /v0/management/auth-files` with several file parts. */
export interface AuthFileUploadResponse {
  status: "ok" | "partial";
  uploaded: number;
  files: string[];
  /** With `status: "partial"` (HTTP 207). */
  failed?: { name: string; error: string }[];
}

/** Reply of `DELETE /v0/management/auth-files` with several names. */
export interface AuthFileBulkDeleteResponse {
  status: "ok" | "partial";
  deleted: number;
  files: string[];
  /** With `status: "partial"` (HTTP 207). */
  failed?: { name: string; error: string }[];
}

/** Body of `PATCH /v0/management/auth-files/status`. */
export interface AuthFileStatusBody {
  name: string;
  disabled: boolean;
}

/** Reply of `PATCH /v0/management/auth-files/status`. */
export interface AuthFileStatusResponse {
  status: "ok";
  disabled: boolean;
}

/** Body of `PATCH /v0/management/auth-files/fields`. */
export interface AuthFileFieldsBody {
  name: string;
  proxy_url?: string;
  headers?: Record<string, string>;
  priority?: number;
  weight?: number | null;
  excluded_models?: string[] | string;
  /** RFC 3339: the access token's expiry. */
  expired?: string;
}

/** Reply of `GET /v0/management/auth-files/models`. */
export interface AuthFileModelsResponse {
  models: { id: string; display_name?: string; owned_by: string }[];
}

/** Reply of `GET /v0/management/auth-files`. */
export interface AuthFileListResponse {
  files: AuthFileInfo[];
}

/**
 * An auth file (`GET /auth-files/download`, `POST /auth-files`): CLIProxyAPI's token file for
 * its `type`, e.g. `{ type: "claude", access_token, refresh_token, expired, email }`, or for
 * `gemini` an oauth2 token under `token`.
 */
export interface AuthFileContent {
  type: string;
  access_token?: string;
  refresh_token?: string;
  id_token?: string;
  /** RFC 3339. */
  expired?: string;
  email?: string;
  project_id?: string;
  disabled?: boolean;
  token?: Record<string, unknown>;
  [field: string]: unknown;
}

/** Reply of `DELETE /v0/management/auth-files?all=true`. */
export interface AuthFileDeleteAllResponse {
  status: "ok";
  deleted: number;
}

/** One part of a `multipart/form-data` body. */
export interface MultipartPart {
  /** The part's form field name. */
  field: string;
  /** The part's file name; absent for a plain form field. */
  filename?: string;
  data: Buffer;
}

/** One file part of a `multipart/form-data` body. */
export interface MultipartFile {
  /** The part's form field name. */
  field: string;
  filename: string;
  data: Buffer;
}

/**
 * Every named part of a `multipart/form-data` body (file parts and plain fields), in order.
 * Bounded by the body already read; returns null when the body is not a well-formed form.
 */
export function parseMultipartParts(body: Buffer, contentType: string): MultipartPart[] | null {
  const m = /boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) return null;
  const delim = Buffer.from(`--${boundary}`);
  const parts: MultipartPart[] = [];
  let pos = body.indexOf(delim);
  if (pos < 0) return null;
  while (pos >= 0) {
    let start = pos + delim.length;
    if (body.subarray(start, start + 2).toString() === "--") return parts;
    if (body.subarray(start, start + 2).toString() === "\r\n") start += 2;
    const headEnd = body.indexOf("\r\n\r\n", start);
    if (headEnd < 0) return null;
    const next = body.indexOf(Buffer.from(`\r\n--${boundary}`), headEnd + 4);
    if (next < 0) return null;
    const head = body.subarray(start, headEnd).toString("utf8");
    const disp = /content-disposition:[^\r\n]*/i.exec(head)?.[0] ?? "";
    const field = /\bname="([^"]*)"/i.exec(disp)?.[1];
    const filename = /\bfilename="([^"]*)"/i.exec(disp)?.[1];
    const data = body.subarray(headEnd + 4, next);
    if (field !== undefined)
      parts.push(filename === undefined ? { field, data } : { field, filename, data });
    pos = next + 2;
  }
  return null;
}

/**
 * Every file part (a part with a `filename`) of a `multipart/form-data` body, in order, whatever
 * its field name (as CLIProxyAPI collects them). Bounded by the body already read; returns null
 * when the body is not a well-formed form.
 */
export function parseMultipartFiles(body: Buffer, contentType: string): MultipartFile[] | null {
  const parts = parseMultipartParts(body, contentType);
  return parts === null ? null : parts.filter((p): p is MultipartFile => p.filename !== undefined);
}

/**
 * Extracts the first part of field `field` with a file name from a `multipart/form-data` body.
 * Returns null when the body is not a well-formed form with such a file.
 */
export function parseMultipartFile(
  body: Buffer,
  contentType: string,
  field = "file",
): { filename: string; data: Buffer } | null {
  const part = parseMultipartFiles(body, contentType)?.find((f) => f.field === field);
  return part ? { filename: part.filename, data: part.data } : null;
}

function fileNotFound(): Error {
  return managementError(404, "file not found");
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** CLIProxyAPI's auth file fields with no tokenpool counterpart, and their empty values. */
const EMPTY_ONLY: Readonly<Record<string, (v: unknown) => boolean>> = {
  prefix: (v) => v === "" || v === null,
  note: (v) => v === "" || v === null,
  websockets: (v) => v === false || v === null,
  disable_cooling: (v) => v === false || v === null,
  "disable-cooling": (v) => v === false || v === null,
  using_api: (v) => v === false || v === null,
};
/** Field aliases (CLIProxyAPI accepts both spellings). */
const FIELD_ALIASES: Readonly<Record<string, string>> = {
  "proxy-url": "proxy_url",
  "excluded-models": "excluded_models",
  "disable-cooling": "disable_cooling",
};

function stringList(v: unknown): string[] | null {
  const items = typeof v === "string" ? v.split(/[,\n]/) : Array.isArray(v) ? v : null;
  if (items === null || !items.every((m) => typeof m === "string")) return null;
  return [...new Set((items as string[]).map((m) => m.trim()).filter((m) => m !== ""))];
}

/**
 * The credential patch of a `PATCH /auth-files/fields` body (without `name` and `auth_index`);
 * throws the 400 of the first bad field. Nothing is written before it returns.
 */
function fieldsPatch(c: CredentialRecord, body: Record<string, unknown>): CredentialPatch {
  const patch: CredentialPatch = {};
  const seen = new Map<string, string>();
  let any = false;
  for (const [raw, v] of Object.entries(body)) {
    if (raw === "name" || raw === "auth_index") continue;
    const f = FIELD_ALIASES[raw] ?? raw;
    const other = seen.get(f);
    if (other !== undefined)
      throw managementError(
        400,
        `auth file fields "${other}" and "${raw}" refer to the same field`,
      );
    seen.set(f, raw);
    any = true;
    const bad = (what: string) => managementError(400, `${raw} must be ${what}`);
    switch (f) {
      case "proxy_url": {
        const url = typeof v === "string" ? v.trim() : null;
        if (url === null || !acceptsSetting("proxy-url", url))
          throw bad("empty or an http(s):// or socks5(h):// URL");
        patch.proxyUrl = url;
        break;
      }
      case "headers": {
        if (v === null) patch.headers = {};
        else if (isMap(v) && Object.values(v).every((h) => typeof h === "string"))
          patch.headers = Object.fromEntries(
            Object.entries(v as Record<string, string>)
              .map(([k, h]) => [k.trim(), h.trim()])
              .filter(([k]) => k !== ""),
          );
        else throw bad("an object of strings");
        break;
      }
      case "priority":
        if (!Number.isSafeInteger(v)) throw bad("an integer");
        patch.priority = v as number;
        break;
      case "weight":
        if (v === null) patch.weight = 1;
        else if (Number.isSafeInteger(v) && (v as number) >= 0) patch.weight = v as number;
        else throw managementError(400, "weight must be an integer");
        break;
      case "excluded_models": {
        const list = v === null ? [] : stringList(v);
        if (list === null) throw bad("a list of model names");
        patch.excludedModels = list;
        break;
      }
      case "expired": {
        const t = typeof v === "string" ? Date.parse(v) : Number.NaN;
        if (!Number.isFinite(t)) throw bad("an RFC 3339 time");
        patch.secret = { ...c.secret, expiresAt: t };
        break;
      }
      default: {
        const empty = EMPTY_ONLY[f] ?? EMPTY_ONLY[raw];
        if (!empty) throw managementError(400, `unknown auth file field "${raw}"`);
        if (!empty(v))
          throw managementError(400, `auth file field "${raw}" is not supported by tokenpool`);
      }
    }
  }
  if (!any) throw managementError(400, "no fields to update");
  return patch;
}

function checkName(name: string | null): string {
  if (name === null || name === "") throw managementError(400, "missing name");
  if (!isValidAuthFileName(name)) throw managementError(400, "invalid name");
  return name;
}

/**
 * The auth-file routes.
 *
 * @example
 * ```ts
 * router.add(authFileRoutes({ guard, pool: gateway.credentials.pool }));
 * ```
 */
export function authFileRoutes(deps: AuthFileRoutesDeps): Route[] {
  const { guard, pool } = deps;
  const maxFileBytes = deps.maxFileBytes ?? 1 << 20;
  const maxBody = deps.maxBodyBytes ?? 1 << 20;
  /** A JSON body of the PATCH / DELETE routes; `undefined` when empty. */
  const jsonBody = async (ex: Exchange): Promise<unknown> => {
    const raw = await ex.body(maxBody);
    if (raw.length === 0 || raw.toString("utf8").trim() === "") return undefined;
    return parseJsonBytes(raw, () => managementError(400, "invalid request body"));
  };
  /** The OAuth credential a body names (`name`, else `auth_index` = its id). */
  const named = (body: Record<string, unknown>): CredentialRecord => {
    const name = body.name;
    if (typeof name !== "string" || name.trim() === "")
      throw managementError(400, "name is required");
    const c =
      (isValidAuthFileName(name.trim()) ? byName(name.trim()) : null) ??
      (typeof body.auth_index === "string"
        ? (oauthCreds().find((x) => x.id === body.auth_index) ?? null)
        : null);
    if (!c) throw managementError(404, "auth file not found");
    return c;
  };
  const oauthCreds = () => pool.list().filter((c) => c.kind === "oauth");
  const byName = (name: string) => oauthCreds().find((c) => authFileName(c) === name) ?? null;

  const save = async (name: string, raw: Buffer): Promise<void> => {
    const value = parseJsonBytes(raw, () => managementError(400, "invalid body"));
    const parsed = parseAuthFile(value);
    if (!parsed.ok) throw managementError(400, parsed.error);
    const existing = byName(name) ?? pool.get(name);
    if (existing && existing.kind !== "oauth") throw managementError(400, "invalid name");
    if (existing) {
      const { baseUrl: _b, ...patch } = parsed.fields;
      await pool.update(existing.id, {
        ...patch,
        // Keep the upstream the operator chose; a new token starts with a clean health record.
        state: emptyCredentialState(),
      });
      deps.secretChanged?.(existing.id);
    } else await pool.add({ id: name, ...parsed.fields });
  };

  return [
    managementRoute(guard, "GET", "/auth-files", async () => {
      const now = Date.now();
      const activity = deps.store ? await credentialActivity(deps.store, now) : new Map();
      const files: AuthFileInfo[] = oauthCreds().map((c) => {
        const file = renderAuthFile(c);
        const a: CredentialActivity = activity.get(c.id) ?? emptyActivity(now);
        const cooling = Object.values(c.state.cooldowns).some((t) => t > now);
        const error =
          c.state.disabledReason ??
          (c.state.errorCount > 0 ? c.state.lastError?.message : undefined);
        const info: AuthFileInfo = {
          name: authFileName(c),
          size: Buffer.byteLength(JSON.stringify(file, null, 2)),
          modtime: new Date(c.updatedAt).toISOString(),
          type: fileType(c.provider),
          id: c.id,
          auth_index: c.id,
          provider: c.provider,
          label: c.label,
          status: !c.enabled ? "disabled" : error ? "error" : "active",
          status_message: error ?? "",
          disabled: !c.enabled,
          unavailable: cooling,
          runtime_only: false,
          source: "file",
          priority: c.priority,
          weight: c.weight,
          updated_at: new Date(c.updatedAt).toISOString(),
          success: a.success,
          failed: a.failed,
          recent_requests: a.recent_requests,
        };
        if (typeof file.email === "string") info.email = file.email;
        if (typeof file.project_id === "string") info.project_id = file.project_id;
        return info;
      });
      return json(200, { files });
    }),

    managementRoute(guard, "PATCH", "/auth-files/status", async (ex) => {
      const body = await jsonBody(ex);
      if (!isMap(body)) throw managementError(400, "invalid request body");
      const c = named(body);
      if (typeof body.disabled !== "boolean") throw managementError(400, "disabled is required");
      const enabled = !body.disabled;
      if (pool.setEnabled) await pool.setEnabled(c.id, enabled);
      else await pool.update(c.id, { enabled });
      const reply: AuthFileStatusResponse = { status: "ok", disabled: body.disabled };
      return json(200, reply);
    }),

    managementRoute(guard, "PATCH", "/auth-files/fields", async (ex) => {
      const body = await jsonBody(ex);
      if (!isMap(body)) throw managementError(400, "invalid request body");
      const c = named(body);
      const patch = fieldsPatch(c, body);
      await pool.update(c.id, patch);
      if (patch.secret) deps.secretChanged?.(c.id);
      return managementOk();
    }),

    managementRoute(guard, "GET", "/auth-files/models", async (ex) => {
      const name = new URLSearchParams(ex.search).get("name")?.trim();
      if (!name) throw managementError(400, "name is required");
      const c = isValidAuthFileName(name) ? byName(name) : null;
      const models: AuthFileModelsResponse["models"] = (c?.models ?? [])
        .map((m) => m.alias || m.name)
        .filter((id, i, all) => !c?.excludedModels.includes(id) && all.indexOf(id) === i)
        .map((id) => ({ id, owned_by: c!.provider }));
      return json(200, { models });
    }),

    managementRoute(guard, "GET", "/auth-files/download", async (ex) => {
      const name = checkName(new URLSearchParams(ex.search).get("name"));
      const c = byName(name);
      if (!c) throw fileNotFound();
      return {
        status: 200,
        headers: {
          "content-type": "application/json",
          "content-disposition": `attachment; filename="${name}"`,
          "cache-control": "no-store",
        },
        body: JSON.stringify(renderAuthFile(c), null, 2),
      };
    }),

    managementRoute(guard, "POST", "/auth-files", async (ex: Exchange) => {
      const type = header(ex.headers, "content-type") ?? "";
      const body = await ex.body(maxFileBytes);
      if (/^multipart\/form-data/i.test(type)) {
        const parts = parseMultipartFiles(body, type);
        if (parts === null) throw managementError(400, "invalid multipart form");
        if (parts.length === 0) throw managementError(400, "no files uploaded");
        if (parts.length === 1) {
          const [part] = parts as [MultipartFile];
          await save(checkName(part.filename), part.data);
          return managementOk();
        }
        // Several files (CLIProxyAPI's newer UI): each is saved on its own; a refused one is
        // reported by name, never silently skipped (the UI trusts `uploaded` and `failed`).
        const files: string[] = [];
        const failed: { name: string; error: string }[] = [];
        for (const part of parts) {
          try {
            await save(checkName(part.filename), part.data);
            files.push(part.filename);
          } catch (e) {
            if (!isGatewayError(e) || e.status >= 500) throw e;
            failed.push({ name: part.filename, error: e.message });
          }
        }
        const reply: AuthFileUploadResponse =
          failed.length === 0
            ? { status: "ok", uploaded: files.length, files }
            : { status: "partial", uploaded: files.length, files, failed };
        return json(failed.length === 0 ? 200 : 207, reply);
      } else {
        const name = checkName(new URLSearchParams(ex.search).get("name"));
        await save(name, body);
      }
      return managementOk();
    }),

    managementRoute(guard, "DELETE", "/auth-files", async (ex) => {
      const q = new URLSearchParams(ex.search);
      if (q.get("all") === "true" || q.get("all") === "1" || q.get("all") === "*") {
        let deleted = 0;
        for (const c of oauthCreds()) if (await pool.remove(c.id)) deleted++;
        return managementOk({ deleted });
      }
      let names = q.getAll("name");
      if (names.length === 0) {
        const body = await jsonBody(ex);
        if (body !== undefined) {
          const list = Array.isArray(body)
            ? body
            : isMap(body)
              ? [
                  ...(body.name !== undefined ? [body.name] : []),
                  ...(Array.isArray(body.names)
                    ? body.names
                    : body.names === undefined
                      ? []
                      : [null]),
                ]
              : null;
          if (list === null || !list.every((n) => typeof n === "string"))
            throw managementError(400, "invalid request body");
          names = [...new Set((list as string[]).map((n) => n.trim()).filter((n) => n !== ""))];
          if (names.length === 0) throw managementError(400, "invalid name");
        }
      }
      if (names.length <= 1) {
        const name = checkName(names[0] ?? null);
        const c = byName(name);
        if (!c || !(await pool.remove(c.id))) throw fileNotFound();
        return managementOk();
      }
      const files: string[] = [];
      const failed: { name: string; error: string }[] = [];
      for (const name of names) {
        if (!isValidAuthFileName(name)) {
          failed.push({ name, error: "invalid name" });
          continue;
        }
        const c = byName(name);
        if (c && (await pool.remove(c.id))) files.push(name);
        else failed.push({ name, error: "auth file not found" });
      }
      const reply: AuthFileBulkDeleteResponse =
        failed.length === 0
          ? { status: "ok", deleted: files.length, files }
          : { status: "partial", deleted: files.length, files, failed };
      return json(failed.length === 0 ? 200 : 207, reply);
    }),
  ];
}
