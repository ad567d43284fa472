/**
 * `gateway.webhooks`: subscriptions (CRUD, secret rotation), delivery attempts, test pings, and
 * the wiring of gateway events to signed deliveries. See `docs/webhooks.md`.
 *
 * @module
 */
import { GatewayError } from "../errors.js";
import type { GatewayEmitter } from "../events.js";
import type { Logger } from "../logger.js";
import type { Store } from "../store/types.js";
import { randomToken, type SecretBox } from "../util/secrets.js";
import { type DeliveryJob, DeliveryQueue } from "./delivery.js";
import { mapGatewayEvents, type WebhookEventMapping } from "./events.js";
import { AttemptLog, type StoredSubscription, SubscriptionRegistry } from "./registry.js";
import { generateWebhookSecret, maskWebhookSecret, newMessageId } from "./signing.js";
import {
  WEBHOOK_EVENT_TYPES,
  type WebhookCreated,
  type WebhookCreateInput,
  type WebhookDeliveryAttempt,
  type WebhookEventType,
  type WebhookOptions,
  type WebhookPatch,
  type WebhookPayload,
  type WebhookStats,
  type WebhookSubscription,
} from "./types.js";

/** {@link WebhookOptions} with every default filled in. */
export type ResolvedWebhookOptions = Required<WebhookOptions>;

/** Fills in the defaults of {@link WebhookOptions}. */
export function resolveWebhookOptions(input: WebhookOptions = {}): ResolvedWebhookOptions {
  return {
    maxQueue: 1000,
    concurrency: 8,
    timeoutMs: 10_000,
    retryDelaysMs: [5_000, 30_000, 120_000, 600_000],
    attemptsKept: 100,
    refreshIntervalMs: 5_000,
    limitSampleMs: 60_000,
    exhaustedRepeatMs: 3_600_000,
    closeTimeoutMs: 5_000,
    ...input,
  };
}

/** The event types a subscription may name (all but the test ping, which goes to one only). */
const SUBSCRIBABLE = new Set<string>(WEBHOOK_EVENT_TYPES.filter((t) => t !== "webhook.test"));
const MAX_URL = 2048;
const MAX_DESCRIPTION = 500;
const MAX_SUBSCRIPTIONS = 100;

const invalid = (message: string) => new GatewayError("INVALID_REQUEST", message);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function checkUrl(v: unknown): string {
  if (typeof v !== "string" || v.trim() === "") throw invalid("url must be a non-empty string");
  if (v.length > MAX_URL) throw invalid(`url must be at most ${MAX_URL} characters`);
  let u: URL;
  try {
    u = new URL(v.trim());
  } catch {
    throw invalid("url is not a valid URL");
  }
  if (u.protocol !== "http:" && u.protocol !== "https:")
    throw invalid("url must be an http or https URL");
  if (u.username !== "" || u.password !== "")
    throw invalid("url must not contain credentials (user:password@)");
  return u.toString();
}

function checkEvents(v: unknown): string[] {
  if (!Array.isArray(v) || v.length === 0)
    throw invalid('events must be a non-empty array of event types (or ["*"])');
  const out = new Set<string>();
  for (const e of v) {
    if (typeof e !== "string" || (e !== "*" && !SUBSCRIBABLE.has(e)))
      throw invalid(
        `events: unknown event type ${JSON.stringify(e)}; known: *, ${[...SUBSCRIBABLE].join(", ")}`,
      );
    out.add(e);
  }
  return out.has("*") ? ["*"] : [...out];
}

function checkThreshold(v: unknown): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0)
    throw invalid("threshold must be a non-negative integer (quota units)");
  return v;
}

function checkDescription(v: unknown): string {
  if (typeof v !== "string") throw invalid("description must be a string");
  if (v.length > MAX_DESCRIPTION)
    throw invalid(`description must be at most ${MAX_DESCRIPTION} characters`);
  return v;
}

function checkFields(input: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(input))
    if (!allowed.includes(k))
      throw invalid(`unknown field ${JSON.stringify(k)}; known: ${allowed.join(", ")}`);
}

/** Whether a subscription receives an event type. */
function wantsType(sub: StoredSubscription, type: string): boolean {
  if (type === "key.quota_low" && sub.threshold === undefined) return false;
  return sub.events.includes("*") || sub.events.includes(type);
}

/** The dependencies of {@link WebhookService}. */
export interface WebhookServiceDeps {
  /** The gateway's store (its kv holds subscriptions and attempts). */
  store: Store;
  /** Seals the signing secrets with the server secret. */
  box: SecretBox;
  events: GatewayEmitter;
  logger: Logger;
  options?: WebhookOptions;
}

/**
 * Webhook subscriptions and deliveries of one gateway (`gateway.webhooks`).
 *
 * @example
 * ```ts
 * const { webhook, secret } = await gateway.webhooks.create({
 *   url: "https://example.com/hooks/tokenpool",
 *   events: ["key.exhausted", "key.quota_low"],
 *   threshold: 50_000,
 * });
 * // Keep `secret` (shown once) to verify deliveries with any Standard Webhooks library.
 * ```
 */
export class WebhookService {
  readonly #events: GatewayEmitter;
  readonly #logger: Logger;
  readonly #options: ResolvedWebhookOptions;
  readonly #registry: SubscriptionRegistry;
  readonly #attempts: AttemptLog;
  readonly #queue: DeliveryQueue;
  readonly #mapping: WebhookEventMapping;
  /** Enabled subscriptions by event type they receive (`key.quota_low` only with a threshold). */
  #byType = new Map<string, StoredSubscription[]>();
  #timer: NodeJS.Timeout | null = null;
  #closed: Promise<void> | null = null;

  constructor(deps: WebhookServiceDeps) {
    this.#events = deps.events;
    this.#logger = deps.logger;
    this.#options = resolveWebhookOptions(deps.options);
    this.#registry = new SubscriptionRegistry(deps.store, deps.box, deps.logger);
    this.#attempts = new AttemptLog(deps.store, this.#options.attemptsKept, deps.logger);
    this.#queue = new DeliveryQueue({
      maxQueue: this.#options.maxQueue,
      concurrency: this.#options.concurrency,
      timeoutMs: this.#options.timeoutMs,
      retryDelaysMs: this.#options.retryDelaysMs,
      target: (id) => {
        const sub = this.#registry.byId(id);
        if (!sub?.enabled) return null;
        const secret = this.#registry.secretOf(sub);
        return secret === null ? null : { url: sub.url, secret };
      },
      record: (id, attempt) => this.#attempts.add(id, attempt),
      dropped: (job) =>
        this.#events.emit("error", {
          where: "webhooks",
          error: new Error(
            `webhook delivery dropped: the queue is full (${this.#options.maxQueue}); event ${job.eventType} for ${job.subscriptionId}`,
          ),
        }),
    });
    this.#mapping = mapGatewayEvents(
      deps.events,
      deps.store,
      {
        wants: (type) => (this.#byType.get(type)?.length ?? 0) > 0,
        quotaLowSubscriptions: () => this.#byType.get("key.quota_low") ?? [],
        publish: (type, data, only) => this.#publish(type, data, only),
      },
      deps.logger,
      this.#options,
    );
    this.#registry.onChange = () => this.#index();
  }

  #index(): void {
    const byType = new Map<string, StoredSubscription[]>();
    for (const sub of this.#registry.all()) {
      if (!sub.enabled) continue;
      for (const type of SUBSCRIBABLE)
        if (wantsType(sub, type)) {
          const list = byType.get(type);
          if (list) list.push(sub);
          else byType.set(type, [sub]);
        }
    }
    this.#byType = byType;
    this.#mapping.sync();
  }

  /**
   * Loads the subscriptions and starts reading them again every `refreshIntervalMs` (the gateway
   * calls it once its store is ready).
   */
  async start(): Promise<void> {
    await this.#reload();
    if (this.#closed || this.#timer) return;
    this.#timer = setInterval(() => void this.#reload(), this.#options.refreshIntervalMs);
    this.#timer.unref();
  }

  async #reload(): Promise<void> {
    try {
      await this.#registry.load();
    } catch (error) {
      this.#logger.warn("webhooks: could not read the subscriptions", { error: String(error) });
    }
  }

  /** Reads the subscriptions from the store now (changes by other instances apply at once). */
  refresh(): Promise<void> {
    return this.#registry.load();
  }

  #view(sub: StoredSubscription): WebhookSubscription {
    const secret = this.#registry.secretOf(sub);
    return {
      id: sub.id,
      url: sub.url,
      events: [...sub.events],
      enabled: sub.enabled,
      ...(sub.description === undefined ? {} : { description: sub.description }),
      ...(sub.threshold === undefined ? {} : { threshold: sub.threshold }),
      secret: secret === null ? "(unreadable)" : maskWebhookSecret(secret),
      createdAt: sub.createdAt,
      updatedAt: sub.updatedAt,
    };
  }

  /** Every subscription (secrets masked), read from the store. */
  async list(): Promise<WebhookSubscription[]> {
    await this.#registry.load();
    return this.#registry.all().map((s) => this.#view(s));
  }

  /** One subscription (secret masked), or null. */
  async get(id: string): Promise<WebhookSubscription | null> {
    await this.#registry.load();
    const sub = this.#registry.byId(id);
    return sub ? this.#view(sub) : null;
  }

  /**
   * Creates a subscription and returns it with its signing secret, shown this once. Throws a
   * 400 `INVALID_REQUEST` naming the bad field (nothing is written then).
   */
  async create(input: WebhookCreateInput): Promise<WebhookCreated> {
    if (!isObject(input)) throw invalid("the body must be a JSON object");
    checkFields(input, ["url", "events", "enabled", "description", "threshold"]);
    const url = checkUrl(input.url);
    const events = checkEvents(input.events);
    if (input.enabled !== undefined && typeof input.enabled !== "boolean")
      throw invalid("enabled must be a boolean");
    const description =
      input.description === undefined ? undefined : checkDescription(input.description);
    const threshold = input.threshold === undefined ? undefined : checkThreshold(input.threshold);
    if (events.includes("key.quota_low") && threshold === undefined)
      throw invalid("threshold is required with key.quota_low (quota units)");
    const secret = generateWebhookSecret();
    const now = Date.now();
    const sub: StoredSubscription = {
      id: randomToken("wh_", 24),
      url,
      events,
      enabled: input.enabled ?? true,
      ...(description === undefined ? {} : { description }),
      ...(threshold === undefined ? {} : { threshold }),
      secret: this.#registry.seal(secret),
      createdAt: now,
      updatedAt: now,
    };
    await this.#registry.mutate((items) => {
      if (items.length >= MAX_SUBSCRIPTIONS)
        throw invalid(`at most ${MAX_SUBSCRIPTIONS} webhook subscriptions`);
      return { items: [...items, sub], result: undefined };
    });
    return { webhook: this.#view(sub), secret };
  }

  /**
   * Changes the fields `patch` names and keeps the others (null clears `description` or
   * `threshold`). Null when no subscription has this id; a 400 `INVALID_REQUEST` for bad input.
   */
  async update(id: string, patch: WebhookPatch): Promise<WebhookSubscription | null> {
    if (!isObject(patch)) throw invalid("the body must be a JSON object");
    checkFields(patch, ["url", "events", "enabled", "description", "threshold"]);
    const url = patch.url === undefined ? undefined : checkUrl(patch.url);
    const events = patch.events === undefined ? undefined : checkEvents(patch.events);
    const enabled = patch.enabled as unknown;
    if (enabled !== undefined && typeof enabled !== "boolean")
      throw invalid("enabled must be a boolean");
    const description =
      patch.description === undefined || patch.description === null
        ? patch.description
        : checkDescription(patch.description);
    const threshold =
      patch.threshold === undefined || patch.threshold === null
        ? patch.threshold
        : checkThreshold(patch.threshold);
    const updated = await this.#registry.mutate((items) => {
      const i = items.findIndex((s) => s.id === id);
      if (i < 0) return { items: null, result: null };
      const next: StoredSubscription = { ...items[i]! };
      if (url !== undefined) next.url = url;
      if (events !== undefined) next.events = events;
      if (enabled !== undefined) next.enabled = enabled;
      if (description === null) delete next.description;
      else if (description !== undefined) next.description = description;
      if (threshold === null) delete next.threshold;
      else if (threshold !== undefined) next.threshold = threshold;
      if (next.events.includes("key.quota_low") && next.threshold === undefined)
        throw invalid("threshold is required with key.quota_low (quota units)");
      next.updatedAt = Date.now();
      items[i] = next;
      return { items, result: next };
    });
    return updated ? this.#view(updated) : null;
  }

  /** Deletes a subscription and its attempts; false when no subscription has this id. */
  async delete(id: string): Promise<boolean> {
    const removed = await this.#registry.mutate((items) => {
      const rest = items.filter((s) => s.id !== id);
      return rest.length === items.length
        ? { items: null, result: false }
        : { items: rest, result: true };
    });
    if (removed) await this.#attempts.remove(id);
    return removed;
  }

  /**
   * Replaces a subscription's signing secret and returns the new one, shown this once; the old
   * one stops signing at once (retries of earlier events are signed with the new one too).
   * Null when no subscription has this id.
   */
  async rotateSecret(id: string): Promise<WebhookCreated | null> {
    const secret = generateWebhookSecret();
    const sealed = this.#registry.seal(secret);
    const sub = await this.#registry.mutate((items) => {
      const i = items.findIndex((s) => s.id === id);
      if (i < 0) return { items: null, result: null };
      items[i] = { ...items[i]!, secret: sealed, updatedAt: Date.now() };
      return { items, result: items[i]! };
    });
    return sub ? { webhook: this.#view(sub), secret } : null;
  }

  /**
   * The last `attemptsKept` delivery attempts of a subscription, newest first (attempts of every
   * instance), or null when no subscription has this id.
   */
  async deliveries(id: string): Promise<WebhookDeliveryAttempt[] | null> {
    await this.#registry.load();
    if (!this.#registry.byId(id)) return null;
    return this.#attempts.list(id);
  }

  /**
   * Sends a `webhook.test` event to one subscription and resolves with its first attempt
   * (retries follow as for any event). Null when no subscription has this id; a 400
   * `INVALID_REQUEST` when it is disabled.
   */
  async test(id: string): Promise<WebhookDeliveryAttempt | null> {
    await this.#registry.load();
    const sub = this.#registry.byId(id);
    if (!sub) return null;
    if (!sub.enabled)
      throw invalid(`the webhook ${id} is disabled: enable it first (PATCH enabled: true)`);
    return new Promise<WebhookDeliveryAttempt>((resolve, reject) => {
      const queued = this.#enqueue(
        sub,
        "webhook.test",
        { webhookId: sub.id, message: "a test event from tokenpool" },
        resolve,
      );
      if (!queued)
        reject(new GatewayError("INTERNAL", "the webhook delivery queue is full", { status: 503 }));
    });
  }

  /** Counters of this process's delivery queue. */
  stats(): WebhookStats {
    return this.#queue.stats();
  }

  #publish(type: WebhookEventType, data: Record<string, unknown>, only?: StoredSubscription) {
    if (this.#closed) return;
    const subs = only ? [only] : (this.#byType.get(type) ?? []);
    if (subs.length === 0) return;
    const body = JSON.stringify({
      type,
      timestamp: new Date().toISOString(),
      data,
    } satisfies WebhookPayload);
    const messageId = newMessageId();
    for (const sub of subs)
      this.#queue.enqueue({
        subscriptionId: sub.id,
        messageId,
        eventType: type,
        body,
        attempt: 1,
      });
  }

  #enqueue(
    sub: StoredSubscription,
    type: WebhookEventType,
    data: Record<string, unknown>,
    onFirstAttempt?: DeliveryJob["onFirstAttempt"],
  ): boolean {
    const body = JSON.stringify({
      type,
      timestamp: new Date().toISOString(),
      data,
    } satisfies WebhookPayload);
    return this.#queue.enqueue({
      subscriptionId: sub.id,
      messageId: newMessageId(),
      eventType: type,
      body,
      attempt: 1,
      ...(onFirstAttempt ? { onFirstAttempt } : {}),
    });
  }

  /**
   * Stops listening and reading the store, drops retries that wait, gives attempts in flight
   * up to `closeTimeoutMs`, and writes the attempts recorded.
   */
  close(): Promise<void> {
    this.#closed ??= (async () => {
      if (this.#timer) clearInterval(this.#timer);
      this.#mapping.close();
      await this.#queue.close(this.#options.closeTimeoutMs);
      await this.#attempts.close();
    })();
    return this.#closed;
  }
}
