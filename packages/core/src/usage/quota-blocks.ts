import type { NewUsageRecord, Reservation, ReservationMeta, Store } from "../store/types.js";
import type { UsageJournal } from "./journal.js";

/**
 * Requests one block holds at most: a block reserves this many times the estimate of the
 * request that opens it (less when the balance is lower, see {@link QuotaBlocks.open}).
 */
export const BLOCK_REQUESTS = 32;

/**
 * A block never takes more than this share of the balance it is reserved from (1/8): the rest
 * stays for other instances, other keys of the owner, and requests near the end of the quota.
 */
export const BLOCK_BALANCE_SHARE = 8;

/**
 * One reservation of a key's quota that several requests of this instance share: an ordinary
 * durable reservation row of the store (debited, renewed, recovered if this process dies),
 * sub-allocated in memory.
 */
export interface QuotaBlock {
  readonly reservation: Reservation;
  /** Units not handed to a request yet. */
  left: number;
  /** Requests holding a share whose commit is not queued yet. */
  inflight: number;
  /** No more shares: it settles once its requests have finished and their records are written. */
  retired: boolean;
}

/** A request's part of a {@link QuotaBlock}. */
export interface BlockShare {
  readonly block: QuotaBlock;
  /** The units handed to the request (its estimate). */
  readonly units: number;
}

/** What the journal keeps of a request that takes a share: what its recovered record needs. */
export interface ShareRequest {
  requestId: string;
  route: string;
  model: string;
  timestamp: number;
}

/**
 * The journal's entries (one JSON line each, see {@link UsageJournal}): a block granted (`B`),
 * a share taken by a request (`T`), a request finished with its commit queued (`D`).
 */
export type JournalEntry =
  | { t: "B"; r: Reservation }
  | { t: "T"; b: string; u: number; q: string; ro: string; m: string; ts: number }
  | { t: "D"; b: string; q: string; u: number; a: number; rec: NewUsageRecord };

/**
 * Quota leasing, made crash-safe by a journal. The reserve stage of a key far from the end of
 * its quota takes its units from a block this instance reserved earlier instead of making a
 * store write of its own: one `reserveQuota` call opens a block of up to
 * {@link BLOCK_REQUESTS} requests' estimates; each request takes its estimate from it in
 * memory; when a request finishes, its usage record and the settlement of its share
 * (`UsageCommit.share`) go to the store together in the usage writer's batch. The usage writer
 * retires every open block at each flush and, once a retired block's requests are all written,
 * gives back what none of them took (one `settleQuota` call). A block lives about one flush
 * interval, so balances are exact again after a flush, as with one reservation per request.
 *
 * What a per-request reservation row guaranteed is kept by the journal, an append-only file of
 * this process (one `write` per entry, a few µs, against a store transaction of 45-60 µs per
 * request on SQLite): the block, each share taken (before the request is forwarded) and each
 * request finished are appended (the last lazily: with the next write, at most 20 ms later). If
 * this process is killed, another gateway on the machine replays its journal
 * (`UsageWriter.recover`): every finished request whose line was written gets its own usage
 * record with its real usage, every other request taken from a block (cut by the kill, or
 * finished just before it) its own recovered record charged at its estimate, and what no
 * request took goes back to the key; as if each request had held its own reservation row.
 *
 * What holds as before: the block is debited atomically before any of its units are handed
 * out, so neither the key nor its owner is ever overdrawn, across any number of instances; a
 * request is never refused by a block (a request that does not fit takes the per-request path,
 * which decides exactly). What changes: while a block is open, other instances see up to
 * {@link BLOCK_REQUESTS} estimates of the key (at most 1/{@link BLOCK_BALANCE_SHARE} of its
 * balance) debited rather than one per request in flight.
 */
export class QuotaBlocks {
  /** The block each key's requests take from, by key id. */
  readonly #open = new Map<number, QuotaBlock>();
  /** Blocks being reserved, by key id: concurrent requests of the key wait for it. */
  readonly #opening = new Map<number, Promise<QuotaBlock | null>>();
  /** Retired blocks not settled yet. */
  readonly #retired = new Set<QuotaBlock>();
  /** Keys that reserved alone since the last flush (see {@link QuotaBlocks.busy}). */
  #seen = new Set<number>();
  readonly #journal: UsageJournal;
  /** Keeps a block's row alive (renewed) until it is settled. */
  readonly #hold: (reservation: Reservation) => void;

  constructor(journal: UsageJournal, hold: (reservation: Reservation) => void) {
    this.#journal = journal;
    this.#hold = hold;
  }

  /**
   * A share of the key's open block, or null when it has none, too little left, or the
   * journal cannot be written (the request then reserves alone).
   */
  take(keyId: number, units: number, request: ShareRequest): BlockShare | null {
    const block = this.#open.get(keyId);
    if (!block || block.left < units) return null;
    try {
      this.#journal.append(
        {
          t: "T",
          b: block.reservation.id,
          u: units,
          q: request.requestId,
          ro: request.route,
          m: request.model,
          ts: request.timestamp,
        } satisfies JournalEntry,
        block.reservation.id,
      );
    } catch {
      // Without its journal line a share would not survive a kill: no more shares of this block.
      this.#retire(block);
      return null;
    }
    block.left -= units;
    block.inflight++;
    return { block, units };
  }

  /**
   * Reserves a new block for the key (`blockUnits`) and takes `units` from it; null when the
   * store refuses the block or the journal cannot be written (the caller then reserves for the
   * request alone). Requests of the key that ask while a block is being reserved wait for it
   * and take from it.
   */
  async open(
    store: Pick<Store, "reserveQuota" | "settleQuota">,
    keyId: number,
    units: number,
    blockUnits: number,
    meta: ReservationMeta,
    request: ShareRequest,
  ): Promise<BlockShare | null> {
    // A block may run out before every request that waited for it got a share (more requests
    // in flight than it holds): those wait for the next block, twice at most.
    for (let round = 0; round < 3; round++) {
      let opening = this.#opening.get(keyId);
      if (!opening) {
        opening = this.#reserve(store, keyId, blockUnits, meta);
        this.#opening.set(keyId, opening);
      }
      const block = await opening;
      if (!block) return null;
      const share = this.take(keyId, units, request);
      if (share) return share;
    }
    return null;
  }

  /** Reserves a block and makes it the key's open one; null when refused or not journaled. */
  async #reserve(
    store: Pick<Store, "reserveQuota">,
    keyId: number,
    blockUnits: number,
    meta: ReservationMeta,
  ): Promise<QuotaBlock | null> {
    try {
      const r = await store.reserveQuota(keyId, blockUnits, meta);
      if (!r.ok) return null;
      this.#hold(r.reservation);
      const block: QuotaBlock = {
        reservation: r.reservation,
        left: r.reservation.units,
        inflight: 0,
        retired: false,
      };
      try {
        this.#journal.append({ t: "B", r: r.reservation } satisfies JournalEntry, r.reservation.id);
      } catch {
        // Retired at once with nothing taken: the next flush gives all of it back.
        block.retired = true;
        this.#retired.add(block);
        return null;
      }
      const previous = this.#open.get(keyId);
      if (previous) this.#retire(previous);
      this.#open.set(keyId, block);
      return block;
    } finally {
      this.#opening.delete(keyId);
    }
  }

  /**
   * A request that held `share` finished: journals its commit, as a lazy line (written with
   * the next share line or before the next batch, at most 20 ms later): a kill before that
   * write still recovers the request, at its estimate, from its share line. False when the
   * journal could not be written; the commit is queued all the same (a kill would then
   * recover the share at its estimate, as a per-request reservation would be).
   */
  finish(share: BlockShare, actualUnits: number, record: NewUsageRecord): boolean {
    share.block.inflight--;
    const id = share.block.reservation.id;
    try {
      // Request and response bodies stay out of the file: it is not encrypted.
      const rec = record.bodies === undefined ? record : { ...record, bodies: undefined };
      this.#journal.append(
        {
          t: "D",
          b: id,
          q: record.requestId,
          u: share.units,
          a: actualUnits,
          rec,
        } satisfies JournalEntry,
        id,
        // Lazy: the share line is in the file already, so a kill before this one is written
        // still recovers the request (at its estimate); the next share line or the batch
        // carries it, saving a write per request when requests come one at a time.
        true,
      );
      return true;
    } catch {
      return false;
    }
  }

  /** Retires the key's open block (its balance's period changed: a refill). */
  retireKey(keyId: number): void {
    const block = this.#open.get(keyId);
    if (block) this.#retire(block);
  }

  /**
   * Whether a block would pay off for the key: true from its second request since the last
   * flush. A block lives until the next flush (at most `usage.flushIntervalMs`), and costs a
   * reservation and, for what its requests left, a settlement: for a key with one request in
   * that time (a thousand keys each used now and then) it would cost a write more than the
   * request's own reservation. So the first request of a key in a flush interval reserves alone
   * and the next ones share a block.
   */
  busy(keyId: number): boolean {
    if (this.#seen.has(keyId)) return true;
    this.#seen.add(keyId);
    return false;
  }

  /**
   * Retires every open block and hands over the retired blocks whose requests have all
   * finished: their commits are queued already, so once the batch being written now is in the
   * store, the blocks can be settled.
   */
  retireAll(): QuotaBlock[] {
    this.#seen = new Set();
    for (const block of this.#open.values()) this.#retire(block);
    const done: QuotaBlock[] = [];
    for (const block of this.#retired) {
      if (block.inflight > 0) continue;
      this.#retired.delete(block);
      done.push(block);
    }
    return done;
  }

  /** A block settled in the store: its journal lines are no longer needed. */
  settled(block: QuotaBlock): void {
    this.#journal.done(block.reservation.id);
  }

  /** Whether any block is open or waits to be settled. */
  get active(): boolean {
    return this.#open.size > 0 || this.#retired.size > 0;
  }

  #retire(block: QuotaBlock): void {
    block.retired = true;
    const keyId = block.reservation.keyId;
    if (this.#open.get(keyId) === block) this.#open.delete(keyId);
    this.#retired.add(block);
  }
}
