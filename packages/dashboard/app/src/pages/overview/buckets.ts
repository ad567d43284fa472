/**
 * Time buckets of the overview and the key holder's page: UTC hours or UTC days, the ids the
 * usage summaries use (`YYYY-MM-DDTHH`, `YYYY-MM-DD`), every bucket of a range present (zeros
 * where nothing happened) so that the charts show the gaps.
 */

/** A range the pages offer. */
export type RangeName = "24h" | "7d" | "30d";

/** The buckets of a range: their unit, their starts (ms) and ids, and where the range starts. */
export interface Buckets {
  unit: "hour" | "day";
  starts: number[];
  ids: string[];
  /** The first bucket's start (ms): the range's `from`. */
  from: number;
}

const HOUR = 3_600_000;
const DAY = 86_400_000;

/** The bucket id of a time (ms) in a unit. */
export function bucketId(ms: number, unit: "hour" | "day"): string {
  return new Date(ms).toISOString().slice(0, unit === "hour" ? 13 : 10);
}

/** The buckets of `range` ending with the current hour (24 h) or UTC day (7 d, 30 d). */
export function bucketsOf(range: RangeName, now = Date.now()): Buckets {
  const unit = range === "24h" ? "hour" : "day";
  const size = unit === "hour" ? HOUR : DAY;
  const count = range === "24h" ? 24 : range === "7d" ? 7 : 30;
  const last = Math.floor(now / size) * size;
  const starts = Array.from({ length: count }, (_, i) => last - (count - 1 - i) * size);
  return { unit, starts, ids: starts.map((s) => bucketId(s, unit)), from: starts[0]! };
}
