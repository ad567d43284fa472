/**
 * The openrouter dialect: OpenRouter's `GET /v1/key` (a key's own limit, balance, usage and rate
 * limits, read with the key itself), also at `/api/v1/key` and the older `/v1/auth/key`, with
 * OpenRouter's error shape `{ error: { code, message } }`.
 *
 * @module
 */
import { GatewayError, isGatewayError } from "../../errors.js";
import { json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import {
  authorizeBalanceReader,
  type BalanceDeps,
  type KeyInfoResponse,
  keyInfoData,
} from "../balance.js";
import { type Dialect, plainDialect } from "../dialect.js";

/** The paths of OpenRouter's current-key route (`/api/v1` is OpenRouter's own base path). */
export const KEY_INFO_PATHS = ["/v1/key", "/api/v1/key", "/v1/auth/key", "/api/v1/auth/key"];

/** Renders any error as OpenRouter does: `{ error: { code: <HTTP status>, message } }`. */
export function openrouterError(error: unknown): Reply {
  const e = isGatewayError(error) ? error : new GatewayError("INTERNAL", "internal error");
  return json(e.status, { error: { code: e.status, message: e.message } });
}

/**
 * `GET /v1/key` and its aliases. An expired or exhausted key may read; an unknown or disabled
 * key is a 401, and the key's IP allowlist applies.
 */
export function keyInfoRoutes(deps: BalanceDeps): Route[] {
  return KEY_INFO_PATHS.map((path) => ({
    method: "GET",
    path,
    onError: openrouterError,
    async handle(ex) {
      const { key } = await authorizeBalanceReader(deps, ex);
      const body: KeyInfoResponse = { data: keyInfoData(key) };
      return json(200, body);
    },
  }));
}

/** The openrouter dialect. */
export const openrouterDialect: Dialect = plainDialect({
  name: "openrouter",
  prefixes: KEY_INFO_PATHS,
  routes: (context) => keyInfoRoutes({ keys: context.keys, clientIp: context.proxy.clientIp }),
  renderError: openrouterError,
});
