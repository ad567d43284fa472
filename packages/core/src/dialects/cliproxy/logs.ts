/**
 * CLIProxyAPI's log routes over tokenpool's request log. tokenpool writes no log file; what it
 * has is the request log (one record per proxied request, see `docs/request-logs.md`), so:
 *
 * - `GET /logs` (`after`, `cursor`, `limit`) renders request log records as log lines, one per
 *   request: `[YYYY-MM-DD HH:MM:SS] [info] [<request id>] 200 POST /v1/chat/completions
 *   model=... key=... credential=... 1.234s tokens=12+34` (UTC; `[warn]` and the error on
 *   failures). Only with the `logging-to-file` setting on; off, 400 `logging to file
 *   disabled`, as CLIProxyAPI answers. Lines come oldest first; `latest-timestamp` is Unix
 *   seconds; `next-cursor` is opaque (the newest record's time and id).
 * - `DELETE /logs` hides the lines written so far from `GET /logs` (a watermark in the store's
 *   kv, shared by every instance); the request log itself, which settles quotas and backs
 *   `/api/log/` and `/usage`, is kept. Answers `{ success: true, message, removed: 0 }`.
 * - `GET /request-error-logs` lists the newest failed requests as CLIProxyAPI's error log
 *   files (`error-<ms>-<request id>.log`); `GET /request-error-logs/:name` and
 *   `GET /request-log-by-id/:id` answer one record as a text attachment: its fields, and its
 *   request and response bodies only when the `request-log` setting had them stored (cut to
 *   4 KiB, secrets redacted). Never keys, credential secrets or headers.
 *
 * @module
 */
import { json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { SettingsService } from "../../settings/service.js";
import type { Store, UsageQuery, UsageRecord } from "../../store/types.js";
import { type ManagementGuard, managementError, managementRoute } from "./common.js";

/** What the log routes need. */
export interface ManagementLogsDeps {
  store: Store;
  settings: SettingsService;
  /** Writes queued usage records first. */
  flushUsage(): Promise<void>;
}

/** Reply of `GET /v0/management/logs`. */
export interface ManagementLogsResponse {
  lines: string[];
  /** Lines in `lines`. */
  "line-count": number;
  /** Unix seconds of the newest line (or of `after` / the cursor when there is none). */
  "latest-timestamp": number;
  /** Pass back as `cursor` to get the lines after these. */
  "next-cursor": string;
  /** The cursor sent was not understood: these are the newest lines instead. */
  "cursor-reset"?: true;
}

/** Reply of `DELETE /v0/management/logs`. */
export interface ManagementLogsClearResponse {
  success: true;
  message: string;
  removed: number;
}

/** One entry of `GET /v0/management/request-error-logs`. */
export interface ManagementErrorLogFile {
  name: string;
  size: number;
  /** Unix seconds. */
  modified: number;
}

/** Most lines one `GET /logs` answers (the HEAD UI asks for 10000). */
export const MAX_LOG_LINES = 10_000;
/** Failed requests `GET /request-error-logs` lists. */
export const MAX_ERROR_LOG_FILES = 100;
/** Newest records `GET /request-log-by-id` searches. */
const MAX_ID_SCAN = 20_000;
/**
 * How far before the cursor's newest line a continuation looks for records written since: a
 * record carries its request's start time and is written when it ends, so a request that began
 * before the cursor may be written after it. Requests longer than this are missed by `cursor`.
 */
const CURSOR_LOOKBACK_MS = 15 * 60_000;
const CLEARED_KEY = "cliproxy:logs-cleared-at";
const PAGE = 500;

const disabled = () => managementError(400, "logging to file disabled");

const pad = (n: number) => String(n).padStart(2, "0");
/** `YYYY-MM-DD HH:MM:SS` (UTC). */
function logTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
}

/** A field value on one line: no line breaks, spaces quoted. */
function field(v: string): string {
  const flat = v.replace(/[\r\n]+/g, " ");
  return /[\s"]/.test(flat) ? JSON.stringify(flat) : flat;
}

/** One request log record as a log line. */
export function logLine(r: UsageRecord): string {
  const parts = [
    `[${logTime(r.timestamp)}]`,
    r.success ? "[info]" : "[warn]",
    `[${r.requestId || r.id}]`,
    String(r.status),
    r.route,
    `model=${field(r.model || "-")}`,
  ];
  if (r.keyName) parts.push(`key=${field(r.keyName)}`);
  if (r.username) parts.push(`user=${field(r.username)}`);
  if (r.credentialId) parts.push(`credential=${field(r.credentialId)}`);
  if (r.provider) parts.push(`provider=${field(r.provider)}`);
  parts.push(`${(r.durationMs / 1000).toFixed(3)}s`);
  parts.push(`tokens=${r.inputTokens}+${r.outputTokens}`);
  if (r.retries) parts.push(`retries=${r.retries}`);
  if (!r.success)
    parts.push(`error=${field(`${r.errorType ? `${r.errorType}: ` : ""}${r.error ?? ""}`)}`);
  return parts.join(" ");
}

/** The text of one record's "log file" (`/request-error-logs/:name`, `/request-log-by-id/:id`). */
export function logFile(r: UsageRecord): string {
  const rows: [string, unknown][] = [
    ["request id", r.requestId],
    ["time", new Date(r.timestamp).toISOString()],
    ["route", r.route],
    ["format", r.format],
    ["model", r.model],
    ["stream", r.stream],
    ["status", r.status],
    ["success", r.success],
    ["error type", r.errorType],
    ["error", r.error],
    ["key", r.keyName],
    ["user", r.username],
    ["group", r.group],
    ["credential", r.credentialId],
    ["provider", r.provider],
    ["retries", r.retries],
    ["duration ms", r.durationMs],
    ["first token ms", r.firstTokenMs],
    ["input tokens", r.inputTokens],
    ["output tokens", r.outputTokens],
    ["cached tokens", r.cachedTokens],
    ["reasoning tokens", r.reasoningTokens],
    ["quota", r.quota],
  ];
  const lines = rows
    .filter(([, v]) => v !== undefined && v !== null && v !== "")
    .map(([k, v]) => `${k}: ${String(v)}`);
  lines.push("");
  if (r.bodies?.request !== undefined) lines.push("=== request body ===", r.bodies.request, "");
  if (r.bodies?.response !== undefined) lines.push("=== response body ===", r.bodies.response, "");
  if (r.bodies === undefined)
    lines.push("(bodies are kept only while the `request-log` setting is on)", "");
  return lines.join("\n");
}

/** Name of a failed record's "error log file": `error-<ms>-<request id>.log`. */
export function errorLogName(r: UsageRecord): string {
  const id = /^[A-Za-z0-9._-]{1,100}$/.test(r.requestId) ? r.requestId : `record${r.id}`;
  return `error-${r.timestamp}-${id}.log`;
}

function attachment(name: string, text: string): Reply {
  return {
    status: 200,
    headers: {
      "content-type": "text/plain; charset=utf-8",
      "content-disposition": `attachment; filename="${name}"`,
      "cache-control": "no-store",
      "x-content-type-options": "nosniff",
    },
    body: text,
  };
}

interface Cursor {
  /** ms of the newest line. */
  t: number;
  /** The newest record id seen. */
  id: number;
}

const encodeCursor = (c: Cursor) => Buffer.from(JSON.stringify(c)).toString("base64url");
function decodeCursor(s: string): Cursor | null {
  try {
    const c = JSON.parse(Buffer.from(s, "base64url").toString("utf8")) as Partial<Cursor>;
    return Number.isSafeInteger(c.t) && Number.isSafeInteger(c.id) && (c.t as number) >= 0
      ? (c as Cursor)
      : null;
  } catch {
    return null;
  }
}

/** Records of `query`, newest first, at most `max`. */
async function collect(store: Store, query: UsageQuery, max: number): Promise<UsageRecord[]> {
  const out: UsageRecord[] = [];
  for (let offset = 0; out.length < max; offset += PAGE) {
    const { items } = await store.usage.list({
      ...query,
      offset,
      limit: Math.min(PAGE, max - out.length),
    });
    out.push(...items);
    if (items.length < PAGE) break;
  }
  return out;
}

/** `?limit=`: absent → the default; else a positive integer (400 otherwise). */
function parseLimit(v: string | null): number {
  if (v === null) return MAX_LOG_LINES;
  if (!/^-?\d+$/.test(v.trim()))
    throw managementError(400, "invalid limit: must be a positive integer");
  const n = Number(v.trim());
  if (n <= 0) throw managementError(400, "invalid limit: must be greater than zero");
  return Math.min(n, MAX_LOG_LINES);
}

/** The log routes. */
export function logRoutes(guard: ManagementGuard, deps: ManagementLogsDeps): Route[] {
  const { store } = deps;
  const clearedAt = async () => Number((await store.kv.get(CLEARED_KEY)) ?? 0) || 0;

  const logs = async (q: URLSearchParams): Promise<ManagementLogsResponse> => {
    const limit = parseLimit(q.get("limit"));
    const afterRaw = Number(q.get("after") ?? "");
    const after = Number.isSafeInteger(afterRaw) && afterRaw > 0 ? afterRaw : 0;
    const cursorText = q.get("cursor");
    const cursor = cursorText ? decodeCursor(cursorText) : null;
    const floor = await clearedAt();
    let records: UsageRecord[];
    if (cursor) {
      const from = Math.max(
        floor,
        cursor.t - CURSOR_LOOKBACK_MS,
        after > 0 ? (after + 1) * 1000 : 0,
      );
      records = (await collect(store, { from }, MAX_ID_SCAN))
        .filter((r) => r.id > cursor.id)
        .sort((a, b) => a.id - b.id)
        .slice(0, limit);
    } else {
      // Newest `limit` lines (after `after` when given), oldest first.
      const from = Math.max(floor, after > 0 ? (after + 1) * 1000 : 0);
      records = (await collect(store, from > 0 ? { from } : {}, limit)).sort(
        (a, b) => a.timestamp - b.timestamp || a.id - b.id,
      );
    }
    const newest = records.reduce((m, r) => Math.max(m, r.timestamp), cursor?.t ?? 0);
    const next: Cursor = {
      t: records.length > 0 || cursor ? newest : Date.now(),
      id: records.reduce((m, r) => Math.max(m, r.id), cursor?.id ?? 0),
    };
    const body: ManagementLogsResponse = {
      lines: records.map(logLine),
      "line-count": records.length,
      "latest-timestamp": Math.max(Math.floor(newest / 1000), after),
      "next-cursor": encodeCursor(next),
    };
    if (cursorText && !cursor) body["cursor-reset"] = true;
    return body;
  };

  const failedRecord = async (name: string): Promise<UsageRecord> => {
    if (name === "" || /[/\\]/.test(name)) throw managementError(400, "invalid log file name");
    const m = /^error-(\d{1,15})-([A-Za-z0-9._-]{1,100})\.log$/.exec(name);
    if (!m) throw managementError(404, "log file not found");
    const ts = Number(m[1]);
    const { items } = await store.usage.list({ from: ts, to: ts + 1, success: false, limit: 100 });
    const r = items.find((x) => errorLogName(x) === name);
    if (!r) throw managementError(404, "log file not found");
    return r;
  };

  return [
    managementRoute(guard, "GET", "/logs", async (ex) => {
      if (!deps.settings.get("logging-to-file")) throw disabled();
      await deps.flushUsage();
      return json(200, await logs(new URLSearchParams(ex.search)));
    }),
    managementRoute(guard, "DELETE", "/logs", async () => {
      if (!deps.settings.get("logging-to-file")) throw disabled();
      await deps.flushUsage();
      await store.kv.set(CLEARED_KEY, String(Date.now() + 1));
      const body: ManagementLogsClearResponse = {
        success: true,
        message: "Logs cleared successfully",
        removed: 0,
      };
      return json(200, body);
    }),
    managementRoute(guard, "GET", "/request-error-logs", async () => {
      await deps.flushUsage();
      const { items } = await store.usage.list({ success: false, limit: MAX_ERROR_LOG_FILES });
      const files: ManagementErrorLogFile[] = items.map((r) => ({
        name: errorLogName(r),
        size: Buffer.byteLength(logFile(r)),
        modified: Math.floor((r.timestamp + r.durationMs) / 1000),
      }));
      return json(200, { files });
    }),
    managementRoute(guard, "GET", "/request-error-logs/:name", async (_ex, params) => {
      await deps.flushUsage();
      const name = params.name ?? "";
      return attachment(name, logFile(await failedRecord(name)));
    }),
    managementRoute(guard, "GET", "/request-log-by-id/:id", async (_ex, params) => {
      const id = (params.id ?? "").trim();
      if (id === "") throw managementError(400, "missing request ID");
      if (/[/\\]/.test(id)) throw managementError(400, "invalid request ID");
      await deps.flushUsage();
      for (let offset = 0; offset < MAX_ID_SCAN; offset += PAGE) {
        const { items } = await store.usage.list({ offset, limit: PAGE });
        const r = items.find((x) => x.requestId === id);
        if (r) return attachment(`request-${errorLogName(r).slice(6)}`, logFile(r));
        if (items.length < PAGE) break;
      }
      throw managementError(404, "log file not found for the given request ID");
    }),
  ];
}
