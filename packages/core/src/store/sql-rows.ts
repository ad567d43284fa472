/**
 * Mapping between the rows of an SQL store (SQLite, PostgreSQL: the same tables and column names)
 * and the Store records. Exported under `@tokenpool/core/store-kernel` for the SQL adapters.
 *
 * @module
 */
import type {
  ApiKeyRecord,
  CredentialRecord,
  KeyStatus,
  NewUsageRecord,
  TokenUsage,
  UsageRecord,
  UsageRollup,
  UserRecord,
} from "./types.js";
import type { ReservationRow } from "./util.js";

/** A row of `keys`. */
export interface KeyRow {
  id: number;
  user_id: number | null;
  name: string;
  key_hash: string;
  key_cipher: string | null;
  key_hint: string;
  status: number;
  remain_quota: number;
  used_quota: number;
  unlimited_quota: number;
  expired_time: number;
  model_limits_enabled: number;
  model_limits: string;
  allow_ips: string;
  key_group: string;
  created_time: number;
  accessed_time: number;
  /** JSON, NULL = never set (migration 4). */
  limits: string | null;
  /** JSON, NULL = never set. */
  quota_refill: string | null;
  /** NULL = never set. */
  quota_period: number | null;
}

/** A row of `users`. */
export interface UserRow {
  id: number;
  username: string;
  display_name: string;
  role: string;
  status: number;
  user_group: string;
  quota: number;
  used_quota: number;
  access_token_hash: string | null;
  created_time: number;
  /** JSON, NULL = never set (migration 4). */
  limits: string | null;
  /** JSON, NULL = never set. */
  quota_refill: string | null;
  /** NULL = never set. */
  quota_period: number | null;
}

/** A row of `credentials` (without its internal `seq`). */
export interface CredentialRow {
  id: string;
  provider: string;
  kind: string;
  label: string;
  base_url: string;
  secret: string;
  proxy_url: string;
  project_ids: string;
  models: string;
  excluded_models: string;
  priority: number;
  weight: number;
  enabled: number;
  group_names: string;
  headers: string;
  state: string;
  created_at: number;
  updated_at: number;
  /** JSON, NULL = never set (migration 4). */
  limits: string | null;
}

/** The token and quota columns shared by `usage_records` and `usage_rollups`. */
export interface TokenColumns {
  input_tokens: number;
  output_tokens: number;
  reasoning_tokens: number;
  cached_tokens: number;
  total_tokens: number;
  quota: number;
}

/** A row of `usage_records`. */
export interface UsageRow extends TokenColumns {
  id: number;
  timestamp: number;
  request_id: string;
  key_id: number | null;
  user_id: number | null;
  credential_id: string | null;
  provider: string;
  route: string;
  model: string;
  stream: number;
  status: number;
  success: number;
  duration_ms: number;
  error: string | null;
  /** 1 for a record written by recoverReservations. */
  recovered: number;
  /** Which request log fields the record has: a bit set of {@link LOG_FIELD} (migration 5). */
  log_fields: number;
  /** '' when absent. */
  key_name: string;
  /** '' when absent. */
  username: string;
  /** '' when absent. */
  usage_group: string;
  /** NULL when absent. */
  format: string | null;
  /** NULL when absent or null. */
  first_token_ms: number | null;
  /** NULL when absent. */
  retries: number | null;
  /** NULL when absent or null. */
  error_type: string | null;
  /** JSON, NULL when absent. */
  bodies: string | null;
}

/** The bits of `usage_records.log_fields`: which optional request log fields a record has. */
export const LOG_FIELD = {
  keyName: 1,
  username: 2,
  group: 4,
  format: 8,
  firstTokenMs: 16,
  retries: 32,
  errorType: 64,
  bodies: 128,
} as const;

/** A row of `reservations`. */
export interface ReservationDbRow {
  id: string;
  key_id: number;
  user_id: number | null;
  units: number;
  key_debited: number;
  expires_at: number;
  owner: string;
  request_id: string;
  route: string;
  model: string;
  timestamp: number;
  /** The key's refill period when debited (0 for rows written before migration 4). */
  key_period: number;
  /** The owner's refill period when debited. */
  user_period: number;
}

/** A row of `usage_rollups`. */
export interface RollupRow extends TokenColumns {
  hour: string;
  route: string;
  model: string;
  key_id: number;
  /** {@link NO_USER} for none (migration 5). */
  user_id: number;
  /** {@link NO_CREDENTIAL} for none (migration 5). */
  credential_id: string;
  requests: number;
  successes: number;
  failures: number;
}

/** `usage_rollups.key_id` for usage without a key. */
export const NO_KEY = -1;
/** `usage_rollups.user_id` for usage without an owner (and rows from before migration 5). */
export const NO_USER = -1;
/** `usage_rollups.credential_id` for usage no credential served (and rows from before migration 5). */
export const NO_CREDENTIAL = "";

/** Booleans are stored as 0/1: better-sqlite3 does not bind booleans. */
const flag = (b: boolean): number => (b ? 1 : 0);

/** An optional JSON field as its column: NULL when never set. */
const json = (v: unknown): string | null => (v === undefined ? null : JSON.stringify(v));

/**
 * The admission fields of a key or user row (migration 4), each only when set: a record that
 * never had them comes back without them.
 */
function admissionFromRow(r: Pick<KeyRow, "limits" | "quota_refill" | "quota_period">) {
  const out: Pick<ApiKeyRecord, "limits" | "quotaRefill" | "quotaPeriod"> = {};
  if (r.limits !== null) out.limits = JSON.parse(r.limits);
  if (r.quota_refill !== null) out.quotaRefill = JSON.parse(r.quota_refill);
  if (r.quota_period !== null) out.quotaPeriod = r.quota_period;
  return out;
}

/** Named parameters of the admission columns of a key or user. */
function admissionParams(r: Pick<ApiKeyRecord, "limits" | "quotaRefill" | "quotaPeriod">) {
  return {
    limits: json(r.limits),
    quotaRefill: json(r.quotaRefill),
    quotaPeriod: r.quotaPeriod ?? null,
  };
}

/** A key record from its row. */
export function keyFromRow(r: KeyRow): ApiKeyRecord {
  return {
    id: r.id,
    userId: r.user_id,
    name: r.name,
    keyHash: r.key_hash,
    keyCipher: r.key_cipher,
    keyHint: r.key_hint,
    status: r.status as KeyStatus,
    remainQuota: r.remain_quota,
    usedQuota: r.used_quota,
    unlimitedQuota: r.unlimited_quota !== 0,
    expiredTime: r.expired_time,
    modelLimitsEnabled: r.model_limits_enabled !== 0,
    modelLimits: JSON.parse(r.model_limits),
    allowIps: JSON.parse(r.allow_ips),
    group: r.key_group,
    createdTime: r.created_time,
    accessedTime: r.accessed_time,
    ...admissionFromRow(r),
  };
}

/** Named parameters of the key INSERT and UPDATE statements. */
export function keyParams(k: Omit<ApiKeyRecord, "id">): Record<string, unknown> {
  return {
    userId: k.userId,
    name: k.name,
    keyHash: k.keyHash,
    keyCipher: k.keyCipher,
    keyHint: k.keyHint,
    status: k.status,
    remainQuota: k.remainQuota,
    usedQuota: k.usedQuota,
    unlimitedQuota: flag(k.unlimitedQuota),
    expiredTime: k.expiredTime,
    modelLimitsEnabled: flag(k.modelLimitsEnabled),
    modelLimits: JSON.stringify(k.modelLimits),
    allowIps: JSON.stringify(k.allowIps),
    group: k.group,
    createdTime: k.createdTime,
    accessedTime: k.accessedTime,
    ...admissionParams(k),
  };
}

/** A user record from its row. */
export function userFromRow(r: UserRow): UserRecord {
  return {
    id: r.id,
    username: r.username,
    displayName: r.display_name,
    role: r.role as UserRecord["role"],
    status: r.status as UserRecord["status"],
    group: r.user_group,
    quota: r.quota,
    usedQuota: r.used_quota,
    accessTokenHash: r.access_token_hash,
    createdTime: r.created_time,
    ...admissionFromRow(r),
  };
}

/** Named parameters of the user INSERT and UPDATE statements. */
export function userParams(u: Omit<UserRecord, "id">): Record<string, unknown> {
  return {
    username: u.username,
    displayName: u.displayName,
    role: u.role,
    status: u.status,
    group: u.group,
    quota: u.quota,
    usedQuota: u.usedQuota,
    accessTokenHash: u.accessTokenHash,
    createdTime: u.createdTime,
    ...admissionParams(u),
  };
}

/** A credential record from its row (JSON columns parsed). */
export function credentialFromRow(r: CredentialRow): CredentialRecord {
  return {
    id: r.id,
    provider: r.provider,
    kind: r.kind as CredentialRecord["kind"],
    label: r.label,
    baseUrl: r.base_url,
    secret: JSON.parse(r.secret),
    proxyUrl: r.proxy_url,
    projectIds: JSON.parse(r.project_ids),
    models: JSON.parse(r.models),
    excludedModels: JSON.parse(r.excluded_models),
    priority: r.priority,
    weight: r.weight,
    enabled: r.enabled !== 0,
    groups: JSON.parse(r.group_names),
    headers: JSON.parse(r.headers),
    state: JSON.parse(r.state),
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    ...(r.limits === null ? {} : { limits: JSON.parse(r.limits) }),
  };
}

/** Named parameters of the credential INSERT and UPDATE statements. */
export function credentialParams(c: CredentialRecord): Record<string, unknown> {
  return {
    id: c.id,
    provider: c.provider,
    kind: c.kind,
    label: c.label,
    baseUrl: c.baseUrl,
    secret: JSON.stringify(c.secret),
    proxyUrl: c.proxyUrl,
    projectIds: JSON.stringify(c.projectIds),
    models: JSON.stringify(c.models),
    excludedModels: JSON.stringify(c.excludedModels),
    priority: c.priority,
    weight: c.weight,
    enabled: flag(c.enabled),
    groups: JSON.stringify(c.groups),
    headers: JSON.stringify(c.headers),
    state: JSON.stringify(c.state),
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
    limits: json(c.limits),
  };
}

/** The token counts and quota of a usage or roll-up row. */
function tokensFromRow(r: TokenColumns): TokenUsage & { quota: number } {
  return {
    inputTokens: r.input_tokens,
    outputTokens: r.output_tokens,
    reasoningTokens: r.reasoning_tokens,
    cachedTokens: r.cached_tokens,
    totalTokens: r.total_tokens,
    quota: r.quota,
  };
}

/** A usage record from its row. */
export function usageFromRow(r: UsageRow): UsageRecord {
  return {
    id: r.id,
    timestamp: r.timestamp,
    requestId: r.request_id,
    keyId: r.key_id,
    userId: r.user_id,
    credentialId: r.credential_id,
    provider: r.provider,
    route: r.route,
    model: r.model,
    stream: r.stream !== 0,
    status: r.status,
    success: r.success !== 0,
    ...tokensFromRow(r),
    durationMs: r.duration_ms,
    error: r.error,
    ...(r.recovered ? { recovered: true } : {}),
    ...(r.log_fields ? logFieldsFromRow(r) : {}),
  };
}

/** The request log fields a usage row has (those of its `log_fields` bits). */
function logFieldsFromRow(r: UsageRow): Partial<UsageRecord> {
  const f = r.log_fields;
  const out: Partial<UsageRecord> = {};
  if (f & LOG_FIELD.keyName) out.keyName = r.key_name;
  if (f & LOG_FIELD.username) out.username = r.username;
  if (f & LOG_FIELD.group) out.group = r.usage_group;
  if (f & LOG_FIELD.format) out.format = r.format as string;
  if (f & LOG_FIELD.firstTokenMs) out.firstTokenMs = r.first_token_ms;
  if (f & LOG_FIELD.retries) out.retries = r.retries as number;
  if (f & LOG_FIELD.errorType) out.errorType = r.error_type as UsageRecord["errorType"];
  if (f & LOG_FIELD.bodies) out.bodies = JSON.parse(r.bodies as string);
  return out;
}

/** A reservation row from its database row. */
export function reservationFromRow(r: ReservationDbRow): ReservationRow {
  return {
    id: r.id,
    keyId: r.key_id,
    userId: r.user_id,
    units: r.units,
    keyDebited: r.key_debited !== 0,
    expiresAt: r.expires_at,
    owner: r.owner,
    requestId: r.request_id,
    route: r.route,
    model: r.model,
    timestamp: r.timestamp,
    keyPeriod: r.key_period ?? 0,
    userPeriod: r.user_period ?? 0,
  };
}

/** Positional parameters of the reservation INSERT. */
export function reservationParams(r: ReservationRow): unknown[] {
  return [
    r.id,
    r.keyId,
    r.userId,
    r.units,
    flag(r.keyDebited),
    r.expiresAt,
    r.owner,
    r.requestId,
    r.route,
    r.model,
    r.timestamp,
    r.keyPeriod ?? 0,
    r.userPeriod ?? 0,
  ];
}

/** Positional parameters of the usage INSERT (positional: this is the proxy hot path). */
export function usageParams(u: NewUsageRecord): unknown[] {
  return [
    u.timestamp,
    u.requestId,
    u.keyId,
    u.userId,
    u.credentialId,
    u.provider,
    u.route,
    u.model,
    flag(u.stream),
    u.status,
    flag(u.success),
    u.inputTokens,
    u.outputTokens,
    u.reasoningTokens,
    u.cachedTokens,
    u.totalTokens,
    u.quota,
    u.durationMs,
    u.error,
    flag(u.recovered === true),
    // The request log fields: the bit set of those given, then each value ('' or NULL when absent).
    (u.keyName === undefined ? 0 : LOG_FIELD.keyName) |
      (u.username === undefined ? 0 : LOG_FIELD.username) |
      (u.group === undefined ? 0 : LOG_FIELD.group) |
      (u.format === undefined ? 0 : LOG_FIELD.format) |
      (u.firstTokenMs === undefined ? 0 : LOG_FIELD.firstTokenMs) |
      (u.retries === undefined ? 0 : LOG_FIELD.retries) |
      (u.errorType === undefined ? 0 : LOG_FIELD.errorType) |
      (u.bodies === undefined ? 0 : LOG_FIELD.bodies),
    u.keyName ?? "",
    u.username ?? "",
    u.group ?? "",
    u.format ?? null,
    u.firstTokenMs ?? null,
    u.retries ?? null,
    u.errorType ?? null,
    u.bodies === undefined ? null : JSON.stringify(u.bodies),
  ];
}

/** A roll-up from its row (the "none" sentinels back to null). */
export function rollupFromRow(r: RollupRow): UsageRollup {
  return {
    hour: r.hour,
    route: r.route,
    model: r.model,
    keyId: r.key_id === NO_KEY ? null : r.key_id,
    userId: r.user_id === NO_USER ? null : r.user_id,
    credentialId: r.credential_id === NO_CREDENTIAL ? null : r.credential_id,
    requests: r.requests,
    successes: r.successes,
    failures: r.failures,
    ...tokensFromRow(r),
  };
}

/** Positional parameters of the roll-up upsert. */
export function rollupParams(r: UsageRollup): unknown[] {
  return [
    r.hour,
    r.route,
    r.model,
    r.keyId ?? NO_KEY,
    r.userId ?? NO_USER,
    r.credentialId ?? NO_CREDENTIAL,
    r.requests,
    r.successes,
    r.failures,
    r.inputTokens,
    r.outputTokens,
    r.reasoningTokens,
    r.cachedTokens,
    r.totalTokens,
    r.quota,
  ];
}
