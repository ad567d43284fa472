import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { Store } from "../../store/types.js";
import {
  USAGE_GROUP_BY,
  type UsageGroupBy,
  type UsageSummaryQuery,
  type UsageSummaryRow,
  usageSummary,
} from "../../usage/summary.js";
import { type UsageSnapshot, type UsageSnapshotOptions, usageSnapshot } from "../../usage/view.js";
import { type ManagementGuard, managementError, managementRoute } from "./common.js";

/** Reply of `GET /v0/management/usage`. */
export interface ManagementUsageResponse {
  usage: UsageSnapshot;
}

/** Reply of `GET /v0/management/usage/summary` (tokenpool's). */
export interface ManagementUsageSummaryResponse {
  by: UsageGroupBy;
  /** The bounds asked for (ms; null when open). Whole UTC hours overlapping them count. */
  from: number | null;
  to: number | null;
  rows: UsageSummaryRow[];
}

/** What the usage routes need. */
export interface ManagementUsageDeps {
  store: Store;
  /** Writes queued usage records first, so that the view includes finished requests. */
  flushUsage(): Promise<void>;
  /** Bounds of the details. */
  usageView?: UsageSnapshotOptions;
}

/** A time bound of the summary: RFC 3339 text or Unix seconds; undefined when absent. */
function timeBound(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === "") return undefined;
  const ms = /^\d{1,12}$/.test(v) ? Number(v) * 1000 : Date.parse(v);
  if (!Number.isFinite(ms) || !/^\d/.test(v))
    throw managementError(400, `invalid ${name}: use RFC 3339 or Unix seconds`);
  return ms;
}

/** The summary query of `GET /usage/summary`'s parameters. */
function summaryQuery(q: URLSearchParams): UsageSummaryQuery {
  const by = q.get("by") ?? "model";
  if (!(USAGE_GROUP_BY as readonly string[]).includes(by))
    throw managementError(400, `invalid by: one of ${USAGE_GROUP_BY.join(", ")}`);
  const query: UsageSummaryQuery = { by: by as UsageGroupBy };
  const from = timeBound(q, "from");
  const to = timeBound(q, "to");
  if (from !== undefined) query.from = from;
  if (to !== undefined) query.to = to;
  for (const [name, field] of [
    ["key_id", "keyId"],
    ["user_id", "userId"],
  ] as const) {
    const v = q.get(name);
    if (v === null || v === "") continue;
    if (!/^\d{1,15}$/.test(v)) throw managementError(400, `invalid ${name}`);
    query[field] = Number(v);
  }
  const credential = q.get("credential_id");
  if (credential) query.credentialId = credential;
  return query;
}

/**
 * `GET /usage`: `{ usage: { total_requests, success_count, failure_count, total_tokens,
 * requests_by_day, requests_by_hour, tokens_by_day, tokens_by_hour, apis } }`, from the store
 * (durable, UTC buckets; see `usage/view.ts`). `GET /usage/summary` (tokenpool's): the same
 * numbers with their cost, per key, user, model, credential or day (`?by=`, `from`, `to`,
 * `key_id`, `user_id`, `credential_id`).
 */
export function usageRoutes(guard: ManagementGuard, deps: ManagementUsageDeps): Route[] {
  return [
    managementRoute(guard, "GET", "/usage", async () => {
      await deps.flushUsage();
      return json(200, { usage: await usageSnapshot(deps.store, deps.usageView) });
    }),
    managementRoute(guard, "GET", "/usage/summary", async (ex) => {
      const query = summaryQuery(new URLSearchParams(ex.search));
      await deps.flushUsage();
      const body: ManagementUsageSummaryResponse = {
        by: query.by,
        from: query.from ?? null,
        to: query.to ?? null,
        rows: await usageSummary(deps.store, query),
      };
      return json(200, body);
    }),
  ];
}
