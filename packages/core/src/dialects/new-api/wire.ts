/**
 * The JSON bodies of the new-api dialect (`/api/token/`, `/api/user/`): what its routes accept
 * and answer, new-api's `{ success, message, data }` envelope and snake_case fields. Types only.
 *
 * @module
 */
import type { KeyStatus, RefillInterval, UserRecord } from "../../store/types.js";
// For the {@link} tags below (types only: no import at run time).
import type { TOKEN_BATCH_CREATE_MAX, TOKEN_NAME_MAX } from "./tokens.js";

/**
 * The envelope of every `/api/token/` and `/api/user/` reply (new-api's). Failures come with a
 * 4xx/5xx status; a client should still check `success`, as new-api itself answers some
 * failures with HTTP 200 and `success: false`.
 */
export type NewApiResponse<T = undefined> = NewApiSuccessResponse<T> | NewApiErrorResponse;

/** A successful `/api/token/` or `/api/user/` reply; `data` is absent when `T` is `undefined`. */
export interface NewApiSuccessResponse<T = undefined> {
  success: true;
  message: string;
  data: T;
}

/** A failed `/api/token/` or `/api/user/` reply. */
export interface NewApiErrorResponse {
  success: false;
  message: string;
}

/** One page of a new-api listing (`GET /api/token/`, `GET /api/user/`, `GET /api/user/search`). */
export interface NewApiPage<T> {
  items: T[];
  total: number;
  /** From 1. */
  page: number;
  page_size: number;
}

/** Pagination of a new-api listing: `?p=` (from 1) and `?size=` (at most 100). */
export interface NewApiPageQuery {
  /** @default 1 */
  p?: number;
  /** @default 20 */
  size?: number;
}

/** Query of `GET /api/token/`. */
export interface TokenListQuery extends NewApiPageQuery {
  /** Admins only: one user's keys. */
  user_id?: number;
}

/** Query of `GET /api/token/search`: a name fragment and/or a whole key or a fragment of its hint. */
export interface TokenSearchQuery extends TokenListQuery {
  keyword?: string;
  token?: string;
}

/**
 * The limit and refill fields of a token or a user as the new-api routes show them (tokenpool's
 * additions to the seed's shapes). Every limit: a non-negative integer, 0 = none of its own
 * (the `group-limits` setting may give one).
 */
export interface LimitView {
  /** Requests per rolling minute. */
  rpm_limit: number;
  /** Tokens (prompt + completion) per rolling minute. */
  tpm_limit: number;
  /** Requests per rolling day (24 h). */
  rpd_limit: number;
  /** Requests in flight at once. */
  max_concurrency: number;
  /** How long (ms) a request over `max_concurrency` waits for a slot; 0 = refused at once. */
  queue_timeout_ms: number;
  /**
   * The quota refills each period: `1d`, `7d`, `30d` or calendar `month`, starting at 00:00
   * in the `quota-refill-time-zone` setting; `""` = no refill.
   */
  quota_refill_interval: RefillInterval | "";
  /** The balance (`remain_quota` of a token, `quota` of a user) each period starts with. */
  quota_refill_amount: number;
  /** When the quota refills next (Unix seconds), read-only; 0 = no refill. */
  next_refill_time: number;
}

/**
 * The writable limit and refill fields of a token or a user (`POST`/`PUT`). On `PUT`, a field
 * left out (or null) keeps its stored value; 0 clears a limit.
 */
export interface LimitWritableFields {
  rpm_limit?: number;
  tpm_limit?: number;
  rpd_limit?: number;
  max_concurrency?: number;
  queue_timeout_ms?: number;
  /**
   * `""` removes the refill. Setting one up (or another interval) starts its first period now:
   * the current balance lasts until the next boundary.
   */
  quota_refill_interval?: RefillInterval | "";
  /** Needs an interval (given here or stored). @default 0 */
  quota_refill_amount?: number;
}

/** A token (downstream key) as `/api/token/` shows it. */
export interface TokenView extends LimitView {
  id: number;
  /** 0 = no owner. */
  user_id: number;
  /** The masked hint (e.g. `sk-Ab12****wxYZ`), or the plain key in a creation reply. */
  key: string;
  /** 1 enabled, 2 disabled, 3 expired, 4 exhausted. */
  status: KeyStatus;
  name: string;
  /** Unix seconds. */
  created_time: number;
  /** Unix seconds. */
  accessed_time: number;
  /** Unix seconds, -1 = never. */
  expired_time: number;
  remain_quota: number;
  unlimited_quota: boolean;
  used_quota: number;
  model_limits_enabled: boolean;
  /** Comma-separated model names. */
  model_limits: string;
  /** One address or CIDR range per line. */
  allow_ips: string;
  group: string;
}

/** The writable fields of a token (`POST`/`PUT /api/token/`); unknown fields are ignored. */
export interface TokenWritableFields extends LimitWritableFields {
  /** At most {@link TOKEN_NAME_MAX} characters. */
  name?: string;
  /** Unix seconds, -1 = never. */
  expired_time?: number;
  /** Quota units (500000 = 1 USD). */
  remain_quota?: number;
  unlimited_quota?: boolean;
  model_limits_enabled?: boolean;
  /**
   * Comma-separated model names, the type {@link TokenView} has, so that a token read can be
   * written back; `""` clears. (The route also accepts an array of names or null.)
   */
  model_limits?: string;
  /** Addresses or CIDR ranges, as a string (whitespace/comma separated) or an array; null clears. */
  allow_ips?: string | string[] | null;
  /** `""` = the owner's group. */
  group?: string;
  status?: KeyStatus;
}

/** Body of `POST /api/token/`. The reply's `key` is the plain key, shown this once. */
export interface TokenCreateBody extends TokenWritableFields {
  /** Admins: the owner (0 = none); users may only name themselves. */
  user_id?: number;
  /** Creates this many tokens (1 to {@link TOKEN_BATCH_CREATE_MAX}); the reply is then an array. */
  count?: number;
}

/** Body of `PUT /api/token/` (with `?status_only=true` only `status` is read). */
export interface TokenUpdateBody extends TokenWritableFields {
  id: number;
}

/** Body of `POST /api/token/batch` (delete); the reply's `data` is the number deleted. */
export interface TokenBatchDeleteBody {
  ids: number[];
}

/** `data` of `POST /api/token/:id/key`: the full key. */
export interface TokenRevealData {
  key: string;
}

/** A user as `/api/user/` shows it. Its limits cover all its keys together. */
export interface UserView extends LimitView {
  id: number;
  username: string;
  display_name: string;
  role: UserRecord["role"];
  /** 1 enabled, 2 disabled. */
  status: UserRecord["status"];
  group: string;
  /** Quota units left (500000 = 1 USD). */
  quota: number;
  used_quota: number;
  /** Unix seconds. */
  created_time: number;
  has_access_token: boolean;
}

/** The writable fields of a user (`POST`/`PUT /api/user/`). */
export interface UserWritableFields extends LimitWritableFields {
  username?: string;
  display_name?: string;
  role?: UserRecord["role"];
  status?: UserRecord["status"];
  group?: string;
  quota?: number;
}

/** Body of `POST /api/user/`. */
export interface UserCreateBody extends UserWritableFields {
  username: string;
}

/** Body of `PUT /api/user/`. */
export interface UserUpdateBody extends UserWritableFields {
  id: number;
}

/** Query of `GET /api/user/search`. */
export interface UserSearchQuery extends NewApiPageQuery {
  keyword?: string;
}

/** `data` of `POST /api/user/`: the user and its access token (shown this once). */
export interface UserCreatedData extends UserView {
  access_token: string;
}

/** `data` of `POST /api/user/:id/token`: a new access token (the old one stops working). */
export interface UserAccessTokenData {
  access_token: string;
}
