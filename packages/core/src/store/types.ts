/**
 * The Store contract: everything tokenpool persists goes through this interface.
 *
 * Every adapter (memory, file, SQLite, Redis) implements it, and every adapter is checked by
 * the same conformance suite (`runStoreConformance` from `@tokenpool/testing`). The three HTTP
 * dialects are views over these collections: nothing is stored twice.
 *
 * Conventions:
 * - Times are milliseconds since the epoch unless a field says otherwise. Fields that mirror
 *   new-api's token dialect (`expiredTime`, `createdTime`, `accessedTime`) are Unix seconds,
 *   because that is what the dialect sends and receives.
 * - Keys and users have numeric ids assigned by the store (the token dialect requires numbers);
 *   credentials have string ids (they may come from files named by the user).
 * - Every method returns a Promise, even where the adapter is synchronous underneath.
 * - Records returned by the store are copies: mutating them never changes stored state.
 *
 * @module
 */

/** new-api's key status values. */
export const KeyStatus = {
  Enabled: 1,
  Disabled: 2,
  Expired: 3,
  Exhausted: 4,
} as const;
/** One of {@link KeyStatus}. */
export type KeyStatus = (typeof KeyStatus)[keyof typeof KeyStatus];

/**
 * A downstream API key, as stored. The plain key is never stored.
 *
 * The optional admission fields (`limits`, `quotaRefill`, `quotaPeriod`, likewise on
 * {@link UserRecord} and `limits` on {@link CredentialRecord}) follow one rule in every store: a
 * record created without one returns it absent (records written before the fields existed
 * included); one that was set comes back exactly as set (`null`, `{}` and `0` included). An
 * update whose patch does not name a field, or names it `undefined`, keeps the stored value; a
 * patch that names it replaces it whole (no merge of `limits`).
 */
export interface ApiKeyRecord {
  id: number;
  /** Owner; `null` for keys that belong to no user (e.g. the management dialect's `api-keys`). */
  userId: number | null;
  name: string;
  /** Keyed hash (HMAC-SHA256 with the server secret) of the plain key: the lookup index. */
  keyHash: string;
  /** The plain key encrypted with the server secret (for the explicit reveal call), or null. */
  keyCipher: string | null;
  /** A masked form safe to list and to search by fragment, e.g. `sk-Ab12****wxYZ`. */
  keyHint: string;
  status: KeyStatus;
  /** Quota units left (500000 units = 1 USD). Ignored when `unlimitedQuota`. */
  remainQuota: number;
  usedQuota: number;
  unlimitedQuota: boolean;
  /** Unix seconds; -1 = never expires. */
  expiredTime: number;
  modelLimitsEnabled: boolean;
  modelLimits: string[];
  /** IPs and CIDR ranges; empty = any address. */
  allowIps: string[];
  group: string;
  /** Unix seconds. */
  createdTime: number;
  /** Unix seconds; 0 = never used. */
  accessedTime: number;
  /** Rate and concurrency limits of the key. Absent = none (the group's defaults may apply). */
  limits?: RateLimits;
  /** The key's quota refills on a period; absent or null = never. */
  quotaRefill?: QuotaRefill | null;
  /**
   * Start (ms) of the refill period the key's balance belongs to; absent or 0 = no period.
   * Written only by {@link Store.refillQuota} (and by whoever sets up a refill). Reservations
   * carry it ({@link Reservation.keyPeriod}): one made in an earlier period never touches the
   * balance of a later one.
   */
  quotaPeriod?: number;
}

/**
 * Rate and concurrency limits of a downstream key or a user. Every field: a non-negative
 * integer, 0 or absent = no limit.
 */
export interface RateLimits {
  /** Requests per rolling minute. */
  rpm?: number;
  /** Tokens (prompt + completion) per rolling minute: estimated when admitted, settled after. */
  tpm?: number;
  /** Requests per rolling day (24 h). */
  rpd?: number;
  /** Requests in flight at once. */
  maxConcurrency?: number;
  /** How long (ms) a request over `maxConcurrency` waits for a slot before it is refused; 0 = refuse at once. */
  queueTimeoutMs?: number;
}

/** How a quota refills: the interval's calendar periods start in the `quota-refill-time-zone` setting. */
export type RefillInterval = "1d" | "7d" | "30d" | "month";

/**
 * A budget that resets: at each period boundary the remaining quota becomes `amount` and the
 * period's used quota starts at 0.
 */
export interface QuotaRefill {
  interval: RefillInterval;
  /** Quota units of each period (a non-negative integer). */
  amount: number;
}

/** Limits of an upstream credential. Every field: a non-negative integer, 0 or absent = none. */
export interface CredentialLimits {
  /** Requests per rolling minute sent with this credential. */
  rpm?: number;
  /** Tokens per rolling minute. */
  tpm?: number;
  /** Requests in flight at once. */
  maxConcurrency?: number;
  /** Quota units spent per calendar day (in the `quota-refill-time-zone` setting). */
  spendPerDay?: number;
  /** Quota units spent per calendar month. */
  spendPerMonth?: number;
}

/** What a caller provides to create a key; the store assigns `id`. */
export type NewApiKey = Omit<ApiKeyRecord, "id">;
/**
 * A partial update of a key. `id` and `keyHash` cannot change (only {@link KeyCollection.rekey},
 * for a rotation of the server secret, moves a hash).
 */
export type ApiKeyPatch = Partial<Omit<ApiKeyRecord, "id" | "keyHash">>;

/** Filters for {@link KeyCollection.list}. All given filters must match. */
export interface KeyQuery {
  userId?: number | null;
  /** Case-insensitive substring of `name`. */
  keyword?: string;
  /** Case-sensitive substring of `keyHint` (the masked key): the only key text the store can search. */
  hint?: string;
  /** @default 0 */
  offset?: number;
  /** @default 20 */
  limit?: number;
}

/** A page of results with the total count of matches (before offset/limit). */
export interface Page<T> {
  items: T[];
  total: number;
}

/** Owner of keys. */
export interface UserRecord {
  id: number;
  username: string;
  displayName: string;
  role: "admin" | "user";
  /** 1 = enabled, 2 = disabled (new-api's values). */
  status: 1 | 2;
  group: string;
  /** Quota units left. */
  quota: number;
  usedQuota: number;
  /** Keyed hash of the user's access token ("system token"), or null when none was issued. */
  accessTokenHash: string | null;
  /** Unix seconds. */
  createdTime: number;
  /** Rate and concurrency limits covering all the user's keys together. Absent = none. */
  limits?: RateLimits;
  /** The user's quota refills on a period; absent or null = never. */
  quotaRefill?: QuotaRefill | null;
  /** Start (ms) of the refill period the user's balance belongs to, as {@link ApiKeyRecord.quotaPeriod}. */
  quotaPeriod?: number;
}
export type NewUser = Omit<UserRecord, "id">;
export type UserPatch = Partial<Omit<UserRecord, "id">>;

/** A model a credential serves, optionally under another name (openai-compatibility `models`). */
export interface CredentialModel {
  /** The upstream's model name. */
  name: string;
  /** The name clients use; defaults to `name`. */
  alias?: string;
}

/** Secret material of a credential. Never logged, never listed in full. */
export interface CredentialSecret {
  apiKey?: string;
  accessToken?: string;
  refreshToken?: string;
  /** When the access token expires (ms). */
  expiresAt?: number;
  idToken?: string;
  /** Provider-specific extra secret fields (cookies, account ids ...). */
  extra?: Record<string, string>;
  /**
   * The stored form of a secret in an adapter whose format is ours (see
   * {@link StoreCapabilities.plaintextSecrets}): every other field sealed together with the server
   * secret (AES-256-GCM, `v1.<iv>.<tag>.<ciphertext>`), and nothing else beside it. A gateway
   * seals on write and opens on read, so `gateway.credentials` and `gateway.store` never show it;
   * only code that reads the adapter object itself does.
   */
  sealed?: string;
}

/** Live health of a credential. Written on errors and state changes, not on every request. */
export interface CredentialState {
  /** Per-model cooldown deadlines (ms); the key `*` cools the whole credential down. */
  cooldowns: Record<string, number>;
  /** Consecutive failures since the last success. */
  errorCount: number;
  lastUsedAt: number;
  lastError: { at: number; status: number; message: string } | null;
  /** Why the pool disabled it (null when enabled by choice or never auto-disabled). */
  disabledReason: string | null;
}

/** An upstream credential of the pool: a provider API key or an OAuth account. */
export interface CredentialRecord {
  id: string;
  /** Upstream wire format / provider: `openai`, `anthropic`, `gemini`, `codex`, `antigravity`, `qwen` ... */
  provider: string;
  kind: "api-key" | "oauth";
  /** A human label (e.g. the openai-compatibility `name`). */
  label: string;
  /** Base URL of the upstream API, e.g. `https://api.openai.com/v1`. */
  baseUrl: string;
  secret: CredentialSecret;
  /** Per-credential proxy (http, https or socks5 URL); empty = the global `proxy-url`. */
  proxyUrl: string;
  projectIds: string[];
  /** Models served; empty = any model the client asks for. */
  models: CredentialModel[];
  excludedModels: string[];
  /** Lower tiers are used only when every credential of a higher tier is unavailable. Higher number = higher tier. */
  priority: number;
  weight: number;
  enabled: boolean;
  /** Credential groups; a key or user group can be bound to a subset. Empty = the default group. */
  groups: string[];
  /** Extra headers sent upstream with this credential. */
  headers: Record<string, string>;
  /** Limits of this credential; selection skips it while one is reached. Absent = none. */
  limits?: CredentialLimits;
  state: CredentialState;
  createdAt: number;
  updatedAt: number;
}
/** What a caller provides to create a credential; `id` is generated when absent. */
export type NewCredential = Omit<CredentialRecord, "id" | "createdAt" | "updatedAt"> & {
  id?: string;
};
export type CredentialPatch = Partial<Omit<CredentialRecord, "id" | "createdAt">>;

/** Token counts of one request or a sum of requests, in one shape whatever the provider. */
export interface TokenUsage {
  inputTokens: number;
  outputTokens: number;
  reasoningTokens: number;
  cachedTokens: number;
  totalTokens: number;
}

/** One proxied request, as recorded for usage accounting. */
export interface UsageRecord extends TokenUsage {
  /** Assigned by the store (monotonic within one store). */
  id: number;
  /** ms */
  timestamp: number;
  requestId: string;
  keyId: number | null;
  userId: number | null;
  credentialId: string | null;
  provider: string;
  /** `METHOD /path`, e.g. `POST /v1/chat/completions`. */
  route: string;
  model: string;
  stream: boolean;
  status: number;
  success: boolean;
  /** Quota units billed. */
  quota: number;
  durationMs: number;
  /** Short error text (never a secret), or null. */
  error: string | null;
  /**
   * `true` on a record written by {@link Store.recoverReservations}: the request's process ended
   * before settling it, so it was billed its full reservation and its token counts, status and
   * credential are unknown (zero / 0 / null). Absent on every other record, unless the record
   * was committed with it ({@link Store.commitUsage} keeps it).
   */
  recovered?: boolean;
  /*
   * The request log's fields. Optional: records written before they existed lack them, and a
   * store returns them only when the record has them.
   */
  /** The key's name when the request was made (kept when the key is renamed or deleted). */
  keyName?: string;
  /** The key owner's username when the request was made; `""` for a key without an owner. */
  username?: string;
  /** The group the request was priced in (the owner's, else the key's); `""` = the default group. */
  group?: string;
  /** The client's wire format: `openai`, `responses`, `anthropic`, `gemini`, `code-assist`. */
  format?: string;
  /** ms from the start of the request to the upstream's first byte; null when none arrived. */
  firstTokenMs?: number | null;
  /** Upstream attempts after the first (retries and failovers). */
  retries?: number;
  /** The kind of failure (see {@link RequestErrorType}); null on success. */
  errorType?: RequestErrorType | null;
  /**
   * With the `request-log-bodies` setting only: the request's body and a JSON answer's body,
   * each cut to 4 KiB and with secrets redacted. Absent otherwise.
   */
  bodies?: { request?: string; response?: string };
}
export type NewUsageRecord = Omit<UsageRecord, "id">;

/**
 * Why a request failed, in a request log record: refused by a rate limit or concurrency cap
 * (`rate_limited`), for quota (`quota_exhausted`), for the request itself (`invalid_request`:
 * an unknown model ...), no credential could serve it (`no_credential`), the upstream answered
 * an error (`upstream_error`) or could not be reached (`upstream_unreachable`), a stream broke
 * after its first byte (`stream_interrupted`), the client went away (`client_closed`), or
 * anything else (`internal`).
 */
export type RequestErrorType =
  | "rate_limited"
  | "quota_exhausted"
  | "invalid_request"
  | "no_credential"
  | "upstream_error"
  | "upstream_unreachable"
  | "stream_interrupted"
  | "client_closed"
  | "internal";

/**
 * Filters for {@link UsageCollection.list} and {@link UsageCollection.stat}: every filter given
 * must hold. `from` inclusive, `to` exclusive (ms); names and ids match exactly.
 */
export interface UsageQuery {
  from?: number;
  to?: number;
  keyId?: number;
  userId?: number;
  /** The model the client asked for. */
  model?: string;
  /** The key's name as recorded ({@link UsageRecord.keyName}). */
  keyName?: string;
  /** The owner's username as recorded ({@link UsageRecord.username}). */
  username?: string;
  credentialId?: string;
  /** The group as recorded ({@link UsageRecord.group}; `""` finds records of the default group). */
  group?: string;
  /** `true`: successful requests only; `false`: failed ones only. */
  success?: boolean;
  /** @default 0 */
  offset?: number;
  /** @default 100 */
  limit?: number;
}

/** Sums over the usage details a {@link UsageQuery} selects ({@link UsageCollection.stat}). */
export interface UsageStat {
  requests: number;
  /** Quota units charged. */
  quota: number;
  /** Prompt + completion tokens ({@link TokenUsage.totalTokens}). */
  totalTokens: number;
}

/**
 * Hourly roll-up of usage for one (hour, route, model, key, user, credential) tuple. Days,
 * folded hours and totals are sums of these rows. Roll-ups are kept forever; details may be
 * pruned.
 */
export interface UsageRollup extends TokenUsage {
  /** UTC hour, `YYYY-MM-DDTHH`. */
  hour: string;
  route: string;
  model: string;
  keyId: number | null;
  /** The key's owner; null without one (and on rows written before roll-ups had owners). */
  userId: number | null;
  /** The credential that served; null when none did (and on rows written before roll-ups had credentials). */
  credentialId: string | null;
  requests: number;
  successes: number;
  failures: number;
  quota: number;
}

/** Filters for {@link UsageCollection.rollups}: UTC hour strings, `from` inclusive, `to` exclusive. */
export interface RollupQuery {
  fromHour?: string;
  toHour?: string;
  keyId?: number;
  userId?: number;
  credentialId?: string;
}

/**
 * A granted quota reservation, to be settled exactly once with {@link Store.settleQuota} or
 * {@link Store.commitUsage}. It is also a durable row of the store (written in the same atomic
 * step as the debit) until it is settled or recovered: see {@link Store.recoverReservations}.
 */
export interface Reservation {
  /** The durable reservation row's id, unique within the store. */
  id: string;
  keyId: number;
  /** The owner debited alongside the key, or null when the key has no owner. */
  userId: number | null;
  /** Units reserved. */
  units: number;
  /** Whether the key's own balance was debited (false for unlimited keys). */
  keyDebited: boolean;
  /**
   * The key's {@link ApiKeyRecord.quotaPeriod} when it was debited (absent = 0). Settlement
   * touches the key's balance and `usedQuota` only while the key is still in that period.
   */
  keyPeriod?: number;
  /** The owner's {@link UserRecord.quotaPeriod} when it was debited (absent = 0), likewise. */
  userPeriod?: number;
}

/**
 * What a reservation row keeps besides the debit: its lifetime, and what a recovered usage
 * record needs ({@link Store.recoverReservations}).
 */
export interface ReservationMeta {
  /**
   * When the reservation may be recovered unless renewed ({@link Store.renewReservations}), ms
   * since the epoch. @default now + {@link DEFAULT_RESERVATION_TTL_MS}
   */
  expiresAt?: number;
  /** The gateway instance holding it (diagnostics). @default "" */
  owner?: string;
  /** The request's id, copied to its recovered record. @default "" */
  requestId?: string;
  /** The request's route, copied to its recovered record. @default "" */
  route?: string;
  /** The requested model, copied to its recovered record. @default "" */
  model?: string;
  /** When the request started (ms), the recovered record's timestamp. @default now */
  timestamp?: number;
}

/** Lifetime of a reservation made without {@link ReservationMeta.expiresAt}: 5 minutes. */
export const DEFAULT_RESERVATION_TTL_MS = 300_000;

/** Why a reservation was refused. */
export type ReserveDenial = "key_not_found" | "key_quota" | "user_quota";

/**
 * The prefix of the store lock (`acquireLock`) a credential's OAuth refresh holds: `refresh:<id>`.
 * Whoever rewrites a credential's secret outside a refresh (sealing, rotation) takes the same lock.
 */
export const REFRESH_LOCK_PREFIX = "refresh:";

/** The outcome of {@link Store.reserveQuota}. */
export type ReserveResult =
  | { ok: true; reservation: Reservation }
  | {
      ok: false;
      reason: ReserveDenial;
      /**
       * On a `key_quota` (`user_quota`) denial: the units held by unsettled reservation rows of
       * the key (of the owner), from every process. When it is above zero, settling them may give
       * quota back, so waiting for them can help; at 0 the balance itself is short.
       */
      inFlight?: number;
    };

/** The outcome of {@link Store.settleQuota}. */
export interface Settlement {
  /** Units finally charged: the actual amount, or less when the balance could not cover the extra. */
  charged: number;
}

/** One finished request for {@link Store.commitUsage}. */
export interface UsageCommit {
  /** The request's reservation, or null when it made none. */
  reservation: Reservation | null;
  /** The request's actual cost in quota units. */
  actualUnits: number;
  /** Its usage record; `quota` is replaced by the amount the settlement charged. */
  record: NewUsageRecord;
  /**
   * Settles only this many of the reservation's units: a reservation that several requests
   * share (a quota block). They are settled to `actualUnits` exactly as a reservation of `share`
   * units would be, and the row keeps the rest (still renewable, still recovered in full, what
   * is left of it, if nobody settles it); a share at least as large as what is left settles the
   * rest and removes the row. When the row is gone (recovered already) nothing is charged
   * (`charged: 0`): the record is still appended, with `quota` 0, as for a whole settlement of
   * a recovered row. A non-negative integer (anything else rejects the whole batch). Absent: the
   * whole reservation. Only for stores that declare {@link StoreCapabilities.quotaShares}.
   */
  share?: number;
}

/** A change notification delivered by {@link Store.watch}. */
export interface StoreChange {
  collection: "keys" | "users" | "credentials" | "settings";
  /** The changed record's id (a setting's name); absent when the whole collection changed. */
  id?: string;
  op: "upsert" | "delete";
  /** `local` when made through this store object, `remote` when seen from another process or instance. */
  origin: "local" | "remote";
}

/** What an adapter can do; the conformance suite skips tests of capabilities it lacks. */
export interface StoreCapabilities {
  /** Several processes may share the same backing data (SQLite file, Redis). */
  multiProcess: boolean;
  /**
   * The adapter's format keeps credential secrets in the clear by design (store-file: the seeds'
   * `config.yaml`, `auths/*.json` and `accounts.json` hold plain keys and tokens), so a gateway
   * hands it plain secrets. Absent or false: the gateway seals every credential secret with the
   * server secret before it reaches the adapter (`secret` is then `{ sealed }`), and rewrites
   * plaintext secrets written by earlier versions sealed when it starts.
   * @default false
   */
  plaintextSecrets?: boolean;
  /**
   * The adapter implements {@link UsageCommit.share} and {@link Store.reservationUnits}: one
   * reservation may be settled in parts. A gateway shares reservations only on such stores.
   * @default false
   */
  quotaShares?: boolean;
  /**
   * A directory on this machine, beside the store's data, where a gateway may keep its usage
   * journal (one file per gateway instance, see `UsageJournal`) and where it finds the
   * journals of gateway processes that died, to replay them. Set by adapters whose data lives
   * on this machine and is shared only by processes on it (the SQLite store); a gateway uses
   * quota blocks only when the adapter offers this and {@link quotaShares}. @default undefined
   */
  usageJournalDir?: string;
}

/**
 * One counter of {@link Store.hitWindows}: a rolling window of `windowMs` that admits at most
 * `limit` units (requests for rpm/rpd, tokens for tpm).
 *
 * A counter is identified by `key` and `windowMs` together: `rpm:key:7` with a minute and
 * `rpm:key:7` with a day are two counters. The limit is not stored; each call brings it.
 */
export interface WindowHit {
  /** The counter's name, e.g. `rpm:key:7` (any string; the store keeps it under its own prefix). */
  key: string;
  /** Units the window admits; a positive integer (a store rejects anything else). */
  limit: number;
  /** Length of the rolling window (ms), a positive integer: 60_000 for a minute, 86_400_000 for a day. */
  windowMs: number;
  /** Units this call adds: a non-negative integer (1 per request, or a token estimate). 0 only reads. */
  cost: number;
}

/** The state of one admitted counter, after the hit was added. */
export interface WindowStatus {
  /** Units the window still admits now: `limit` minus what it counts, never below 0. */
  remaining: number;
  /**
   * When the window gets room back (ms from `nowMs`): the oldest bucket it counts leaves it then
   * (0 when it counts nothing).
   */
  resetMs: number;
}

/** The outcome of {@link Store.hitWindows}. */
export type WindowResult =
  | {
      ok: true;
      /** One status per hit, in the order of the hits. */
      windows: WindowStatus[];
    }
  | {
      ok: false;
      /** The index of the first refused hit (nothing was added for any hit). */
      index: number;
      /** Its `key`. */
      key: string;
      /** Units its window still admits (less than the hit's cost). */
      remaining: number;
      /**
       * The earliest time (ms from `nowMs`) the same hit could pass if nothing else is added
       * meanwhile, or null when it never can (its cost alone is above its limit).
       */
      retryAfterMs: number | null;
    };

/** One concurrency pool of {@link Store.acquireLeases}: at most `limit` live leases at a time. */
export interface LeaseAsk {
  /** The pool's name, e.g. `conc:key:7` or `conc:cred:abc`. */
  pool: string;
  /** Leases the pool holds at most; a positive integer (a store rejects anything else). */
  limit: number;
}

/** The outcome of {@link Store.acquireLeases}. */
export type LeaseResult =
  | {
      ok: true;
      /** Per ask, in order: the live leases of the pool after this one was added. */
      inUse: number[];
    }
  | {
      ok: false;
      /** The index of the first full pool (no lease was taken in any pool). */
      index: number;
      /** Its name. */
      pool: string;
      /** When its earliest live lease expires (ms from `nowMs`): a slot is free by then at the latest. */
      retryAfterMs: number;
    };

/**
 * Buckets per window of {@link Store.hitWindows}: a minute is counted in 1 s buckets, a day in
 * 24 min buckets.
 */
export const WINDOW_BUCKETS = 60;

/** Downstream keys. */
export interface KeyCollection {
  /** Inserts a key and assigns a new id. MUST reject (throw) a `keyHash` that already exists. */
  create(input: NewApiKey): Promise<ApiKeyRecord>;
  get(id: number): Promise<ApiKeyRecord | null>;
  /** The authorisation lookup. MUST be one indexed lookup, whatever the number of keys. */
  getByHash(keyHash: string): Promise<ApiKeyRecord | null>;
  /** Newest first (descending id). */
  list(query?: KeyQuery): Promise<Page<ApiKeyRecord>>;
  /**
   * Applies the patch atomically; returns the updated record, or null for an unknown id. A field
   * the patch does not name, or names `undefined`, keeps its stored value.
   */
  update(id: number, patch: ApiKeyPatch): Promise<ApiKeyRecord | null>;
  /**
   * Replaces a key's `keyHash` and `keyCipher` (a rotation of the server secret re-hashes and
   * re-encrypts every key). MUST be one atomic step that also moves the
   * {@link KeyCollection.getByHash} lookup (the old hash finds nothing afterwards), and MUST
   * reject (throw) a hash another key holds. Returns the updated record, or null for an unknown id.
   */
  rekey(id: number, keyHash: string, keyCipher: string | null): Promise<ApiKeyRecord | null>;
  /** Deletes the given ids (unknown ones are ignored); returns how many were deleted. */
  delete(ids: number[]): Promise<number>;
}

/** Users (owners of keys). */
export interface UserCollection {
  /** MUST reject (throw) a duplicate `username`. */
  create(input: NewUser): Promise<UserRecord>;
  get(id: number): Promise<UserRecord | null>;
  getByUsername(username: string): Promise<UserRecord | null>;
  getByAccessTokenHash(hash: string): Promise<UserRecord | null>;
  /** Ascending id; `keyword` is a case-insensitive substring of `username` or `displayName`. */
  list(query?: { offset?: number; limit?: number; keyword?: string }): Promise<Page<UserRecord>>;
  /** As {@link KeyCollection.update}: fields the patch does not name (or names `undefined`) stay. */
  update(id: number, patch: UserPatch): Promise<UserRecord | null>;
  delete(id: number): Promise<boolean>;
}

/** The upstream credential pool. */
export interface CredentialCollection {
  /** Inserts a credential; generates an id when absent. MUST reject (throw) an existing id. */
  create(input: NewCredential): Promise<CredentialRecord>;
  get(id: string): Promise<CredentialRecord | null>;
  /** Every credential, enabled or not, in creation order. */
  list(): Promise<CredentialRecord[]>;
  /**
   * Applies the patch atomically (a `state` patch replaces the whole state); fields it does not
   * name (or names `undefined`) stay.
   */
  update(id: string, patch: CredentialPatch): Promise<CredentialRecord | null>;
  delete(id: string): Promise<boolean>;
}

/**
 * Usage details and roll-ups. Written only through {@link Store.commitUsage} (and
 * {@link Store.recoverReservations}); `recordUsage` of `@tokenpool/core` appends records that
 * settle no reservation.
 */
export interface UsageCollection {
  /**
   * Details, newest first (descending `timestamp`, then descending `id`), with the total the
   * query selects. The request log reads it: an adapter SHOULD index it so that a page with one
   * filter (and a time range) costs the same with a million records as with a thousand.
   */
  list(query?: UsageQuery): Promise<Page<UsageRecord>>;
  /** Sums over the details the query selects (`offset` and `limit` are ignored). */
  stat(query?: UsageQuery): Promise<UsageStat>;
  rollups(query?: RollupQuery): Promise<UsageRollup[]>;
  /**
   * Deletes details older than `before` (ms) and, when `keep` is given, all but the newest
   * `keep` details; roll-ups are kept. Returns how many were deleted.
   */
  prune(before: number, keep?: number): Promise<number>;
}

/** Runtime settings: JSON values by name (`request-retry`, `proxy-url` ...). */
export interface SettingsCollection {
  all(): Promise<Record<string, unknown>>;
  /** Returns `undefined` for a name that is not stored. */
  get(name: string): Promise<unknown>;
  /** Writes several settings in one atomic step. */
  set(values: Record<string, unknown>): Promise<void>;
  delete(name: string): Promise<boolean>;
}

/** A small key-value space with expiry, for bans, OAuth state and similar short-lived data. */
export interface KvCollection {
  /** Returns null for a missing or expired entry. */
  get(key: string): Promise<string | null>;
  /** `ttlMs` omitted = no expiry. */
  set(key: string, value: string, ttlMs?: number): Promise<void>;
  delete(key: string): Promise<boolean>;
  /**
   * Adds `by` to an integer counter and returns the new value, atomically: N concurrent calls
   * with `by = 1` on a fresh key MUST end at N, across processes where the adapter is multi-process.
   * The TTL is set when the counter is created (a missing or expired key) and not extended after.
   */
  incr(key: string, by: number, ttlMs?: number): Promise<number>;
}

/** The contract every tokenpool storage adapter implements. */
export interface Store {
  /** Adapter name for logs and errors, e.g. `memory`, `sqlite`. */
  readonly name: string;
  readonly capabilities: StoreCapabilities;
  readonly keys: KeyCollection;
  readonly users: UserCollection;
  readonly credentials: CredentialCollection;
  readonly usage: UsageCollection;
  readonly settings: SettingsCollection;
  readonly kv: KvCollection;

  /**
   * Reserves `units` of quota for one request, from the key and from the key's owner.
   *
   * MUST check and debit in one atomic step: the key's `remainQuota` is decremented only when it
   * is `>= units` (skipped entirely for an `unlimitedQuota` key), and the owner's `quota` (when
   * the key has a `userId` and that user exists) only when it is `>= units`; either both debits
   * happen or neither does. Under any number of concurrent calls, from one process or (for
   * multi-process adapters) from several, the sum of granted reservations MUST never exceed what
   * was available: 200 parallel calls of 1 unit against 50 units succeed exactly 50 times.
   * It does not check the key's status or expiry (authorisation does that before).
   * `units` is a non-negative integer; 0 always succeeds for an existing key.
   * The reservation (and its row) carries the key's and the owner's `quotaPeriod` as they were
   * in that same step ({@link Reservation.keyPeriod}, {@link Reservation.userPeriod}).
   */
  reserveQuota(keyId: number, units: number, meta?: ReservationMeta): Promise<ReserveResult>;

  /**
   * Extends the lifetime of live reservations: sets `expiresAt` (ms) on each listed reservation
   * row that still exists (settled or recovered ones are ignored). One call renews all the ids
   * given, as one cheap write; a gateway calls it periodically with its in-flight reservations,
   * so a long stream is not recovered while its process is alive. Returns how many were renewed.
   */
  renewReservations(ids: string[], expiresAt: number): Promise<number>;

  /**
   * Settles reservations whose process died: up to `limit` reservation rows whose `expiresAt` is
   * `<= nowMs` (oldest expiry first).
   *
   * MUST, in one atomic step per reservation (or per call), delete the row, settle it at its
   * full reserved units (the conservative estimate: the request may have been answered; the
   * debit stays, `usedQuota` of key and owner grows by `units`) and append a usage record with
   * `recovered: true` (the row's requestId, route, model and timestamp, `quota` = units, zero
   * tokens, status 0, `success` false, `keyId`/`userId` of the reservation) with its roll-up.
   * MUST be exactly-once across concurrent callers and, for multi-process adapters, across
   * processes: a row is recovered by one caller only, and never after it was settled. As in
   * {@link Store.settleQuota}, `usedQuota` grows only on a balance still in the row's period.
   * Returns the records written.
   */
  recoverReservations(nowMs: number, limit: number): Promise<UsageRecord[]>;

  /**
   * Starts a new refill period of a key's or a user's quota, once: when the record exists and
   * its `quotaPeriod` (absent = 0) is below `period`, MUST in one atomic step set its balance
   * (`remainQuota` of a key, `quota` of a user) to `amount`, its `usedQuota` to 0 and its
   * `quotaPeriod` to `period`, and answer true; otherwise change nothing and answer false. Any
   * number of concurrent calls for the same period (from several processes for multi-process
   * adapters) refill once: exactly one answers true. Reservations made before keep their
   * period (see {@link Store.settleQuota}). A change notification is delivered for the record.
   * `period` is a positive integer (ms), `amount` a non-negative integer; anything else rejects.
   */
  refillQuota(target: "key" | "user", id: number, period: number, amount: number): Promise<boolean>;

  /**
   * Settles a reservation to the actual cost, exactly once per reservation (the caller
   * guarantees it is not called twice).
   *
   * MUST, in one atomic step: when `actualUnits < reservation.units`, give the difference back
   * to the key (if it was debited) and the owner; when it is larger, take the extra, but never
   * drive a balance below zero (the extra is capped at what the key and the owner both have
   * left). `usedQuota` of the key and the owner grows by the amount charged, and the key's
   * `accessedTime` is set to `nowSeconds`. Concurrent settlements and reservations on the same
   * key MUST NOT lose updates (no read-modify-write outside the atomic step).
   *
   * Refill periods: a balance whose `quotaPeriod` is no longer the reservation's
   * ({@link Reservation.keyPeriod} for the key, {@link Reservation.userPeriod} for the owner; an
   * absent value is 0) was refilled since the debit. That balance is left as it is (nothing given
   * back, nothing taken, its `usedQuota` unchanged: the request belongs to a period that is closed)
   * and it caps nothing; the other balance settles as usual. `charged` is still the request's cost
   * (capped only by balances of its own period).
   *
   * The same step MUST delete the reservation's row. When the row is already gone (it was
   * recovered by {@link Store.recoverReservations}, which charged its full units), the settlement
   * MUST change no balance and report `charged: 0`: the recovered record already carries the
   * charge, so nothing is counted twice or given back twice.
   */
  settleQuota(
    reservation: Reservation,
    actualUnits: number,
    nowSeconds: number,
  ): Promise<Settlement>;

  /**
   * Settles the reservations of a batch of finished requests and appends their usage records, as
   * ONE atomic step: each reservation is settled exactly as {@link Store.settleQuota} would (in
   * order), and each record is appended with its `quota` set to the amount its settlement
   * charged (`actualUnits` when it has no reservation), bumping its hourly roll-up (see
   * {@link UsageRollup}). A reader never sees a settlement without its record, nor a record
   * without its roll-up, or the reverse. Concurrent calls MUST NOT lose roll-up increments.
   * Returns the records with their ids (increasing), in order. This is the proxy path's write: a
   * gateway pays one store round-trip per batch instead of two per request.
   *
   * A commit whose reservation row was already recovered is still appended (its real tokens and
   * status are worth keeping), with `quota` 0: the sum of the records' `quota` stays equal to the
   * quota used. A record committed with `recovered: true` keeps it.
   *
   * A commit with {@link UsageCommit.share} (stores that declare
   * {@link StoreCapabilities.quotaShares} only) settles that part of its reservation and leaves
   * the rest on the row. `actualUnits` and `share` are checked before anything is written: one
   * bad value rejects the whole batch, and nothing of it is applied.
   */
  commitUsage(commits: UsageCommit[], nowSeconds: number): Promise<UsageRecord[]>;

  /**
   * The units a live reservation row holds now (what is left of a shared one after the shares
   * settled so far, see {@link UsageCommit.share}); null when the row is gone (settled or
   * recovered). A plain read. Required when {@link StoreCapabilities.quotaShares} is true.
   */
  reservationUnits?(id: string): Promise<number | null>;

  /**
   * Tries to take the named lock for `ttlMs`. Returns an owner token, or null when another owner
   * holds an unexpired lock. MUST be exclusive: at any moment at most one caller, across every
   * process sharing the store for multi-process adapters, holds an unexpired lock of a name. An
   * expired lock MUST be acquirable again.
   */
  acquireLock(name: string, ttlMs: number): Promise<string | null>;

  /**
   * Releases a lock if `token` still owns it; returns whether it did (false once the lock has
   * expired). MUST NOT release another owner's lock.
   */
  releaseLock(name: string, token: string): Promise<boolean>;

  /**
   * Adds one hit to each of several rolling-window counters (rpm, tpm, rpd of a key, its owner
   * and an upstream credential), all or nothing.
   *
   * MUST, in one atomic step: when every hit's window count plus its cost is `<= limit`, add
   * every cost and answer `ok` with each window's status; otherwise add nothing and name the
   * first hit that does not fit. Two hits of one call on the same counter see each other's cost.
   * Under any number of concurrent calls (from several processes for multi-process adapters)
   * the counts MUST stay exact: 500 parallel hits of cost 1 on a 60-per-minute counter admit
   * exactly 60.
   *
   * The algorithm (the same in every store, so that the answers match): a window is cut into
   * {@link WINDOW_BUCKETS} buckets of `ceil(windowMs / WINDOW_BUCKETS)` ms aligned on the epoch;
   * a hit at `nowMs` goes into the bucket holding `nowMs`, and the window counts every bucket
   * that overlaps the rolling window `(nowMs - windowMs, nowMs]` (a bucket `[s, e)` leaves it at
   * `e + windowMs`). The oldest of these is partly outside the rolling window and is counted
   * whole, so the count is never below the true sliding count:
   * no rolling span of `windowMs` ever holds more than `limit` admitted units. The price is that
   * a hit may be refused up to one bucket (1/60 of the window: 1 s for a minute, 24 min for a
   * day) before a perfect sliding log would admit it. Memory is at most 61 buckets per counter,
   * and a counter's stored data expires once its newest bucket has left the window.
   *
   * "Exact across instances" means that every process sharing the store sees and changes the
   * same counts, atomically; the buckets are chosen by the caller's `nowMs`, so instances whose
   * clocks differ by `d` ms place hits up to `d` ms apart (keep clocks synchronised, e.g. NTP).
   *
   * Rejects (throws) a hit whose `limit` or `windowMs` is not a positive integer or whose `cost`
   * is not a non-negative integer: a limit of 0 meaning "none" is the caller's business (it
   * does not ask). No hits: `ok` with no windows.
   */
  hitWindows(hits: WindowHit[], nowMs: number): Promise<WindowResult>;

  /**
   * Corrects a hit made earlier with an estimate (a tpm hit settled to the real token count):
   * adds `delta` (an integer, may be negative) to the bucket of counter (`key`, `windowMs`) that
   * a hit at `atMs` went into, never taking it below 0. A no-op when that bucket has already
   * left the window at `nowMs`. Atomic like {@link Store.hitWindows}; it never refuses.
   */
  adjustWindow(
    key: string,
    windowMs: number,
    atMs: number,
    delta: number,
    nowMs: number,
  ): Promise<void>;

  /**
   * Takes one lease named `leaseId` in each of several concurrency pools, all or nothing; the
   * leases expire at `expiresAt` (ms) unless renewed ({@link Store.renewLeases}), so the slots
   * of a process that died come back by themselves.
   *
   * MUST, in one atomic step: drop the pools' leases that expired (`expiresAt <= nowMs`); when
   * every pool holds fewer than `limit` live leases, add the lease to each and answer `ok`;
   * otherwise take nothing and name the first full pool with the time until its earliest live
   * lease expires. A pool that already holds `leaseId` (live) keeps it and counts it once; its
   * expiry becomes `expiresAt`. At any moment, across every process sharing the store for
   * multi-process adapters, a pool MUST hold at most `limit` live leases: 200 parallel asks on a
   * pool of 5 are granted at most 5 at a time.
   *
   * Expiry is judged by the caller's `nowMs` (as windows are): instances sharing a store should
   * keep their clocks synchronised, or a lease may be dropped up to the skew early or late.
   *
   * Rejects (throws) an ask whose `limit` is not a positive integer. No asks: `ok`.
   */
  acquireLeases(
    asks: LeaseAsk[],
    leaseId: string,
    expiresAt: number,
    nowMs: number,
  ): Promise<LeaseResult>;

  /**
   * Extends the lease `leaseId` in each of `pools` to `expiresAt` (ms), where it is still live
   * at `nowMs` (an expired lease is not revived: its slot may already be someone else's).
   * Returns how many leases were renewed. A running stream calls it periodically.
   */
  renewLeases(leaseId: string, pools: string[], expiresAt: number, nowMs: number): Promise<number>;

  /**
   * Frees the lease `leaseId` in each of `pools`. Idempotent: a lease already released or
   * dropped is ignored. Returns how many leases it removed.
   */
  releaseLeases(leaseId: string, pools: string[]): Promise<number>;

  /**
   * Subscribes to changes of keys, users, credentials and settings (not to quota or usage
   * counters, which change on every request). Changes made through this store object MUST be
   * delivered (origin `local`), after they are committed. Multi-process adapters MUST also
   * deliver changes committed by other processes (origin `remote`) within about a second.
   * Returns an unsubscribe function.
   */
  watch(listener: (change: StoreChange) => void): () => void;

  /** Releases resources (connections, timers, watchers). Idempotent. */
  close(): Promise<void>;
}
