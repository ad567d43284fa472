import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { Store } from "../../store/types.js";
import { type UsageSnapshot, type UsageSnapshotOptions, usageSnapshot } from "../../usage/view.js";
import { type ManagementGuard, managementRoute } from "./common.js";

/** Reply of `GET /v0/management/usage`. */
export interface ManagementUsageResponse {
  usage: UsageSnapshot;
}

/** What the usage route needs. */
export interface ManagementUsageDeps {
  store: Store;
  /** Writes queued usage records first, so that the view includes finished requests. */
  flushUsage(): Promise<void>;
  /** Bounds of the details. */
  usageView?: UsageSnapshotOptions;
}

/**
 * `GET /usage`: `{ usage: { total_requests, success_count, failure_count, total_tokens,
 * requests_by_day, requests_by_hour, tokens_by_day, tokens_by_hour, apis } }`, from the store
 * (durable, UTC buckets; see `usage/view.ts`).
 */
export function usageRoutes(guard: ManagementGuard, deps: ManagementUsageDeps): Route[] {
  return [
    managementRoute(guard, "GET", "/usage", async () => {
      await deps.flushUsage();
      return json(200, { usage: await usageSnapshot(deps.store, deps.usageView) });
    }),
  ];
}
