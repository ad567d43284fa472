/**
 * Usage with its cost, summed per key, owner, model, credential, UTC day or UTC hour, from the hourly
 * roll-ups (kept forever, shared by every instance on the store): what `gateway.usage.summary`
 * and `GET /v0/management/usage/summary` answer. The numbers are those of
 * `GET /v0/management/usage`, cut another way.
 *
 * @module
 */
import { QUOTA_PER_USD } from "../billing/price.js";
import type { RollupQuery, Store, TokenUsage, UsageRollup } from "../store/types.js";
import { addRollupSums, hourBucket, ROLLUP_SUMS } from "../store/util.js";

/** What {@link usageSummary} groups by. */
export type UsageGroupBy = "key" | "user" | "model" | "credential" | "day" | "hour";

/** The dimensions {@link usageSummary} can group by. */
export const USAGE_GROUP_BY: readonly UsageGroupBy[] = [
  "key",
  "user",
  "model",
  "credential",
  "day",
  "hour",
];

/** A query of {@link usageSummary}. */
export interface UsageSummaryQuery {
  by: UsageGroupBy;
  /**
   * Start (ms): the hours that overlap `[from, to)` count (roll-ups are hourly, so a bound
   * inside an hour takes that whole hour).
   */
  from?: number;
  /** End (ms, exclusive). */
  to?: number;
  /** Only this key's usage. */
  keyId?: number;
  /** Only this owner's usage. */
  userId?: number;
  /** Only this credential's usage. */
  credentialId?: string;
}

/** One group of a {@link usageSummary}. */
export interface UsageSummaryRow extends TokenUsage {
  /**
   * The group: a key id or a user id (null: usage without a key / owner), a model name, a
   * credential id (null: requests no credential served), a UTC day `YYYY-MM-DD` or a UTC hour
   * `YYYY-MM-DDTHH`.
   */
  id: number | string | null;
  requests: number;
  successes: number;
  failures: number;
  /** Quota units charged. */
  quota: number;
  /** The same cost in US dollars (500,000 quota units = 1 USD). */
  costUsd: number;
}

const HOUR_MS = 3_600_000;

/** The roll-up query of a summary's bounds and filters. */
function rollupQuery(q: UsageSummaryQuery): RollupQuery {
  const rq: RollupQuery = {};
  if (q.from !== undefined) rq.fromHour = hourBucket(q.from);
  // The first hour that starts at or after `to` is excluded.
  if (q.to !== undefined) rq.toHour = hourBucket(q.to - 1 + HOUR_MS);
  if (q.keyId !== undefined) rq.keyId = q.keyId;
  if (q.userId !== undefined) rq.userId = q.userId;
  if (q.credentialId !== undefined) rq.credentialId = q.credentialId;
  return rq;
}

/** The group a roll-up row falls in. */
function groupOf(row: UsageRollup, by: UsageGroupBy): number | string | null {
  switch (by) {
    case "key":
      return row.keyId;
    case "user":
      return row.userId;
    case "model":
      return row.model;
    case "credential":
      return row.credentialId;
    case "day":
      return row.hour.slice(0, 10);
    case "hour":
      return row.hour.slice(0, 13);
  }
}

/**
 * Usage summed per `by`: days and hours in order, anything else most expensive first (then most
 * requests, then by id). Rows written
 * before roll-ups had owners and credentials count under a null user / credential.
 *
 * @example
 * ```ts
 * const perModel = await usageSummary(store, { by: "model", from: Date.now() - 86_400_000 });
 * ```
 */
export async function usageSummary(
  store: Pick<Store, "usage">,
  q: UsageSummaryQuery,
): Promise<UsageSummaryRow[]> {
  const groups = new Map<number | string | null, UsageSummaryRow>();
  for (const row of await store.usage.rollups(rollupQuery(q))) {
    const id = groupOf(row, q.by);
    let g = groups.get(id);
    if (!g) {
      g = {
        id,
        costUsd: 0,
        ...Object.fromEntries(ROLLUP_SUMS.map((f) => [f, 0])),
      } as UsageSummaryRow;
      groups.set(id, g);
    }
    addRollupSums(g, row);
  }
  const rows = [...groups.values()];
  for (const r of rows) r.costUsd = r.quota / QUOTA_PER_USD;
  if (q.by === "day" || q.by === "hour")
    return rows.sort((a, b) => ((a.id as string) < (b.id as string) ? -1 : 1));
  return rows.sort(
    (a, b) =>
      b.quota - a.quota ||
      b.requests - a.requests ||
      String(a.id ?? "").localeCompare(String(b.id ?? "")),
  );
}
