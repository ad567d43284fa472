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
/** A finished request's lease is kept this long (ms) for the next request of the same pools. */
export const LEASE_IDLE_MS = 50;
/**
 * A lease is passed from request to request for at most this long (ms) after the store granted
 * it; then it goes back to the store, so that other instances get their turn at a full pool.
 */
export const LEASE_REUSE_MS = 1_000;
/**
 * ... or for this long (ms) when the store counted at most a quarter of every pool's limit in
 * use when it granted the lease: the other instances are not waiting for that slot.
 */
export const LEASE_REUSE_ROOMY_MS = 20_000;

/** A request waiting in a queue: woken when it may ask for its slots again. */
interface Waiter {
  wake: () => void;
}

/** Empty idle pools are kept (for the plans holding them) while there are at most this many. */
const IDLE_POOLS_KEPT = 1_000;

/** A settled promise, for calls with nothing to wait for. */
const DONE: Promise<void> = Promise.resolve();

/** Why a wait ended. */
type Parked = "woken" | "timeout" | "aborted";

/** One lease of the store: its id there, its pools, the asks' signature, how long it may be reused. */
export interface Lease {
  id: string;
  pools: string[];
  signature: string;
  /** Until when it may be passed from request to request (then it goes back to the store). */
  reuseUntil: number;
  /** When it was parked (idle leases only). */
  idleSince: number;
  /** Where it is parked when freed (its signature's; taken anew once `dropped`). */
  pool: IdlePool;
}

/**
 * The idle leases of one set of asks (one {@link leaseSignature}), oldest first: an admission
 * plan holds this object and takes a lease from it without a lookup.
 */
export interface IdlePool {
  readonly signature: string;
  readonly leases: Lease[];
  /** Forgotten by its keeper: ask {@link LeaseKeeper.idlePool} again. */
  dropped: boolean;
}

/** The identity of a set of asks: the same pools with the same limits. */
export const leaseSignature = (asks: LeaseAsk[]): string =>
  asks.map((a) => `${a.pool}\u0000${a.limit}`).join("\n");

/**
 * The concurrency leases this gateway holds (of keys, users and credentials), one object per
 * gateway: takes them through the store's atomic `acquireLeases`, renews every live one on one
 * timer while its request runs (a long stream keeps its slot), and frees them when the request
 * settles. Leases expire by themselves after {@link LEASE_TTL_MS} when the process dies.
 *
 * A freed lease is passed on rather than given back at once: it waits {@link LEASE_IDLE_MS} for
 * the next request of the same pools (with the same limits) on this instance, which then takes
 * it without a store call — the store still counts it, so a pool never holds more than its
 * limit — and it goes back to the store after that, or once it has been passed around for
 * {@link LEASE_REUSE_MS}, so that a busy instance does not keep a full pool from the others.
 * The renewal timer starts with the first lease and runs (unreferenced) until {@link close}.
 */
export class LeaseKeeper {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  /** Leases the store counts for this instance, busy or idle, by store id (the renewal's list). */
  readonly #live = new Map<string, Lease>();
  /** What each caller (a request id) holds. */
  readonly #byCaller = new Map<string, Lease[]>();
  /** Freed leases waiting for the next request, per signature. */
  readonly #idle = new Map<string, IdlePool>();
  /** Requests waiting for slots, first come first served, per signature. */
  readonly #queues = new Map<string, Waiter[]>();
  #timer: ReturnType<typeof setInterval> | null = null;
  #idleTimer: ReturnType<typeof setTimeout> | null = null;
  #closed = false;

  constructor(store: Store, events: GatewayEmitter) {
    this.#store = store;
    this.#events = events;
  }

  /** Callers holding leases now (for tests and diagnostics). */
  get size(): number {
    return this.#byCaller.size;
  }

  /**
   * Takes a lease for caller `leaseId` in every pool of `asks`, all or nothing
   * (`Store.acquireLeases`), or an idle lease of the same pools and limits. When granted, the
   * keeper renews it until {@link release}. A caller may hold several leases taken by separate
   * calls (a key's pools, then a credential's). `inUse` is 0 for a lease passed on (not asked).
   */
  async acquire(asks: LeaseAsk[], leaseId: string, nowMs = Date.now()): Promise<LeaseResult> {
    if (asks.length === 0) return { ok: true, inUse: [] };
    const signature = leaseSignature(asks);
    if (this.takeIdle(signature, leaseId)) return { ok: true, inUse: asks.map(() => 0) };
    const id = this.#live.has(leaseId) ? `${leaseId}:${this.#live.size}` : leaseId;
    const r = await this.#store.acquireLeases(asks, id, nowMs + LEASE_TTL_MS, nowMs);
    if (r.ok) {
      const roomy = asks.every((a, i) => (r.inUse[i] ?? a.limit) * 4 <= a.limit);
      const lease: Lease = {
        id,
        pools: asks.map((a) => a.pool),
        signature,
        reuseUntil: nowMs + (roomy ? LEASE_REUSE_ROOMY_MS : LEASE_REUSE_MS),
        idleSince: 0,
        pool: this.idlePool(signature),
      };
      this.#live.set(id, lease);
      this.#hold(leaseId, lease);
      this.#start();
    }
    return r;
  }

  /**
   * Gives caller `leaseId` an idle lease of the asks whose {@link leaseSignature} is
   * `signature`, when this instance holds one: no store call. Returns whether it did.
   */
  takeIdle(signature: string, leaseId: string): boolean {
    const passed = this.takeIdleLease(signature);
    if (passed) this.#hold(leaseId, passed);
    return passed !== null;
  }

  /**
   * An idle lease of the asks whose {@link leaseSignature} is `signature`, handed over as it is
   * (no caller is recorded: give it back with {@link freeLease}), or null.
   */
  takeIdleLease(signature: string): Lease | null {
    return this.#idle.get(signature)?.leases.pop() ?? null;
  }

  /**
   * The idle leases of the asks whose {@link leaseSignature} is `signature`, as one object to
   * take them from (`leases.pop()`, then {@link freeLease}) until it is `dropped`.
   */
  idlePool(signature: string): IdlePool {
    let pool = this.#idle.get(signature);
    if (!pool) {
      pool = { signature, leases: [], dropped: false };
      this.#idle.set(signature, pool);
    }
    return pool;
  }

  /** Frees a lease taken with {@link takeIdleLease}, as {@link release} frees a caller's. */
  freeLease(lease: Lease, nowMs = Date.now()): void {
    if (this.#closed || nowMs >= lease.reuseUntil) {
      void this.#giveBack([lease]);
      return;
    }
    this.#park(lease, nowMs);
  }

  #park(lease: Lease, nowMs: number): void {
    lease.idleSince = nowMs;
    if (lease.pool.dropped) lease.pool = this.idlePool(lease.signature);
    lease.pool.leases.push(lease);
    if (this.#queues.size > 0) this.#queues.get(lease.signature)?.[0]?.wake();
    if (!this.#idleTimer) this.#scheduleIdleSweep();
  }

  /**
   * {@link acquire}, waiting up to `timeoutMs` for the slots when they are taken: requests of
   * this gateway asking for the same pools wait in one queue, first come first served; only the
   * first asks (again whenever a slot is freed here, and every {@link QUEUE_POLL_MS} for slots
   * freed by other instances). The wait ends early when the client goes away (`signal`). Answers
   * the last refusal when no slot came in time.
   */
  async acquireWaiting(
    asks: LeaseAsk[],
    leaseId: string,
    timeoutMs: number,
    signal: ClientSignal,
  ): Promise<LeaseResult> {
    const name = leaseSignature(asks);
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
   * Frees what caller `leaseId` holds in `pools` (everything it holds when omitted): each lease
   * is passed to the first request waiting for it here, or kept idle for the next one, or given
   * back to the store. Never throws: a failed store call is reported as an `error` event, and
   * the lease then expires by itself.
   */
  release(leaseId: string, pools?: string[]): Promise<void> {
    const held = this.#byCaller.get(leaseId);
    if (!held) return DONE;
    const freed =
      pools && (held.length > 1 || !held[0]!.pools.every((p) => pools.includes(p)))
        ? held.filter((l) => l.pools.some((p) => pools.includes(p)))
        : held;
    if (freed === held) this.#byCaller.delete(leaseId);
    else {
      const left = held.filter((l) => !freed.includes(l));
      if (left.length > 0) this.#byCaller.set(leaseId, left);
      else this.#byCaller.delete(leaseId);
    }
    const nowMs = Date.now();
    const back: Lease[] = [];
    for (const lease of freed) {
      if (this.#closed || nowMs >= lease.reuseUntil) {
        back.push(lease);
        continue;
      }
      this.#park(lease, nowMs);
    }
    return back.length > 0 ? this.#giveBack(back) : DONE;
  }

  /** Gives every idle lease back to the store now. */
  async releaseIdle(): Promise<void> {
    const all: Lease[] = [];
    for (const pool of this.#idle.values()) all.push(...pool.leases.splice(0));
    await this.#giveBack(all);
  }

  /** Renews every live lease now (the timer's work). */
  async renewAll(nowMs = Date.now()): Promise<void> {
    const expiresAt = nowMs + LEASE_TTL_MS;
    await Promise.all(
      [...this.#live.values()].map(async (lease) => {
        try {
          await this.#store.renewLeases(lease.id, lease.pools, expiresAt, nowMs);
        } catch (error) {
          this.#events.emit("error", { where: "lease renewal", error: error as Error });
        }
      }),
    );
  }

  /** Stops renewing and gives back every lease still held. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    if (this.#idleTimer) clearTimeout(this.#idleTimer);
    this.#idleTimer = null;
    this.#byCaller.clear();
    for (const pool of this.#idle.values()) {
      pool.leases.length = 0;
      pool.dropped = true;
    }
    this.#idle.clear();
    await this.#giveBack([...this.#live.values()]);
  }

  #hold(caller: string, lease: Lease): void {
    const held = this.#byCaller.get(caller);
    if (held) held.push(lease);
    else this.#byCaller.set(caller, [lease]);
  }

  async #giveBack(leases: Lease[]): Promise<void> {
    if (leases.length === 0) return;
    for (const l of leases) this.#live.delete(l.id);
    await Promise.all(
      leases.map(async (l) => {
        try {
          await this.#store.releaseLeases(l.id, l.pools);
        } catch (error) {
          this.#events.emit("error", { where: "lease release", error: error as Error });
        }
      }),
    );
    // Slots are free in the store now: the first waiter of every queue may try again.
    if (this.#queues.size > 0) for (const queue of this.#queues.values()) queue[0]?.wake();
  }

  /** Idle leases older than {@link LEASE_IDLE_MS} go back to the store. */
  #scheduleIdleSweep(): void {
    if (this.#idleTimer) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = null;
      const nowMs = Date.now();
      const back: Lease[] = [];
      let parked = 0;
      for (const [signature, pool] of this.#idle) {
        const { leases } = pool;
        // Oldest first: the stale ones are a prefix.
        let stale = 0;
        while (stale < leases.length && nowMs - leases[stale]!.idleSince >= LEASE_IDLE_MS) stale++;
        if (stale > 0) back.push(...leases.splice(0, stale));
        parked += leases.length;
        if (leases.length === 0 && this.#idle.size > IDLE_POOLS_KEPT) {
          pool.dropped = true;
          this.#idle.delete(signature);
        }
      }
      void this.#giveBack(back);
      if (parked > 0) this.#scheduleIdleSweep();
    }, LEASE_IDLE_MS);
    this.#idleTimer.unref?.();
  }

  #start(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setInterval(() => void this.renewAll(), LEASE_RENEW_MS);
    this.#timer.unref?.();
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
