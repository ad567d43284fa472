/**
 * Auth files of the cliproxy dialect. CLIProxyAPI keeps OAuth token files in its `auth-dir`;
 * tokenpool keeps OAuth accounts as credentials of the pool (kind `oauth`) and shows each one
 * as a JSON file in CLIProxyAPI's token file format:
 *
 * - `GET /auth-files` → `{ files: [{ name, size, modtime, type }] }`;
 * - `GET /auth-files/download?name=` → the file (an attachment; it holds the tokens: that is
 *   this route's purpose, it is behind the management key and never logged);
 * - `POST /auth-files` (multipart `file` field, or a raw JSON body with `?name=`) → creates or
 *   replaces the credential of that file name;
 * - `DELETE /auth-files?name=` / `?all=true` → deletes one / every OAuth credential.
 *
 * File names and credential ids: a file uploaded as `acc1.json` becomes the credential with the
 * id `acc1.json`. OAuth credentials created otherwise (the antigravity dialect, the SDK) are shown as
 * `<id>.json`, with characters outside `[A-Za-z0-9._-]` replaced by `_`. A name must match
 * `[A-Za-z0-9._-]+\.json`, without `..`, at most 128 characters; anything else (path
 * separators, encoded slashes, NUL, absolute paths) is a 400 before any lookup.
 *
 * @module
 */
import type { AddCredentialInput } from "../../credentials/pool.js";
import { type Exchange, header, json, parseJsonBytes } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { CredentialPatch, CredentialRecord, CredentialSecret } from "../../store/types.js";
import { emptyCredentialState } from "../../store/util.js";
import { type ManagementGuard, managementError, managementOk, managementRoute } from "./common.js";

/** The pool operations auth files need; a gateway's `CredentialPool` fits. */
export interface AuthFileCredentials {
  list(): CredentialRecord[];
  get(id: string): CredentialRecord | null;
  add(input: AddCredentialInput): Promise<CredentialRecord>;
  update(id: string, patch: CredentialPatch): Promise<CredentialRecord | null>;
  remove(id: string): Promise<boolean>;
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
}

/** One row of `GET /auth-files`. */
export interface AuthFileInfo {
  name: string;
  size: number;
  /** ISO time of the credential's last change. */
  modtime: string;
  /** CLIProxyAPI's token type: `claude`, `codex`, `gemini`, `qwen`, `antigravity`, `gemini-web` ... */
  type: string;
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

const NAME_RE = /^[A-Za-z0-9._-]+\.json$/;
const MAX_NAME = 128;

/** Whether `name` is an acceptable auth file name. */
export function isValidAuthFileName(name: string): boolean {
  return name.length <= MAX_NAME && NAME_RE.test(name) && !name.includes("..");
}

/** A file `type` → the pool provider and its default upstream. */
const TYPES: Record<string, { provider: string; baseUrl: string }> = {
  claude: { provider: "anthropic", baseUrl: "https://api.anthropic.com" },
  anthropic: { provider: "anthropic", baseUrl: "https://api.anthropic.com" },
  codex: { provider: "codex", baseUrl: "https://chatgpt.com/backend-api/codex" },
  gemini: { provider: "gemini", baseUrl: "https://cloudcode-pa.googleapis.com" },
  "gemini-cli": { provider: "gemini", baseUrl: "https://cloudcode-pa.googleapis.com" },
  google: { provider: "gemini", baseUrl: "https://cloudcode-pa.googleapis.com" },
  antigravity: {
    provider: "antigravity",
    baseUrl: "https://daily-cloudcode-pa.sandbox.googleapis.com",
  },
  qwen: { provider: "qwen", baseUrl: "https://portal.qwen.ai/v1" },
  "gemini-web": { provider: "gemini-web", baseUrl: "https://gemini.google.com" },
  openai: { provider: "openai", baseUrl: "https://api.openai.com/v1" },
};

/** A pool provider → the `type` written in its file. */
function fileType(provider: string): string {
  if (provider === "anthropic") return "claude";
  if (provider === "gemini-cli") return "gemini";
  return provider;
}

/** Extra secret fields copied between file and credential: file field → `secret.extra` key. */
const EXTRA_FIELDS: Record<string, string> = {
  account_id: "accountId",
  resource_url: "resourceUrl",
  client_id: "clientId",
  client_secret: "clientSecret",
  token_uri: "tokenUrl",
  secure_1psid: "secure1psid",
  secure_1psidts: "secure1psidts",
};

/** The file name of an OAuth credential. */
export function authFileName(c: CredentialRecord): string {
  if (isValidAuthFileName(c.id)) return c.id;
  const base = c.id.replace(/[^A-Za-z0-9._-]/g, "_").replace(/\.{2,}/g, "_");
  return `${base.slice(0, MAX_NAME - 5)}.json`;
}

function iso(ms: number | undefined): string | undefined {
  return ms === undefined || !Number.isFinite(ms) ? undefined : new Date(ms).toISOString();
}

/** Renders a credential in CLIProxyAPI's token file format for its provider. */
export function renderAuthFile(c: CredentialRecord): Record<string, unknown> {
  const s = c.secret;
  const extra = s.extra ?? {};
  const type = fileType(c.provider);
  const out: Record<string, unknown> = {};
  const put = (k: string, v: unknown) => {
    if (v !== undefined && v !== "") out[k] = v;
  };
  if (type === "gemini") {
    // gemini-cli keeps an oauth2.Token under `token`.
    const token: Record<string, unknown> = {};
    if (s.accessToken) token.access_token = s.accessToken;
    if (s.refreshToken) token.refresh_token = s.refreshToken;
    token.token_type = "Bearer";
    if (s.expiresAt !== undefined) token.expiry = iso(s.expiresAt);
    if (extra.clientId) token.client_id = extra.clientId;
    if (extra.clientSecret) token.client_secret = extra.clientSecret;
    if (extra.tokenUrl) token.token_uri = extra.tokenUrl;
    out.token = token;
    put("project_id", c.projectIds.join(","));
    put("email", c.label);
  } else {
    put("id_token", s.idToken);
    put("access_token", s.accessToken);
    put("refresh_token", s.refreshToken);
    put("expired", iso(s.expiresAt));
    put("email", c.label);
    if (c.projectIds.length > 0) put("project_id", c.projectIds[0]);
    for (const [file, key] of Object.entries(EXTRA_FIELDS)) put(file, extra[key]);
  }
  put("last_refresh", iso(c.updatedAt));
  out.type = type;
  if (!c.enabled) out.disabled = true;
  return out;
}

/** A time from a file: an RFC 3339 string, or seconds / ms since the epoch. */
function parseTime(v: unknown): number | undefined {
  if (typeof v === "string" && v.trim() !== "") {
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  }
  if (typeof v === "number" && Number.isFinite(v) && v > 0) return v < 1e12 ? v * 1000 : v;
  return undefined;
}

const str = (v: unknown): string | undefined =>
  typeof v === "string" && v.trim() !== "" ? v.trim() : undefined;

/** What an uploaded file becomes; `null` with a reason when it is not a token file we know. */
export function parseAuthFile(
  value: unknown,
): { fields: Omit<AddCredentialInput, "id">; ok: true } | { ok: false; error: string } {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return { ok: false, error: "invalid auth file" };
  const f = value as Record<string, unknown>;
  const type = str(f.type)?.toLowerCase();
  const known = type ? TYPES[type] : undefined;
  if (!known) return { ok: false, error: "unknown auth file type" };
  const token =
    typeof f.token === "object" && f.token !== null ? (f.token as Record<string, unknown>) : {};
  const secret: CredentialSecret = {};
  const accessToken = str(f.access_token) ?? str(token.access_token);
  const refreshToken = str(f.refresh_token) ?? str(token.refresh_token);
  const idToken = str(f.id_token);
  if (accessToken) secret.accessToken = accessToken;
  if (refreshToken) secret.refreshToken = refreshToken;
  if (idToken) secret.idToken = idToken;
  let expiresAt = parseTime(f.expired) ?? parseTime(f.expiry) ?? parseTime(token.expiry);
  if (expiresAt === undefined && typeof f.expires_in === "number" && f.timestamp !== undefined) {
    const at = parseTime(f.timestamp);
    if (at !== undefined) expiresAt = at + f.expires_in * 1000;
  }
  if (expiresAt !== undefined) secret.expiresAt = expiresAt;
  const extra: Record<string, string> = {};
  for (const [file, key] of Object.entries(EXTRA_FIELDS)) {
    const v = str(f[file]) ?? str(token[file]);
    if (v) extra[key] = v;
  }
  if (Object.keys(extra).length > 0) secret.extra = extra;
  const usable =
    known.provider === "gemini-web"
      ? extra.secure1psid !== undefined
      : secret.accessToken !== undefined || secret.refreshToken !== undefined;
  if (!usable) return { ok: false, error: "auth file holds no token" };
  const project = str(f.project_id);
  let baseUrl = known.baseUrl;
  if (known.provider === "qwen" && extra.resourceUrl) {
    const host = extra.resourceUrl.replace(/^https?:\/\//, "").replace(/\/+$/, "");
    if (/^[A-Za-z0-9.-]+(:\d+)?$/.test(host)) baseUrl = `https://${host}/v1`;
  }
  return {
    ok: true,
    fields: {
      provider: known.provider,
      kind: "oauth",
      label: str(f.email) ?? "",
      baseUrl,
      secret,
      projectIds: project
        ? project
            .split(",")
            .map((p) => p.trim())
            .filter(Boolean)
        : [],
      enabled: f.disabled !== true,
    },
  };
}

/**
 * Extracts the `file` part of a `multipart/form-data` body: its file name and bytes. Bounded
 * by the body already read; returns null when the body is not a well-formed form with a file.
 */
export function parseMultipartFile(
  body: Buffer,
  contentType: string,
  field = "file",
): { filename: string; data: Buffer } | null {
  const m = /boundary=(?:"([^"]{1,70})"|([^\s;]{1,70}))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary) return null;
  const delim = Buffer.from(`--${boundary}`);
  let pos = body.indexOf(delim);
  while (pos >= 0) {
    let start = pos + delim.length;
    if (body.subarray(start, start + 2).toString() === "--") return null;
    if (body.subarray(start, start + 2).toString() === "\r\n") start += 2;
    const headEnd = body.indexOf("\r\n\r\n", start);
    if (headEnd < 0) return null;
    const next = body.indexOf(Buffer.from(`\r\n--${boundary}`), headEnd + 4);
    if (next < 0) return null;
    const head = body.subarray(start, headEnd).toString("utf8");
    const disp = /content-disposition:[^\r\n]*/i.exec(head)?.[0] ?? "";
    const name = /\bname="([^"]*)"/i.exec(disp)?.[1];
    const filename = /\bfilename="([^"]*)"/i.exec(disp)?.[1];
    if (name === field && filename !== undefined)
      return { filename, data: body.subarray(headEnd + 4, next) };
    pos = next + 2;
  }
  return null;
}

function fileNotFound(): Error {
  return managementError(404, "file not found");
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
      const files: AuthFileInfo[] = oauthCreds().map((c) => ({
        name: authFileName(c),
        size: Buffer.byteLength(JSON.stringify(renderAuthFile(c), null, 2)),
        modtime: new Date(c.updatedAt).toISOString(),
        type: fileType(c.provider),
      }));
      return json(200, { files });
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
        const part = parseMultipartFile(body, type);
        if (!part) throw managementError(400, "no file uploaded");
        const name = checkName(part.filename);
        await save(name, part.data);
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
      const name = checkName(q.get("name"));
      const c = byName(name);
      if (!c || !(await pool.remove(c.id))) throw fileNotFound();
      return managementOk();
    }),
  ];
}
