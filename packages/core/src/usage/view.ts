/**
 * CLIProxyAPI's usage statistics (`GET /v0/management/usage`) computed from the store: totals
 * and buckets from the hourly roll-ups (kept forever), per-request details from the usage
 * records (kept for the `usage-retention-days` setting). Unlike the original, they survive
 * restarts and are shared by every instance on the store.
 *
 * Days and hours are UTC: the roll-ups are UTC hours, and UTC buckets are the same on every
 * instance whatever its time zone (a local-time view could not be built from hourly UTC rows
 * for zones with half-hour offsets, nor across DST changes).
 *
 * @module
 */
import type { Store, UsageRecord } from "../store/types.js";

/** One request of {@link UsageSnapshot} details. */
export interface UsageDetail {
  /** ISO 8601 with microseconds, UTC, e.g. `2024-05-20T09:15:04.123000Z`. */
  timestamp: string;
  /**
   * The upstream credential that served (CLIProxyAPI's later shape): an auth file's name, an
   * API key masked as `sk-a****wxyz`; `""` when none did.
   */
  source: string;
  /** Whether the request failed. */
  failed: boolean;
  tokens: {
    input_tokens: number;
    output_tokens: number;
    reasoning_tokens: number;
    cached_tokens: number;
    total_tokens: number;
  };
}

/** Per-model statistics of one route. */
export interface ModelUsage {
  total_requests: number;
  total_tokens: number;
  /** The most recent requests (at most the configured bound), oldest first. */
  details: UsageDetail[];
}

/** Per-route statistics. */
export interface ApiUsage {
  total_requests: number;
  /** Successful requests (CLIProxyAPI's later shape). */
  success_count: number;
  /** Failed requests. */
  failure_count: number;
  total_tokens: number;
  models: Record<string, ModelUsage>;
}

/** The `usage` object of the seed. */
export interface UsageSnapshot {
  total_requests: number;
  success_count: number;
  failure_count: number;
  total_tokens: number;
  /** `YYYY-MM-DD` (UTC) → requests. */
  requests_by_day: Record<string, number>;
  /** `00`–`23` (UTC, every day folded together) → requests. */
  requests_by_hour: Record<string, number>;
  tokens_by_day: Record<string, number>;
  tokens_by_hour: Record<string, number>;
  /** `METHOD /path` → statistics. */
  apis: Record<string, ApiUsage>;
}

/** Options of {@link usageSnapshot}. */
export interface UsageSnapshotOptions {
  /** Details returned per route and model (the most recent ones). @default 100 */
  detailsPerModel?: number;
  /** Records read at most to collect details (bounds the cost of one call). @default 10000 */
  maxScan?: number;
  /**
   * A detail's `source`: names the credential that served (never a secret in full).
   * @default the credential id
   */
  source?(credentialId: string): string;
}

/** A record's time in the seed's format: microsecond precision, `Z`. */
export function microsecondTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, "000Z");
}

function detail(r: UsageRecord, source: (id: string) => string): UsageDetail {
  return {
    timestamp: microsecondTimestamp(r.timestamp),
    source: r.credentialId === null ? "" : source(r.credentialId),
    failed: !r.success,
    tokens: {
      input_tokens: r.inputTokens,
      output_tokens: r.outputTokens,
      reasoning_tokens: r.reasoningTokens,
      cached_tokens: r.cachedTokens,
      total_tokens: r.totalTokens,
    },
  };
}

/**
 * A map object without a prototype. Routes and models are what clients sent: a model named
 * `__proto__` must become a key, not reach (and then write to) `Object.prototype`.
 */
function dict<T>(): Record<string, T> {
  return Object.create(null) as Record<string, T>;
}

function bump(map: Record<string, number>, key: string, by: number): void {
  map[key] = (map[key] ?? 0) + by;
}

/** Builds the seed's usage statistics from a store. */
export async function usageSnapshot(
  store: Store,
  options: UsageSnapshotOptions = {},
): Promise<UsageSnapshot> {
  const perModel = options.detailsPerModel ?? 100;
  const maxScan = options.maxScan ?? 10_000;
  const source = options.source ?? ((id: string) => id);
  const snap: UsageSnapshot = {
    total_requests: 0,
    success_count: 0,
    failure_count: 0,
    total_tokens: 0,
    requests_by_day: dict(),
    requests_by_hour: dict(),
    tokens_by_day: dict(),
    tokens_by_hour: dict(),
    apis: dict(),
  };
  const rollups = await store.usage.rollups();
  for (const r of rollups) {
    snap.total_requests += r.requests;
    snap.success_count += r.successes;
    snap.failure_count += r.failures;
    snap.total_tokens += r.totalTokens;
    const day = r.hour.slice(0, 10);
    const hour = r.hour.slice(11, 13);
    bump(snap.requests_by_day, day, r.requests);
    bump(snap.requests_by_hour, hour, r.requests);
    bump(snap.tokens_by_day, day, r.totalTokens);
    bump(snap.tokens_by_hour, hour, r.totalTokens);
    let api = snap.apis[r.route];
    if (!api) {
      api = {
        total_requests: 0,
        success_count: 0,
        failure_count: 0,
        total_tokens: 0,
        models: dict(),
      };
      snap.apis[r.route] = api;
    }
    api.total_requests += r.requests;
    api.success_count += r.successes;
    api.failure_count += r.failures;
    api.total_tokens += r.totalTokens;
    let model = api.models[r.model];
    if (!model) {
      model = { total_requests: 0, total_tokens: 0, details: [] };
      api.models[r.model] = model;
    }
    model.total_requests += r.requests;
    model.total_tokens += r.totalTokens;
  }

  // Details: newest first from the store, the most recent `perModel` of each route and model.
  if (perModel > 0) {
    const page = 500;
    const open = new Set(
      Object.entries(snap.apis).flatMap(([route, a]) =>
        Object.keys(a.models).map((m) => `${route}\u0000${m}`),
      ),
    );
    for (let offset = 0; offset < maxScan && open.size > 0; offset += page) {
      const { items } = await store.usage.list({
        offset,
        limit: Math.min(page, maxScan - offset),
      });
      for (const r of items) {
        const model = snap.apis[r.route]?.models[r.model];
        if (!model || model.details.length >= perModel) continue;
        model.details.push(detail(r, source));
        if (model.details.length >= perModel) open.delete(`${r.route}\u0000${r.model}`);
      }
      if (items.length < page) break;
    }
    for (const api of Object.values(snap.apis))
      for (const model of Object.values(api.models)) model.details.reverse();
  }
  return snap;
}
