/** Quota reservations, settlements, refills and usage of the PostgreSQL store. Internal to this package. */
import type { StoreLedger } from "@tokenpool/core/store-kernel";
import type { PgContext } from "./context.js";

// TODO(helper): placeholder until the ledger is written.
export function ledger(_ctx: PgContext): StoreLedger {
  return {} as StoreLedger;
}
