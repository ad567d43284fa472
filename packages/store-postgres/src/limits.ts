/** The admission steps of the PostgreSQL store (windows and leases). Internal to this package. */
import type { Store } from "@tokenpool/core";
import type { PgContext } from "./context.js";

/** The admission steps of the Store contract. */
export type LimitSteps = Pick<
  Store,
  "hitWindows" | "adjustWindow" | "acquireLeases" | "renewLeases" | "releaseLeases"
>;

// TODO(helper): placeholder until the limits are written.
export function limits(_ctx: PgContext): LimitSteps {
  return {} as LimitSteps;
}
