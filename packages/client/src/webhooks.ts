import type {
  ManagementOkResponse,
  ManagementWebhookCreateBody,
  ManagementWebhookCreatedResponse,
  ManagementWebhookDeliveriesResponse,
  ManagementWebhookListResponse,
  ManagementWebhookPatchBody,
  ManagementWebhookResponse,
  ManagementWebhookTestResponse,
  ManagementWebhookUpdatedResponse,
  WebhookDeliveryAttempt,
  WebhookSubscription,
} from "@tokenpool/core";
import type { Transport } from "./http.js";

const P = "v0/management/webhooks";

/**
 * `client.management.webhooks`: webhook subscriptions under `/v0/management/webhooks` (the
 * management key). Secrets are masked in every answer but those of `create` and `rotateSecret`.
 *
 * @example
 * ```ts
 * const { webhook, secret } = await client.management.webhooks.create({
 *   url: "https://example.com/hooks/tokenpool",
 *   events: ["key.exhausted"],
 * });
 * const attempt = await client.management.webhooks.test(webhook.id);
 * ```
 */
export interface WebhooksApi {
  /** `GET /webhooks`: every subscription, secrets masked. */
  list(): Promise<WebhookSubscription[]>;
  /** `GET /webhooks/:id`. */
  get(id: string): Promise<WebhookSubscription>;
  /** `POST /webhooks`: the subscription and its signing secret, shown this once. */
  create(body: ManagementWebhookCreateBody): Promise<ManagementWebhookCreatedResponse>;
  /** `PATCH /webhooks/:id`: changes the fields named, keeps the others. */
  update(id: string, patch: ManagementWebhookPatchBody): Promise<WebhookSubscription>;
  /** `DELETE /webhooks/:id`. */
  delete(id: string): Promise<ManagementOkResponse>;
  /** `POST /webhooks/:id/rotate-secret`: the new secret, shown this once. */
  rotateSecret(id: string): Promise<ManagementWebhookCreatedResponse>;
  /** `GET /webhooks/:id/deliveries`: the last delivery attempts, newest first. */
  deliveries(id: string): Promise<WebhookDeliveryAttempt[]>;
  /** `POST /webhooks/:id/test`: sends a `webhook.test` event; resolves with its first attempt. */
  test(id: string): Promise<WebhookDeliveryAttempt>;
}

/** The webhook calls of the management API. */
export function webhooksApi(t: Transport): WebhooksApi {
  const auth = "management" as const;
  const at = (id: string) => `${P}/${encodeURIComponent(id)}`;
  return {
    list: async () => (await t.request<ManagementWebhookListResponse>("GET", P, { auth })).webhooks,
    get: async (id) =>
      (await t.request<ManagementWebhookResponse>("GET", at(id), { auth })).webhook,
    create: (body) => t.request("POST", P, { auth, json: body }),
    update: async (id, patch) =>
      (
        await t.request<ManagementWebhookUpdatedResponse>("PATCH", at(id), {
          auth,
          json: patch,
        })
      ).webhook,
    delete: (id) => t.request("DELETE", at(id), { auth }),
    rotateSecret: (id) => t.request("POST", `${at(id)}/rotate-secret`, { auth }),
    deliveries: async (id) =>
      (
        await t.request<ManagementWebhookDeliveriesResponse>("GET", `${at(id)}/deliveries`, {
          auth,
        })
      ).deliveries,
    test: async (id) =>
      (await t.request<ManagementWebhookTestResponse>("POST", `${at(id)}/test`, { auth })).delivery,
  };
}
