/**
 * The two halves an adapter builds its Store from: the collections (keys, users, credentials,
 * settings, kv) and the ledger (quota reservations, settlements and usage). Exported under
 * `@tokenpool/core/store-kernel`.
 *
 * @module
 */
import type { Store } from "./types.js";

/** Every collection of the Store contract except usage (which belongs to the ledger). */
export type StoreCollections = Pick<Store, "keys" | "users" | "credentials" | "settings" | "kv">;

/** The quota and usage steps of the Store contract. */
export type StoreLedger = Pick<
  Store,
  | "usage"
  | "reserveQuota"
  | "renewReservations"
  | "recoverReservations"
  | "settleQuota"
  | "commitUsage"
  | "refillQuota"
>;

/** One factory per collection, each given the adapter's context. */
export type CollectionFactories<Context> = {
  readonly [Name in keyof StoreCollections]: (context: Context) => StoreCollections[Name];
};

/**
 * The collections of a store, each made by its factory from the same context.
 *
 * @example
 * ```ts
 * const store = { ...storeCollections(ctx, factories), ...ledger(ctx) };
 * ```
 */
export function storeCollections<Context>(
  context: Context,
  factories: CollectionFactories<Context>,
): StoreCollections {
  return {
    keys: factories.keys(context),
    users: factories.users(context),
    credentials: factories.credentials(context),
    settings: factories.settings(context),
    kv: factories.kv(context),
  };
}
