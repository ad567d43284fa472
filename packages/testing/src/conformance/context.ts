import type {
  Reservation,
  ReserveDenial,
  ReserveResult,
  Store,
  StoreCapabilities,
  StoreChange,
  UsageRollup,
} from "@tokenpool/core";
import { expect } from "vitest";

/** The names of the conformance suite's groups, one per area of the Store contract. */
export type ConformanceGroupName =
  | "keys"
  | "users"
  | "credentials"
  | "settings"
  | "kv"
  | "locks"
  | "usage"
  | "quota"
  | "commit-usage"
  | "recovery"
  | "refill"
  | "limits"
  | "watch"
  | "multi-process";

/** What a group's tests see of the suite: the current store and the adapter's options. */
export interface ConformanceContext {
  /**
   * The running test's store (a fresh one per test, closed and cleaned up after it), through a
   * handle that stays the same for the whole group: tests read it when they run, not when they
   * are collected.
   */
  readonly store: Store;
  /** The adapter's capabilities, read once while tests are collected (for `it.skipIf`). */
  readonly capabilities: StoreCapabilities;
  /** The adapter's `reopen` option, when given. */
  readonly reopen?: (store: Store) => Store | Promise<Store>;
  /** Opens a second store object over the current store's data; closed after the test. */
  openPeer(): Promise<Store>;
}

/** One group of the conformance suite: a `describe` block registered by {@link ConformanceGroup.register}. */
export interface ConformanceGroup {
  name: ConformanceGroupName;
  /** The `describe` title. */
  title: string;
  /** Registers the group's tests (called inside its `describe`). */
  register(ctx: ConformanceContext): void;
}

/** Declares a group: its name (for `skip`), its `describe` title and its tests. */
export function defineGroup(
  name: ConformanceGroupName,
  title: string,
  register: (ctx: ConformanceContext) => void,
): ConformanceGroup {
  return { name, title, register };
}

/**
 * A Store that forwards every member to the store `current()` returns at the time of the call,
 * with the Store's own methods bound to it.
 */
export function storeHandle(current: () => Store): Store {
  return new Proxy({} as Store, {
    get(_, member) {
      const store = current();
      const value: unknown = Reflect.get(store, member);
      return typeof value === "function" ? value.bind(store) : value;
    },
  });
}

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `check` until it returns true, or fails after `timeoutMs`. */
export async function waitUntil(
  check: () => boolean,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** Subscribes to a store and keeps every change it delivers. */
export function record(store: Store) {
  const changes: StoreChange[] = [];
  const stop = store.watch((c) => changes.push(c));
  return { changes, stop };
}

/** A change notification as the suite expects it. */
export const change = (
  collection: StoreChange["collection"],
  id: string | number,
  op: StoreChange["op"],
  origin: StoreChange["origin"] = "local",
): StoreChange => ({ collection, id: String(id), op, origin });

/** How many of the results granted a reservation. */
export const granted = (results: ReserveResult[]) => results.filter((r) => r.ok).length;

/** A refused reservation as `reserveQuota` answers it: the reason and the units held in flight. */
export const denial = (reason: ReserveDenial, inFlight: number): ReserveResult => ({
  ok: false,
  reason,
  inFlight,
});

/**
 * A granted reservation as `reserveQuota` answers it (any id), with the key's and the owner's
 * refill periods it carries (0 for a balance that never had one).
 */
export const grant = (
  keyId: number,
  userId: number | null,
  units: number,
  keyDebited: boolean,
  keyPeriod = 0,
  userPeriod = 0,
): ReserveResult => ({
  ok: true,
  reservation: { id: expect.any(String), keyId, userId, units, keyDebited, keyPeriod, userPeriod },
});

/** The reservation of a granted result; throws on a denial. */
export function reservationOf(result: ReserveResult): Reservation {
  if (!result.ok) throw new Error(`expected a reservation, got the denial "${result.reason}"`);
  return result.reservation;
}

const rollupId = (r: UsageRollup) =>
  `${r.hour}|${r.route}|${r.model}|${r.keyId}|${r.userId}|${r.credentialId}`;

/** Roll-up rows in a stable order, to compare them whatever order a store returns. */
export const byRollupId = (rows: UsageRollup[]) =>
  [...rows].sort((a, b) => rollupId(a).localeCompare(rollupId(b)));
