/**
 * The headers of every answer under `/v0/management`, as CLIProxyAPI sends them, so that its
 * management UI (the "management center") works from another origin and shows our version:
 *
 * - CORS: any `OPTIONS` is a 204 with an empty body, before authentication and routing (a
 *   preflight carries no key and must never be a 401, 404 or 405). Every answer, errors and
 *   404s included, names the allowed origin, methods and request headers and exposes the
 *   version headers. `Access-Control-Allow-Headers` names `Authorization` explicitly: the Fetch
 *   spec's `*` does not cover it, and every call of the UI sends it. No
 *   `Access-Control-Allow-Credentials`: the API takes no cookies;
 * - `X-CPA-VERSION`, `X-CPA-BUILD-DATE`, `X-CPA-COMMIT` and `X-CPA-SUPPORT-PLUGIN: 0` (no
 *   plugins) on every answer but preflights, 401s and 403s of the guard included.
 *
 * Only this dialect sends CORS headers; the proxy and the other dialects are unchanged.
 *
 * @module
 */
import { GatewayError } from "../../errors.js";
import { type Exchange, header, type Reply } from "../../exchange.js";
import type { ScopeMiddleware } from "../../http/router.js";
import { TOKENPOOL_BUILD_DATE, TOKENPOOL_COMMIT, TOKENPOOL_VERSION } from "../../version.js";

/** `Access-Control-Allow-Methods` (CLIProxyAPI's, PATCH included). */
export const MANAGEMENT_CORS_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS";

/** The request headers always allowed (`Access-Control-Allow-Headers`). */
export const MANAGEMENT_CORS_HEADERS: readonly string[] = [
  "Authorization",
  "Content-Type",
  "X-Management-Key",
];

/**
 * `Access-Control-Expose-Headers`: CLIProxyAPI's list (the UI reads the version from
 * `X-CPA-*`, else `X-SERVER-*`), plus `Content-Disposition` (auth file downloads).
 */
export const MANAGEMENT_EXPOSED_HEADERS: readonly string[] = [
  "X-CPA-VERSION",
  "X-CPA-COMMIT",
  "X-CPA-BUILD-DATE",
  "X-CPA-SUPPORT-PLUGIN",
  "X-CPA-HOME-VERSION",
  "X-CPA-HOME-BUILD-DATE",
  "X-SERVER-VERSION",
  "X-SERVER-BUILD-DATE",
  "Location",
  "Retry-After",
  "X-Request-Id",
  "Content-Disposition",
];

/**
 * `Access-Control-Max-Age` of preflights, in seconds. CLIProxyAPI sends none (browsers then
 * keep a preflight 5 s); the UI makes many calls per page, so 10 minutes saves a round trip
 * on most of them (Chromium caps it at 2 hours).
 */
export const MANAGEMENT_CORS_MAX_AGE = 600;

/** The version headers of every management answer (names as CLIProxyAPI spells them). */
export const MANAGEMENT_VERSION_HEADERS: Readonly<Record<string, string>> = {
  "x-cpa-version": TOKENPOOL_VERSION,
  "x-cpa-commit": TOKENPOOL_COMMIT,
  "x-cpa-build-date": TOKENPOOL_BUILD_DATE,
  "x-cpa-support-plugin": "0",
};

/** A header name (RFC 9110 token). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Names taken from one `Access-Control-Request-Headers`. */
const MAX_REQUESTED_HEADERS = 32;

function invalidOrigins(detail: string): GatewayError {
  return new GatewayError(
    "INVALID_OPTIONS",
    `Invalid tokenpool option \`management.corsOrigins\`: ${detail}. Pass a list of origins such as ["https://panel.example.com", "http://localhost:5173"] (scheme, host and port; no path), ["*"] for any origin, or [] for none.`,
  );
}

/**
 * Checks `management.corsOrigins` and normalises it: `*`, `null` (pages opened from a file),
 * or origins (`scheme://host[:port]`, lower-cased, default port dropped, a trailing `/`
 * allowed). Throws `INVALID_OPTIONS` naming the bad entry.
 *
 * @example
 * ```ts
 * resolveCorsOrigins(["https://Panel.example.com/"]); // { any: false, origins: Set { "https://panel.example.com" } }
 * ```
 */
export function resolveCorsOrigins(input: unknown): { any: boolean; origins: Set<string> } {
  if (!Array.isArray(input)) throw invalidOrigins(`expected an array, got ${typeof input}`);
  const origins = new Set<string>();
  let any = false;
  for (const entry of input) {
    if (typeof entry !== "string") throw invalidOrigins(`${JSON.stringify(entry)} is not a string`);
    const s = entry.trim();
    if (s === "*") {
      any = true;
      continue;
    }
    if (s === "null") {
      origins.add("null");
      continue;
    }
    let url: URL | null = null;
    try {
      url = new URL(s);
    } catch {
      url = null;
    }
    const bare = s.endsWith("/") ? s.slice(0, -1) : s;
    if (
      !url ||
      (url.protocol !== "http:" && url.protocol !== "https:") ||
      url.pathname !== "/" ||
      url.search !== "" ||
      url.hash !== "" ||
      url.username !== "" ||
      url.password !== "" ||
      !/^https?:\/\/[^/]+$/i.test(bare)
    ) {
      throw invalidOrigins(`${JSON.stringify(entry)} is not an origin`);
    }
    origins.add(url.origin.toLowerCase());
  }
  return { any, origins };
}

/** Adds `value` to a reply's `vary` header (kept once, whatever the case of the name). */
function addVary(headers: Record<string, string>, value: string): void {
  const name = Object.keys(headers).find((k) => k.toLowerCase() === "vary");
  if (!name) {
    headers.vary = value;
    return;
  }
  const parts = headers[name]!.split(",").map((p) => p.trim().toLowerCase());
  if (!parts.includes(value.toLowerCase()) && !parts.includes("*"))
    headers[name] = `${headers[name]}, ${value}`;
}

/** The names of a preflight's `Access-Control-Request-Headers` not already allowed. */
function requestedExtra(ex: Exchange): string[] {
  const raw = header(ex.headers, "access-control-request-headers");
  if (!raw) return [];
  const known = new Set(MANAGEMENT_CORS_HEADERS.map((h) => h.toLowerCase()));
  const out: string[] = [];
  for (const part of raw.split(",")) {
    const name = part.trim();
    if (!TOKEN.test(name) || known.has(name.toLowerCase())) continue;
    known.add(name.toLowerCase());
    out.push(name);
    if (out.length >= MAX_REQUESTED_HEADERS) break;
  }
  return out;
}

/**
 * The management API's middleware: preflights answered at once, CORS and version headers on
 * every other answer. `corsOrigins` as {@link resolveCorsOrigins} takes it: with `*` any origin
 * gets `Access-Control-Allow-Origin: *`; with a list, a listed `Origin` is echoed (with
 * `Vary: Origin`) and any other gets no `Access-Control-*` header at all, so the browser
 * refuses the answer.
 *
 * @example
 * ```ts
 * router.scope(["/v0/management"], renderNotFound, managementHeaders(["https://panel.example.com"]));
 * ```
 */
export function managementHeaders(corsOrigins: unknown): ScopeMiddleware {
  const { any, origins } = resolveCorsOrigins(corsOrigins);
  const exposed = MANAGEMENT_EXPOSED_HEADERS.join(", ");
  const allowed = MANAGEMENT_CORS_HEADERS.join(", ");

  /** The CORS headers of an answer to `ex` (none for an origin not allowed). */
  const corsFor = (ex: Exchange, preflight: boolean): Record<string, string> => {
    const out: Record<string, string> = {};
    let allowOrigin: string | undefined;
    if (any) allowOrigin = "*";
    else {
      // The answer depends on the Origin, so caches must key on it, allowed or not.
      out.vary = "Origin";
      const origin = header(ex.headers, "origin")?.trim();
      if (origin && origins.has(origin.toLowerCase())) allowOrigin = origin;
    }
    if (allowOrigin === undefined) return out;
    out["access-control-allow-origin"] = allowOrigin;
    out["access-control-allow-methods"] = MANAGEMENT_CORS_METHODS;
    const extra = preflight ? requestedExtra(ex) : [];
    out["access-control-allow-headers"] =
      extra.length > 0 ? `${allowed}, ${extra.join(", ")}` : allowed;
    out["access-control-expose-headers"] = exposed;
    if (preflight) out["access-control-max-age"] = String(MANAGEMENT_CORS_MAX_AGE);
    return out;
  };

  return async (ex, next) => {
    if (ex.method === "OPTIONS") {
      return { status: 204, headers: corsFor(ex, true), body: null };
    }
    const reply: Reply = await next();
    const headers: Record<string, string> = { ...reply.headers, ...MANAGEMENT_VERSION_HEADERS };
    const { vary, ...cors } = corsFor(ex, false);
    Object.assign(headers, cors);
    if (vary) addVary(headers, vary);
    return { ...reply, headers };
  };
}
