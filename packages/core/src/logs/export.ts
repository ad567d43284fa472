/**
 * The request log as CSV: one line per usage record the query selects, newest first, read from
 * the store a page at a time, with cells that spreadsheets would run as formulas defused.
 *
 * @module
 */
import type { Store, UsageQuery, UsageRecord } from "../store/types.js";

/** Most records one export writes (the newest); narrow the filters for older ones. */
export const LOG_EXPORT_MAX = 100_000;
/** Records read per store call while exporting. */
const EXPORT_PAGE = 1000;

/** The CSV columns, in order, and how each is read from a record. */
const COLUMNS: readonly [string, (r: UsageRecord) => unknown][] = [
  ["id", (r) => r.id],
  ["time", (r) => new Date(r.timestamp).toISOString()],
  ["request_id", (r) => r.requestId],
  ["key_id", (r) => r.keyId],
  ["key_name", (r) => r.keyName],
  ["user_id", (r) => r.userId],
  ["username", (r) => r.username],
  ["group", (r) => r.group],
  ["route", (r) => r.route],
  ["format", (r) => r.format],
  ["model", (r) => r.model],
  ["stream", (r) => r.stream],
  ["credential_id", (r) => r.credentialId],
  ["provider", (r) => r.provider],
  ["status", (r) => r.status],
  ["success", (r) => r.success],
  ["input_tokens", (r) => r.inputTokens],
  ["output_tokens", (r) => r.outputTokens],
  ["cached_tokens", (r) => r.cachedTokens],
  ["reasoning_tokens", (r) => r.reasoningTokens],
  ["total_tokens", (r) => r.totalTokens],
  ["quota", (r) => r.quota],
  ["duration_ms", (r) => r.durationMs],
  ["first_token_ms", (r) => r.firstTokenMs],
  ["retries", (r) => r.retries],
  ["error_type", (r) => r.errorType],
  ["error", (r) => r.error],
];

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, quote or line break; a text starting
 * with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` so that a spreadsheet
 * shows it instead of running it (key names and errors are caller-controlled text).
 */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return "";
  let text = String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The CSV header line (with its line break). */
export const CSV_HEADER = `${COLUMNS.map(([name]) => name).join(",")}\r\n`;

/** One record as a CSV line (with its line break). */
export function csvLine(r: UsageRecord): string {
  return `${COLUMNS.map(([, read]) => csvCell(read(r))).join(",")}\r\n`;
}

/**
 * The records a query selects as CSV text chunks: the header, then up to `max` records
 * (newest first), a page per chunk. `offset` and `limit` of the query are ignored.
 *
 * @example
 * ```ts
 * for await (const chunk of requestLogCsv(store, { model: "gpt-4o" })) process.stdout.write(chunk);
 * ```
 */
export async function* requestLogCsv(
  store: Pick<Store, "usage">,
  query: UsageQuery,
  max: number = LOG_EXPORT_MAX,
): AsyncGenerator<string> {
  yield CSV_HEADER;
  // Pages are read below the newest record seen first: records written meanwhile do not shift
  // the pages (an offset would repeat rows). Ties of one timestamp are told apart by id.
  const { offset: _offset, limit: _limit, ...filters } = query;
  let written = 0;
  let to = query.to;
  let skipIds = new Set<number>();
  while (written < max) {
    const want = Math.min(EXPORT_PAGE, max - written);
    const limit = want + skipIds.size;
    const page = await store.usage.list({ ...filters, ...(to === undefined ? {} : { to }), limit });
    const rows = page.items.filter((r) => !skipIds.has(r.id)).slice(0, want);
    if (rows.length === 0) return;
    yield rows.map(csvLine).join("");
    written += rows.length;
    if (page.items.length < limit) return;
    const last = rows[rows.length - 1]!.timestamp;
    // Next page: at or before the last timestamp, without the records of it already written
    // (on this page, and on earlier ones when they ended at the same timestamp).
    if (to !== last + 1) skipIds = new Set();
    for (const r of rows) if (r.timestamp === last) skipIds.add(r.id);
    to = last + 1;
  }
}
