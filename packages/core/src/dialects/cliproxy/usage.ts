import { authFileName } from "../../config-model/auth-file.js";
import { PROVIDER_KEY_DEFAULT_BASE_URLS } from "../../config-model/list-items.js";
import { GL_API_BASE_URL } from "../../config-model/string-lists.js";
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { CredentialRecord, Store } from "../../store/types.js";
import {
  USAGE_GROUP_BY,
  type UsageGroupBy,
  type UsageSummaryQuery,
  type UsageSummaryRow,
  usageSummary,
} from "../../usage/summary.js";
import { type UsageSnapshot, type UsageSnapshotOptions, usageSnapshot } from "../../usage/view.js";
import { maskSecret } from "../../util/secrets.js";
import { type CredentialActivity, credentialActivity, emptyActivity } from "./activity.js";
import { type ManagementGuard, managementError, managementRoute } from "./common.js";

/** Reply of `GET /v0/management/usage`. */
export interface ManagementUsageResponse {
  usage: UsageSnapshot;
}

/** Reply of `GET /v0/management/usage/summary` (tokenpool's). */
export interface ManagementUsageSummaryResponse {
  by: UsageGroupBy;
  /** The bounds asked for (ms; null when open). Whole UTC hours overlapping them count. */
  from: number | null;
  to: number | null;
  rows: UsageSummaryRow[];
}

/** What the usage routes need. */
export interface ManagementUsageDeps {
  store: Store;
  /** Writes queued usage records first, so that the view includes finished requests. */
  flushUsage(): Promise<void>;
  /** Bounds of the details. */
  usageView?: UsageSnapshotOptions;
  /** The pool: names the credential of each detail (`source`) and lists `/api-key-usage`. */
  pool?: { get(id: string): CredentialRecord | null; list(): CredentialRecord[] };
}

/**
 * Reply of `GET /v0/management/api-key-usage` (CLIProxyAPI's dashboard): per provider (`claude`,
 * `codex`, `gemini`, an openai-compatibility provider's name ...), per `<base-url>|<api-key>`
 * as `GET /config` shows them (a default base URL is `""`), the key's requests.
 */
export type ManagementApiKeyUsageResponse = Record<string, Record<string, CredentialActivity>>;

/** CLIProxyAPI's provider names, for the providers whose names differ from tokenpool's. */
const CPA_PROVIDER: Readonly<Record<string, string>> = { anthropic: "claude" };

/**
 * A detail's `source`: an auth file's name, or an API key as CLIProxyAPI's UIs mask it
 * (`abcd...wxyz`, which they match against their own keys).
 */
export function usageSource(c: CredentialRecord | null, id: string): string {
  if (!c) return id;
  if (c.kind === "oauth") return authFileName(c);
  const key = c.secret.apiKey ?? "";
  return key.length > 8 ? `${key.slice(0, 4)}...${key.slice(-4)}` : maskSecret(key);
}

/** `GET /api-key-usage`: the API-key credentials' activity, by provider and `base|key`. */
export async function apiKeyUsage(
  store: Store,
  pool: { list(): CredentialRecord[] },
  now = Date.now(),
): Promise<ManagementApiKeyUsageResponse> {
  const activity = await credentialActivity(store, now);
  const defaults = new Set<string>([
    ...Object.values(PROVIDER_KEY_DEFAULT_BASE_URLS),
    GL_API_BASE_URL,
  ]);
  const out: ManagementApiKeyUsageResponse = Object.create(null);
  for (const c of pool.list()) {
    if (c.kind !== "api-key") continue;
    const provider =
      (c.provider === "openai" && c.label ? c.label : (CPA_PROVIDER[c.provider] ?? c.provider))
        .trim()
        .toLowerCase() || "unknown";
    const base = defaults.has(c.baseUrl) ? "" : c.baseUrl.trim();
    const key = `${base}|${(c.secret.apiKey ?? "").trim()}`;
    const a = activity.get(c.id) ?? emptyActivity(now);
    let group = out[provider];
    if (!group) {
      group = Object.create(null) as Record<string, CredentialActivity>;
      out[provider] = group;
    }
    const prev = group[key];
    if (!prev) group[key] = structuredClone(a);
    else {
      // Two credentials with the same base and key (CLIProxyAPI sums them too).
      prev.success += a.success;
      prev.failed += a.failed;
      a.recent_requests.forEach((b, i) => {
        prev.recent_requests[i]!.success += b.success;
        prev.recent_requests[i]!.failed += b.failed;
      });
    }
  }
  return out;
}

/** A time bound of the summary: RFC 3339 text or Unix seconds; undefined when absent. */
function timeBound(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === "") return undefined;
  const ms = /^\d{1,12}$/.test(v) ? Number(v) * 1000 : Date.parse(v);
  if (!Number.isFinite(ms) || !/^\d/.test(v))
    throw managementError(400, `invalid ${name}: use RFC 3339 or Unix seconds`);
  return ms;
}

/** The summary query of `GET /usage/summary`'s parameters. */
function summaryQuery(q: URLSearchParams): UsageSummaryQuery {
  const by = q.get("by") ?? "model";
  if (!(USAGE_GROUP_BY as readonly string[]).includes(by))
    throw managementError(400, `invalid by: one of ${USAGE_GROUP_BY.join(", ")}`);
  const query: UsageSummaryQuery = { by: by as UsageGroupBy };
  const from = timeBound(q, "from");
  const to = timeBound(q, "to");
  if (from !== undefined) query.from = from;
  if (to !== undefined) query.to = to;
  for (const [name, field] of [
    ["key_id", "keyId"],
    ["user_id", "userId"],
  ] as const) {
    const v = q.get(name);
    if (v === null || v === "") continue;
    if (!/^\d{1,15}$/.test(v)) throw managementError(400, `invalid ${name}`);
    query[field] = Number(v);
  }
  const credential = q.get("credential_id");
  if (credential) query.credentialId = credential;
  return query;
}

/**
 * `GET /api-key-usage` (CLIProxyAPI's dashboard, see {@link apiKeyUsage}).
 * `GET /usage`: `{ usage: { total_requests, success_count, failure_count, total_tokens,
 * requests_by_day, requests_by_hour, tokens_by_day, tokens_by_hour, apis } }`, from the store
 * (durable, UTC buckets; see `usage/view.ts`). `GET /usage/summary` (tokenpool's): the same
 * numbers with their cost, per key, user, model, credential, UTC day or UTC hour (`?by=`,
 * `from`, `to`, `key_id`, `user_id`, `credential_id`).
 */
export function usageRoutes(guard: ManagementGuard, deps: ManagementUsageDeps): Route[] {
  return [
    managementRoute(guard, "GET", "/usage", async () => {
      await deps.flushUsage();
      const pool = deps.pool;
      return json(200, {
        usage: await usageSnapshot(deps.store, {
          ...deps.usageView,
          ...(pool ? { source: (id: string) => usageSource(pool.get(id), id) } : {}),
        }),
      });
    }),
    managementRoute(guard, "GET", "/api-key-usage", async () => {
      await deps.flushUsage();
      return json(200, deps.pool ? await apiKeyUsage(deps.store, deps.pool) : {});
    }),
    managementRoute(guard, "GET", "/usage/summary", async (ex) => {
      const query = summaryQuery(new URLSearchParams(ex.search));
      await deps.flushUsage();
      const body: ManagementUsageSummaryResponse = {
        by: query.by,
        from: query.from ?? null,
        to: query.to ?? null,
        rows: await usageSummary(deps.store, query),
      };
      return json(200, body);
    }),
  ];
}
