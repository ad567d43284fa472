import { GatewayError } from "../../errors.js";
import { type Exchange, type HeaderBag, header } from "../../exchange.js";
import {
  MANAGEMENT_KEY_HOWTO,
  type ManagementGate,
  type ManagementRefusal,
} from "../../keys/management-gate.js";
import type { UserView } from "../../keys/service.js";
import type { UserService } from "../../users/service.js";

/** Who sent a request to the new-api dialect. */
export interface NewApiPrincipal {
  /** The acting user: the access token's owner, or the `new-api-user` named with the management key. */
  user: UserView | null;
  /** Admins (role `admin`, or anyone presenting the management key) act on every user's keys. */
  admin: boolean;
  /** Which credential authenticated the request. */
  via: "access-token" | "management-key";
}

/** What {@link authenticateNewApi} needs. */
export interface NewApiAuthDeps {
  users: Pick<UserService, "findByAccessToken" | "get">;
  /** The gateway's management gate: the key's rules are the same on every route. */
  gate: ManagementGate;
}

const unauthorized = (message: string) =>
  new GatewayError("UNAUTHORIZED", `Unauthorized: ${message}`);

/** The presented credential: `Authorization: Bearer <token>`, or a bare token as new-api accepts. */
function presented(headers: HeaderBag): string | undefined {
  const raw = header(headers, "authorization")?.trim();
  if (!raw) return undefined;
  const parts = raw.split(/\s+/);
  if (parts.length === 2 && parts[0]!.toLowerCase() === "bearer") return parts[1];
  return parts.length === 1 ? parts[0] : undefined;
}

/** The `new-api-user` header as a user id; `undefined` when absent, NaN when malformed. */
function headerUserId(headers: HeaderBag): number | undefined {
  const raw = header(headers, "new-api-user")?.trim();
  if (raw === undefined || raw === "") return undefined;
  return /^\d{1,15}$/.test(raw) && Number(raw) > 0 ? Number(raw) : Number.NaN;
}

/**
 * A refusal of the management gate as a new-api dialect error: a banned address and remote
 * management are 403 with the gate's message; anything else is an invalid credential, worded
 * as before (the caller may have meant an access token, and learns nothing about the key), with
 * the hint to set a management key when none is set.
 */
function gateError(refusal: ManagementRefusal): GatewayError {
  if (refusal.reason === "banned" || refusal.reason === "remote")
    return new GatewayError("FORBIDDEN", refusal.message);
  // The management API's 404 says as much: a caller who meant the management key learns how to set one.
  if (refusal.reason === "disabled")
    return unauthorized(
      `the access token is invalid, and no management key is set; ${MANAGEMENT_KEY_HOWTO}`,
    );
  return unauthorized("the access token is invalid");
}

/**
 * Authenticates a request of the new-api dialect, as new-api does: a user's access token
 * plus a `new-api-user` header naming that same user. The management key is accepted too and
 * acts as an admin, with or without `new-api-user` (when present it names the acting user,
 * e.g. the default owner of keys it creates; `1` with no stored user 1 is the built-in root,
 * {@link NEW_API_ROOT_USER_ID}), under the management gate's rules: not from a
 * remote address unless `management.allowRemote`, never when no key is set. A banned address is
 * refused whatever it presents, and a credential that is neither a valid access token nor the
 * management key counts as a failure towards the ban. Throws UNAUTHORIZED (401) or FORBIDDEN (403).
 */
export async function authenticateNewApi(
  ex: Exchange,
  deps: NewApiAuthDeps,
): Promise<NewApiPrincipal> {
  const headers = ex.headers;
  const ban = await deps.gate.banned(ex);
  if (ban) throw gateError(ban);
  const token = presented(headers);
  if (!token)
    throw unauthorized("no access token was provided (send Authorization: Bearer <access token>)");
  const claimed = headerUserId(headers);
  // A keyed-hash lookup first: cheap, and it spares users the bcrypt cost of the management check.
  const user = await deps.users.findByAccessToken(token);
  if (user) {
    if (claimed === undefined) throw unauthorized("the New-Api-User header is missing");
    if (claimed !== user.id)
      throw unauthorized("New-Api-User does not match the user of the access token");
    if (user.status !== 1) throw new GatewayError("FORBIDDEN", "This user has been disabled");
    return { user, admin: user.role === "admin", via: "access-token" };
  }
  const refusal = await deps.gate.admit(ex, token, { countEveryRefusal: true });
  if (refusal) throw gateError(refusal);
  if (claimed === undefined) return { user: null, admin: true, via: "management-key" };
  const acting = Number.isNaN(claimed) ? null : await deps.users.get(claimed);
  if (acting) return { user: acting, admin: true, via: "management-key" };
  // new-api's root user: with no stored user of that id (a fresh install), the management key
  // itself is the root, as if it had sent no header.
  if (claimed === NEW_API_ROOT_USER_ID) return { user: null, admin: true, via: "management-key" };
  throw unauthorized("New-Api-User does not match any user");
}

/**
 * The id of new-api's root user (its first, built-in administrator), which new-api clients send
 * as `new-api-user` with a system token. With the management key, it names the built-in root
 * when no stored user has this id: the management key acts as itself (an admin owning nothing),
 * as without the header. A stored user 1 (an existing database, or the store's first user) is
 * that user, as for any other id: user ids stay as the stores allocate them.
 */
export const NEW_API_ROOT_USER_ID = 1;
