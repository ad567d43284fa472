/**
 * The shapes of the new-api token and user routes the keys and users pages read and write
 * (`packages/core/src/dialects/new-api/wire.ts`; the console ships alone, so it keeps its own copy).
 */

/** A refill period; `""` = none. */
export type RefillInterval = "" | "1d" | "7d" | "30d" | "month";

/** The limit and refill fields of a token or a user. */
export interface LimitView {
  rpm_limit: number;
  tpm_limit: number;
  rpd_limit: number;
  max_concurrency: number;
  queue_timeout_ms: number;
  quota_refill_interval: RefillInterval;
  quota_refill_amount: number;
  /** Unix seconds; 0 = no refill. */
  next_refill_time: number;
}

/** A token (downstream key). */
export interface TokenView extends LimitView {
  id: number;
  /** 0 = no owner. */
  user_id: number;
  /** The masked hint, or the plain key in a creation answer. */
  key: string;
  /** 1 enabled, 2 disabled, 3 expired, 4 exhausted. */
  status: number;
  name: string;
  created_time: number;
  accessed_time: number;
  /** Unix seconds, -1 = never. */
  expired_time: number;
  remain_quota: number;
  unlimited_quota: boolean;
  used_quota: number;
  model_limits_enabled: boolean;
  /** Comma-separated. */
  model_limits: string;
  /** One entry per line. */
  allow_ips: string;
  group: string;
}

/** A user. */
export interface UserView extends LimitView {
  id: number;
  username: string;
  display_name: string;
  role: "admin" | "user";
  /** 1 enabled, 2 disabled. */
  status: number;
  group: string;
  quota: number;
  used_quota: number;
  created_time: number;
  has_access_token: boolean;
}

/** One page of a listing. */
export interface ListPage<T> {
  items: T[];
  total: number;
  page: number;
  page_size: number;
}

/** Quota units per US dollar (new-api's rate). */
export const UNITS_PER_USD = 500_000;

/** The fields of a body that differ from `before` (an edit sends only what changed). */
export function changedFields(
  after: Record<string, unknown>,
  before: Record<string, unknown>,
): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(after))
    if (JSON.stringify(v) !== JSON.stringify(before[k])) out[k] = v;
  return out;
}
