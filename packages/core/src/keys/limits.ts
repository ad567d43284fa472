/**
 * The limit and refill fields of downstream keys and users as the services write them:
 * validation (INVALID_REQUEST naming the field), the field-by-field merge of an update's
 * limits, and the refill period a set-up starts.
 *
 * @module
 */
import {
  dueRefill,
  isRefillInterval,
  nextRefillAt,
  periodStart,
  REFILL_INTERVALS,
  refillIfDue,
} from "../billing/refill.js";
import { GatewayError } from "../errors.js";
import type { GatewayEmitter } from "../events.js";
import { RATE_LIMIT_FIELDS } from "../settings/table.js";
import type { QuotaRefill, RateLimits, Store } from "../store/types.js";
import { mergeLimitFields } from "../util/limit-fields.js";

/** The fields of {@link RateLimits}, in the order the dialects list them. */
export const RATE_LIMIT_NAMES = Object.keys(RATE_LIMIT_FIELDS) as (keyof RateLimits)[];

const bad = (message: string) => new GatewayError("INVALID_REQUEST", message);

const isCount = (v: unknown): v is number =>
  typeof v === "number" && Number.isSafeInteger(v) && v >= 0;

/**
 * Checks `limits` of a create or update: an object of known {@link RateLimits} fields, each a
 * non-negative integer. Throws INVALID_REQUEST naming the first bad field.
 */
export function validateLimits(limits: unknown, field = "limits"): void {
  if (typeof limits !== "object" || limits === null || Array.isArray(limits))
    throw bad(`${field} must be an object of ${RATE_LIMIT_NAMES.join(", ")}`);
  for (const [name, value] of Object.entries(limits)) {
    if (!(RATE_LIMIT_NAMES as string[]).includes(name))
      throw bad(`${field}.${name} is not a rate limit (one of ${RATE_LIMIT_NAMES.join(", ")})`);
    if (value !== undefined && !isCount(value))
      throw bad(`${field}.${name} must be a non-negative integer (0 = no limit)`);
  }
}

/**
 * Checks a `quotaRefill`: null (none) or `{ interval, amount }` with an interval of
 * {@link REFILL_INTERVALS} and a non-negative integer amount. Throws INVALID_REQUEST naming the
 * first bad field.
 */
export function validateQuotaRefill(refill: unknown, field = "quotaRefill"): void {
  if (refill === null) return;
  if (typeof refill !== "object" || Array.isArray(refill))
    throw bad(`${field} must be null or { interval, amount }`);
  for (const name of Object.keys(refill))
    if (name !== "interval" && name !== "amount")
      throw bad(`${field}.${name} is not a refill field (interval, amount)`);
  const r = refill as Record<string, unknown>;
  if (!isRefillInterval(r.interval))
    throw bad(`${field}.interval must be one of ${REFILL_INTERVALS.join(", ")}`);
  if (!isCount(r.amount)) throw bad(`${field}.amount must be a non-negative integer`);
}

/**
 * The stored limits after an update: `patch`'s fields replace those of `stored` one by one, a
 * field set to 0 clears that limit, fields `patch` does not name keep their value. Only limits
 * above 0 are kept (0 and absent mean the same: none of its own).
 */
export function mergeLimits(stored: RateLimits | undefined, patch: RateLimits): RateLimits {
  return mergeLimitFields(stored, patch, RATE_LIMIT_NAMES);
}

/**
 * The `quotaPeriod` to write with a refill change, or undefined to leave it: a refill set up
 * (none before) or given another interval starts its period now, so that the current balance
 * lasts until the next boundary. Removing a refill or changing only its amount keeps it.
 */
export function periodForRefillChange(
  before: QuotaRefill | null | undefined,
  after: QuotaRefill | null | undefined,
  nowMs: number,
  timeZone: string,
): number | undefined {
  if (!after) return undefined;
  if (before && before.interval === after.interval) return undefined;
  return periodStart(after.interval, nowMs, timeZone);
}

/** The limit and refill fields of a view: limits always an object, null for no refill. */
export interface LimitViewFields {
  /** The record's own limits (those above 0); `{}` = none of its own. */
  limits: RateLimits;
  /** How the quota refills; null = never. */
  quotaRefill: QuotaRefill | null;
  /**
   * When the quota refills next (ms since the epoch), in the `quota-refill-time-zone` setting;
   * null without a refill. A read through the key and user services applies a due refill
   * first, so there it is always in the future.
   */
  nextRefillTime: number | null;
}

/** The {@link LimitViewFields} of a stored key or user at `nowMs`. */
export function limitViewFields(
  record: { limits?: RateLimits; quotaRefill?: QuotaRefill | null; quotaPeriod?: number },
  timeZone: string,
  nowMs: number,
): LimitViewFields {
  const limits: RateLimits = {};
  for (const name of RATE_LIMIT_NAMES) {
    const v = record.limits?.[name];
    if (v !== undefined && v > 0) limits[name] = v;
  }
  const refill = record.quotaRefill ?? null;
  return {
    limits,
    quotaRefill: refill ? { interval: refill.interval, amount: refill.amount } : null,
    nextRefillTime: refill ? nextRefillAt(refill, record.quotaPeriod, nowMs, timeZone) : null,
  };
}

/**
 * `record` as it should be read at `nowMs`: when a refill of it is due, starts the period
 * (`Store.refillQuota`, once across callers), emits `quota.refilled` when this call started it,
 * and answers the record read again; otherwise `record` itself.
 */
export async function withDueRefill<
  R extends { id: number; quotaRefill?: QuotaRefill | null; quotaPeriod?: number },
>(
  store: Pick<Store, "refillQuota">,
  target: "key" | "user",
  record: R,
  context: { timeZone: string; events?: GatewayEmitter | undefined },
  nowMs: number,
  reread: () => Promise<R | null>,
): Promise<R | null> {
  const refill = record.quotaRefill;
  if (!refill || dueRefill(refill, record.quotaPeriod, nowMs, context.timeZone) === null)
    return record;
  const period = await refillIfDue(store, target, record, nowMs, context.timeZone);
  if (period !== null)
    context.events?.emit("quota.refilled", {
      target,
      id: record.id,
      period,
      amount: refill.amount,
    });
  // Read again also when another caller started the period first: the balance changed.
  return reread();
}
