/** Quota reservations, settlements, refills and usage of the PostgreSQL store. Internal to this package. */
import type { StoreLedger } from "@tokenpool/core/store-kernel";
import type { PgContext } from "./context.js";

export function ledger(_ctx: PgContext): StoreLedger {
  throw new Error("not implemented");
}
