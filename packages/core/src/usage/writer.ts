import type { GatewayEmitter } from "../events.js";
import type { Logger } from "../logger.js";
import type { NewUsageRecord, Store } from "../store/types.js";

/**
 * Batches usage records and writes them with one `store.recordUsage` call per batch, so that
 * recording usage costs the proxy path one array push instead of one write per request.
 */
export class UsageWriter {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #maxBatch: number;
  #queue: NewUsageRecord[] = [];
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

  /** Queues a record; it reaches the store within `flushIntervalMs`. */
  push(record: NewUsageRecord): void {
    this.#queue.push(record);
    this.#events.emit("usage.recorded", record);
    if (this.#queue.length >= this.#maxBatch) void this.flush();
    else if (!this.#timer) {
      this.#timer = setTimeout(() => void this.flush(), this.#intervalMs);
      this.#timer.unref();
    }
  }

  /** Writes everything queued so far; resolves when it is in the store. */
  flush(): Promise<void> {
    if (this.#timer) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    if (this.#queue.length === 0) return this.#inflight;
    const batch = this.#queue;
    this.#queue = [];
    // Chain batches so they reach the store in order, one write at a time.
    this.#inflight = this.#inflight.then(async () => {
      try {
        await this.#store.recordUsage(batch);
      } catch (error) {
        this.#logger.error("usage batch could not be written", {
          records: batch.length,
          error: String(error),
        });
        this.#events.emit("error", { where: "usage.flush", error: error as Error });
      }
    });
    return this.#inflight;
  }
}
