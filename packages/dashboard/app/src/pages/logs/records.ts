/**
 * The request log's records as new-api's log routes answer them (`/api/log/`, `/api/log/self`,
 * `/api/log/token`), with tokenpool's details parsed out of `other`, and the sums the overview
 * and the key holder's page compute from them.
 */

/** One record of `/api/log/...` (new-api's log item). */
export interface LogItem {
  id: number;
  user_id: number;
  /** Unix seconds. */
  created_at: number;
  /** 2 = success, 5 = error. */
  type: number;
  content: string;
  username: string;
  token_name: string;
  token_id: number;
  model_name: string;
  quota: number;
  prompt_tokens: number;
  completion_tokens: number;
  use_time: number;
  is_stream: boolean;
  channel: string;
  channel_name: string;
  group: string;
  ip: string;
  request_id: string;
  /** JSON text of tokenpool's details. */
  other: string;
}

/** `data` of the log listings. */
export interface LogPage {
  items: LogItem[];
  total: number;
  page: number;
  page_size: number;
}

/** `data` of the stat routes. */
export interface LogStat {
  quota: number;
  rpm: number;
  tpm: number;
}

/** tokenpool's details of a record (`other`). */
export interface LogDetails {
  route?: string;
  status?: number;
  duration_ms?: number;
  first_token_ms?: number | null;
  retries?: number;
  error_type?: string;
  format?: string;
  cached_tokens?: number;
  reasoning_tokens?: number;
  recovered?: boolean;
  bodies?: { request?: string; response?: string };
}

/** The details of a record; `{}` when `other` is not JSON. */
export function details(item: LogItem): LogDetails {
  try {
    const v = JSON.parse(item.other || "{}") as unknown;
    return v && typeof v === "object" ? (v as LogDetails) : {};
  } catch {
    return {};
  }
}

/** A record's latency in ms (tokenpool's exact duration, else new-api's whole seconds). */
export function latencyMs(item: LogItem): number {
  const d = details(item).duration_ms;
  return typeof d === "number" ? d : item.use_time * 1000;
}

/** Whether a record is a failed request. */
export const isError = (item: LogItem): boolean => item.type === 5;

/** The median of some numbers (NaN for none). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** The mean of some numbers (NaN for none). */
export function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : Number.NaN;
}

/** A duration in ms as text (`850 ms`, `1.2 s`); `—` when unknown. */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "—";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;
}
