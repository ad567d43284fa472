/**
 * The limit and refill fields the new-api dialect adds to tokens and users: `rpm_limit`,
 * `tpm_limit`, `rpd_limit`, `max_concurrency`, `queue_timeout_ms`, `quota_refill_interval`,
 * `quota_refill_amount` and the read-only `next_refill_time`, parsed from a body and shown
 * from a view.
 *
 * @module
 */
import { isRefillInterval, REFILL_INTERVALS } from "../../billing/refill.js";
import type { GatewayError } from "../../errors.js";
import type { LimitViewFields } from "../../keys/limits.js";
import { RATE_LIMIT_FIELDS } from "../../settings/table.js";
import type { QuotaRefill, RateLimits, RefillInterval } from "../../store/types.js";
import type { LimitView } from "./wire.js";

const LIMIT_ENTRIES = Object.entries(RATE_LIMIT_FIELDS) as [keyof RateLimits, string][];

/** The wire fields of a view's limits and refill (every limit 0 when unset). */
export function limitView(v: LimitViewFields): LimitView {
  const out: Record<string, number | string> = {};
  for (const [name, wire] of LIMIT_ENTRIES) out[wire] = v.limits[name] ?? 0;
  return {
    ...(out as Pick<
      LimitView,
      "rpm_limit" | "tpm_limit" | "rpd_limit" | "max_concurrency" | "queue_timeout_ms"
    >),
    quota_refill_interval: v.quotaRefill?.interval ?? "",
    quota_refill_amount: v.quotaRefill?.amount ?? 0,
    // Boundaries are at 00:00 of a zone: whole seconds.
    next_refill_time: v.nextRefillTime === null ? 0 : Math.floor(v.nextRefillTime / 1000),
  };
}

/** The limit and refill fields of a body, type-checked; absent (or null) fields stay undefined. */
export interface LimitFields {
  /** The limits named (0 = clear that one). */
  limits?: RateLimits;
  /** `""` = no refill. */
  interval?: RefillInterval | "";
  amount?: number;
}

/**
 * Parses the limit and refill fields present in `body`; throws `param(detail)` (the dialect's
 * 400) on the first one of the wrong type, negative, or an unknown interval. Writes nothing.
 */
export function parseLimitFields(
  body: Record<string, unknown>,
  param: (detail: string) => GatewayError,
): LimitFields {
  const has = (k: string) => body[k] !== undefined && body[k] !== null;
  const count = (k: string) => {
    const v = body[k];
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
      throw param(`${k} must be a non-negative integer`);
    return v;
  };
  const out: LimitFields = {};
  for (const [name, wire] of LIMIT_ENTRIES) {
    if (!has(wire)) continue;
    out.limits ??= {};
    out.limits[name] = count(wire);
  }
  if (has("quota_refill_interval")) {
    const i = body.quota_refill_interval;
    if (i !== "" && !isRefillInterval(i))
      throw param(
        `quota_refill_interval must be "" (no refill) or one of ${REFILL_INTERVALS.join(", ")}`,
      );
    out.interval = i;
  }
  if (has("quota_refill_amount")) out.amount = count("quota_refill_amount");
  return out;
}

/**
 * The refill a write asks for, given the stored one (null on creation): the interval and the
 * amount sent replace the stored ones one by one; an interval `""` removes the refill.
 * Undefined when the body names neither. Throws `param` for an amount without any interval.
 */
export function resolveRefill(
  f: LimitFields,
  stored: QuotaRefill | null,
  param: (detail: string) => GatewayError,
): QuotaRefill | null | undefined {
  if (f.interval === undefined && f.amount === undefined) return undefined;
  const interval = f.interval ?? stored?.interval ?? "";
  if (interval === "") {
    if (f.interval === undefined && f.amount !== 0)
      throw param("quota_refill_amount needs a quota_refill_interval");
    return null;
  }
  return { interval, amount: f.amount ?? stored?.amount ?? 0 };
}
