/**
 * Authentication of the cliproxy dialect, as CLIProxyAPI's management middleware does it:
 *
 * - the key comes as `Authorization: Bearer <key>` (a bare `Authorization: <key>` is accepted
 *   too, like the original) or `X-Management-Key: <key>`;
 * - the rules (no key set, loopback or `management.allowRemote`, the ban after 5 failures, the
 *   bcrypt check behind its caches) are the gateway's one management gate
 *   (`http/management-gate.ts`), shared with every other route that accepts the key;
 * - this dialect renders the gate's refusals as the seed does: 404 `not found` on every route
 *   when no key is set, 403 `remote management disabled`, 403 `IP banned due to too many
 *   failed attempts. Try again in 29m59s`, 401 `missing management key` /
 *   `invalid management key`.
 *
 * @module
 */

import { type Exchange, header } from "../../exchange.js";
import type { ManagementGate } from "../../keys/management-gate.js";
import type { Store } from "../../store/types.js";
import { type ManagementGuard, managementError } from "./common.js";

export { isLoopback } from "../../keys/ip.js";
export { MANAGEMENT_BAN_MS, MANAGEMENT_MAX_FAILURES } from "../../keys/management-gate.js";

/** What {@link createManagementGuard} needs. */
export interface ManagementGuardDeps {
  /** The gateway's management gate. */
  gate: ManagementGate;
  /** The store (OAuth login state lives in its kv). */
  store: Store;
}

/** The presented management key: `Authorization` (Bearer or bare), else `X-Management-Key`. */
export function managementKeyOf(ex: Exchange): string | undefined {
  const auth = header(ex.headers, "authorization")?.trim();
  if (auth) {
    const m = /^bearer\s+(.*)$/i.exec(auth);
    const v = (m ? m[1]! : auth).trim();
    if (v) return v;
  }
  return header(ex.headers, "x-management-key")?.trim() || undefined;
}

/**
 * Creates the guard every management route runs first: it asks the gate and throws the
 * refusal with the seed's status and message.
 *
 * @example
 * ```ts
 * const guard = createManagementGuard({ gate, store });
 * const route = managementRoute(guard, "GET", "/usage", handle);
 * ```
 */
export function createManagementGuard(deps: ManagementGuardDeps): ManagementGuard {
  return async (ex) => {
    const refusal = await deps.gate.admit(ex, managementKeyOf(ex));
    if (refusal) throw managementError(refusal.status, refusal.message);
  };
}
