/**
 * Where webhook subscriptions and delivery attempts live: the store's kv, so that every adapter
 * keeps them without a change to the Store contract.
 *
 * - The subscriptions are one kv entry, {@link SUBSCRIPTIONS_KEY} (JSON), rewritten under the
 *   store lock of the same name (read, change, write), so that two instances never lose each
 *   other's edits. Each signing secret is sealed with the server secret (AES-256-GCM, the
 *   gateway's {@link SecretBox}): the kv never holds it in the clear.
 * - This process keeps a copy and reads the entry again every `refreshIntervalMs` (edits made
 *   by another instance apply within that time) and after each of its own writes.
 * - Delivery attempts are one kv entry per subscription (`webhooks:deliveries:<id>`, the newest
 *   first, capped), written in small batches under that entry's lock.
 *
 * @module
 */
import { GatewayError } from "../errors.js";
import type { Logger } from "../logger.js";
import type { Store } from "../store/types.js";
import type { SecretBox } from "../util/secrets.js";
import type { WebhookDeliveryAttempt, WebhookSubscription } from "./types.js";

/** The kv entry of the subscription list. */
export const SUBSCRIPTIONS_KEY = "webhooks:subscriptions";
/** The kv entry prefix of a subscription's delivery attempts. */
export const DELIVERIES_PREFIX = "webhooks:deliveries:";

/**
 * A subscription as stored: the one the API shows, but its secret is the signing secret sealed
 * with the server secret (`v1.<iv>.<tag>.<ciphertext>`), not masked.
 */
export type StoredSubscription = WebhookSubscription;

interface StoredList {
  v: 1;
  items: StoredSubscription[];
}

const LOCK_TTL_MS = 10_000;
const LOCK_WAIT_MS = 5_000;

/** Runs `fn` under the store lock `name`, waiting up to {@link LOCK_WAIT_MS} for it. */
async function withLock<T>(store: Store, name: string, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  let wait = 5;
  for (;;) {
    const token = await store.acquireLock(name, LOCK_TTL_MS);
    if (token !== null) {
      try {
        return await fn();
      } finally {
        await store.releaseLock(name, token).catch(() => false);
      }
    }
    if (Date.now() > deadline)
      throw new GatewayError("STORE_ERROR", `the store lock ${name} stayed busy`);
    await new Promise((r) => setTimeout(r, wait));
    wait = Math.min(wait * 2, 100);
  }
}

function parseList(raw: string | null): StoredSubscription[] {
  if (raw === null) return [];
  const v = JSON.parse(raw) as StoredList;
  return Array.isArray(v?.items) ? v.items : [];
}

/** The subscriptions of one gateway: a cached copy of the kv entry, and locked writes to it. */
export class SubscriptionRegistry {
  readonly #store: Store;
  readonly #box: SecretBox;
  readonly #logger: Logger;
  #items: StoredSubscription[] = [];
  /** Opened secrets by sealed value (a rotation seals anew, so stale entries are just unused). */
  readonly #opened = new Map<string, string | null>();
  #onChange: () => void = () => {};

  constructor(store: Store, box: SecretBox, logger: Logger) {
    this.#store = store;
    this.#box = box;
    this.#logger = logger;
  }

  /** Called after the cached list changed (to recompute what is subscribed). */
  set onChange(fn: () => void) {
    this.#onChange = fn;
  }

  /** Reads the kv entry again. */
  async load(): Promise<void> {
    this.#set(parseList(await this.#store.kv.get(SUBSCRIPTIONS_KEY)));
  }

  #set(items: StoredSubscription[]): void {
    this.#items = items;
    if (this.#opened.size > 4 * items.length + 16) this.#opened.clear();
    this.#onChange();
  }

  /** The cached subscriptions (as of the last load or write). */
  all(): readonly StoredSubscription[] {
    return this.#items;
  }

  /** A cached subscription. */
  byId(id: string): StoredSubscription | undefined {
    return this.#items.find((s) => s.id === id);
  }

  /** Seals a plain signing secret for storage. */
  seal(secret: string): string {
    return this.#box.encrypt(secret);
  }

  /** The plain signing secret of a stored subscription, or null when it does not open. */
  secretOf(sub: StoredSubscription): string | null {
    let plain = this.#opened.get(sub.secret);
    if (plain === undefined) {
      plain = this.#box.decrypt(sub.secret);
      if (plain === null)
        this.#logger.warn("a webhook secret does not open with this server secret", {
          webhookId: sub.id,
        });
      this.#opened.set(sub.secret, plain);
    }
    return plain;
  }

  /**
   * Reads the list, applies `change` and writes the result, under the store lock; the cache is
   * updated. `change` returns the new list (or null to write nothing) and a result.
   */
  async mutate<T>(
    change: (items: StoredSubscription[]) => { items: StoredSubscription[] | null; result: T },
  ): Promise<T> {
    return withLock(this.#store, SUBSCRIPTIONS_KEY, async () => {
      const current = parseList(await this.#store.kv.get(SUBSCRIPTIONS_KEY));
      const { items, result } = change(current.map((s) => ({ ...s })));
      if (items !== null) {
        const value: StoredList = { v: 1, items };
        await this.#store.kv.set(SUBSCRIPTIONS_KEY, JSON.stringify(value));
        this.#set(items);
      } else this.#set(current);
      return result;
    });
  }
}

/**
 * The delivery attempts of every subscription: buffered briefly in memory, then prepended to
 * each subscription's kv entry (newest first, at most `kept`).
 */
export class AttemptLog {
  readonly #store: Store;
  readonly #kept: number;
  readonly #logger: Logger;
  readonly #pending = new Map<string, WebhookDeliveryAttempt[]>();
  #timer: NodeJS.Timeout | null = null;
  #flushing: Promise<void> = Promise.resolve();

  constructor(store: Store, kept: number, logger: Logger) {
    this.#store = store;
    this.#kept = kept;
    this.#logger = logger;
  }

  /** Records an attempt (written within about 100 ms). */
  add(subscriptionId: string, attempt: WebhookDeliveryAttempt): void {
    const list = this.#pending.get(subscriptionId);
    if (list) list.push(attempt);
    else this.#pending.set(subscriptionId, [attempt]);
    if (this.#pending.size > 0 && this.#timer === null) {
      this.#timer = setTimeout(() => {
        this.#timer = null;
        void this.flush();
      }, 100);
      this.#timer.unref();
    }
  }

  /** Writes every buffered attempt now. */
  flush(): Promise<void> {
    const batch = [...this.#pending];
    this.#pending.clear();
    const run = async () => {
      for (const [id, attempts] of batch) {
        try {
          await withLock(this.#store, `${DELIVERIES_PREFIX}${id}`, async () => {
            const key = `${DELIVERIES_PREFIX}${id}`;
            const raw = await this.#store.kv.get(key);
            const old = raw === null ? [] : (JSON.parse(raw) as WebhookDeliveryAttempt[]);
            const next = [...attempts.reverse(), ...old].slice(0, this.#kept);
            await this.#store.kv.set(key, JSON.stringify(next));
          });
        } catch (error) {
          this.#logger.warn("could not record webhook delivery attempts", {
            webhookId: id,
            error: String(error),
          });
        }
      }
    };
    this.#flushing = this.#flushing.then(run);
    return this.#flushing;
  }

  /** The recorded attempts of a subscription, newest first (buffered ones included). */
  async list(subscriptionId: string): Promise<WebhookDeliveryAttempt[]> {
    await this.flush();
    const raw = await this.#store.kv.get(`${DELIVERIES_PREFIX}${subscriptionId}`);
    return raw === null ? [] : (JSON.parse(raw) as WebhookDeliveryAttempt[]);
  }

  /** Forgets a subscription's attempts. */
  async remove(subscriptionId: string): Promise<void> {
    this.#pending.delete(subscriptionId);
    await this.#flushing;
    await this.#store.kv.delete(`${DELIVERIES_PREFIX}${subscriptionId}`);
  }

  /** Stops the timer and writes what is buffered. */
  async close(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.flush();
  }
}
