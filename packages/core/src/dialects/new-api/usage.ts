/**
 * new-api's `GET /api/usage/token`: a key's own balance, read with the key itself
 * (`Authorization: Bearer sk-...`), answered as new-api answers it: `{ code: true, message: "ok",
 * data }`; failures are the dialect's `{ success: false, message }`.
 *
 * @module
 */
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import {
  authorizeBalanceReader,
  type BalanceDeps,
  type TokenUsageResponse,
  tokenUsageData,
} from "../balance.js";
import { newApiError } from "./tokens.js";

/**
 * The route of new-api's token usage (`/api/usage/token/`, also without the trailing slash).
 * As new-api's read-only token check: an expired or exhausted key may read, a disabled or unknown
 * one is a 401; the key's IP allowlist applies.
 */
export function usageRoutes(deps: BalanceDeps): Route[] {
  const route: Route = {
    method: "GET",
    path: "/api/usage/token/",
    onError: newApiError,
    async handle(ex) {
      const { key } = await authorizeBalanceReader(deps, ex);
      const body: TokenUsageResponse = { code: true, message: "ok", data: tokenUsageData(key) };
      return json(200, body);
    },
  };
  return [route, { ...route, path: "/api/usage/token" }];
}
