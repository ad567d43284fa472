/**
 * From gateway events to webhook events. Listeners here never wait: they check what is
 * subscribed (in memory), and anything that needs the store (a key's balance, a marker shared
 * with other instances) runs in the background before the delivery is queued.
 *
 * Once per crossing, across instances: `key.quota_low` and `key.exhausted` set a kv marker with
 * `incr` (the instance whose `incr` answers 1 sends the event) and clear it when the condition
 * ends, so that several instances seeing the same key send one event. `limit.refused` is sampled
 * the same way, with a marker that expires after `limitSampleMs`.
 *
 * @module
 */
import type { CredentialChangeSource, GatewayEmitter, GatewayEvents } from "../events.js";
import type { Logger } from "../logger.js";
import type { Store } from "../store/types.js";
import { redactSecrets } from "../util/secrets.js";
import type { StoredSubscription } from "./registry.js";
import type { WebhookEventType } from "./types.js";

/** What the event mapping needs from the webhook service. */
export interface WebhookSink {
  /** Whether an enabled subscription wants this type. */
  wants(type: WebhookEventType): boolean;
  /** Enabled subscriptions that want `key.quota_low` and have a threshold. */
  quotaLowSubscriptions(): StoredSubscription[];
  /** Queues an event for every enabled subscription that wants it (or only `only`). */
  publish(type: WebhookEventType, data: Record<string, unknown>, only?: StoredSubscription): void;
}

/** Options of the mapping. */
export interface WebhookEventOptions {
  limitSampleMs: number;
  exhaustedRepeatMs: number;
}

const MARK_PREFIX = "webhooks:mark:";
/** How long a `key.quota_low` marker outlives its last use (a key deleted while low). */
const LOW_MARK_TTL_MS = 30 * 86_400_000;
/** Entries of the local state maps before they are emptied (a cheap bound, not an LRU). */
const MAX_LOCAL = 100_000;

/** The event mapping of one gateway. */
export interface WebhookEventMapping {
  /** Listens to the gateway events the current subscriptions need, and to no other. */
  sync(): void;
  /** Stops listening. */
  close(): void;
}

/** Maps the gateway's events to webhook events for `sink`. Call `sync()` after subscriptions change. */
export function mapGatewayEvents(
  events: GatewayEmitter,
  store: Store,
  sink: WebhookSink,
  logger: Logger,
  options: WebhookEventOptions,
): WebhookEventMapping {
  const warn = (what: string) => (error: unknown) =>
    logger.warn(`webhooks: could not ${what}`, { error: String(error) });

  // --- key.exhausted: one event until the key serves a request again or refills -------------
  /** Keys this process marked exhausted: when, and the key's owner. */
  const exhausted = new Map<number, { at: number; userId: number | null }>();
  const onExhausted = ({ keyId, reason }: { keyId: number; reason: string }) => {
    if (!sink.wants("key.exhausted")) return;
    const now = Date.now();
    const seen = exhausted.get(keyId);
    if (seen && now - seen.at < options.exhaustedRepeatMs) return;
    if (exhausted.size >= MAX_LOCAL) exhausted.clear();
    const entry = { at: now, userId: null as number | null };
    exhausted.set(keyId, entry);
    void (async () => {
      const n = await store.kv.incr(
        `${MARK_PREFIX}exhausted:${keyId}`,
        1,
        options.exhaustedRepeatMs,
      );
      if (n !== 1) return;
      const key = await store.keys.get(keyId);
      entry.userId = key?.userId ?? null;
      sink.publish("key.exhausted", {
        keyId,
        keyName: key?.name ?? null,
        userId: key?.userId ?? null,
        reason,
        remainQuota: key?.remainQuota ?? null,
      });
    })().catch(warn("send key.exhausted"));
  };
  const clearExhausted = (keyId: number) => {
    exhausted.delete(keyId);
    void store.kv.delete(`${MARK_PREFIX}exhausted:${keyId}`).catch(warn("clear a marker"));
  };

  // --- key.quota_low: per subscription threshold, once per crossing ---------------------------
  /** `<subscription>:<key>` → whether this process last saw the key below that threshold. */
  const low = new Map<string, boolean>();
  const due = new Set<number>();
  let checking = false;
  const checkKeys = async () => {
    while (due.size > 0) {
      const ids = [...due];
      due.clear();
      for (const keyId of ids) {
        const subs = sink.quotaLowSubscriptions();
        if (subs.length === 0) return;
        const key = await store.keys.get(keyId);
        if (!key || key.unlimitedQuota) continue;
        for (const sub of subs) {
          const threshold = sub.threshold!;
          const below = key.remainQuota < threshold;
          const state = `${sub.id}:${keyId}`;
          if (low.get(state) === below) continue;
          if (low.size >= MAX_LOCAL) low.clear();
          low.set(state, below);
          const mark = `${MARK_PREFIX}low:${sub.id}:${keyId}`;
          if (!below) {
            await store.kv.delete(mark);
            continue;
          }
          if ((await store.kv.incr(mark, 1, LOW_MARK_TTL_MS)) !== 1) continue;
          sink.publish(
            "key.quota_low",
            {
              keyId,
              keyName: key.name,
              userId: key.userId,
              remainQuota: key.remainQuota,
              usedQuota: key.usedQuota,
              threshold,
            },
            sub,
          );
        }
      }
    }
  };
  const scheduleCheck = (keyId: number) => {
    due.add(keyId);
    if (checking) return;
    checking = true;
    // After the current batch of events (a usage flush emits many at once): one read per key.
    setImmediate(() => {
      checkKeys()
        .catch(warn("check a key's quota"))
        .finally(() => {
          checking = false;
          if (due.size > 0) scheduleCheck([...due][0]!);
        });
    });
  };

  const onUsage = (record: { keyId: number | null; success: boolean; timestamp: number }) => {
    if (record.keyId === null) return;
    const seen = exhausted.get(record.keyId);
    // A request that reserved quota after the key was marked: it is not exhausted any more.
    if (seen && record.success && record.timestamp > seen.at) clearExhausted(record.keyId);
    if (sink.wants("key.quota_low")) scheduleCheck(record.keyId);
  };

  const onRefilled = (info: {
    target: "key" | "user";
    id: number;
    period: number;
    amount: number;
  }) => {
    if (info.target === "key") {
      if (exhausted.has(info.id)) clearExhausted(info.id);
      else void store.kv.delete(`${MARK_PREFIX}exhausted:${info.id}`).catch(warn("clear a marker"));
      if (sink.wants("key.quota_low")) scheduleCheck(info.id);
    } else {
      for (const [keyId, e] of exhausted) if (e.userId === info.id) clearExhausted(keyId);
    }
    if (sink.wants("quota.refilled"))
      sink.publish("quota.refilled", {
        target: info.target,
        id: info.id,
        period: info.period,
        periodStart: new Date(info.period).toISOString(),
        amount: info.amount,
      });
  };

  // --- limit.refused: sampled ------------------------------------------------------------------
  const sampled = new Map<string, number>();
  const onLimit = (info: {
    scope: string;
    id: string | number;
    limit: string;
    retryAfterMs: number | null;
  }) => {
    if (!sink.wants("limit.refused")) return;
    const data = { ...info };
    if (options.limitSampleMs <= 0) {
      sink.publish("limit.refused", data);
      return;
    }
    const k = `${info.scope}:${info.id}:${info.limit}`;
    const now = Date.now();
    if ((sampled.get(k) ?? 0) > now) return;
    if (sampled.size >= MAX_LOCAL) sampled.clear();
    sampled.set(k, now + options.limitSampleMs);
    const bucket = Math.floor(now / options.limitSampleMs);
    void store.kv
      .incr(`${MARK_PREFIX}limit:${k}:${bucket}`, 1, options.limitSampleMs)
      .then((n) => {
        if (n === 1) sink.publish("limit.refused", data);
      })
      .catch(warn("sample limit.refused"));
  };

  // --- credentials ----------------------------------------------------------------------------
  // `by: "store"` is another instance's change seen here: that instance sends the event.
  const onDisabled = (info: {
    credentialId: string;
    provider: string;
    reason: string;
    by: CredentialChangeSource;
  }) => {
    if (info.by === "store" || !sink.wants("credential.disabled")) return;
    sink.publish("credential.disabled", { ...info, reason: redactSecrets(info.reason) });
  };
  const onEnabled = (info: {
    credentialId: string;
    provider: string;
    by: CredentialChangeSource;
  }) => {
    if (info.by === "store" || !sink.wants("credential.enabled")) return;
    sink.publish("credential.enabled", { ...info });
  };
  const onRefreshFailed = (info: {
    credentialId: string;
    provider: string;
    reason: string;
    status: number;
    message: string;
  }) => {
    if (!sink.wants("credential.refresh_failed")) return;
    sink.publish("credential.refresh_failed", { ...info, message: redactSecrets(info.message) });
  };

  // Each gateway event is listened to only while a subscription needs it: with no webhooks,
  // the gateway pays nothing (`limit.refused` payloads are not even built).
  const bindings: [keyof GatewayEvents, (...a: never[]) => void, WebhookEventType[]][] = [
    ["key.exhausted", onExhausted, ["key.exhausted"]],
    ["usage.recorded", onUsage, ["key.exhausted", "key.quota_low"]],
    ["quota.refilled", onRefilled, ["quota.refilled", "key.exhausted", "key.quota_low"]],
    ["limit.refused", onLimit, ["limit.refused"]],
    ["credential.disabled", onDisabled, ["credential.disabled"]],
    ["credential.enabled", onEnabled, ["credential.enabled"]],
    ["credential.refresh_failed", onRefreshFailed, ["credential.refresh_failed"]],
  ];
  const on = new Set<string>();
  const emitter = events as unknown as {
    on(name: string, fn: (...a: never[]) => void): void;
    off(name: string, fn: (...a: never[]) => void): void;
  };
  return {
    sync() {
      for (const [name, fn, types] of bindings) {
        const want = types.some((t) => sink.wants(t));
        if (want && !on.has(name)) {
          emitter.on(name, fn);
          on.add(name);
        } else if (!want && on.has(name)) {
          emitter.off(name, fn);
          on.delete(name);
        }
      }
    },
    close() {
      for (const [name, fn] of bindings) if (on.has(name)) emitter.off(name, fn);
      on.clear();
    },
  };
}
