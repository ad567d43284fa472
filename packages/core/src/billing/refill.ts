/**
 * The calendar of quota refills: where the periods of a {@link QuotaRefill} start, in a time
 * zone (the `quota-refill-time-zone` setting). Pure functions of the clock, so that every
 * instance computes the same period for the same instant.
 *
 * - `1d`: each day at 00:00;
 * - `7d`, `30d`: blocks of 7 or 30 days at 00:00, counted from the day the refill was set up
 *   (the first period's start, kept as the record's `quotaPeriod`);
 * - `month`: the 1st of each calendar month at 00:00.
 *
 * Days are calendar days of the zone (a day with a daylight-saving change is 23 or 25 hours).
 *
 * @module
 */
import type { QuotaRefill, RefillInterval, Store } from "../store/types.js";

/** The refill intervals, as the dialects spell them. */
export const REFILL_INTERVALS: readonly RefillInterval[] = ["1d", "7d", "30d", "month"];

/** Whether `v` is a {@link RefillInterval}. */
export function isRefillInterval(v: unknown): v is RefillInterval {
  return typeof v === "string" && (REFILL_INTERVALS as readonly string[]).includes(v);
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
    });
    if (formatters.size > 100) formatters.clear();
    formatters.set(timeZone, f);
  }
  return f;
}

/** Whether `tz` is an IANA time zone name this runtime knows (e.g. `UTC`, `Asia/Shanghai`). */
export function isTimeZone(tz: unknown): tz is string {
  if (typeof tz !== "string" || tz === "") return false;
  try {
    formatter(tz);
    return true;
  } catch {
    return false;
  }
}

/** A calendar date of a zone (month 1-12). */
interface LocalDate {
  year: number;
  month: number;
  day: number;
}

/** The wall-clock fields of instant `ms` in `tz`. */
function wallClock(
  ms: number,
  tz: string,
): LocalDate & { hour: number; minute: number; second: number } {
  const parts: Record<string, number> = {};
  for (const p of formatter(tz).formatToParts(ms)) {
    if (p.type !== "literal") parts[p.type] = Number(p.value);
  }
  return {
    year: parts.year as number,
    month: parts.month as number,
    day: parts.day as number,
    hour: parts.hour as number,
    minute: parts.minute as number,
    second: parts.second as number,
  };
}

/** The offset of `tz` from UTC at instant `ms` (ms; positive east of Greenwich). */
function offsetAt(ms: number, tz: string): number {
  const w = wallClock(ms, tz);
  const asUtc = Date.UTC(w.year, w.month - 1, w.day, w.hour, w.minute, w.second);
  return asUtc - (ms - (((ms % 1000) + 1000) % 1000));
}

/** The instant of 00:00 on `date` in `tz` (date fields may overflow: day 32 is next month). */
function midnight(date: LocalDate, tz: string): number {
  const utc = Date.UTC(date.year, date.month - 1, date.day);
  // Two passes settle the offset across a daylight-saving change.
  let ms = utc - offsetAt(utc, tz);
  ms = utc - offsetAt(ms, tz);
  return ms;
}

/** The calendar date of instant `ms` in `tz`. */
function dateOf(ms: number, tz: string): LocalDate {
  const { year, month, day } = wallClock(ms, tz);
  return { year, month, day };
}

/** Whole days from date `a` to date `b` (calendar arithmetic, no zone). */
function daysBetween(a: LocalDate, b: LocalDate): number {
  return Math.round(
    (Date.UTC(b.year, b.month - 1, b.day) - Date.UTC(a.year, a.month - 1, a.day)) / 86_400_000,
  );
}

const DAYS: Record<Exclude<RefillInterval, "month">, number> = { "1d": 1, "7d": 7, "30d": 30 };

/**
 * The start (ms) of the period of `interval` that holds instant `nowMs`. `anchorMs` (a previous
 * period's start) fixes where blocks of 7 and 30 days begin; without it the period starts today.
 *
 * @example
 * ```ts
 * periodStart("month", Date.UTC(2026, 11, 4, 15), "UTC"); // Date.UTC(2026, 11, 1)
 * ```
 */
export function periodStart(
  interval: RefillInterval,
  nowMs: number,
  timeZone: string,
  anchorMs?: number,
): number {
  const today = dateOf(nowMs, timeZone);
  if (interval === "month") return midnight({ ...today, day: 1 }, timeZone);
  const n = DAYS[interval];
  if (n === 1 || !anchorMs) return midnight(today, timeZone);
  const anchor = dateOf(anchorMs, timeZone);
  const blocks = Math.floor(daysBetween(anchor, today) / n);
  return midnight({ ...anchor, day: anchor.day + blocks * n }, timeZone);
}

/**
 * {@link nextPeriodStart}'s answers, by interval, start and zone: every request of a key with a
 * refill asks whether its period ended, and the answer (three `Intl` calls, ~20 µs) depends on
 * nothing else. Bounded: cleared when it grows past 10,000 entries.
 */
const nextStarts = new Map<string, number>();

/** The start (ms) of the period after the one that starts at `startMs`. */
export function nextPeriodStart(
  interval: RefillInterval,
  startMs: number,
  timeZone: string,
): number {
  const id = `${interval}\u0000${startMs}\u0000${timeZone}`;
  let next = nextStarts.get(id);
  if (next === undefined) {
    next = computeNextPeriodStart(interval, startMs, timeZone);
    if (nextStarts.size >= 10_000) nextStarts.clear();
    nextStarts.set(id, next);
  }
  return next;
}

function computeNextPeriodStart(
  interval: RefillInterval,
  startMs: number,
  timeZone: string,
): number {
  const d = dateOf(startMs, timeZone);
  if (interval === "month") return midnight({ year: d.year, month: d.month + 1, day: 1 }, timeZone);
  return midnight({ ...d, day: d.day + DAYS[interval] }, timeZone);
}

/**
 * The period a balance should be in at `nowMs` when that is a later one than `quotaPeriod` (the
 * refill is due: pass the answer to `Store.refillQuota`), else null. A record with a refill but
 * no period yet (0) is due for the current period.
 */
export function dueRefill(
  refill: QuotaRefill,
  quotaPeriod: number | undefined,
  nowMs: number,
  timeZone: string,
): number | null {
  if (!quotaPeriod) return periodStart(refill.interval, nowMs, timeZone);
  if (nowMs < nextPeriodStart(refill.interval, quotaPeriod, timeZone)) return null;
  const start = periodStart(refill.interval, nowMs, timeZone, quotaPeriod);
  return start > quotaPeriod ? start : null;
}

/**
 * When the balance refills next (ms): the end of its period `quotaPeriod` (in the past when the
 * refill is due and waits for the next request), or, with no period yet, the end of the
 * current one.
 */
export function nextRefillAt(
  refill: QuotaRefill,
  quotaPeriod: number | undefined,
  nowMs: number,
  timeZone: string,
): number {
  const start = quotaPeriod || periodStart(refill.interval, nowMs, timeZone);
  return nextPeriodStart(refill.interval, start, timeZone);
}

/** The store step {@link refillIfDue} calls (`Store.refillQuota`). */
type RefillStore = Pick<Store, "refillQuota">;

/**
 * Starts the due refill period of a key or user, if one is due at `nowMs`: one atomic
 * `Store.refillQuota` call (any number of instances may race; one wins). Returns the period it
 * started, or null when none was due or another caller started it first.
 */
export async function refillIfDue(
  store: RefillStore,
  target: "key" | "user",
  record: { id: number; quotaRefill?: QuotaRefill | null; quotaPeriod?: number },
  nowMs: number,
  timeZone: string,
): Promise<number | null> {
  const refill = record.quotaRefill;
  if (!refill) return null;
  const period = dueRefill(refill, record.quotaPeriod, nowMs, timeZone);
  if (period === null) return null;
  return (await store.refillQuota(target, record.id, period, refill.amount)) ? period : null;
}
