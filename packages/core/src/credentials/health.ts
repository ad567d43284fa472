import type { CredentialRecord } from "../store/types.js";
import { redactSecrets } from "../util/secrets.js";
import { SecretMask } from "./secret-mask.js";

/**
 * What kind of failure an upstream call met:
 * - `rate_limit` (429) and `quota` (a quota or billing limit): the credential cools down for
 *   the model; these never count toward auto-disabling;
 * - `auth` (401/403): counts toward auto-disabling, or disables at once when the caller says a
 *   token refresh already failed;
 * - `server` (5xx, 408, anything else) and `network` (no answer, status 0): count toward
 *   auto-disabling.
 */
export type FailureKind = "rate_limit" | "quota" | "auth" | "server" | "network";

/** The failure kind an HTTP status implies when the caller does not say. */
export function failureKind(status: number): FailureKind {
  if (status === 429) return "rate_limit";
  if (status === 401 || status === 403) return "auth";
  if (status === 0) return "network";
  return "server";
}

/** Names of the runtime settings the pool reads (on every pick or failure, so changes apply at once). */
export const POOL_SETTINGS = {
  /** The selection strategy: `round-robin`, `weighted`, `fill-first` or `least-recently-used`. */
  strategy: "routing-strategy",
  /** Failures inside the window that disable a credential; 0 = never auto-disable; 1 counts as 2. */
  maxFailures: "credential-max-failures",
  /** The window of `credential-max-failures`, in ms. */
  failureWindowMs: "credential-failure-window-ms",
} as const;

/** Defaults of the pool's runtime settings, in the shape of `DEFAULT_SETTINGS`. */
export const DEFAULT_POOL_SETTINGS = Object.freeze({
  [POOL_SETTINGS.strategy]: "round-robin",
  [POOL_SETTINGS.maxFailures]: 5,
  [POOL_SETTINGS.failureWindowMs]: 60_000,
});

/**
 * `state.disabledReason` of a credential the pool disabled by itself starts with this. Only
 * those are probed for recovery; a credential disabled by an operator stays disabled.
 */
export const AUTO_DISABLED_PREFIX = "auto-disabled:";

/** Whether the pool (not an operator) disabled this credential, so that a probe may re-enable it. */
export function isAutoDisabled(c: Pick<CredentialRecord, "enabled" | "state">): boolean {
  return !c.enabled && (c.state.disabledReason?.startsWith(AUTO_DISABLED_PREFIX) ?? false);
}

/** An operator's reason as stored: never mistaken for an automatic one. */
export function operatorReason(reason: string | undefined): string | null {
  if (reason === undefined || reason.trim() === "") return null;
  const r = reason.trim().slice(0, 300);
  return r.startsWith(AUTO_DISABLED_PREFIX) ? r.slice(AUTO_DISABLED_PREFIX.length).trim() : r;
}

/** Exponential backoff for the `n`th consecutive cooldown (n ≥ 1): base, 2×base, 4×base ... up to max. */
export function backoffMs(n: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(Math.max(n - 1, 0), 30));
}

/**
 * An upstream error text safe for state, logs and events: token-like strings redacted, every
 * secret of the credential itself masked wherever it appears, at most 300 characters.
 */
export function safeErrorText(c: CredentialRecord, message: string): string {
  const mask = new SecretMask();
  mask.add(c);
  return redactSecrets(mask.text(message)).slice(0, 300);
}
