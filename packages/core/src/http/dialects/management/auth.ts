/**
 * Authentication of the management dialect, as CLIProxyAPI's management middleware does it:
 *
 * - the key comes as `Authorization: Bearer <key>` (a bare `Authorization: <key>` is accepted
 *   too, like the original) or `X-Management-Key: <key>`;
 * - it is checked against the bcrypt hash of the `remote-management` setting
 *   (`gateway.management.verify`, which remembers successful checks under a keyed hash for a
 *   minute; bcrypt's own comparison is constant time);
 * - no key set (empty secret) disables the whole API: every `/v0/management` route is 404;
 * - clients that are not loopback (127.0.0.0/8, ::1, ::ffff:127.x, after trusted proxies) are
 *   refused with 403 `remote management disabled` unless the gateway option
 *   `management.allowRemote` is on. That option is the single source of truth: it is
 *   code/configuration, so no management route can change it;
 * - 5 consecutive failures (missing or wrong key) from one remote address ban it for 30
 *   minutes with 403, as CLIProxyAPI does. The counter and the ban live in the store's kv with
 *   a TTL, so they hold across instances sharing a store. Loopback clients are never banned.
 *
 * @module
 */
import { isIP } from "node:net";
import type { Store } from "../../../store/types.js";
import { type Exchange, header } from "../../exchange.js";
import { type ManagementGuard, managementError } from "./common.js";

/** Failed attempts from one remote address before it is banned. */
export const MANAGEMENT_MAX_FAILURES = 5;
/** How long a ban lasts (ms); also the window in which failures are counted. */
export const MANAGEMENT_BAN_MS = 30 * 60_000;

const FAIL_PREFIX = "management-auth:failures:";
const BAN_PREFIX = "management-auth:ban:";

/** What {@link createManagementGuard} needs. */
export interface ManagementGuardDeps {
  /** The store whose kv keeps failure counters and bans. */
  store: Store;
  /** Whether a management key is set (an empty secret disables the API). */
  hasKey(): boolean;
  /** Checks a presented key against the stored bcrypt hash. */
  verify(plain: string | undefined): Promise<boolean>;
  /** The client address, resolved through trusted proxies. */
  clientIp(ex: Exchange): string;
  /** Whether non-loopback clients may use the API (`management.allowRemote`). */
  allowRemote: boolean;
  /** ms clock, for tests. @default Date.now */
  now?: () => number;
}

/** Whether an address (already normalised: no port, no `::ffff:` prefix) is loopback. */
export function isLoopback(ip: string): boolean {
  const family = isIP(ip);
  if (family === 4) return ip.startsWith("127.");
  if (family === 6) {
    const lower = ip.toLowerCase();
    return lower === "::1" || lower === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(lower);
  }
  return false;
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

/** Go's duration format, as CLIProxyAPI prints the ban's remaining time (`29m59s`). */
function goDuration(ms: number): string {
  const total = Math.max(0, Math.round(ms / 1000));
  const h = Math.floor(total / 3600);
  const m = Math.floor((total % 3600) / 60);
  const s = total % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

/**
 * Creates the guard every management route runs first. Throws the seed's errors:
 * 404 when no key is set, 403 `remote management disabled`, 403 for a banned address,
 * 401 `missing management key` / `invalid management key`.
 *
 * @example
 * ```ts
 * const guard = createManagementGuard({ store, hasKey, verify, clientIp, allowRemote: false });
 * const route = managementRoute(guard, "GET", "/usage", handle);
 * ```
 */
export function createManagementGuard(deps: ManagementGuardDeps): ManagementGuard {
  const now = deps.now ?? Date.now;
  const kv = deps.store.kv;

  const fail = async (ip: string) => {
    const count = await kv.incr(FAIL_PREFIX + ip, 1, MANAGEMENT_BAN_MS);
    if (count >= MANAGEMENT_MAX_FAILURES) {
      await kv.set(BAN_PREFIX + ip, String(now() + MANAGEMENT_BAN_MS), MANAGEMENT_BAN_MS);
      await kv.delete(FAIL_PREFIX + ip);
    }
  };

  return async (ex) => {
    if (!deps.hasKey()) throw managementError(404, "not found");
    const ip = deps.clientIp(ex);
    const remote = !isLoopback(ip);
    if (remote) {
      const ban = await kv.get(BAN_PREFIX + ip);
      if (ban !== null) {
        const left = Number(ban) - now();
        throw managementError(
          403,
          `IP banned due to too many failed attempts. Try again in ${goDuration(left > 0 ? left : MANAGEMENT_BAN_MS)}`,
        );
      }
      if (!deps.allowRemote) throw managementError(403, "remote management disabled");
    }
    const provided = managementKeyOf(ex);
    if (!provided) {
      if (remote) await fail(ip);
      throw managementError(401, "missing management key");
    }
    if (!(await deps.verify(provided))) {
      if (remote) await fail(ip);
      throw managementError(401, "invalid management key");
    }
    // Failures must be consecutive: a success starts the count again.
    if (remote) await kv.delete(FAIL_PREFIX + ip);
  };
}
