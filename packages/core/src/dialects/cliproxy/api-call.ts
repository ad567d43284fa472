/**
 * `POST /v0/management/api-call` (CLIProxyAPI's generic call through a credential, which its
 * newer UI uses for model lists, quotas and connectivity tests): `{ authIndex, method, url,
 * header?, data? }` → `{ status_code, header, body }`, whatever the upstream's status.
 *
 * Unlike CLIProxyAPI's, it is never an open proxy:
 * - a credential is required (`authIndex` / `auth_index` = the credential id, as
 *   `GET /auth-files` shows it; without one, the API-key credential whose key a header carries
 *   and whose upstream the URL is on), and the URL must be on that credential's own upstream:
 *   the same host and port as its base URL, and `https` when the base URL is;
 * - `$TOKEN$` in a header value becomes the credential's API key or OAuth access token (as
 *   stored: an expired token is not refreshed here); a `Host` header, hop-by-hop headers and
 *   header names or values with line breaks are refused;
 * - the answer is redacted by the values of the credential's secrets (never by guessing key
 *   shapes), in the body and in the header values; the body is cut at 4 MiB;
 * - the call goes through the gateway's upstream client with the credential's proxy (else the
 *   global `proxy-url`), 60 s at most.
 * Errors are `{ error }`: 400 `invalid body`, `missing method`, `invalid method`, `missing url`,
 * `invalid url`, `auth_index is required`, `url is not on the credential's upstream`,
 * `header <name> is not allowed`, `auth token not found`; 404 `credential not found`;
 * 502 `request failed`.
 *
 * @module
 */
import type { Dispatcher } from "undici";
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { UpstreamClient } from "../../net/upstream.js";
import type { CredentialRecord } from "../../store/types.js";
import { type ManagementGuard, managementError, managementRouteKit } from "./common.js";

/** What `POST /api-call` needs. */
export interface ApiCallDeps {
  pool: { get(id: string): CredentialRecord | null; list?(): CredentialRecord[] };
  /** The gateway's upstream client (the one OAuth token calls use). */
  http: UpstreamClient;
  /** The global `proxy-url` setting. */
  proxyUrl?: () => string;
  maxBodyBytes: number;
  /** @default 60000 */
  timeoutMs?: number;
}

/** Body of `POST /v0/management/api-call`. */
export interface ManagementApiCallBody {
  /** The credential id (`auth_index` and `AuthIndex` are accepted too). */
  authIndex: string;
  method: string;
  url: string;
  header?: Record<string, string>;
  /** The raw request body. */
  data?: string;
}

/** Reply of `POST /v0/management/api-call`. */
export interface ManagementApiCallResponse {
  status_code: number;
  header: Record<string, string[]>;
  body: string;
}

const METHODS = new Set(["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]);
/** Headers a caller may not set: the connection's own, and the host (no host override). */
const REFUSED_HEADERS = new Set([
  "host",
  "connection",
  "keep-alive",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "content-length",
]);
const MAX_ANSWER_BYTES = 4 << 20;
const TOKEN = "$TOKEN$";

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The secret values of a credential, longest first (so that one inside another is all hidden). */
function secretValues(c: CredentialRecord): string[] {
  const s = c.secret;
  const values = [
    s.apiKey,
    s.accessToken,
    s.refreshToken,
    s.idToken,
    ...Object.values(s.extra ?? {}),
  ];
  return [
    ...new Set(values.filter((v): v is string => typeof v === "string" && v.length >= 6)),
  ].sort((a, b) => b.length - a.length);
}

function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const v of secrets) out = out.split(v).join("[redacted]");
  return out;
}

/** Whether `url` is on the credential's upstream: its base URL's host and port, `https` if it is. */
function onUpstream(url: URL, c: CredentialRecord): boolean {
  let base: URL;
  try {
    base = new URL(c.baseUrl);
  } catch {
    return false;
  }
  return url.host === base.host && (base.protocol !== "https:" || url.protocol === "https:");
}

/** `POST /api-call`. */
export function apiCallRoutes(guard: ManagementGuard, deps: ApiCallDeps): Route[] {
  const { route, body: readBody } = managementRouteKit(guard, deps.maxBodyBytes);
  const timeoutMs = deps.timeoutMs ?? 60_000;
  return [
    route("POST", "/api-call", async (ex) => {
      const body = await readBody(ex);
      if (!isMap(body)) throw managementError(400, "invalid body");
      const index = body.authIndex ?? body.auth_index ?? body.AuthIndex;
      const method = typeof body.method === "string" ? body.method.trim().toUpperCase() : "";
      if (method === "") throw managementError(400, "missing method");
      if (!METHODS.has(method)) throw managementError(400, "invalid method");
      const rawUrl = typeof body.url === "string" ? body.url.trim() : "";
      if (rawUrl === "") throw managementError(400, "missing url");
      let url: URL;
      try {
        url = new URL(rawUrl);
      } catch {
        throw managementError(400, "invalid url");
      }
      if (url.protocol !== "https:" && url.protocol !== "http:")
        throw managementError(400, "invalid url");
      const header = body.header ?? body.headers;
      if (header !== undefined && header !== null && !isMap(header))
        throw managementError(400, "invalid body");
      let c: CredentialRecord | null;
      if (typeof index === "string" && index.trim() !== "") {
        c = deps.pool.get(index.trim());
        if (!c) throw managementError(404, "credential not found");
      } else {
        // No index: a UI that only knows a provider key sends the key itself; the call is
        // through the credential of that key, on that credential's upstream.
        const values = Object.values(header ?? {}).filter((v) => typeof v === "string");
        c =
          (deps.pool.list?.() ?? []).find(
            (x) =>
              x.secret.apiKey !== undefined &&
              x.secret.apiKey.length >= 6 &&
              onUpstream(url, x) &&
              values.some((v) => (v as string).includes(x.secret.apiKey!)),
          ) ?? null;
        if (!c) throw managementError(400, "auth_index is required");
      }
      if (!onUpstream(url, c) || url.username !== "" || url.password !== "")
        throw managementError(400, "url is not on the credential's upstream");

      const token = c.secret.apiKey ?? c.secret.accessToken;
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(header ?? {})) {
        if (typeof value !== "string") throw managementError(400, "invalid body");
        if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) || /[\r\n\0]/.test(value))
          throw managementError(400, `header ${name} is not allowed`);
        if (REFUSED_HEADERS.has(name.toLowerCase()))
          throw managementError(400, `header ${name} is not allowed`);
        if (value.includes(TOKEN) && !token) throw managementError(400, "auth token not found");
        headers[name] = token ? value.split(TOKEN).join(token) : value;
      }
      const data = body.data;
      if (data !== undefined && data !== null && typeof data !== "string")
        throw managementError(400, "invalid body");

      let res: Dispatcher.ResponseData;
      let raw: Buffer;
      try {
        const proxyUrl = c.proxyUrl || deps.proxyUrl?.() || "";
        res = await deps.http.request(url, {
          method: method as Dispatcher.HttpMethod,
          headers,
          ...(typeof data === "string" && method !== "GET" && method !== "HEAD"
            ? { body: data }
            : {}),
          signal: AbortSignal.timeout(timeoutMs),
          ...(proxyUrl ? { proxyUrl } : {}),
        });
        const chunks: Buffer[] = [];
        let size = 0;
        for await (const chunk of res.body) {
          const b = chunk as Buffer;
          if (size + b.length > MAX_ANSWER_BYTES) {
            chunks.push(b.subarray(0, MAX_ANSWER_BYTES - size));
            res.body.destroy();
            break;
          }
          chunks.push(b);
          size += b.length;
        }
        raw = Buffer.concat(chunks);
      } catch {
        // Not a managementError: the dialect renders its 5xx as "failed to save config".
        return json(502, { error: "request failed" });
      }
      const secrets = secretValues(c);
      const answerHeaders: Record<string, string[]> = {};
      for (const [name, value] of Object.entries(res.headers)) {
        if (value === undefined) continue;
        answerHeaders[name] = (Array.isArray(value) ? value : [value]).map((v) =>
          redact(String(v), secrets),
        );
      }
      const reply: ManagementApiCallResponse = {
        status_code: res.statusCode,
        header: answerHeaders,
        body: redact(raw.toString("utf8"), secrets),
      };
      return json(200, reply);
    }),
  ];
}
