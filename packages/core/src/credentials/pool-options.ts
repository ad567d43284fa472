/** The public types of the credential pool: what it accepts, what a pick returns, its options. */
import type { CredentialRecord, NewCredential } from "../store/types.js";
import { maskSecret } from "../util/secrets.js";
import type { FailureKind } from "./health.js";
import type { RoutingStrategy } from "./strategies.js";

/** What {@link CredentialPool.add} accepts: provider, base URL and secret; everything else has a default. */
export type AddCredentialInput = Partial<NewCredential> &
  Pick<NewCredential, "provider" | "baseUrl" | "secret">;

/**
 * A credential chosen for a request, with the model name to send upstream (aliases resolved).
 * `credential` is the pool's live record: read it, never mutate it.
 */
export interface CredentialPick {
  credential: CredentialRecord;
  upstreamModel: string;
}

/** Constraints of one pick. */
export interface PickOptions {
  /** Credentials already tried for this request. */
  exclude?: ReadonlySet<string>;
  /**
   * Only credentials of this group (a credential with no groups belongs to `default`).
   * Absent: every credential is a candidate.
   */
  group?: string;
  /** Only credentials of these providers (wire formats). */
  providers?: readonly string[];
  /**
   * Session stickiness: picks with the same key get the same credential while it is available
   * (enabled, not cooling down for the model, not excluded, in the best available priority tier).
   */
  sessionKey?: string;
  /** ms. @default Date.now() */
  now?: number;
}

/** Options of {@link CredentialPool.reportFailure}. */
export interface ReportFailureOptions {
  /** The upstream's retry delay (`Retry-After`, a quota reset time ...): the cooldown to apply. */
  retryAfterMs?: number;
  /** @default derived from the status: 429 → `rate_limit`, 401/403 → `auth`, 0 → `network`, else `server` */
  kind?: FailureKind;
  /** An OAuth credential whose token refresh failed: with `kind: "auth"`, disables it at once. */
  refreshFailed?: boolean;
  /** ms. @default Date.now() */
  now?: number;
}

/** Reads runtime settings; the gateway's `SettingsService` fits. */
export interface SettingsReader {
  get(name: string): unknown;
}

/**
 * Options of {@link CredentialPool}. Where a runtime setting exists it wins (so that it can
 * change while the gateway runs); these options apply when it is absent or invalid.
 */
export interface CredentialPoolOptions {
  /** Runtime settings (`routing-strategy`, `credential-max-failures`, `credential-failure-window-ms`). */
  settings?: SettingsReader;
  /** @default "round-robin" */
  strategy?: RoutingStrategy;
  /** Failures inside the window that auto-disable a credential; 0 = never; 1 counts as 2. @default 5 */
  maxFailures?: number;
  /** @default 60000 */
  failureWindowMs?: number;
  /** First cooldown of a 429 without a retry delay; doubles with each consecutive one. @default 1000 */
  cooldownBaseMs?: number;
  /** Longest cooldown by backoff. @default 300000 */
  maxBackoffMs?: number;
  /** Longest upstream retry delay honoured. @default 86400000 */
  maxRetryAfterMs?: number;
  /** How long a session stays bound to its credential after its last pick. @default 1800000 */
  sessionTtlMs?: number;
  /** Sessions remembered; the least recently used is forgotten first. @default 10000 */
  maxSessions?: number;
  /** @default Date.now */
  clock?: () => number;
}

/** A credential as listed: secrets masked. */
export type MaskedCredential = Omit<CredentialRecord, "secret"> & {
  secret: Record<string, string | number>;
};

/** Masks every secret field of a credential for list responses and events. */
export function maskCredential(c: CredentialRecord): MaskedCredential {
  const secret: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(c.secret)) {
    if (typeof v === "string") secret[k] = maskSecret(v);
    else if (typeof v === "number") secret[k] = v;
  }
  return { ...c, secret };
}
