/**
 * Webhook subscriptions over the cliproxy dialect (`/v0/management/webhooks`), behind the
 * management key like every management route, errors as `{ "error": "..." }`:
 *
 * | route | answer |
 * | --- | --- |
 * | `GET /webhooks` | `{ webhooks: [...] }` (secrets masked) |
 * | `POST /webhooks` | `{ status: "ok", webhook, secret }` (the secret, shown once) |
 * | `GET /webhooks/:id` | `{ webhook }` |
 * | `PATCH /webhooks/:id` | `{ status: "ok", webhook }` (fields not named are kept) |
 * | `DELETE /webhooks/:id` | `{ status: "ok" }` |
 * | `POST /webhooks/:id/rotate-secret` | `{ status: "ok", webhook, secret }` |
 * | `GET /webhooks/:id/deliveries` | `{ deliveries: [...] }` (newest first) |
 * | `POST /webhooks/:id/test` | `{ status: "ok", delivery }` (the first attempt) |
 *
 * An unknown id is a 404 `webhook not found`; a body that is not JSON is a 400 `invalid body`;
 * a bad field is a 400 naming it, and nothing is written.
 *
 * @module
 */
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { WebhookService } from "../../webhooks/service.js";
import type {
  WebhookCreateInput,
  WebhookDeliveryAttempt,
  WebhookPatch,
  WebhookSubscription,
} from "../../webhooks/types.js";
import { type ManagementGuard, type ManagementOkResponse, managementRouteKit } from "./common.js";

/** Reply of `GET /v0/management/webhooks`. */
export interface ManagementWebhookListResponse {
  webhooks: WebhookSubscription[];
}

/** Reply of `GET /v0/management/webhooks/:id`. */
export interface ManagementWebhookResponse {
  webhook: WebhookSubscription;
}

/** Reply of `POST /v0/management/webhooks` and `POST .../rotate-secret`: the secret, shown once. */
export type ManagementWebhookCreatedResponse = ManagementOkResponse<{
  webhook: WebhookSubscription;
  secret: string;
}>;

/** Reply of `PATCH /v0/management/webhooks/:id`. */
export type ManagementWebhookUpdatedResponse = ManagementOkResponse<{
  webhook: WebhookSubscription;
}>;

/** Reply of `GET /v0/management/webhooks/:id/deliveries`. */
export interface ManagementWebhookDeliveriesResponse {
  deliveries: WebhookDeliveryAttempt[];
}

/** Reply of `POST /v0/management/webhooks/:id/test`. */
export type ManagementWebhookTestResponse = ManagementOkResponse<{
  delivery: WebhookDeliveryAttempt;
}>;

/** Body of `POST /v0/management/webhooks`. */
export type ManagementWebhookCreateBody = WebhookCreateInput;
/** Body of `PATCH /v0/management/webhooks/:id`. */
export type ManagementWebhookPatchBody = WebhookPatch;

/** What the webhook routes need. */
export interface WebhookRoutesDeps {
  guard: ManagementGuard;
  webhooks: WebhookService;
  maxBodyBytes: number;
}

/** The webhook routes of the management API. */
export function webhookRoutes(deps: WebhookRoutesDeps): Route[] {
  const kit = managementRouteKit(deps.guard, deps.maxBodyBytes);
  const { webhooks } = deps;
  const notFound = () => kit.error(404, "webhook not found");
  const idOf = (params: Record<string, string>) => params.id ?? "";
  return [
    kit.route("GET", "/webhooks", async () => json(200, { webhooks: await webhooks.list() })),
    kit.route("POST", "/webhooks", async (ex) => {
      const body = await kit.body(ex);
      const { webhook, secret } = await webhooks.create(body as WebhookCreateInput);
      return kit.ok({ webhook, secret });
    }),
    kit.route("GET", "/webhooks/:id", async (_ex, params) => {
      const webhook = await webhooks.get(idOf(params));
      if (!webhook) throw notFound();
      return json(200, { webhook });
    }),
    kit.route("PATCH", "/webhooks/:id", async (ex, params) => {
      const body = await kit.body(ex);
      const webhook = await webhooks.update(idOf(params), body as WebhookPatch);
      if (!webhook) throw notFound();
      return kit.ok({ webhook });
    }),
    kit.route("DELETE", "/webhooks/:id", async (_ex, params) => {
      if (!(await webhooks.delete(idOf(params)))) throw notFound();
      return kit.ok();
    }),
    kit.route("POST", "/webhooks/:id/rotate-secret", async (_ex, params) => {
      const rotated = await webhooks.rotateSecret(idOf(params));
      if (!rotated) throw notFound();
      return kit.ok({ webhook: rotated.webhook, secret: rotated.secret });
    }),
    kit.route("GET", "/webhooks/:id/deliveries", async (_ex, params) => {
      const deliveries = await webhooks.deliveries(idOf(params));
      if (!deliveries) throw notFound();
      return json(200, { deliveries });
    }),
    kit.route("POST", "/webhooks/:id/test", async (_ex, params) => {
      const delivery = await webhooks.test(idOf(params));
      if (!delivery) throw notFound();
      return kit.ok({ delivery });
    }),
  ];
}
