/**
 * Balances a key holder reads with the key itself: new-api's `GET /api/usage/token`, the
 * OpenAI-style `GET /v1/dashboard/billing/{subscription,usage}` of one-api/new-api, and
 * OpenRouter's `GET /v1/key`. The shared part: who may read (the presented key, under
 * {@link KeyService.authorizeReader}) and the answers' shapes, each built from one key's view.
 * Each dialect mounts its routes and renders errors in its own format.
 *
 * @module
 */
import { QUOTA_PER_USD } from "../billing/price.js";
import type { Exchange } from "../exchange.js";
import type { ApiKeyView, AuthorizedKey, KeyService } from "../keys/service.js";
import { presentedKey } from "../proxy/authorize.js";
import type { RefillInterval } from "../store/types.js";
import { limitView } from "./new-api/limits.js";
import type { LimitView } from "./new-api/wire.js";

/** What the balance routes need: the keys and the client's address. */
export interface BalanceDeps {
  keys: KeyService;
  /** The client's address (the trusted proxy chain resolved), for the key's IP allowlist. */
  clientIp(ex: Exchange): string;
}

/**
 * The key a balance request presents (`Authorization: Bearer`, `x-api-key`, `x-goog-api-key`
 * or `?key=`, as on the proxy routes), checked for reading: unknown and disabled keys are
 * refused (401), so are addresses outside its allowlist and a disabled owner (403); an expired or
 * exhausted key may still read. A due refill is applied first.
 */
export function authorizeBalanceReader(deps: BalanceDeps, ex: Exchange): Promise<AuthorizedKey> {
  return deps.keys.authorizeReader(presentedKey(ex), { ip: deps.clientIp(ex) });
}

/** Quota units as US dollars (new-api's `quota / QuotaPerUnit`, 500000 units = 1 USD). */
export function quotaToUsd(units: number): number {
  return units / QUOTA_PER_USD;
}

/** What new-api's OpenAI-style subscription answers for an unlimited token, in USD. */
export const UNLIMITED_USD = 100_000_000;

/**
 * `data` of `GET /api/usage/token` (new-api's `GetTokenUsage`), plus tokenpool's limit and refill
 * fields as the token routes show them. Quota fields are quota units (500000 = 1 USD).
 */
export interface TokenUsageData extends LimitView {
  object: "token_usage";
  name: string;
  /** `total_available + total_used`. */
  total_granted: number;
  total_used: number;
  /** The balance left (as stored; meaningless when `unlimited_quota`). */
  total_available: number;
  unlimited_quota: boolean;
  /** Each allowed model mapped to `true` (new-api's map form); `{}` when none are listed. */
  model_limits: Record<string, boolean>;
  model_limits_enabled: boolean;
  /** Unix seconds; 0 = never. */
  expires_at: number;
}

/** The answer of `GET /api/usage/token`: new-api's `{ code: true, message: "ok", data }`. */
export interface TokenUsageResponse {
  code: true;
  message: "ok";
  data: TokenUsageData;
}

/** new-api's `data` of `GET /api/usage/token` for one key. */
export function tokenUsageData(k: ApiKeyView): TokenUsageData {
  return {
    object: "token_usage",
    name: k.name,
    total_granted: k.remainQuota + k.usedQuota,
    total_used: k.usedQuota,
    total_available: k.remainQuota,
    unlimited_quota: k.unlimitedQuota,
    model_limits: Object.fromEntries(k.modelLimits.map((m) => [m, true])),
    model_limits_enabled: k.modelLimitsEnabled,
    expires_at: k.expiredTime === -1 ? 0 : k.expiredTime,
    ...limitView(k),
  };
}

/**
 * `GET /v1/dashboard/billing/subscription` (one-api/new-api's OpenAI-style answer). Every limit is
 * the key's granted total (`remain + used`) in USD, 100000000 for an unlimited key.
 */
export interface BillingSubscriptionResponse {
  object: "billing_subscription";
  has_payment_method: true;
  soft_limit_usd: number;
  hard_limit_usd: number;
  system_hard_limit_usd: number;
  /** The key's expiry in Unix seconds; 0 = never. */
  access_until: number;
}

/** The subscription answer for one key (new-api's `GetSubscription` with token statistics). */
export function billingSubscription(k: ApiKeyView): BillingSubscriptionResponse {
  const amount = k.unlimitedQuota ? UNLIMITED_USD : quotaToUsd(k.remainQuota + k.usedQuota);
  return {
    object: "billing_subscription",
    has_payment_method: true,
    soft_limit_usd: amount,
    hard_limit_usd: amount,
    system_hard_limit_usd: amount,
    access_until: Math.max(k.expiredTime, 0),
  };
}

/**
 * `GET /v1/dashboard/billing/usage`: what the key has used, in US cents (OpenAI's unit), over its
 * whole life (`start_date` and `end_date` are ignored, as new-api does).
 */
export interface BillingUsageResponse {
  object: "list";
  total_usage: number;
}

/** The usage answer for one key (new-api's `GetUsage`). */
export function billingUsage(k: ApiKeyView): BillingUsageResponse {
  return { object: "list", total_usage: quotaToUsd(k.usedQuota) * 100 };
}

/** OpenRouter's `limit_reset` for each refill interval (a 30-day period has none). */
const LIMIT_RESET: Record<RefillInterval, "daily" | "weekly" | "monthly" | null> = {
  "1d": "daily",
  "7d": "weekly",
  "30d": null,
  month: "monthly",
};

/**
 * `data` of `GET /v1/key` in OpenRouter's shape (amounts in USD), with tokenpool's rate limits and
 * refill as extra fields. Fields OpenRouter has that tokenpool has no counterpart for are fixed:
 * no BYOK, never a free-tier, management or provisioning key.
 */
export interface KeyInfoData {
  /** The key's name, or its masked hint when it has none (never the key itself). */
  label: string;
  /** Spending limit in USD: the refill amount with a refill, else the granted total; null = unlimited. */
  limit: number | null;
  /** USD left; null = unlimited. */
  limit_remaining: number | null;
  /** When `limit` resets: `daily`, `weekly`, `monthly`, or null (no refill, or a 30-day one). */
  limit_reset: "daily" | "weekly" | "monthly" | null;
  /** USD used over the key's life. */
  usage: number;
  byok_usage: 0;
  include_byok_in_limit: false;
  is_free_tier: false;
  is_management_key: false;
  is_provisioning_key: false;
  /** The owner's user id as a string; null without an owner. */
  creator_user_id: string | null;
  /** ISO 8601 UTC; null = never. */
  expires_at: string | null;
  /** OpenRouter's (deprecated) request limit: the key's `rpm_limit` per minute, or -1 for none. */
  rate_limit: { requests: number; interval: string; note: string };
  rpm_limit: number;
  tpm_limit: number;
  rpd_limit: number;
  max_concurrency: number;
  /** The refill interval (`1d`, `7d`, `30d`, `month`); `""` = no refill. */
  quota_refill_interval: LimitView["quota_refill_interval"];
  /** USD each refill period starts with; 0 without a refill. */
  quota_refill_amount: number;
  /** When the balance refills next (Unix seconds); 0 = no refill. */
  next_refill_time: number;
}

/** The answer of `GET /v1/key`: `{ data }`. */
export interface KeyInfoResponse {
  data: KeyInfoData;
}

/** OpenRouter's `GET /v1/key` data for one key. */
export function keyInfoData(k: ApiKeyView): KeyInfoData {
  const lv = limitView(k);
  const refill = k.quotaRefill;
  const limit = k.unlimitedQuota
    ? null
    : quotaToUsd(refill ? refill.amount : k.remainQuota + k.usedQuota);
  return {
    label: k.name || k.keyHint,
    limit,
    limit_remaining: k.unlimitedQuota ? null : quotaToUsd(k.remainQuota),
    limit_reset: refill ? LIMIT_RESET[refill.interval] : null,
    usage: quotaToUsd(k.usedQuota),
    byok_usage: 0,
    include_byok_in_limit: false,
    is_free_tier: false,
    is_management_key: false,
    is_provisioning_key: false,
    creator_user_id: k.userId === null ? null : String(k.userId),
    expires_at: k.expiredTime === -1 ? null : new Date(k.expiredTime * 1000).toISOString(),
    rate_limit: {
      requests: lv.rpm_limit > 0 ? lv.rpm_limit : -1,
      interval: "1m",
      note: "The key's own requests-per-minute limit (-1 = none of its own); see rpm_limit, tpm_limit, rpd_limit and max_concurrency.",
    },
    rpm_limit: lv.rpm_limit,
    tpm_limit: lv.tpm_limit,
    rpd_limit: lv.rpd_limit,
    max_concurrency: lv.max_concurrency,
    quota_refill_interval: lv.quota_refill_interval,
    quota_refill_amount: quotaToUsd(lv.quota_refill_amount),
    next_refill_time: lv.next_refill_time,
  };
}
