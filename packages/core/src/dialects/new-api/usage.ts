/**
 * new-api's `GET /api/usage/token`: a key's own balance, read with the key itself
 * (`Authorization: Bearer sk-...`), answered as new-api answers it: `{ code: true, message: "ok",
 * data }`; failures are the dialect's `{ success: false, message }`.
 *
 * tokenpool's `GET /api/usage/token/summary?by=day|model|hour&from=&to=`: the key's own usage and
 * cost per UTC day, model or UTC hour (`{ success: true, message: "", data: rows }`), read with
 * the key in the `Authorization` header only (never `?key=`: a key in a URL ends up in logs).
 *
 * @module
 */
import { GatewayError } from "../../errors.js";
import { type Exchange, json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import { bearer } from "../../proxy/authorize.js";
import type { Store } from "../../store/types.js";
import { type UsageSummaryRow, usageSummary } from "../../usage/summary.js";
import {
  authorizeBalanceReader,
  type BalanceDeps,
  type TokenUsageResponse,
  tokenUsageData,
} from "../balance.js";
import { newApiError, newApiOk } from "./tokens.js";

/** What the usage routes need; without `store` the summary route is absent. */
export interface NewApiUsageDeps extends BalanceDeps {
  /** The usage roll-ups (`GET /api/usage/token/summary`). */
  store?: Pick<Store, "usage">;
  /** Writes buffered usage records, so that a summary includes the latest requests. */
  flushUsage?: () => Promise<void>;
}

/** What `GET /api/usage/token/summary` groups by. */
export type TokenUsageSummaryGroupBy = "day" | "model" | "hour";

/** The groupings `GET /api/usage/token/summary` accepts. */
export const TOKEN_USAGE_SUMMARY_GROUP_BY: readonly TokenUsageSummaryGroupBy[] = [
  "day",
  "model",
  "hour",
];

/** One row of `GET /api/usage/token/summary`: a key's usage in one group. */
export interface TokenUsageSummaryRow {
  /** A UTC day `YYYY-MM-DD`, a model name or a UTC hour `YYYY-MM-DDTHH`. */
  id: string | null;
  requests: number;
  successes: number;
  failures: number;
  /** Quota units charged. */
  quota: number;
  /** The same cost in US dollars (500,000 quota units = 1 USD). */
  cost_usd: number;
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
}

/** The answer of `GET /api/usage/token/summary`. */
export interface TokenUsageSummaryResponse {
  success: true;
  message: "";
  data: TokenUsageSummaryRow[];
}

/** Query of `GET /api/usage/token/summary`. */
export interface TokenUsageSummaryQuery {
  /** @default "day" */
  by?: TokenUsageSummaryGroupBy;
  /** Unix seconds. @default 30 days before `to` */
  from?: number;
  /** Unix seconds (exclusive). @default now */
  to?: number;
}

/** The default span of a key's summary: 30 days. */
const DEFAULT_SPAN_S = 30 * 86_400;

function invalid(message: string): GatewayError {
  return new GatewayError("INVALID_REQUEST", message);
}

/** Unix seconds from the query; undefined when absent. */
function seconds(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === "") return undefined;
  if (!/^\d{1,12}$/.test(v)) throw invalid(`invalid ${name}: Unix seconds expected`);
  return Number(v);
}

function summaryRow(r: UsageSummaryRow): TokenUsageSummaryRow {
  return {
    id: r.id === null ? null : String(r.id),
    requests: r.requests,
    successes: r.successes,
    failures: r.failures,
    quota: r.quota,
    cost_usd: r.costUsd,
    input_tokens: r.inputTokens,
    output_tokens: r.outputTokens,
    total_tokens: r.totalTokens,
  };
}

/**
 * The routes of new-api's token usage (`/api/usage/token/`, also without the trailing slash).
 * As new-api's read-only token check: an expired or exhausted key may read, a disabled or unknown
 * one is a 401; the key's IP allowlist applies. With `store`, also tokenpool's
 * `/api/usage/token/summary`, under the same check.
 */
export function usageRoutes(deps: NewApiUsageDeps): Route[] {
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
  const routes = [route, { ...route, path: "/api/usage/token" }];
  const store = deps.store;
  if (store) {
    routes.push({
      method: "GET",
      path: "/api/usage/token/summary",
      onError: newApiError,
      async handle(ex: Exchange) {
        const plain = bearer(ex);
        if (plain === undefined)
          throw new GatewayError(
            "UNAUTHORIZED",
            "Send the API key in the Authorization header (Bearer); it is not read from the URL.",
          );
        const { key } = await deps.keys.authorizeReader(plain, { ip: deps.clientIp(ex) });
        const q = new URLSearchParams(ex.search);
        const by = q.get("by") || "day";
        if (!(TOKEN_USAGE_SUMMARY_GROUP_BY as readonly string[]).includes(by))
          throw invalid(`invalid by: one of ${TOKEN_USAGE_SUMMARY_GROUP_BY.join(", ")}`);
        const to = seconds(q, "to") ?? Math.floor(Date.now() / 1000);
        const from = seconds(q, "from") ?? Math.max(0, to - DEFAULT_SPAN_S);
        if (from >= to) throw invalid("invalid range: from must be before to");
        await deps.flushUsage?.();
        const rows = await usageSummary(store, {
          by: by as TokenUsageSummaryGroupBy,
          from: from * 1000,
          to: to * 1000,
          keyId: key.id,
        });
        return newApiOk(rows.map(summaryRow));
      },
    });
  }
  return routes;
}
