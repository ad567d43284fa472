import type { GatewayEmitter } from "../events.js";
import type { Logger } from "../logger.js";
import type { Reservation, ReservationMeta, Store, UsageCommit } from "../store/types.js";
import { claimDeadJournals, UsageJournal } from "./journal.js";
import { type QuotaBlock, QuotaBlocks } from "./quota-blocks.js";
import { replayJournal } from "./replay.js";

/** Batches above this many queued commits are dropped (and reported) while the store keeps failing. */
const MAX_QUEUED = 100_000;
/** Expired reservations recovered per store call. */
const RECOVER_BATCH = 500;

/** Reservation lifetime options of a {@link UsageWriter}. */
export interface ReservationOptions {
  /** Lifetime of an unrenewed reservation (ms). */
  ttlMs: number;
  /** This gateway instance's id, written on its reservation rows. */
  owner: string;
  /**
   * How long a request refused for quota may wait for reservations in flight (ms), see
   * `usage.reserveWaitMs`.
   */
  waitMs: number;
  /**
   * Where this instance keeps its usage journal and finds the journals of dead processes on
   * this machine; null: no quota blocks (every request reserves alone), no replay.
   */
  journalDir?: string | null;
}

/**
 * Write-behind for finished requests: settlements and usage records are queued and written with
 * one `store.commitUsage` call per batch, so the proxy path pays one array push per request
 * instead of two store writes. Until a batch is written, its reservations stay debited in full
 * (the conservative side); {@link UsageWriter.flush} writes at once when exact balances matter.
 *
 * It also keeps this instance's reservations alive and recovers dead ones: every reservation
 * from {@link UsageWriter.hold} until its batch is in the store is renewed every third of its
 * lifetime in one `store.renewReservations` call, and `store.recoverReservations` runs at
 * {@link UsageWriter.start} and every half lifetime (at most every 30 s), so the reservations of
 * a process that died (whose queue died with it) are settled and recorded by whoever lives.
 */
export class UsageWriter {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  readonly #logger: Logger;
  readonly #intervalMs: number;
  readonly #maxBatch: number;
  #queue: UsageCommit[] = [];
  #timer: NodeJS.Timeout | null = null;
  /** A full batch's write, set for the next turn of the event loop (see {@link UsageWriter.push}). */
  #soon: NodeJS.Immediate | null = null;
  #inflight: Promise<void> = Promise.resolve();
  readonly #reservations: ReservationOptions;
  /** Ids of this instance's reservations not yet settled in the store. */
  readonly #live = new Set<string>();
  #renewTimer: NodeJS.Timeout | null = null;
  #recoverTimer: NodeJS.Timeout | null = null;
  #recovering: Promise<number> | null = null;
  /** Opened at the first block. */
  #journal: UsageJournal | null = null;
  #blocks: QuotaBlocks | null = null;
  /** Retired blocks whose settlement failed: tried again at the next flush. */
  #unsettled: QuotaBlock[] = [];

  constructor(
    store: Store,
    events: GatewayEmitter,
    logger: Logger,
    intervalMs: number,
    maxBatch: number,
    reservations: ReservationOptions = { ttlMs: 300_000, owner: "", waitMs: 0 },
  ) {
    this.#store = store;
    this.#events = events;
    this.#logger = logger;
    this.#intervalMs = intervalMs;
    this.#maxBatch = maxBatch;
    this.#reservations = reservations;
  }

  /** What a reservation made now should record: its lifetime, this instance, the request. */
  reservationMeta(request: {
    requestId: string;
    route: string;
    model: string;
    timestamp: number;
  }): ReservationMeta {
    return {
      requestId: request.requestId,
      route: request.route,
      model: request.model,
      timestamp: request.timestamp,
      expiresAt: Date.now() + this.#reservations.ttlMs,
      owner: this.#reservations.owner,
    };
  }

  /** How long a request refused for quota may wait for reservations in flight (ms). */
  get reserveWaitMs(): number {
    return this.#reservations.waitMs;
  }

  /**
   * This instance's quota blocks ({@link QuotaBlocks}), retired at each flush and settled once
   * the batch holding their requests' records is written; null when the store offers no
   * journal (every request then reserves alone). The journal file is created at the first call.
   */
  get blocks(): QuotaBlocks | null {
    if (this.#blocks) return this.#blocks;
    const dir = this.#reservations.journalDir;
    if (!dir) return null;
    try {
      this.#journal = UsageJournal.open(dir, {
        onError: (error) =>
          this.#logger.error("the usage journal could not be written; requests reserve alone", {
            error: String(error),
          }),
      });
    } catch (error) {
      this.#logger.warn("the usage journal could not be opened; requests reserve alone", {
        error: String(error),
      });
      this.#reservations.journalDir = null;
      return null;
    }
    this.#blocks = new QuotaBlocks(this.#journal, (r) => this.hold(r));
    return this.#blocks;
  }

  /** Keeps a granted reservation alive (renewed) until its commit is written. */
  hold(reservation: Reservation): void {
    this.#live.add(reservation.id);
  }

  /** How many of this instance's reservations are not settled in the store yet. */
  get held(): number {
    return this.#live.size;
  }

  /** Recovers expired reservations now, then starts the renewal and recovery timers. */
  async start(): Promise<void> {
    const ttl = this.#reservations.ttlMs;
    this.#renewTimer ??= setInterval(() => void this.renew(), Math.max(50, Math.floor(ttl / 3)));
    this.#renewTimer.unref();
    const every = Math.max(50, Math.min(Math.floor(ttl / 2), 30_000));
    this.#recoverTimer ??= setInterval(() => void this.recover(), every);
    this.#recoverTimer.unref();
    await this.recover();
  }

  /** Stops the timers (the queue is still written by {@link UsageWriter.flush}). */
  stop(): void {
    if (this.#renewTimer) clearInterval(this.#renewTimer);
    if (this.#recoverTimer) clearInterval(this.#recoverTimer);
    this.#renewTimer = null;
    this.#recoverTimer = null;
  }

  /** Extends the lifetime of every reservation this instance holds, in one store call. */
  async renew(): Promise<void> {
    if (this.#live.size === 0) return;
    try {
      await this.#store.renewReservations([...this.#live], Date.now() + this.#reservations.ttlMs);
    } catch (error) {
      this.#logger.warn("could not renew quota reservations", { error: String(error) });
    }
  }

  /**
   * Settles every expired reservation (a dead process's) at its full units with a recovered
   * usage record; returns how many. One run at a time per instance; across instances the store
   * makes each recovery exactly-once.
   */
  recover(): Promise<number> {
    this.#recovering ??= (async () => {
      let total = 0;
      try {
        total += await this.#replay();
      } catch (error) {
        // Recovery goes on: a block it reaches first is recovered in full (charged at its units).
        this.#logger.warn("could not replay the usage journal of a stopped gateway", {
          error: String(error),
        });
      }
      try {
        for (;;) {
          const records = await this.#store.recoverReservations(Date.now(), RECOVER_BATCH);
          total += records.length;
          for (const r of records) this.#events.emit("usage.recorded", r);
          if (records.length < RECOVER_BATCH) break;
        }
        if (total > 0)
          this.#logger.warn("recovered quota reservations left by a gateway that stopped", {
            reservations: total,
          });
      } catch (error) {
        this.#logger.warn("could not recover expired quota reservations", {
          error: String(error),
        });
      } finally {
        this.#recovering = null;
      }
      return total;
    })();
    return this.#recovering;
  }

  /**
   * Replays the journals of gateway processes on this machine that died (see
   * `replayJournal`): their finished requests get their records, their cut requests recovered
   * ones, their blocks are settled. Returns how many records were written.
   */
  async #replay(): Promise<number> {
    const dir = this.#reservations.journalDir;
    if (!dir) return 0;
    let total = 0;
    for (const journal of claimDeadJournals(dir)) {
      let done: Awaited<ReturnType<typeof replayJournal>>;
      try {
        done = await replayJournal(this.#store, journal.entries, Math.floor(Date.now() / 1000));
      } catch (error) {
        // Claimed again at the next recovery; what was written is not written twice.
        journal.abandon();
        throw error;
      }
      journal.release();
      total += done.records.length;
      for (const r of done.records) this.#events.emit("usage.recorded", r);
      if (done.blocks > 0)
        this.#logger.warn("replayed the usage journal of a gateway that stopped", {
          pid: journal.pid,
          blocks: done.blocks,
          records: done.records.length,
        });
    }
    return total;
  }

  /**
   * How many finished requests wait to be written, plus one while quota blocks are open or not
   * settled (a flush gives back what they hold beyond their requests' cost).
   */
  get pending(): number {
    const blocks = this.#blocks?.active || this.#unsettled.length > 0 ? 1 : 0;
    return this.#queue.length + blocks;
  }

  /**
   * Queues a finished request; it reaches the store within `flushIntervalMs`, or on the next
   * turn of the event loop once `maxBatch` are queued. Not at once: the request that fills the
   * batch is still being answered (it is queued before its reply is written), and the batch's
   * write, a few ms of synchronous work on SQLite, ran in a microtask ahead of that answer and
   * held it back (one answer in every batch of 256 waited ~3 ms). Requests finished meanwhile
   * join the batch.
   */
  push(commit: UsageCommit): void {
    this.#queue.push(commit);
    if (this.#queue.length < this.#maxBatch) this.#schedule();
    else if (this.#soon === null) {
      this.#soon = setImmediate(() => {
        this.#soon = null;
        void this.flush();
      });
    }
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
    if (this.#soon) {
      clearImmediate(this.#soon);
      this.#soon = null;
    }
    // Blocks whose requests have all finished: their commits are in this batch or an earlier one.
    const blocks = this.#blocks ? this.#blocks.retireAll() : [];
    if (this.#unsettled.length > 0) {
      blocks.push(...this.#unsettled);
      this.#unsettled = [];
    }
    if (this.#queue.length === 0 && blocks.length === 0) return this.#inflight;
    const batch = this.#queue;
    this.#queue = [];
    // The journal first: the store must never hold a share whose line is not in the file yet
    // (a replay skips what the store holds by counting the journal's lines in order).
    try {
      this.#journal?.flush();
    } catch {
      // Reported by the journal; the store write goes on.
    }
    // One write at a time, in order: a batch never overtakes an earlier one.
    this.#inflight = this.#inflight.then(async () => {
      try {
        if (batch.length > 0) {
          const records = await this.#store.commitUsage(batch, Math.floor(Date.now() / 1000));
          // A block's row lives on after its requests' shares: it is renewed until it settles.
          for (const c of batch)
            if (c.reservation && c.share === undefined) this.#live.delete(c.reservation.id);
          for (const r of records) this.#events.emit("usage.recorded", r);
        }
      } catch (error) {
        this.#unsettled.push(...blocks);
        // commitUsage is atomic: nothing of the batch was applied, so it can be tried again.
        this.#logger.error("usage batch could not be written; will retry", {
          records: batch.length,
          error: String(error),
        });
        this.#events.emit("error", { where: "usage.flush", error: error as Error });
        if (this.#queue.length + batch.length <= MAX_QUEUED)
          this.#queue = batch.concat(this.#queue);
        // Dropped: no longer renewed, so the store recovers them (charged in full) later.
        else
          for (const c of batch)
            if (c.reservation && c.share === undefined) this.#live.delete(c.reservation.id);
        this.#schedule();
        return;
      }
      if (blocks.length > 0) await this.#settleBlocks(blocks);
    });
    return this.#inflight;
  }

  /**
   * Closes retired blocks whose requests are all written: what no request took is given back
   * and the row goes. A failed one is tried again at the next flush.
   */
  async #settleBlocks(blocks: QuotaBlock[]): Promise<void> {
    const nowSeconds = Math.floor(Date.now() / 1000);
    for (const block of blocks) {
      try {
        if (block.left > 0)
          await this.#store.settleQuota({ ...block.reservation, units: block.left }, 0, nowSeconds);
        this.#live.delete(block.reservation.id);
        this.#blocks?.settled(block);
      } catch (error) {
        this.#logger.error("a quota block could not be settled; will retry", {
          error: String(error),
        });
        this.#unsettled.push(block);
      }
    }
    if (this.#unsettled.length > 0) this.#schedule();
  }

  /**
   * After the last flush (the gateway closes): removes the journal when everything it kept is
   * in the store, else leaves it for a replay.
   */
  closeJournal(): void {
    if (!this.#journal) return;
    const clean = this.#queue.length === 0 && !this.#blocks?.active && this.#unsettled.length === 0;
    this.#journal.close({ remove: clean });
    this.#journal = null;
  }
}
