/**
 * new-api's log routes over the request log (the store's usage records): `GET /api/log/`
 * (admins: every user's), `GET /api/log/self` (the caller's own), their `stat` sums, the
 * public `GET /api/log/token` (a key's own records, read with the key), `DELETE /api/log/`
 * (admins: delete records before a time), and tokenpool's CSV export of the same filters
 * (`GET /api/log/export`, `GET /api/log/self/export`).
 *
 * Filters as new-api names them: `type` (0 all, 2 consumption = successful requests,
 * 5 errors = failed ones; other types are never written by tokenpool and find nothing),
 * `token_name`, `model_name`, `username` (admins), `channel` (a credential id), `group`,
 * `start_timestamp` / `end_timestamp` (Unix seconds, both inclusive), `p` (from 1) and
 * `page_size` (at most 100).
 *
 * @module
 */
import { GatewayError } from "../../errors.js";
import { type Exchange, json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { ManagementGate } from "../../keys/management-gate.js";
import { requestLogCsv } from "../../logs/export.js";
import type { Store, UsageQuery, UsageRecord } from "../../store/types.js";
import type { UserService } from "../../users/service.js";
import { authorizeBalanceReader, type BalanceDeps } from "../balance.js";
import { authenticateNewApi, type NewApiPrincipal } from "./auth.js";
import { newApiError, newApiOk, pageQuery } from "./tokens.js";

/** new-api's log types tokenpool writes: a consumption (a request that succeeded) and an error. */
export const LOG_TYPE = { all: 0, consume: 2, error: 5 } as const;

/** What the log routes need. */
export interface LogRouteDeps extends BalanceDeps {
  store: Pick<Store, "usage">;
  users: Pick<UserService, "findByAccessToken" | "get">;
  gate: ManagementGate;
  /** Writes queued usage records first, so that a query sees finished requests. */
  flushUsage(): Promise<void>;
}

/** One record as new-api's log routes show it. */
export interface NewApiLogItem {
  id: number;
  user_id: number;
  /** Unix seconds. */
  created_at: number;
  /** 2 = consumption (success), 5 = error. */
  type: number;
  /** The error message of a failed request; `""` otherwise. */
  content: string;
  username: string;
  token_name: string;
  token_id: number;
  model_name: string;
  quota: number;
  prompt_tokens: number;
  completion_tokens: number;
  /** Seconds, whole (new-api's unit). */
  use_time: number;
  is_stream: boolean;
  /** The credential that served it (`""` when none did). */
  channel: string;
  /** The credential's provider. */
  channel_name: string;
  group: string;
  ip: string;
  request_id: string;
  /** JSON text of tokenpool's details (new-api keeps its extra fields in `other` too). */
  other: string;
}

/** `data` of the log listings. */
export interface NewApiLogPage {
  items: NewApiLogItem[];
  total: number;
  page: number;
  page_size: number;
}

/** `data` of the stat routes: quota of the selected records, and rpm / tpm over the last 60 s. */
export interface NewApiLogStat {
  quota: number;
  rpm: number;
  tpm: number;
}

const param = (detail: string) => new GatewayError("INVALID_REQUEST", `Parameter error: ${detail}`);

/** A record as a new-api log item. */
export function logItem(r: UsageRecord): NewApiLogItem {
  const other: Record<string, unknown> = {
    route: r.route,
    status: r.status,
    duration_ms: r.durationMs,
    cached_tokens: r.cachedTokens,
    reasoning_tokens: r.reasoningTokens,
  };
  if (r.format !== undefined) other.format = r.format;
  if (r.firstTokenMs !== undefined) other.first_token_ms = r.firstTokenMs;
  if (r.retries !== undefined) other.retries = r.retries;
  if (r.errorType) other.error_type = r.errorType;
  if (r.recovered) other.recovered = true;
  if (r.bodies) other.bodies = r.bodies;
  return {
    id: r.id,
    user_id: r.userId ?? 0,
    created_at: Math.floor(r.timestamp / 1000),
    type: r.success ? LOG_TYPE.consume : LOG_TYPE.error,
    content: r.error ?? "",
    username: r.username ?? "",
    token_name: r.keyName ?? "",
    token_id: r.keyId ?? 0,
    model_name: r.model,
    quota: r.quota,
    prompt_tokens: r.inputTokens,
    completion_tokens: r.outputTokens,
    use_time: Math.floor(r.durationMs / 1000),
    is_stream: r.stream,
    channel: r.credentialId ?? "",
    channel_name: r.provider,
    group: r.group ?? "",
    ip: "",
    request_id: r.requestId,
    other: JSON.stringify(other),
  };
}

/** A Unix-seconds query value; undefined when absent or empty. */
function seconds(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === "" || v === "0") return undefined;
  if (!/^\d{1,12}$/.test(v)) throw param(`${name} must be a Unix time in seconds`);
  return Number(v);
}

/** A text filter; undefined when absent or empty (new-api ignores empty filters). */
function text(q: URLSearchParams, name: string): string | undefined {
  const v = q.get(name);
  if (v === null || v === "") return undefined;
  if (v.length > 256) throw param(`${name} is too long`);
  return v;
}

/**
 * The store query of a log request's filters, or null when they can select nothing (a log type
 * tokenpool never writes). `self`: the caller's own records only; `username` is then ignored,
 * as new-api does.
 */
export function logQuery(q: URLSearchParams, self: number | null): UsageQuery | null {
  const query: UsageQuery = {};
  const type = q.get("type");
  if (type !== null && type !== "") {
    if (!/^\d{1,3}$/.test(type)) throw param("type must be a log type number");
    const t = Number(type);
    if (t === LOG_TYPE.consume) query.success = true;
    else if (t === LOG_TYPE.error) query.success = false;
    else if (t !== LOG_TYPE.all) return null;
  }
  const start = seconds(q, "start_timestamp");
  const end = seconds(q, "end_timestamp");
  if (start !== undefined) query.from = start * 1000;
  // new-api's end is inclusive (created_at <= end).
  if (end !== undefined) query.to = (end + 1) * 1000;
  const tokenName = text(q, "token_name");
  const model = text(q, "model_name");
  const channel = text(q, "channel");
  const group = text(q, "group");
  if (tokenName !== undefined) query.keyName = tokenName;
  if (model !== undefined) query.model = model;
  if (channel !== undefined) query.credentialId = channel;
  if (group !== undefined) query.group = group;
  if (self !== null) query.userId = self;
  else {
    const username = text(q, "username");
    if (username !== undefined) query.username = username;
  }
  return query;
}

/** The caller's own user id for the `self` routes. */
function selfId(principal: NewApiPrincipal): number {
  if (!principal.user)
    throw new GatewayError(
      "INVALID_REQUEST",
      "These are a user's own logs: send New-Api-User with the management key, or use GET /api/log/ for every user's",
    );
  return principal.user.id;
}

function requireAdmin(principal: NewApiPrincipal): void {
  if (!principal.admin)
    throw new GatewayError("FORBIDDEN", "No permission to perform this operation, not an admin");
}

const EMPTY_STAT: NewApiLogStat = { quota: 0, rpm: 0, tpm: 0 };

/** new-api's log routes (`/api/log/...`). */
export function logRoutes(deps: LogRouteDeps): Route[] {
  const who = (ex: Exchange) => authenticateNewApi(ex, deps);
  const params = (ex: Exchange) => new URLSearchParams(ex.search);

  const list = async (ex: Exchange, self: number | null): Promise<Reply> => {
    const q = params(ex);
    const { page, size, offset } = pageQuery(q);
    const query = logQuery(q, self);
    await deps.flushUsage();
    const found = query
      ? await deps.store.usage.list({ ...query, offset, limit: size })
      : { items: [], total: 0 };
    const data: NewApiLogPage = {
      items: found.items.map(logItem),
      total: found.total,
      page,
      page_size: size,
    };
    return newApiOk(data);
  };

  const stat = async (ex: Exchange, self: number | null): Promise<Reply> => {
    const query = logQuery(params(ex), self);
    if (!query) return newApiOk(EMPTY_STAT);
    await deps.flushUsage();
    const now = Date.now();
    const [all, recent] = await Promise.all([
      deps.store.usage.stat(query),
      deps.store.usage.stat({
        ...query,
        from: Math.max(query.from ?? 0, now - 60_000),
      }),
    ]);
    const data: NewApiLogStat = { quota: all.quota, rpm: recent.requests, tpm: recent.totalTokens };
    return newApiOk(data);
  };

  const csv = async (ex: Exchange, self: number | null): Promise<Reply> => {
    const query = logQuery(params(ex), self);
    await deps.flushUsage();
    const chunks = query ? requestLogCsv(deps.store, query) : requestLogCsv(deps.store, {}, 0);
    return {
      status: 200,
      headers: {
        "content-type": "text/csv; charset=utf-8",
        "content-disposition": 'attachment; filename="request-log.csv"',
        "cache-control": "no-store",
      },
      body: (async function* () {
        for await (const chunk of chunks) yield Buffer.from(chunk);
      })(),
    };
  };

  const route = (
    method: Route["method"],
    path: string,
    handle: (ex: Exchange) => Promise<Reply>,
  ): Route[] => [
    { method, path, onError: newApiError, handle },
    // new-api's paths work with and without the trailing slash.
    {
      method,
      path: path.endsWith("/") ? path.slice(0, -1) : `${path}/`,
      onError: newApiError,
      handle,
    },
  ];

  return [
    ...route("GET", "/api/log/", async (ex) => {
      requireAdmin(await who(ex));
      return list(ex, null);
    }),
    ...route("DELETE", "/api/log/", async (ex) => {
      requireAdmin(await who(ex));
      const before = seconds(params(ex), "target_timestamp");
      if (before === undefined) throw param("target timestamp is required");
      await deps.flushUsage();
      return newApiOk(await deps.store.usage.prune(before * 1000));
    }),
    ...route("GET", "/api/log/stat", async (ex) => {
      requireAdmin(await who(ex));
      return stat(ex, null);
    }),
    ...route("GET", "/api/log/export", async (ex) => {
      requireAdmin(await who(ex));
      return csv(ex, null);
    }),
    ...route("GET", "/api/log/self", async (ex) => list(ex, selfId(await who(ex)))),
    ...route("GET", "/api/log/self/stat", async (ex) => stat(ex, selfId(await who(ex)))),
    ...route("GET", "/api/log/self/export", async (ex) => csv(ex, selfId(await who(ex)))),
    ...route("GET", "/api/log/token", async (ex) => {
      // The key's own records, read with the key (header or `?key=`, as new-api's page sends it).
      const { key } = await authorizeBalanceReader(deps, ex);
      await deps.flushUsage();
      const found = await deps.store.usage.list({ keyId: key.id, limit: 100 });
      return json(200, { success: true, message: "", data: found.items.map(logItem) });
    }),
  ];
}
