import type { ClientSignal } from "../exchange.js";

/**
 * The `QuotaLine` id of an owner's line: the requests of all their keys refused for the
 * owner's quota wait in one line (key ids are positive, so an owner's is negative).
 */
export function userLine(userId: number): number {
  return -userId;
}

/**
 * The requests of one key waiting for quota that other requests' reservations still hold, in
 * the order they came (one object per gateway; see `reserveUnits`). Only the first in a key's
 * line asks the store again while it waits; the others wait for their turn, which comes as
 * soon as the one before them is served or gives up, and then ask at once. A line is named by
 * a number: a key's id, or (`userLine`) an owner's, for requests refused for the owner's quota,
 * whichever of their keys they came with.
 *
 * Why a line: when a key's quota runs out under a burst, hundreds of requests of this
 * instance may be waiting for the same few settlements. Each asking the store on its own
 * backoff made some 15 store calls per request (15,000 for a burst of 1,000 over three
 * gateways), enough load to slow the settlements they waited for past the wait's deadline:
 * requests were refused while quota was left. With a line, an instance asks about a key at
 * most once per pause, whatever the number of waiters.
 */
export class QuotaLine {
  /** Per key: settles when the last waiter in line has had its turn. */
  readonly #tails = new Map<number, Promise<void>>();
  /** Per key: wakes the first in line from its pause. */
  readonly #wakers = new Map<number, () => void>();

  /** Keys with someone in line (for tests and metrics). */
  get size(): number {
    return this.#tails.size;
  }

  /**
   * A request of the key finished here and its settlement is queued: the first in the key's
   * line, if it is pausing, asks again now instead of at the end of its pause.
   */
  settled(keyId: number): void {
    this.#wakers.get(keyId)?.();
  }

  /**
   * The pause of the first in a key's line between two asks: resolves true after `ms` or as
   * soon as a request of the key settles here ({@link QuotaLine.settled}), false as soon as the
   * client leaves.
   */
  pause(keyId: number, ms: number, signal: ClientSignal): Promise<boolean> {
    if (signal.aborted) return Promise.resolve(false);
    let resolve!: () => void;
    const promise = new Promise<void>((r) => {
      resolve = r;
    });
    this.#wakers.set(keyId, resolve);
    return reached(promise, Date.now() + ms, signal, true).finally(() => {
      if (this.#wakers.get(keyId) === resolve) this.#wakers.delete(keyId);
    });
  }

  /**
   * Waits for this request's turn in the key's line. Resolves to the function that ends the
   * turn (call it exactly once, when the request is served or gives up), or null when `until`
   * (a `Date.now()` time) passes or the client leaves before the turn comes; the place in the
   * line is then given up (those behind it still wait for the turns before it).
   */
  async turn(keyId: number, until: number, signal: ClientSignal): Promise<(() => void) | null> {
    const before = this.#tails.get(keyId);
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    const tail = before ? before.then(() => mine) : mine;
    this.#tails.set(keyId, tail);
    // The last in line leaves no entry behind, once every turn before its own has ended too.
    void tail.then(() => {
      if (this.#tails.get(keyId) === tail) this.#tails.delete(keyId);
    });
    const end = () => done();
    if (!before) return end;
    if (await reached(before, until, signal)) return end;
    end();
    return null;
  }
}

/**
 * True when `turn` settles before `until` (a `Date.now()` time) and before the client leaves;
 * at `until`, `atTime` (false unless told).
 */
function reached(
  turn: Promise<void>,
  until: number,
  signal: ClientSignal,
  atTime = false,
): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const finish = (value: boolean) => {
      clearTimeout(timer);
      if ("removeEventListener" in signal) signal.removeEventListener("abort", onAbort);
      else signal.off("abort", onAbort);
      resolve(value);
    };
    const onAbort = () => finish(false);
    const timer = setTimeout(() => finish(atTime), Math.max(0, until - Date.now()));
    if ("addEventListener" in signal) signal.addEventListener("abort", onAbort, { once: true });
    else signal.once("abort", onAbort);
    turn.then(() => finish(true));
  });
}
