/**
 * Webhook signatures as the Standard Webhooks spec defines them
 * (https://www.standardwebhooks.com): a secret `whsec_<base64 key>`, and on every delivery the
 * headers `webhook-id`, `webhook-timestamp` (seconds) and `webhook-signature`
 * (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`), which any Standard Webhooks library
 * verifies.
 *
 * @module
 */
import { createHmac, randomBytes } from "node:crypto";
import { randomToken } from "../util/secrets.js";

/** The prefix of a signing secret. */
export const WEBHOOK_SECRET_PREFIX = "whsec_";

/** A new signing secret: `whsec_` + base64 of 32 random bytes. */
export function generateWebhookSecret(): string {
  return `${WEBHOOK_SECRET_PREFIX}${randomBytes(32).toString("base64")}`;
}

/** A new message id (`webhook-id`): `msg_` + 24 random base62 characters. */
export function newMessageId(): string {
  return randomToken("msg_", 24);
}

/** The key bytes of a `whsec_` secret. */
function keyOf(secret: string): Buffer {
  const b64 = secret.startsWith(WEBHOOK_SECRET_PREFIX)
    ? secret.slice(WEBHOOK_SECRET_PREFIX.length)
    : secret;
  return Buffer.from(b64, "base64");
}

/**
 * The `webhook-signature` value of one delivery: `v1,` + base64(HMAC-SHA256(key,
 * `${id}.${timestamp}.${body}`)).
 *
 * @example
 * ```ts
 * const signature = signWebhook(secret, "msg_abc", 1700000000, '{"type":"webhook.test"}');
 * ```
 */
export function signWebhook(
  secret: string,
  messageId: string,
  timestampSeconds: number,
  body: string,
): string {
  const mac = createHmac("sha256", keyOf(secret))
    .update(`${messageId}.${timestampSeconds}.${body}`)
    .digest("base64");
  return `v1,${mac}`;
}

/** The three Standard Webhooks headers of one delivery attempt, signed now. */
export function webhookHeaders(
  secret: string,
  messageId: string,
  body: string,
  nowMs = Date.now(),
): Record<string, string> {
  const timestamp = Math.floor(nowMs / 1000);
  return {
    "webhook-id": messageId,
    "webhook-timestamp": String(timestamp),
    "webhook-signature": signWebhook(secret, messageId, timestamp, body),
  };
}

/** A secret for display: `whsec_****` and its last 4 characters. */
export function maskWebhookSecret(secret: string): string {
  return `${WEBHOOK_SECRET_PREFIX}****${secret.slice(-4)}`;
}
