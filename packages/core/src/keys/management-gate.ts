/**
 * The one gate of the management key. Every route that accepts the management key
 * (`/v0/management`, `/api/token/`, `/api/user/`, `/v1/tokens`, and any route added later) asks
 * it, and each dialect only renders its refusal in its own error format. The rules, as
 * CLIProxyAPI's management middleware has them:
 *
 * - no key set (empty secret) disables the management key everywhere;
 * - clients that are not loopback (127.0.0.0/8, ::1, ::ffff:127.x, after trusted proxies; an
 *   unreadable `X-Forwarded-For` chain counts as remote) may use it only with the gateway option
 *   `management.allowRemote`. That option is code/configuration, so no route can change it;
 * - 5 consecutive failures from one remote address, on any of these routes, ban it for 30
 *   minutes on all of them, even with the right key. The counter and the ban live in the
 *   store's kv with a TTL, so they hold across instances sharing a store. Loopback clients are
 *   never banned. Only the right management key starts the count again: a user's valid access
 *   token does not, or its holder could interleave guesses of the key with it;
 * - the key is checked against the stored bcrypt hash on a worker thread (see
 *   `util/bcrypt-worker.ts`), behind a cache of recent successes (a minute) and failures (15 s),
 *   both under a keyed hash of the presented key and both forgotten when the stored hash
 *   changes; checks of one key in flight are shared, and at most
 *   {@link MANAGEMENT_MAX_CHECKS} run or wait at once: beyond that a key is refused at once
 *   (as a failure) rather than queued, so that wrong keys cannot starve the server.
 *
 * @module
 */

import type { Exchange } from "../exchange.js";
import type { Store } from "../store/types.js";
import { type BcryptComparer, createBcryptComparer } from "../util/bcrypt-worker.js";
import { goDuration } from "../util/duration.js";
import { isLoopback } from "./ip.js";

/** Failed attempts from one remote address before it is banned. */
export const MANAGEMENT_MAX_FAILURES = 5;
/** How long a ban lasts (ms); also the window in which failures are counted. */
export const MANAGEMENT_BAN_MS = 30 * 60_000;
/**
 * How long a successful key check is remembered. bcrypt costs ~70 ms by design; the new-api
 * and antigravity dialects check the key on every request, so a short cache keeps them usable.
 */
export const MANAGEMENT_VERIFY_TTL_MS = 60_000;
/** How long a failed key check is remembered: the same wrong key again costs no bcrypt. */
export const MANAGEMENT_FAILURE_TTL_MS = 15_000;
/** Key checks (bcrypt) running or waiting at once; more are refused without a check. */
export const MANAGEMENT_MAX_CHECKS = 16;
/** Entries of each check cache (successes, failures); the oldest goes first. */
const CACHE_MAX = 1_000;

/**
 * How to set a management key, as the refusals name it: the library's call, and the
 * `tokenpool` server's sources (the key printed on a store's first start, the config file).
 */
export const MANAGEMENT_KEY_HOWTO =
  "set one with `await gateway.management.setKey(key)` (tokenpool server: use the management key it printed on the store's first start, or set `remote-management.secret-key` in the file given with --config; an empty value disables the management API)";

/** The message of the refusal when no management key is set (the management API's 404). */
export const MANAGEMENT_DISABLED_MESSAGE = `not found: no management key is set; ${MANAGEMENT_KEY_HOWTO}`;

/**
 * The message of the refusal of a remote client (remote management off): the address the gateway
 * saw, how to allow remote clients, and how the client address reaches it behind a proxy or
 * from a binding that has no socket address (Next.js).
 */
export function remoteManagementMessage(ip: string): string {
  const from = ip === "" ? "an unknown client address" : `the client address ${ip}`;
  return (
    `remote management disabled: the management key is accepted from loopback clients only, and this request came from ${from}. ` +
    "To allow remote clients, set the gateway option `management: { allowRemote: true }` (tokenpool server: `allow-remote-management: true` or `remote-management.allow-remote: true` in its config file). " +
    "If the client is local but behind a proxy, make its address reach the gateway: `trustedProxies` (gateway option; `trusted-proxies` in the server's config file), Express's `trust proxy` or Fastify's `trustProxy` setting, or the `clientIp` option of the binding; " +
    "with @tokenpool/next the address is unknown unless `toNextRouteHandlers` gets `trustProxy` or `clientIp`."
  );
}

const FAIL_PREFIX = "management-auth:failures:";
const BAN_PREFIX = "management-auth:ban:";

/**
 * Why the gate refused a request, with the status and message of CLIProxyAPI's management API
 * (the cliproxy dialect renders them as they are; the other dialects in their own format).
 */
export type ManagementRefusal =
  | { reason: "disabled"; status: 404; message: string }
  | { reason: "banned"; status: 403; message: string }
  | { reason: "remote"; status: 403; message: string }
  | { reason: "missing"; status: 401; message: string }
  | { reason: "invalid"; status: 401; message: string };

/** Options of {@link ManagementGate.admit}. */
export interface AdmitOptions {
  /**
   * The key was presented in place of another credential (a user's access token on the new-api
   * and antigravity dialects), so it was wrong whatever the refusal: a refused remote client
   * counts one failure even when management is disabled or remote management is off.
   * @default false
   */
  countEveryRefusal?: boolean;
}

/** The gate; see the module documentation. Built once per gateway by `createGateway`. */
export interface ManagementGate {
  /** Whether a management key is set. */
  hasKey(): boolean;
  /** The client address of a request, resolved through trusted proxies. */
  clientIp(ex: Exchange): string;
  /** The refusal for a banned remote client, else `null` (whatever credential it presents). */
  banned(ex: Exchange): Promise<ManagementRefusal | null>;
  /**
   * Applies every rule to a request presenting `key` as the management key (`undefined`: none)
   * and counts the failure; `null` when the request may go on as the management key's holder.
   */
  admit(
    ex: Exchange,
    key: string | undefined,
    options?: AdmitOptions,
  ): Promise<ManagementRefusal | null>;
  /**
   * Checks a key against the stored hash, without the address rules (what
   * `gateway.management.verify` does); false when the check was refused for load.
   */
  verify(plain: string | undefined): Promise<boolean>;
  /** Forgets remembered checks (the key was changed). */
  forget(): void;
  /** Stops the bcrypt worker. */
  close(): Promise<void>;
}

/** What {@link createManagementGate} needs. */
export interface ManagementGateDeps {
  /** The store whose kv keeps failure counters and bans. */
  store: Store;
  /** The stored bcrypt hash of the management key, `""` when none is set. */
  hash(): string;
  /** A keyed hash (HMAC under the server secret) of a presented key, to name cache entries. */
  keyedHash(plain: string): string;
  /** The client address, resolved through trusted proxies. */
  clientIp(ex: Exchange): string;
  /** Whether non-loopback clients may use the key (`management.allowRemote`). */
  allowRemote: boolean;
  /** ms clock, for tests. @default Date.now */
  now?: () => number;
  /** The bcrypt comparisons. @default createBcryptComparer() (a worker thread) */
  bcrypt?: BcryptComparer;
}

/** Go's duration format, as CLIProxyAPI prints the ban's remaining time (`29m59s`). */
const banDuration = (ms: number): string => goDuration(Math.max(0, Math.round(ms / 1000)));

interface Remembered {
  /** The stored hash the check was made against: a changed key invalidates the entry. */
  against: string;
  until: number;
}

/**
 * Creates the gate of the management key.
 *
 * @example
 * ```ts
 * const gate = createManagementGate({ store, hash, keyedHash, clientIp, allowRemote: false });
 * const refusal = await gate.admit(exchange, presentedKey);
 * if (refusal) return json(refusal.status, { error: refusal.message });
 * ```
 */
export function createManagementGate(deps: ManagementGateDeps): ManagementGate {
  const now = deps.now ?? Date.now;
  const kv = deps.store.kv;
  const bcrypt = deps.bcrypt ?? createBcryptComparer();
  const verified = new Map<string, Remembered>();
  const failed = new Map<string, Remembered>();
  /** Checks in flight, so that a burst of requests with one key costs one bcrypt. */
  const verifying = new Map<string, Promise<boolean>>();

  const remember = (cache: Map<string, Remembered>, id: string, against: string, ttl: number) => {
    cache.delete(id);
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value as string);
    cache.set(id, { against, until: now() + ttl });
  };
  const recall = (cache: Map<string, Remembered>, id: string, against: string) => {
    const hit = cache.get(id);
    return hit !== undefined && hit.against === against && hit.until > now();
  };

  const verify = async (plain: string | undefined): Promise<boolean> => {
    const hash = deps.hash();
    if (!plain || !hash) return false;
    const id = deps.keyedHash(plain);
    if (recall(verified, id, hash)) return true;
    if (recall(failed, id, hash)) return false;
    const flight = `${id}|${hash}`;
    let check = verifying.get(flight);
    if (!check) {
      // Refused for load, not checked: nothing is remembered about this key.
      if (verifying.size >= MANAGEMENT_MAX_CHECKS) return false;
      check = bcrypt.compare(plain, hash).finally(() => verifying.delete(flight));
      verifying.set(flight, check);
    }
    const ok = await check;
    if (deps.hash() === hash) {
      remember(
        ok ? verified : failed,
        id,
        hash,
        ok ? MANAGEMENT_VERIFY_TTL_MS : MANAGEMENT_FAILURE_TTL_MS,
      );
      (ok ? failed : verified).delete(id);
    }
    return ok;
  };

  const fail = async (ip: string) => {
    const count = await kv.incr(FAIL_PREFIX + ip, 1, MANAGEMENT_BAN_MS);
    if (count >= MANAGEMENT_MAX_FAILURES) {
      await kv.set(BAN_PREFIX + ip, String(now() + MANAGEMENT_BAN_MS), MANAGEMENT_BAN_MS);
      await kv.delete(FAIL_PREFIX + ip);
    }
  };

  const banOf = async (ip: string): Promise<ManagementRefusal | null> => {
    const ban = await kv.get(BAN_PREFIX + ip);
    if (ban === null) return null;
    const left = Number(ban) - now();
    return {
      reason: "banned",
      status: 403,
      message: `IP banned due to too many failed attempts. Try again in ${banDuration(left > 0 ? left : MANAGEMENT_BAN_MS)}`,
    };
  };

  const hasKey = () => deps.hash() !== "";

  return {
    hasKey,
    clientIp: deps.clientIp,
    async banned(ex) {
      const ip = deps.clientIp(ex);
      return isLoopback(ip) ? null : banOf(ip);
    },
    async admit(ex, key, options = {}) {
      const ip = deps.clientIp(ex);
      const remote = !isLoopback(ip);
      const refuse = async (r: ManagementRefusal, counts: boolean) => {
        if (remote && counts) await fail(ip);
        return r;
      };
      const everything = options.countEveryRefusal === true;
      if (!hasKey())
        return refuse(
          { reason: "disabled", status: 404, message: MANAGEMENT_DISABLED_MESSAGE },
          everything,
        );
      if (remote) {
        const ban = await banOf(ip);
        if (ban) return ban;
        if (!deps.allowRemote)
          return refuse(
            { reason: "remote", status: 403, message: remoteManagementMessage(ip) },
            everything,
          );
      }
      if (!key)
        return refuse({ reason: "missing", status: 401, message: "missing management key" }, true);
      if (!(await verify(key)))
        return refuse({ reason: "invalid", status: 401, message: "invalid management key" }, true);
      // Failures must be consecutive: a success starts the count again.
      if (remote) await kv.delete(FAIL_PREFIX + ip);
      return null;
    },
    verify,
    forget() {
      verified.clear();
      failed.clear();
    },
    close: () => bcrypt.close(),
  };
}
