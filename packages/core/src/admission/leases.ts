import type { GatewayEmitter } from "../events.js";
import type { ClientSignal } from "../exchange.js";
import type { LeaseAsk, LeaseResult, Store } from "../store/types.js";

/** A concurrency lease lives this long (ms) unless renewed: a dead instance's slots come back by then. */
export const LEASE_TTL_MS = 30_000;
/** Live leases are renewed this often (ms), well inside {@link LEASE_TTL_MS}. */
export const LEASE_RENEW_MS = 10_000;
/**
 * The first request of a queue asks the store again at most this often (ms, jittered) while it
 * waits: slots freed by other instances are seen no later than that; slots freed here wake it at once.
 */
export const QUEUE_POLL_MS = 50;

/** A request waiting in a queue: woken when it may ask for its slots again. */
interface Waiter {
  wake: () => void;
}

/** Why a wait ended. */
type Parked = "woken" | "timeout" | "aborted";

/**
 * The concurrency leases this gateway holds (of keys, users and credentials), one object per
 * gateway: takes them through the store's atomic `acquireLeases`, renews every live one on one
 * timer while its request runs (a long stream keeps its slot), and releases them when the
 * request settles. Leases expire by themselves after {@link LEASE_TTL_MS} when the process dies.
 * The renewal timer starts with the first lease and runs (unreferenced) until {@link close}, so
 * that requests do not pay for starting and stopping it.
 */
export class LeaseKeeper {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  /** Live leases: lease id → the pools it holds. */
  readonly #held = new Map<string, string[]>();
  /** Requests waiting for slots, first come first served, per set of pools. */
  readonly #queues = new Map<string, Waiter[]>();
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
   * {@link acquire}, waiting up to `timeoutMs` for the slots when they are taken: requests of
   * this gateway asking for the same pools wait in one queue, first come first served; only the
   * first asks the store (again whenever a slot is released here, and every
   * {@link QUEUE_POLL_MS} for slots released by other instances). The wait ends early when the
   * client goes away (`signal`). Answers the last refusal when no slot came in time.
   */
  async acquireWaiting(
    asks: LeaseAsk[],
    leaseId: string,
    timeoutMs: number,
    signal: ClientSignal,
  ): Promise<LeaseResult> {
    const name = asks.map((a) => a.pool).join("\n");
    const deadline = Date.now() + timeoutMs;
    if (!this.#queues.get(name)?.length) {
      const first = await this.acquire(asks, leaseId);
      if (first.ok || timeoutMs <= 0 || signal.aborted) return first;
    }
    let queue = this.#queues.get(name);
    if (!queue) {
      queue = [];
      this.#queues.set(name, queue);
    }
    const me: Waiter = { wake: () => {} };
    queue.push(me);
    let last: LeaseResult = {
      ok: false,
      index: 0,
      pool: asks[0]?.pool ?? "",
      retryAfterMs: QUEUE_POLL_MS,
    };
    try {
      for (;;) {
        while (queue[0] !== me) {
          const left = deadline - Date.now();
          if (left <= 0) return last;
          if ((await park(me, left, signal)) === "aborted") return last;
        }
        last = await this.acquire(asks, leaseId);
        if (last.ok) return last;
        const left = deadline - Date.now();
        if (left <= 0) return last;
        const poll = Math.min(left, last.retryAfterMs, QUEUE_POLL_MS * (0.5 + Math.random()));
        if ((await park(me, Math.max(1, poll), signal)) === "aborted") return last;
      }
    } finally {
      const at = queue.indexOf(me);
      if (at >= 0) queue.splice(at, 1);
      if (queue.length === 0) this.#queues.delete(name);
      else if (at === 0) queue[0]?.wake();
    }
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
    try {
      await this.#store.releaseLeases(leaseId, freed);
    } catch (error) {
      this.#events.emit("error", { where: "lease release", error: error as Error });
    }
    // The first waiter of every queue that asks for one of these pools may try again now.
    if (this.#queues.size > 0) {
      for (const [name, queue] of this.#queues) {
        const pools = name.split("\n");
        if (freed.some((p) => pools.includes(p))) queue[0]?.wake();
      }
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

/** Waits until `w` is woken, `ms` pass, or the client goes away. */
function park(w: Waiter, ms: number, signal: ClientSignal): Promise<Parked> {
  if (signal.aborted) return Promise.resolve("aborted");
  return new Promise((resolve) => {
    const done = (why: Parked) => {
      clearTimeout(timer);
      w.wake = () => {};
      (signal as EventTarget).removeEventListener?.("abort", onAbort);
      (signal as import("node:events").EventEmitter).off?.("abort", onAbort);
      resolve(why);
    };
    const onAbort = () => done("aborted");
    const timer = setTimeout(() => done("timeout"), ms);
    w.wake = () => done("woken");
    if ("addEventListener" in signal) signal.addEventListener("abort", onAbort, { once: true });
    else signal.once("abort", onAbort);
  });
}
