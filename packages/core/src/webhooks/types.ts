/**
 * The public shapes of webhooks: event types, subscriptions, delivery attempts and options.
 *
 * @module
 */

/**
 * Every webhook event type, with what it means:
 *
 * - `key.quota_low`: a key's remaining quota fell below the subscription's `threshold` (once per
 *   crossing: it fires again only after the balance went back to the threshold or above).
 * - `key.exhausted`: a request was refused because a key's quota (or its owner's) is used up
 *   (once, until the key serves a request again or its quota refills).
 * - `quota.refilled`: a key's or a user's quota refilled (a new period started).
 * - `credential.disabled` / `credential.enabled`: an upstream credential left or re-entered
 *   the rotation (by an operator, the pool's auto-disable, or the recovery probe).
 * - `credential.refresh_failed`: refreshing an OAuth credential's access token failed.
 * - `limit.refused`: a request was refused for a rate limit or concurrency cap (sampled: at most
 *   one per scope, id and limit per `limitSampleMs`).
 * - `webhook.test`: a ping sent by `gateway.webhooks.test(id)` (to that subscription only).
 */
export const WEBHOOK_EVENT_TYPES = [
  "key.quota_low",
  "key.exhausted",
  "quota.refilled",
  "credential.disabled",
  "credential.enabled",
  "credential.refresh_failed",
  "limit.refused",
  "webhook.test",
] as const;

/** A webhook event type (see {@link WEBHOOK_EVENT_TYPES}). */
export type WebhookEventType = (typeof WEBHOOK_EVENT_TYPES)[number];

/**
 * The JSON body of every delivery. `data` holds ids, names, amounts and statuses, never a key,
 * a credential secret or a token.
 */
export interface WebhookPayload<T extends WebhookEventType = WebhookEventType> {
  type: T;
  /** When the event happened (ISO 8601). */
  timestamp: string;
  data: Record<string, unknown>;
}

/** A subscription as the library and the management API show it (the secret masked). */
export interface WebhookSubscription {
  /** `wh_...` */
  id: string;
  /** Where deliveries are POSTed (http or https). */
  url: string;
  /** Event types delivered; `"*"` is every type. */
  events: string[];
  /** A disabled subscription receives nothing (retries of earlier events stop too). */
  enabled: boolean;
  description?: string;
  /** `key.quota_low` fires when a key's remaining quota falls below this (quota units). */
  threshold?: number;
  /** The signing secret, masked (`whsec_****abcd`): it is shown in full once, on create or rotate. */
  secret: string;
  /** ms */
  createdAt: number;
  /** ms */
  updatedAt: number;
}

/** Input of `gateway.webhooks.create`. */
export interface WebhookCreateInput {
  url: string;
  /** At least one type of {@link WEBHOOK_EVENT_TYPES} (but `webhook.test`), or `"*"`. */
  events: string[];
  /** @default true */
  enabled?: boolean;
  description?: string;
  /** Needed when `events` names `key.quota_low`; a non-negative integer (quota units). */
  threshold?: number;
}

/** Input of `gateway.webhooks.update`: the fields named are changed, the others kept; null clears. */
export interface WebhookPatch {
  url?: string;
  events?: string[];
  enabled?: boolean;
  description?: string | null;
  threshold?: number | null;
}

/** A subscription just created: its view and the signing secret, shown this once. */
export interface WebhookCreated {
  webhook: WebhookSubscription;
  /** `whsec_` + base64 of 32 random bytes (Standard Webhooks format). */
  secret: string;
}

/** One delivery attempt, as recorded (the last {@link WebhookOptions.attemptsKept} per subscription). */
export interface WebhookDeliveryAttempt {
  /** `att_...` */
  id: string;
  /** The event's `webhook-id` (`msg_...`), the same on every attempt of one event. */
  messageId: string;
  eventType: string;
  /** 1 for the first try. */
  attempt: number;
  /** The receiver's HTTP status; null when no answer came (network error, timeout). */
  status: number | null;
  /** Why the attempt failed (never a secret); null on success. */
  error: string | null;
  /** A 2xx answer. */
  success: boolean;
  /** When another attempt is due (ms), or null (success, or no attempt left). */
  nextAttemptAt: number | null;
  durationMs: number;
  /** When the attempt started (ms). */
  timestamp: number;
}

/** Counters of this gateway's delivery queue (this process only). */
export interface WebhookStats {
  /** Deliveries waiting: for a free slot, or for their next attempt. */
  queued: number;
  /** Attempts on the wire now. */
  inFlight: number;
  /** Deliveries dropped because the queue was full. */
  dropped: number;
  /** Deliveries a receiver accepted (2xx). */
  delivered: number;
  /** Deliveries given up after their last attempt (or a 4xx that is not retried). */
  failed: number;
}

/** Webhook options of `createGateway` (`webhooks: { ... }`). */
export interface WebhookOptions {
  /**
   * Deliveries held in memory (waiting for a slot or for a retry) before new ones are dropped
   * (counted, and an `error` event emitted).
   * @default 1000
   */
  maxQueue?: number;
  /** Attempts on the wire at once. @default 8 */
  concurrency?: number;
  /** Time allowed for one attempt, from connecting to the end of the answer (ms). @default 10000 */
  timeoutMs?: number;
  /**
   * Delays before the 2nd, 3rd ... attempt (ms); each gets ±20% jitter. Its length + 1 is the
   * number of attempts. Retried: network errors, timeouts, 429 and 5xx.
   * @default [5000, 30000, 120000, 600000] (5 attempts)
   */
  retryDelaysMs?: number[];
  /** Delivery attempts kept per subscription. @default 100 */
  attemptsKept?: number;
  /**
   * How often the subscription list is read again from the store, so that changes made by
   * another instance apply here (ms). Changes made through this gateway apply at once.
   * @default 5000
   */
  refreshIntervalMs?: number;
  /** `limit.refused`: at most one event per scope, id and limit in this time (ms). @default 60000 */
  limitSampleMs?: number;
  /**
   * `key.exhausted`: after an event for a key, no other is sent for it within this time unless it
   * was seen serving a request or refilled meanwhile (ms).
   * @default 3600000
   */
  exhaustedRepeatMs?: number;
  /** How long `gateway.close()` waits for attempts in flight before aborting them (ms). @default 5000 */
  closeTimeoutMs?: number;
}
