import type { GatewayEmitter } from "../events.js";
import type { Logger } from "../logger.js";
import type { Store, UsageCommit } from "../store/types.js";

/** Batches above this many queued commits are dropped (and reported) while the store keeps failing. */
const MAX_QUEUED = 100_000;

/**
 * Write-behind for finished requests: settlements and usage records are queued and written with
 * one `store.commitUsage` call per batch, so the proxy path pays one array push per request
 * instead of two store writes. Until a batch is written, its reservations stay debited in full
 * (the conservative side); {@link UsageWriter.flush} writes at once when exact balances matter.
 */
export class UsageWriter {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #maxBatch: number;
  #queue: UsageCommit[] = [];
  #timer: NodeJS.Timeout | null = null;
  #inflight: Promise<void> = Promise.resolve();

  constructor(
    store: Store,
    events: GatewayEmitter,
    logger: Logger,
    intervalMs: number,
    maxBatch: number,
  ) {
    this.#store = store;
    this.#events = events;
    this.#logger = logger;
    this.#intervalMs = intervalMs;
    this.#maxBatch = maxBatch;
  }

  /** How many finished requests wait to be written. */
  get pending(): number {
    return this.#queue.length;
  }

  /** Queues a finished request; it reaches the store within `flushIntervalMs`. */
  push(commit: UsageCommit): void {
    this.#queue.push(commit);
    if (this.#queue.length >= this.#maxBatch) void this.flush();
    else this.#schedule();
  }

  #schedule(): void {
    if (this.#timer) return;
    this.#timer = setTimeout(() => void this.flush(), this.#intervalMs);
    this.#timer.unref();
  }

  /** Writes everything queued so far; resolves when it is in the store (or reported as failed). */
  flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#queue.length === 0) return this.#inflight;
    const batch = this.#queue;
    this.#queue = [];
    // One write at a time, in order: a batch never overtakes an earlier one.
    this.#inflight = this.#inflight.then(async () => {
      try {
        const records = await this.#store.commitUsage(batch, Math.floor(Date.now() / 1000));
        for (const r of records) this.#events.emit("usage.recorded", r);
      } catch (error) {
        // commitUsage is atomic: nothing of the batch was applied, so it can be tried again.
        this.#logger.error("usage batch could not be written; will retry", {
          records: batch.length,
          error: String(error),
        });
        this.#events.emit("error", { where: "usage.flush", error: error as Error });
        if (this.#queue.length + batch.length <= MAX_QUEUED)
          this.#queue = batch.concat(this.#queue);
        this.#schedule();
      }
    });
    return this.#inflight;
  }
}
