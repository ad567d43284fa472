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

import {
  authFileName,
  fileType,
  isValidAuthFileName,
  parseAuthFile,
  renderAuthFile,
} from "../../config-model/auth-file.js";
import type { AddCredentialInput } from "../../credentials/pool.js";
import { type Exchange, header, json, parseJsonBytes } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { CredentialPatch, CredentialRecord } from "../../store/types.js";
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
