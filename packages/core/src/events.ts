import { EventEmitter } from "eventemitter3";
import type { UsageRecord } from "./store/types.js";

/**
 * Who changed a credential's `enabled` flag: `operator` (an API call on this gateway), `pool`
 * (auto-disabled after failures), `probe` (the recovery probe found it working again) or
 * `store` (seen in the store: another instance, or a direct store write).
 */
export type CredentialChangeSource = "operator" | "pool" | "probe" | "store";

/** Every event a gateway emits, with its payload. Payloads never contain secrets. */
export interface GatewayEvents {
  /** A request's usage record (with the quota its settlement charged) was written to the store. */
  "usage.recorded": (record: UsageRecord) => void;
  /** A key's reservation was refused because its quota (or its owner's) is used up. */
  "key.exhausted": (info: { keyId: number; reason: "key_quota" | "user_quota" }) => void;
  /**
   * A key's or a user's quota refilled: a new period of its `quotaRefill` started, its balance
   * is now `amount` and its used quota 0. Emitted by whoever applied it (a request, or a read
   * of the key or user) and only once per period, across instances too.
   */
  "quota.refilled": (info: {
    target: "key" | "user";
    id: number;
    /** Start of the new period (ms). */
    period: number;
    /** The balance it starts with (quota units). */
    amount: number;
  }) => void;
  /**
   * A credential was chosen for a request. Emitted on the request path: a listener should be
   * cheap (the payload is only built when someone listens).
   */
  "credential.selected": (info: {
    credentialId: string;
    provider: string;
    /** The model the client asked for. */
    model: string;
    /** The model name sent upstream (alias resolved). */
    upstreamModel?: string;
    /** The strategy that chose it. */
    strategy?: string;
    /** Chosen because the request's session was already bound to it. */
    sticky?: boolean;
  }) => void;
  /** A credential was cooled down for a model after a 429/quota error (or an upstream retry delay). */
  "credential.cooldown": (info: {
    credentialId: string;
    provider?: string;
    model: string;
    /** End of the cooldown (ms). */
    until: number;
    status: number;
    /** Why: the failure kind (`rate_limit`, `quota` ...). */
    reason?: string;
  }) => void;
  /** An upstream call failed (status 0 = connection error). `message` is redacted. */
  "credential.error": (info: {
    credentialId: string;
    provider?: string;
    model: string;
    status: number;
    /** `rate_limit`, `quota`, `auth`, `server` or `network`. */
    kind?: string;
    message: string;
  }) => void;
  /** A credential left the rotation: auto-disabled by the pool, or disabled by an operator. */
  "credential.disabled": (info: {
    credentialId: string;
    provider: string;
    reason: string;
    by: CredentialChangeSource;
  }) => void;
  /** A disabled credential is back in the rotation. */
  "credential.enabled": (info: {
    credentialId: string;
    provider: string;
    by: CredentialChangeSource;
  }) => void;
  /** An OAuth credential's access token was refreshed. */
  "credential.refreshed": (info: {
    credentialId: string;
    provider: string;
    /** What triggered the refresh (`expiring`, `expired`, `unauthorized`, `manual` ...). */
    reason: string;
    /** When the new access token expires (ms). */
    expiresAt: number;
    /** The token endpoint issued a new refresh token. */
    rotated: boolean;
  }) => void;
  /** Refreshing an OAuth credential's access token failed. `message` is redacted. */
  "credential.refresh_failed": (info: {
    credentialId: string;
    provider: string;
    /** What triggered the refresh. */
    reason: string;
    /** The token endpoint's status; 0 for a network error or a local reason. */
    status: number;
    message: string;
  }) => void;
  /**
   * A request was refused for a limit: a rate limit or concurrency cap of its key or the key's
   * owner (`scope` `key` / `user`), or of a credential that selection then skipped (`credential`;
   * the request went on with another one, or got a 429 when none was left). `retryAfterMs`: when
   * the same request could pass (null: never, it is larger than the limit).
   */
  "limit.refused": (info: {
    scope: "key" | "user" | "credential";
    id: string | number;
    limit: "rpm" | "tpm" | "rpd" | "concurrency" | "spend-day" | "spend-month";
    retryAfterMs: number | null;
  }) => void;
  /** A runtime setting changed (locally or in another instance). */
  "settings.changed": (info: { name: string; value: unknown }) => void;
  /** Something went wrong outside a request's own error handling (store write, flush ...). */
  error: (info: { where: string; error: Error }) => void;
}

/** The gateway's typed event emitter. */
export class GatewayEmitter extends EventEmitter<GatewayEvents> {}
