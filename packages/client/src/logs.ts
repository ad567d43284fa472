import type { NewApiLogItem, NewApiLogPage, NewApiLogStat } from "@tokenpool/core";
import type { Transport } from "./http.js";

/**
 * Filters of the request log routes, as new-api names them. Times are Unix seconds, both
 * bounds inclusive; `type` 2 = successful requests, 5 = failed ones, 0 (or absent) = all.
 */
export interface LogQuery {
  /** Page, from 1. @default 1 */
  p?: number;
  /** At most 100. @default 20 */
  page_size?: number;
  type?: number;
  token_name?: string;
  model_name?: string;
  /** Admins only (`list`, `stat`, `exportCsv`); the `self` calls ignore it. */
  username?: string;
  /** A credential id. */
  channel?: string;
  group?: string;
  start_timestamp?: number;
  end_timestamp?: number;
}

/**
 * `client.logs`: the request log under new-api's `/api/log/`. With the management key (or an
 * admin's access token) `list`, `stat`, `exportCsv` and `deleteBefore` see every user's
 * records; the `self` calls show the access token's user (or the management key's
 * `New-Api-User`) their own only.
 */
export interface LogsApi {
  /** `GET /api/log/`: every user's records, newest first (admins). */
  list(query?: LogQuery): Promise<NewApiLogPage>;
  /** `GET /api/log/stat`: quota of the selected records, rpm / tpm of the last minute (admins). */
  stat(query?: LogQuery): Promise<NewApiLogStat>;
  /** `GET /api/log/export`: the selected records as CSV text (admins; at most 100,000, newest first). */
  exportCsv(query?: LogQuery): Promise<string>;
  /** `DELETE /api/log/?target_timestamp=`: deletes records before a Unix time; resolves with how many (admins). */
  deleteBefore(unixSeconds: number): Promise<number>;
  /** `GET /api/log/self`: the caller's own records. */
  self(query?: LogQuery): Promise<NewApiLogPage>;
  /** `GET /api/log/self/stat`. */
  selfStat(query?: LogQuery): Promise<NewApiLogStat>;
  /** `GET /api/log/self/export`. */
  selfExportCsv(query?: LogQuery): Promise<string>;
  /** `GET /api/log/token`: a key's own newest 100 records, read with the key itself. */
  ofKey(apiKey: string): Promise<NewApiLogItem[]>;
}

/** `client.logs` on a transport. */
export function logsApi(t: Transport): LogsApi {
  const auth = "console" as const;
  const q = (query: LogQuery = {}) => ({ auth, query: { ...query } });
  const csv = async (path: string, query?: LogQuery) =>
    (await t.send("GET", path, q(query))).text();
  return {
    list: (query) => t.envelope("GET", "api/log/", q(query)),
    stat: (query) => t.envelope("GET", "api/log/stat", q(query)),
    exportCsv: (query) => csv("api/log/export", query),
    deleteBefore: (unixSeconds) =>
      t.envelope("DELETE", "api/log/", { auth, query: { target_timestamp: unixSeconds } }),
    self: (query) => t.envelope("GET", "api/log/self", q(query)),
    selfStat: (query) => t.envelope("GET", "api/log/self/stat", q(query)),
    selfExportCsv: (query) => csv("api/log/self/export", query),
    ofKey: (apiKey) =>
      t.envelope("GET", "api/log/token", {
        auth: { header: "authorization", value: `Bearer ${apiKey}` },
      }),
  };
}
