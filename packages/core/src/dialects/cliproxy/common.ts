/**
 * Shared pieces of the cliproxy dialect (`/v0/management`, CLIProxyAPI's management API):
 * its reply and error shapes and body parsing. Errors are `{ "error": "..." }` with the status
 * of the seed (400 invalid body, 401 missing/invalid key, 403 remote management disabled, 404
 * item/file not found, 500 failed to save).
 *
 * @module
 */
import { GatewayError, isGatewayError } from "../../errors.js";
import { type Exchange, json, parseJsonBytes, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";

/** The path prefix of the cliproxy dialect. */
export const MANAGEMENT_PREFIX = "/v0/management";

/** A failed management reply (any 4xx/5xx): `{ "error": "..." }`. */
export interface ManagementErrorResponse {
  error: string;
}

/** A successful management write: `{ "status": "ok" }`, with extra fields on some routes. */
export type ManagementOkResponse<Extra extends object = Record<never, never>> = {
  status: "ok";
} & Extra;

/** A management error: a status and the seed's message. */
export function managementError(status: number, message: string): GatewayError {
  const code =
    status === 401
      ? "UNAUTHORIZED"
      : status === 403
        ? "FORBIDDEN"
        : status === 404
          ? "NOT_FOUND"
          : status >= 500
            ? "INTERNAL"
            : "INVALID_REQUEST";
  return new GatewayError(code, message, { status });
}

/** Renders any error as `{ "error": "..." }` with its status; internal details are not shown. */
export function renderManagementError(error: unknown): Reply {
  if (isGatewayError(error)) {
    const message = error.status >= 500 ? `failed to save config: ${error.message}` : error.message;
    return json(error.status, { error: message });
  }
  return json(500, { error: "internal error" });
}

/** `{ "status": "ok" }` and friends. */
export function managementOk(extra: Record<string, unknown> = {}): Reply {
  return json(200, { status: "ok", ...extra });
}

/** Parses a JSON body (any JSON value) or throws the seed's 400 `invalid body`. */
export async function readManagementBody(ex: Exchange, limit: number): Promise<unknown> {
  return parseJsonBytes(await ex.body(limit), () => managementError(400, "invalid body"));
}

/**
 * Authenticates a management request; throws the seed's 401/403 (or a 404 for every route when
 * the management API is disabled). Implemented in `auth.ts`; route files receive it as a
 * dependency so that they do not depend on how authentication is done.
 */
export type ManagementGuard = (ex: Exchange) => Promise<void>;

/** A management route: path relative to {@link MANAGEMENT_PREFIX}, guarded, errors as `{ error }`. */
export function managementRoute(
  guard: ManagementGuard,
  method: string,
  path: string,
  handle: Route["handle"],
): Route {
  return {
    method,
    path: `${MANAGEMENT_PREFIX}${path}`,
    onError: renderManagementError,
    async handle(ex, params) {
      await guard(ex);
      return handle(ex, params);
    },
  };
}

/**
 * The route helpers of one management route file, bound to its guard and body limit: what the
 * list, string-list and settings routes share.
 */
export interface ManagementRouteKit {
  /** A guarded management route ({@link managementRoute} with the bound guard). */
  route(method: string, path: string, handle: Route["handle"]): Route;
  /** The request's JSON body ({@link readManagementBody} with the bound limit). */
  body(ex: Exchange): Promise<unknown>;
  /** {@link managementError}. */
  error: typeof managementError;
  /** {@link managementOk}. */
  ok: typeof managementOk;
}

/**
 * Binds the route helpers to a guard and a body limit.
 *
 * @example
 * ```ts
 * const kit = managementRouteKit(guard, 1 << 20);
 * kit.route("GET", "/debug", async () => kit.ok({ debug: true }));
 * ```
 */
export function managementRouteKit(
  guard: ManagementGuard,
  maxBodyBytes: number,
): ManagementRouteKit {
  return {
    route: (method, path, handle) => managementRoute(guard, method, path, handle),
    body: (ex) => readManagementBody(ex, maxBodyBytes),
    error: managementError,
    ok: managementOk,
  };
}
