import { GatewayError } from "../errors.js";
import type { GatewayEmitter } from "../events.js";
import {
  type ApiKeyPatch,
  type ApiKeyRecord,
  type KeyQuery,
  KeyStatus,
  type NewApiKey,
  type Page,
  type QuotaRefill,
  type RateLimits,
  type Store,
  type UserRecord,
} from "../store/types.js";
import { maskSecret, randomToken, type SecretBox } from "../util/secrets.js";
import { IpAllowList, validateIpEntry } from "./ip.js";
import {
  type LimitViewFields,
  limitViewFields,
  mergeLimits,
  periodForRefillChange,
  validateLimits,
  validateQuotaRefill,
  withDueRefill,
} from "./limits.js";

/** What {@link KeyService.create} accepts. Everything but `name` has a default. */
export interface CreateKeyInput {
  name: string;
  /** Owner. @default null */
  userId?: number | null;
  /** Quota units. @default 0 */
  remainQuota?: number;
  /** @default false */
  unlimitedQuota?: boolean;
  /** Unix seconds, -1 = never. @default -1 */
  expiredTime?: number;
  /** @default false */
  modelLimitsEnabled?: boolean;
  /** @default [] */
  modelLimits?: string[];
  /** @default [] */
  allowIps?: string[];
  /** @default "default" */
  group?: string;
  /** @default KeyStatus.Enabled */
  status?: KeyStatus;
  /** Import this exact plain key instead of generating one (e.g. keys listed in a config file). */
  key?: string;
  /**
   * Rate and concurrency limits of the key (non-negative integers, 0 = none; the unset ones may
   * come from the `group-limits` setting). @default {}
   */
  limits?: RateLimits;
  /**
   * A budget that resets: at each period boundary (in the `quota-refill-time-zone` setting)
   * `remainQuota` becomes `amount`. The first period starts now: `remainQuota` is the balance
   * until the next boundary. @default null
   */
  quotaRefill?: QuotaRefill | null;
}

/** Options of {@link KeyService} (and of `UserService`): what refills need. */
export interface KeyServiceOptions {
  /** The `quota-refill-time-zone` setting, read at each use. @default () => "UTC" */
  timeZone?: () => string;
  /** Where `quota.refilled` is emitted when a read applies a due refill. */
  events?: GatewayEmitter;
}

/** What a request presents, for {@link KeyService.authorize}. */
export interface AuthorizeContext {
  /** The client address (already resolved through trusted proxies). */
  ip: string;
  /** The requested model, when known. */
  model?: string;
  /** Unix seconds. @default now */
  nowSeconds?: number;
}

/**
 * A downstream key as the gateway's API returns it: the stored record without its keyed hash
 * (`keyHash`) and its encrypted plain key (`keyCipher`). `keyHint` is the masked form; the plain
 * key comes only from {@link KeyService.create} and {@link KeyService.reveal}. `limits` is
 * always an object (`{}` = none of its own), `quotaRefill` null without a refill, and
 * `nextRefillTime` (ms) when the balance refills next.
 */
export type ApiKeyView = Omit<ApiKeyRecord, "keyHash" | "keyCipher" | "limits" | "quotaRefill"> &
  LimitViewFields;

/**
 * A stored key without its hash and cipher, with its limit fields as {@link ApiKeyView} has
 * them at `nowMs` in `timeZone`: a new object, the record is left as it is.
 */
export function apiKeyView(record: ApiKeyRecord, timeZone: string, nowMs: number): ApiKeyView {
  const { limits, quotaRefill, nextRefillTime } = limitViewFields(record, timeZone, nowMs);
  // One object literal with every field in a fixed order, rather than `{ ...rest }`: the
  // authorisation cache makes a new view of a busy key every 2 s, and views built by rest and
  // spread came out with a new hidden class each time (V8's clone of a megamorphic source), so
  // every optimised function that reads a key deoptimised and was compiled again every 2 s.
  return {
    id: record.id,
    userId: record.userId,
    name: record.name,
    keyHint: record.keyHint,
    status: record.status,
    remainQuota: record.remainQuota,
    usedQuota: record.usedQuota,
    unlimitedQuota: record.unlimitedQuota,
    expiredTime: record.expiredTime,
    modelLimitsEnabled: record.modelLimitsEnabled,
    modelLimits: record.modelLimits,
    allowIps: record.allowIps,
    group: record.group,
    createdTime: record.createdTime,
    accessedTime: record.accessedTime,
    quotaPeriod: record.quotaPeriod,
    limits,
    quotaRefill,
    nextRefillTime,
  } satisfies Record<keyof ApiKeyView, unknown>;
}

/**
 * A user as the gateway's API returns it: the stored record without the keyed hash of its
 * access token (whether it has one is `hasAccessToken`), with its limit fields as
 * {@link ApiKeyView} has them.
 */
export type UserView = Omit<UserRecord, "accessTokenHash" | "limits" | "quotaRefill"> & {
  hasAccessToken: boolean;
} & LimitViewFields;

/** The view of a stored user at `nowMs` in `timeZone` (for `nextRefillTime`). */
export function userView(record: UserRecord, timeZone: string, nowMs: number): UserView {
  const { limits, quotaRefill, nextRefillTime } = limitViewFields(record, timeZone, nowMs);
  // Every field in a fixed order, as apiKeyView does (a stable hidden class).
  return {
    id: record.id,
    username: record.username,
    displayName: record.displayName,
    role: record.role,
    status: record.status,
    group: record.group,
    quota: record.quota,
    usedQuota: record.usedQuota,
    createdTime: record.createdTime,
    quotaPeriod: record.quotaPeriod,
    hasAccessToken: record.accessTokenHash !== null,
    limits,
    quotaRefill,
    nextRefillTime,
  } satisfies Record<keyof UserView, unknown>;
}

/** A key that passed authorisation, with its owner when it has one. */
export interface AuthorizedKey {
  key: ApiKeyView;
  user: UserView | null;
}

/** How long an authorisation cache entry may live without a change notification. */
const CACHE_TTL_MS = 2_000;
/** Entries per authorisation cache before it is emptied (a cheap bound, not an LRU). */
const CACHE_MAX = 50_000;

/** The prefix of generated downstream keys. */
export const KEY_PREFIX = "sk-";

/**
 * Downstream API keys: creation (the plain key is returned once), lookup by keyed hash,
 * masking, reveal, and the authorisation checks run on every proxy request.
 */
export class KeyService {
  readonly #store: Store;
  readonly #box: SecretBox;
  readonly #allowLists = new Map<string, IpAllowList>();
  /**
   * Authorisation caches. Records are dropped on every change notification of their key or user
   * (local or from another instance) and after {@link CACHE_TTL_MS} at the latest; quota is not
   * read from them (the atomic reservation decides), so they never have to follow quota counters.
   */
  readonly #hashOf = new Map<string, string>();
  readonly #keyByHash = new Map<string, { key: ApiKeyView; at: number }>();
  readonly #userById = new Map<number, { user: UserView | null; at: number }>();

  readonly #timeZone: () => string;
  readonly #events: GatewayEmitter | undefined;

  /**
   * @param options where refills read their time zone (the `quota-refill-time-zone` setting)
   *   and emit `quota.refilled`; `createGateway` passes both.
   */
  constructor(store: Store, box: SecretBox, options: KeyServiceOptions = {}) {
    this.#store = store;
    this.#box = box;
    this.#timeZone = options.timeZone ?? (() => "UTC");
    this.#events = options.events;
  }

  /** The time zone refill periods start in (the `quota-refill-time-zone` setting). */
  timeZone(): string {
    return this.#timeZone();
  }

  #view(record: ApiKeyRecord): ApiKeyView {
    return apiKeyView(record, this.#timeZone(), Date.now());
  }

  #viewOrNull(record: ApiKeyRecord | null): ApiKeyView | null {
    return record ? this.#view(record) : null;
  }

  /** The stored key with a due refill applied first (see {@link withDueRefill}). */
  async #fresh(record: ApiKeyRecord | null): Promise<ApiKeyRecord | null> {
    if (!record?.quotaRefill) return record;
    return withDueRefill(
      this.#store,
      "key",
      record,
      { timeZone: this.#timeZone(), events: this.#events },
      Date.now(),
      () => this.#store.keys.get(record.id),
    );
  }

  /** Drops cached records after a change of a key (`id`), or of every key when `id` is undefined. */
  invalidateKey(id?: number): void {
    if (id === undefined) this.#keyByHash.clear();
    else for (const [h, e] of this.#keyByHash) if (e.key.id === id) this.#keyByHash.delete(h);
  }

  /** Drops a cached user after a change (every user when `id` is undefined). */
  invalidateUser(id?: number): void {
    if (id === undefined) this.#userById.clear();
    else this.#userById.delete(id);
  }

  #hash(plain: string): string {
    let h = this.#hashOf.get(plain);
    if (h === undefined) {
      h = this.#box.hash(plain);
      if (this.#hashOf.size >= CACHE_MAX) this.#hashOf.clear();
      this.#hashOf.set(plain, h);
    }
    return h;
  }

  async #cachedKey(plain: string, now: number): Promise<ApiKeyView | null> {
    const hash = this.#hash(plain);
    const hit = this.#keyByHash.get(hash);
    if (hit && now - hit.at < CACHE_TTL_MS) return hit.key;
    // The cache holds the view: the hash is its index already, and authorize() hands it out.
    const key = this.#viewOrNull(await this.#store.keys.getByHash(hash));
    if (key) {
      if (this.#keyByHash.size >= CACHE_MAX) this.#keyByHash.clear();
      this.#keyByHash.set(hash, { key, at: now });
    } else this.#keyByHash.delete(hash);
    return key;
  }

  async #cachedUser(id: number, now: number): Promise<UserView | null> {
    const hit = this.#userById.get(id);
    if (hit && now - hit.at < CACHE_TTL_MS) return hit.user;
    const stored = await this.#store.users.get(id);
    const user = stored ? userView(stored, this.#timeZone(), now) : null;
    if (this.#userById.size >= CACHE_MAX) this.#userById.clear();
    this.#userById.set(id, { user, at: now });
    return user;
  }

  /** Creates a key; the result holds the plain key, which is never retrievable in the clear again except by {@link reveal}. */
  async create(input: CreateKeyInput): Promise<{ key: string; record: ApiKeyView }> {
    const plain = input.key ?? randomToken(KEY_PREFIX, 48);
    this.#validate({
      ...(input.limits !== undefined ? { limits: input.limits } : {}),
      ...(input.quotaRefill !== undefined ? { quotaRefill: input.quotaRefill } : {}),
    });
    const refill = input.quotaRefill ?? null;
    const record = this.#validate<NewApiKey>({
      userId: input.userId ?? null,
      name: input.name,
      keyHash: this.#box.hash(plain),
      keyCipher: this.#box.encrypt(plain),
      keyHint: maskSecret(plain),
      status: input.status ?? KeyStatus.Enabled,
      remainQuota: input.remainQuota ?? 0,
      usedQuota: 0,
      unlimitedQuota: input.unlimitedQuota ?? false,
      expiredTime: input.expiredTime ?? -1,
      modelLimitsEnabled: input.modelLimitsEnabled ?? false,
      modelLimits: input.modelLimits ?? [],
      allowIps: input.allowIps ?? [],
      group: input.group ?? "default",
      createdTime: Math.floor(Date.now() / 1000),
      accessedTime: 0,
      ...(input.limits !== undefined ? { limits: mergeLimits(undefined, input.limits) } : {}),
      ...(refill
        ? {
            quotaRefill: { interval: refill.interval, amount: refill.amount },
            quotaPeriod: periodForRefillChange(null, refill, Date.now(), this.#timeZone()),
          }
        : {}),
    });
    return { key: plain, record: this.#view(await this.#store.keys.create(record)) };
  }

  /**
   * The key with this id (without its hash and cipher), or null. A refill due for it is applied
   * first (and `quota.refilled` emitted), so the balance shown is the current period's.
   */
  async get(id: number): Promise<ApiKeyView | null> {
    return this.#viewOrNull(await this.#fresh(await this.#store.keys.get(id)));
  }

  /**
   * A page of keys matching `query` (without their hashes and ciphers), due refills applied
   * first as in {@link get}.
   */
  async list(query?: KeyQuery): Promise<Page<ApiKeyView>> {
    const page = await this.#store.keys.list(query);
    const items = await Promise.all(page.items.map((k) => this.#fresh(k)));
    // A key deleted meanwhile is shown as listed.
    return { ...page, items: items.map((k, i) => this.#view(k ?? page.items[i]!)) };
  }

  /**
   * Applies a validated partial update. `limits` is merged into the stored limits field by
   * field (0 clears one, fields not named keep their value); a `quotaRefill` set up or given
   * another interval starts its first period now (the current balance lasts until the next
   * boundary); null removes the refill. A refill that is due is applied before the update, so
   * that a balance the update sets is not replaced by it afterwards.
   */
  async update(id: number, patch: ApiKeyPatch): Promise<ApiKeyView | null> {
    this.#validate(patch);
    // Read-merge-write: management writes only, never on the request path.
    const stored = await this.#fresh(await this.#store.keys.get(id));
    if (!stored) return null;
    let write = patch;
    if (patch.limits !== undefined || patch.quotaRefill !== undefined) {
      write = { ...patch };
      if (patch.limits !== undefined) write.limits = mergeLimits(stored.limits, patch.limits);
      if (patch.quotaRefill !== undefined && patch.quotaPeriod === undefined) {
        const period = periodForRefillChange(
          stored.quotaRefill,
          patch.quotaRefill,
          Date.now(),
          this.#timeZone(),
        );
        if (period !== undefined) write.quotaPeriod = period;
      }
    }
    const rec = await this.#store.keys.update(id, write);
    this.invalidateKey(id);
    return this.#viewOrNull(rec);
  }

  async delete(ids: number[]): Promise<number> {
    const n = await this.#store.keys.delete(ids);
    for (const id of ids) this.invalidateKey(id);
    return n;
  }

  /** The plain key of a stored key (the explicit reveal call), or null. */
  async reveal(id: number): Promise<string | null> {
    const rec = await this.#store.keys.get(id);
    return rec?.keyCipher ? this.#box.decrypt(rec.keyCipher) : null;
  }

  /** Finds a key by its plain value: one indexed lookup (a due refill applied as in {@link get}). */
  async findByPlain(plain: string): Promise<ApiKeyView | null> {
    return this.#viewOrNull(await this.#fresh(await this.#store.keys.getByHash(this.#hash(plain))));
  }

  /**
   * Checks a presented key for a request: it exists, is enabled, not expired, not exhausted,
   * allows the model and the client address, and its owner is enabled.
   * Throws a {@link GatewayError} naming the first failed check.
   */
  async authorize(plain: string | undefined, ctx: AuthorizeContext): Promise<AuthorizedKey> {
    const nowMs = Date.now();
    const key = requireKey(plain, await this.#cachedKey(presented(plain), nowMs));
    const now = ctx.nowSeconds ?? Math.floor(nowMs / 1000);
    if (key.status === KeyStatus.Disabled) throw keyDisabled();
    if (key.status === KeyStatus.Expired || (key.expiredTime !== -1 && key.expiredTime <= now)) {
      throw new GatewayError("KEY_EXPIRED", "This API key has expired.");
    }
    // Only the status: a cached balance may be stale, and the reservation checks quota exactly.
    if (key.status === KeyStatus.Exhausted) {
      throw new GatewayError("KEY_EXHAUSTED", "This API key has used up its quota.");
    }
    this.#checkAddress(key, ctx.ip);
    if (ctx.model !== undefined) this.checkModel(key, ctx.model);
    const user = key.userId === null ? null : checkOwner(await this.#cachedUser(key.userId, nowMs));
    return { key, user };
  }

  /**
   * Checks a presented key for reading its own balance (new-api's `TokenAuthReadOnly`): it
   * exists, is not disabled, allows the client address, and its owner exists and is enabled. An
   * expired or exhausted key passes, so that its holder can still see why it stopped. The key is
   * read from the store, not the authorisation cache, with a due refill applied first (as
   * {@link get} does), so the balance is the current period's.
   * Throws a {@link GatewayError} naming the first failed check, as {@link authorize} does.
   */
  async authorizeReader(plain: string | undefined, ctx: AuthorizeContext): Promise<AuthorizedKey> {
    const key = requireKey(plain, await this.findByPlain(presented(plain)));
    if (key.status === KeyStatus.Disabled) throw keyDisabled();
    this.#checkAddress(key, ctx.ip);
    let user: UserView | null = null;
    if (key.userId !== null) {
      const stored = await this.#store.users.get(key.userId);
      user = checkOwner(stored && userView(stored, this.#timeZone(), Date.now()));
    }
    return { key, user };
  }

  /** Throws IP_NOT_ALLOWED when the key has an allowlist that excludes `ip`. */
  #checkAddress(key: ApiKeyView, ip: string): void {
    if (key.allowIps.length > 0 && !this.#allowList(key).allows(ip)) {
      throw new GatewayError(
        "IP_NOT_ALLOWED",
        `Requests from ${ip || "this address"} are not allowed for this API key.`,
      );
    }
  }

  /** Throws MODEL_NOT_ALLOWED when the key's model limits exclude `model`. */
  checkModel(key: Pick<ApiKeyView, "modelLimitsEnabled" | "modelLimits">, model: string): void {
    if (key.modelLimitsEnabled && !key.modelLimits.includes(model)) {
      throw new GatewayError(
        "MODEL_NOT_ALLOWED",
        `This API key is not allowed to use the model ${model}.`,
      );
    }
  }

  #allowList(key: ApiKeyView): IpAllowList {
    const sig = `${key.id}|${key.allowIps.join(",")}`;
    let list = this.#allowLists.get(sig);
    if (!list) {
      if (this.#allowLists.size > 10_000) this.#allowLists.clear();
      list = new IpAllowList(key.allowIps);
      this.#allowLists.set(sig, list);
    }
    return list;
  }

  #validate<T extends Partial<NewApiKey>>(k: T): T {
    const bad = (m: string) => new GatewayError("INVALID_REQUEST", m);
    if (k.name !== undefined && (typeof k.name !== "string" || [...k.name].length > 30)) {
      throw bad("key name must be a string of at most 30 characters");
    }
    for (const f of ["remainQuota", "usedQuota"] as const) {
      const v = k[f];
      if (v !== undefined && (!Number.isSafeInteger(v) || v < 0))
        throw bad(`${f} must be a non-negative integer`);
    }
    if (
      k.expiredTime !== undefined &&
      (!Number.isSafeInteger(k.expiredTime) || k.expiredTime < -1)
    ) {
      throw bad("expiredTime must be -1 (never) or a Unix time in seconds");
    }
    for (const ip of k.allowIps ?? []) {
      const err = validateIpEntry(ip);
      if (err) throw bad(err);
    }
    if (k.limits !== undefined) validateLimits(k.limits);
    if (k.quotaRefill !== undefined) validateQuotaRefill(k.quotaRefill);
    if (
      k.quotaPeriod !== undefined &&
      (!Number.isSafeInteger(k.quotaPeriod) || (k.quotaPeriod as number) < 0)
    )
      throw bad("quotaPeriod must be a non-negative integer (ms)");
    return k;
  }
}

/** The presented key text; MISSING_API_KEY when there is none. */
function presented(plain: string | undefined): string {
  if (!plain) {
    throw new GatewayError(
      "MISSING_API_KEY",
      "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
    );
  }
  return plain;
}

/** The key found for `plain`; INVALID_API_KEY (the text masked) when none was. */
function requireKey(plain: string | undefined, key: ApiKeyView | null): ApiKeyView {
  if (!key) {
    throw new GatewayError(
      "INVALID_API_KEY",
      `Incorrect API key provided: ${maskSecret(plain ?? "")}.`,
    );
  }
  return key;
}

const keyDisabled = () => new GatewayError("KEY_DISABLED", "This API key has been disabled.");

/** A key's owner, checked: it exists and is enabled. */
function checkOwner(user: UserView | null): UserView {
  if (!user)
    throw new GatewayError("KEY_OWNER_MISSING", "The owner of this API key no longer exists.");
  if (user.status !== 1)
    throw new GatewayError("USER_DISABLED", "The owner of this API key is disabled.");
  return user;
}
