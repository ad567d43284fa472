/**
 * The delivery queue of webhooks: off the request path, bounded, with a concurrency limit,
 * retries with exponential backoff and jitter, and a timeout per attempt.
 *
 * Event listeners only call {@link DeliveryQueue.enqueue}, which never waits: a receiver that
 * is slow, hangs or fails costs a queue slot and a connection, never time on a proxied request.
 * When {@link WebhookOptions.maxQueue} deliveries are waiting (for a slot or for their next
 * attempt) new ones are dropped and counted. Every attempt is signed anew (a fresh
 * `webhook-timestamp`, the subscription's current secret) with the same `webhook-id`.
 *
 * @module
 */
import { Agent, request } from "undici";
import { webhookHeaders } from "./signing.js";
import type { WebhookDeliveryAttempt, WebhookStats } from "./types.js";

/** One event for one subscription. */
export interface DeliveryJob {
  subscriptionId: string;
  /** `webhook-id`: the same on every attempt. */
  messageId: string;
  eventType: string;
  /** The JSON payload, as sent on every attempt. */
  body: string;
  /** The attempt number of the next try (1 first). */
  attempt: number;
  /** Told the outcome of the first attempt (`gateway.webhooks.test`). */
  onFirstAttempt?: (attempt: WebhookDeliveryAttempt) => void;
}

/** Where a subscription delivers now, or null when it is gone or disabled. */
export type DeliveryTarget = { url: string; secret: string } | null;

/** What the queue needs. */
export interface DeliveryQueueDeps {
  maxQueue: number;
  concurrency: number;
  timeoutMs: number;
  retryDelaysMs: readonly number[];
  /** The subscription's current URL and secret (looked up at each attempt). */
  target(subscriptionId: string): DeliveryTarget;
  /** Records an attempt. */
  record(subscriptionId: string, attempt: WebhookDeliveryAttempt): void;
  /** Told about a dropped delivery (queue full). */
  dropped(job: DeliveryJob): void;
}

/** The longest `Retry-After` honoured (ms). */
const MAX_RETRY_AFTER_MS = 3_600_000;
/** Bytes of a receiver's answer read (the rest is discarded). */
const ANSWER_LIMIT = 64 * 1024;

let attemptSeq = 0;
const attemptId = () =>
  `att_${Date.now().toString(36)}${(attemptSeq++ % 1_679_616).toString(36).padStart(4, "0")}`;

/** Whether an answer (null: none came) is worth another attempt. */
function retryable(status: number | null): boolean {
  return status === null || status === 408 || status === 429 || status >= 500;
}

function retryAfterMs(value: string | string[] | undefined): number {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined) return 0;
  const s = Number(v);
  if (Number.isFinite(s) && s >= 0) return Math.min(s * 1000, MAX_RETRY_AFTER_MS);
  const at = Date.parse(v);
  return Number.isNaN(at) ? 0 : Math.min(Math.max(0, at - Date.now()), MAX_RETRY_AFTER_MS);
}

/** A short, secret-free reason of a failed attempt. */
function describeError(error: unknown, timedOut: boolean): string {
  if (timedOut) return "timeout";
  const e = error as { code?: string; message?: string };
  return e?.code ? `${e.code}: ${e.message ?? ""}`.trim() : (e?.message ?? String(error));
}

/** The bounded delivery queue of one gateway. */
export class DeliveryQueue {
  readonly #deps: DeliveryQueueDeps;
  readonly #agent: Agent;
  readonly #ready: DeliveryJob[] = [];
  readonly #waiting = new Map<NodeJS.Timeout, DeliveryJob>();
  readonly #inFlight = new Set<AbortController>();
  readonly #running = new Set<Promise<void>>();
  #closed = false;
  #dropped = 0;
  #delivered = 0;
  #failed = 0;

  constructor(deps: DeliveryQueueDeps) {
    this.#deps = deps;
    this.#agent = new Agent({
      connect: { timeout: deps.timeoutMs },
      headersTimeout: deps.timeoutMs,
      bodyTimeout: deps.timeoutMs,
      keepAliveTimeout: 10_000,
      connections: Math.max(2, deps.concurrency),
    });
  }

  /** Deliveries waiting (for a slot or their next attempt). */
  get size(): number {
    return this.#ready.length + this.#waiting.size;
  }

  /** Queues a delivery; false (and counted as dropped) when the queue is full or closed. */
  enqueue(job: DeliveryJob): boolean {
    if (this.#closed || this.size >= this.#deps.maxQueue) {
      this.#dropped++;
      this.#deps.dropped(job);
      return false;
    }
    this.#ready.push(job);
    this.#pump();
    return true;
  }

  /** The queue's counters. */
  stats(): WebhookStats {
    return {
      queued: this.size,
      inFlight: this.#inFlight.size,
      dropped: this.#dropped,
      delivered: this.#delivered,
      failed: this.#failed,
    };
  }

  #pump(): void {
    while (!this.#closed && this.#running.size < this.#deps.concurrency && this.#ready.length > 0) {
      const job = this.#ready.shift()!;
      const run = this.#attempt(job).finally(() => {
        this.#running.delete(run);
        this.#pump();
      });
      this.#running.add(run);
    }
  }

  async #attempt(job: DeliveryJob): Promise<void> {
    const target = this.#deps.target(job.subscriptionId);
    if (target === null) return; // deleted or disabled meanwhile: nothing more to send
    const started = Date.now();
    const ac = new AbortController();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      ac.abort();
    }, this.#deps.timeoutMs);
    this.#inFlight.add(ac);
    let status: number | null = null;
    let error: string | null = null;
    let retryAfter = 0;
    try {
      const res = await request(target.url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "user-agent": "tokenpool-webhooks",
          ...webhookHeaders(target.secret, job.messageId, job.body, started),
        },
        body: job.body,
        signal: ac.signal,
        dispatcher: this.#agent,
      });
      status = res.statusCode;
      if (status === 429 || status === 503) retryAfter = retryAfterMs(res.headers["retry-after"]);
      await res.body.dump({ limit: ANSWER_LIMIT }).catch(() => {});
      if (status < 200 || status >= 300) error = `HTTP ${status}`;
    } catch (e) {
      error = this.#closed && !timedOut ? "gateway closed" : describeError(e, timedOut);
    } finally {
      clearTimeout(timer);
      this.#inFlight.delete(ac);
    }
    const success = error === null;
    const canRetry =
      !success &&
      !this.#closed &&
      retryable(status) &&
      job.attempt <= this.#deps.retryDelaysMs.length;
    let delay = 0;
    if (canRetry) {
      const base = this.#deps.retryDelaysMs[job.attempt - 1]!;
      delay = Math.max(Math.round(base * (0.8 + Math.random() * 0.4)), retryAfter);
    }
    const attempt: WebhookDeliveryAttempt = {
      id: attemptId(),
      messageId: job.messageId,
      eventType: job.eventType,
      attempt: job.attempt,
      status,
      error,
      success,
      nextAttemptAt: canRetry ? Date.now() + delay : null,
      durationMs: Date.now() - started,
      timestamp: started,
    };
    this.#deps.record(job.subscriptionId, attempt);
    job.onFirstAttempt?.(attempt);
    if (success) this.#delivered++;
    else if (canRetry) {
      const next: DeliveryJob = { ...job, attempt: job.attempt + 1 };
      delete next.onFirstAttempt;
      const t = setTimeout(() => {
        this.#waiting.delete(t);
        this.#ready.push(next);
        this.#pump();
      }, delay);
      t.unref();
      this.#waiting.set(t, next);
    } else this.#failed++;
  }

  /**
   * Stops: retries waiting are dropped, no new attempt starts, attempts in flight get up to
   * `timeoutMs` to finish and are then aborted.
   */
  async close(timeoutMs: number): Promise<void> {
    this.#closed = true;
    for (const t of this.#waiting.keys()) clearTimeout(t);
    this.#waiting.clear();
    this.#ready.length = 0;
    if (this.#running.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const expired = new Promise<void>((r) => {
        timer = setTimeout(r, timeoutMs);
      });
      await Promise.race([Promise.allSettled([...this.#running]), expired]);
      clearTimeout(timer);
      for (const ac of this.#inFlight) ac.abort();
      await Promise.allSettled([...this.#running]);
    }
    await this.#agent.destroy().catch(() => {});
  }
}
