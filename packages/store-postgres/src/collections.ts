/** Keys, users, credentials, settings and kv of the PostgreSQL store. Internal to this package. */
import type { CollectionFactories } from "@tokenpool/core/store-kernel";
import type { PgContext } from "./context.js";

// TODO(helper): placeholder until the collections are written.
const todo = (): never => ({}) as never;

export const collections: CollectionFactories<PgContext> = {
  keys: todo,
  users: todo,
  credentials: todo,
  settings: todo,
  kv: todo,
};
