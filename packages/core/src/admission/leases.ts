import type { GatewayEmitter } from "../events.js";
import type { LeaseAsk, LeaseResult, Store } from "../store/types.js";

/** A concurrency lease lives this long (ms) unless renewed: a dead instance's slots come back by then. */
export const LEASE_TTL_MS = 30_000;
/** Live leases are renewed this often (ms), well inside {@link LEASE_TTL_MS}. */
export const LEASE_RENEW_MS = 10_000;

/**
 * The concurrency leases this gateway holds (of keys, users and credentials), one object per
 * gateway: takes them through the store's atomic `acquireLeases`, renews every live one on one
 * timer while its request runs (a long stream keeps its slot), and releases them when the
 * request settles. Leases expire by themselves after {@link LEASE_TTL_MS} when the process dies.
 */
export class LeaseKeeper {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  /** Live leases: lease id → the pools it holds. */
  readonly #held = new Map<string, string[]>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #closed = false;

  constructor(store: Store, events: GatewayEmitter) {
    this.#store = store;
    this.#events = events;
  }

  /** Leases held now (for tests and diagnostics). */
  get size(): number {
    return this.#held.size;
  }

  /**
   * Takes lease `leaseId` in every pool of `asks`, all or nothing (`Store.acquireLeases`). When
   * granted, the keeper renews it until {@link release}. A lease id may hold several groups of
   * pools taken by separate calls (a key's pools, then a credential's).
   */
  async acquire(asks: LeaseAsk[], leaseId: string, nowMs = Date.now()): Promise<LeaseResult> {
    const r = await this.#store.acquireLeases(asks, leaseId, nowMs + LEASE_TTL_MS, nowMs);
    if (r.ok && asks.length > 0) {
      const pools = this.#held.get(leaseId);
      const added = asks.map((a) => a.pool);
      this.#held.set(leaseId, pools ? [...pools, ...added] : added);
      this.#start();
    }
    return r;
  }

  /**
   * Frees lease `leaseId` in `pools` (every pool it holds when omitted). Never throws: a failed
   * release is reported as an `error` event, and the lease then expires by itself.
   */
  async release(leaseId: string, pools?: string[]): Promise<void> {
    const held = this.#held.get(leaseId);
    if (!held) return;
    const freed = pools ?? held;
    const left = pools ? held.filter((p) => !pools.includes(p)) : [];
    if (left.length > 0) this.#held.set(leaseId, left);
    else this.#held.delete(leaseId);
    if (this.#held.size === 0) this.#stop();
    try {
      await this.#store.releaseLeases(leaseId, freed);
    } catch (error) {
      this.#events.emit("error", { where: "lease release", error: error as Error });
    }
  }

  /** Renews every live lease now (the timer's work). */
  async renewAll(nowMs = Date.now()): Promise<void> {
    const expiresAt = nowMs + LEASE_TTL_MS;
    await Promise.all(
      [...this.#held].map(async ([id, pools]) => {
        try {
          await this.#store.renewLeases(id, pools, expiresAt, nowMs);
        } catch (error) {
          this.#events.emit("error", { where: "lease renewal", error: error as Error });
        }
      }),
    );
  }

  /** Stops renewing and releases every lease still held. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stop();
    const all = [...this.#held.keys()];
    await Promise.all(all.map((id) => this.release(id)));
  }

  #start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => void this.renewAll(), LEASE_RENEW_MS);
    this.#timer.unref?.();
  }

  #stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
  }
}
