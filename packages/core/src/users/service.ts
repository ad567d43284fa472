import { GatewayError } from "../errors.js";
import {
  mergeLimits,
  periodForRefillChange,
  validateLimits,
  validateQuotaRefill,
  withDueRefill,
} from "../keys/limits.js";
import {
  type KeyService,
  type KeyServiceOptions,
  type UserView,
  userView,
} from "../keys/service.js";
import type {
  NewUser,
  Page,
  QuotaRefill,
  RateLimits,
  Store,
  UserPatch,
  UserRecord,
} from "../store/types.js";
import { randomToken, type SecretBox } from "../util/secrets.js";

/** The prefix of generated user access tokens ("system tokens" of the new-api dialect). */
export const ACCESS_TOKEN_PREFIX = "tpu-";

/** Longest username and display name, in characters. */
export const USER_NAME_MAX = 64;

/** What {@link UserService.create} accepts. Everything but `username` has a default. */
export interface CreateUserInput {
  username: string;
  /** @default username */
  displayName?: string;
  /** @default "user" */
  role?: UserRecord["role"];
  /** 1 = enabled, 2 = disabled. @default 1 */
  status?: UserRecord["status"];
  /** One of the known groups (the keys of the `group-ratio` setting). @default "default" */
  group?: string;
  /** Quota units. @default 0 */
  quota?: number;
  /** @default 0 */
  usedQuota?: number;
  /** Unix seconds. @default now */
  createdTime?: number;
  /**
   * Rate and concurrency limits covering all the user's keys together (non-negative integers,
   * 0 = none; the unset ones may come from the `group-limits` setting). @default {}
   */
  limits?: RateLimits;
  /**
   * A budget that resets: at each period boundary (in the `quota-refill-time-zone` setting)
   * `quota` becomes `amount`. The first period starts now: `quota` is the balance until the
   * next boundary. @default null
   */
  quotaRefill?: QuotaRefill | null;
}

/** Query of {@link UserService.list}. */
export interface UserQuery {
  offset?: number;
  limit?: number;
  /** Case-insensitive substring of the username or display name. */
  keyword?: string;
}

const bad = (message: string) => new GatewayError("INVALID_REQUEST", message);

function isCount(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Owners of keys: validation, access tokens (issued once, stored as a keyed hash) and the
 * cache invalidation the proxy path relies on.
 */
export class UserService {
  readonly #store: Store;
  readonly #box: SecretBox;
  readonly #keys: KeyService;
  readonly #knownGroups: () => readonly string[];
  readonly #events: KeyServiceOptions["events"];

  /**
   * @param knownGroups the groups a user (or key) may belong to; read on every validation so
   *   that runtime changes of the `group-ratio` setting apply at once.
   * @param options where `quota.refilled` is emitted when a read applies a due refill (the time
   *   zone is the key service's, {@link KeyService.timeZone}).
   */
  constructor(
    store: Store,
    box: SecretBox,
    keys: KeyService,
    knownGroups: () => readonly string[],
    options: Pick<KeyServiceOptions, "events"> = {},
  ) {
    this.#store = store;
    this.#box = box;
    this.#keys = keys;
    this.#knownGroups = knownGroups;
    this.#events = options.events;
  }

  #view(record: UserRecord): UserView {
    return userView(record, this.#keys.timeZone(), Date.now());
  }

  #viewOrNull(record: UserRecord | null): UserView | null {
    return record ? this.#view(record) : null;
  }

  /** The stored user with a due refill applied first. */
  async #fresh(record: UserRecord | null): Promise<UserRecord | null> {
    if (!record?.quotaRefill) return record;
    return withDueRefill(
      this.#store,
      "user",
      record,
      { timeZone: this.#keys.timeZone(), events: this.#events },
      Date.now(),
      () => this.#store.users.get(record.id),
    );
  }

  /** Whether `group` is a known group (a key of the `group-ratio` setting). */
  isKnownGroup(group: string): boolean {
    return this.#knownGroups().includes(group);
  }

  /**
   * Checks a partial user without writing anything; throws INVALID_REQUEST naming the first
   * invalid field. Every write of this service calls it first.
   */
  validate(patch: UserPatch): void {
    if (patch.username !== undefined) {
      const u = patch.username;
      if (typeof u !== "string" || u.length === 0 || /\s/.test(u))
        throw bad("The username must be a non-empty string without whitespace");
      if ([...u].length > USER_NAME_MAX)
        throw bad(`The username is too long (at most ${USER_NAME_MAX} characters)`);
    }
    if (
      patch.displayName !== undefined &&
      (typeof patch.displayName !== "string" || [...patch.displayName].length > USER_NAME_MAX)
    ) {
      throw bad(`The display name must be a string of at most ${USER_NAME_MAX} characters`);
    }
    if (patch.role !== undefined && patch.role !== "admin" && patch.role !== "user")
      throw bad('The role must be "admin" or "user"');
    if (patch.status !== undefined && patch.status !== 1 && patch.status !== 2)
      throw bad("The status must be 1 (enabled) or 2 (disabled)");
    if (
      patch.group !== undefined &&
      (typeof patch.group !== "string" || !this.isKnownGroup(patch.group))
    )
      throw bad(`Group "${String(patch.group)}" does not exist`);
    if (patch.quota !== undefined && !isCount(patch.quota))
      throw bad("Quota value cannot be negative and must be an integer");
    if (patch.usedQuota !== undefined && !isCount(patch.usedQuota))
      throw bad("The used quota must be a non-negative integer");
    if (patch.createdTime !== undefined && !isCount(patch.createdTime))
      throw bad("The creation time must be a Unix time in seconds");
    if (patch.limits !== undefined) validateLimits(patch.limits);
    if (patch.quotaRefill !== undefined) validateQuotaRefill(patch.quotaRefill);
    if (patch.quotaPeriod !== undefined && !isCount(patch.quotaPeriod))
      throw bad("quotaPeriod must be a non-negative integer (ms)");
  }

  /** Creates a user and issues its access token, which is returned here and never again. */
  async create(input: CreateUserInput): Promise<{ accessToken: string; record: UserView }> {
    const accessToken = randomToken(ACCESS_TOKEN_PREFIX, 40);
    const user: NewUser = {
      username: input.username,
      displayName: input.displayName ?? input.username,
      role: input.role ?? "user",
      status: input.status ?? 1,
      group: input.group ?? "default",
      quota: input.quota ?? 0,
      usedQuota: input.usedQuota ?? 0,
      accessTokenHash: this.#box.hash(accessToken),
      createdTime: input.createdTime ?? Math.floor(Date.now() / 1000),
      ...(input.limits !== undefined ? { limits: input.limits } : {}),
      ...(input.quotaRefill !== undefined ? { quotaRefill: input.quotaRefill } : {}),
    };
    this.validate(user);
    if (user.limits) user.limits = mergeLimits(undefined, user.limits);
    const refill = user.quotaRefill;
    if (refill) {
      user.quotaRefill = { interval: refill.interval, amount: refill.amount };
      user.quotaPeriod = periodForRefillChange(null, refill, Date.now(), this.#keys.timeZone());
    }
    if (await this.#store.users.getByUsername(user.username)) throw bad("Username already exists");
    return { accessToken, record: this.#view(await this.#store.users.create(user)) };
  }

  /**
   * The user with this id, or null. A refill due for it is applied first (and
   * `quota.refilled` emitted), so the balance shown is the current period's.
   */
  async get(id: number): Promise<UserView | null> {
    return this.#viewOrNull(await this.#fresh(await this.#store.users.get(id)));
  }

  /** Ascending id; due refills applied first as in {@link get}. */
  async list(query?: UserQuery): Promise<Page<UserView>> {
    const page = await this.#store.users.list(query);
    const items = await Promise.all(page.items.map((u) => this.#fresh(u)));
    // A user deleted meanwhile is shown as listed.
    return { ...page, items: items.map((u, i) => this.#view(u ?? page.items[i]!)) };
  }

  /**
   * Applies a validated partial update; returns null for an unknown id. `limits` is merged into
   * the stored limits field by field (0 clears one, fields not named keep their value); a
   * `quotaRefill` set up or given another interval starts its first period now (the current
   * balance lasts until the next boundary); null removes the refill. A refill that is due is
   * applied before the update, so that a balance the update sets is not replaced by it afterwards.
   */
  async update(id: number, patch: UserPatch): Promise<UserView | null> {
    this.validate(patch);
    if (patch.username !== undefined) {
      const other = await this.#store.users.getByUsername(patch.username);
      if (other && other.id !== id) throw bad("Username already exists");
    }
    // Read-merge-write: management writes only, never on the request path.
    const stored = await this.#fresh(await this.#store.users.get(id));
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
          this.#keys.timeZone(),
        );
        if (period !== undefined) write.quotaPeriod = period;
      }
    }
    const rec = await this.#store.users.update(id, write);
    this.#keys.invalidateUser(id);
    return this.#viewOrNull(rec);
  }

  /**
   * Deletes a user and every key it owns (a key without its owner could never be used again,
   * and would linger in admin listings). Returns false for an unknown id.
   */
  async delete(id: number): Promise<boolean> {
    if (!(await this.#store.users.get(id))) return false;
    for (;;) {
      const page = await this.#keys.list({ userId: id, offset: 0, limit: 500 });
      if (page.items.length === 0) break;
      if ((await this.#keys.delete(page.items.map((k) => k.id))) === 0) break;
    }
    const ok = await this.#store.users.delete(id);
    this.#keys.invalidateUser(id);
    return ok;
  }

  /**
   * Issues a new access token for a user (the previous one stops working at once) and returns
   * it; this is the only time it is visible. Returns null for an unknown id.
   */
  async issueAccessToken(id: number): Promise<string | null> {
    const accessToken = randomToken(ACCESS_TOKEN_PREFIX, 40);
    const rec = await this.#store.users.update(id, {
      accessTokenHash: this.#box.hash(accessToken),
    });
    this.#keys.invalidateUser(id);
    return rec ? accessToken : null;
  }

  /** The user presenting this access token (one keyed-hash lookup), or null. */
  async findByAccessToken(token: string): Promise<UserView | null> {
    if (!token) return null;
    return this.#viewOrNull(await this.#store.users.getByAccessTokenHash(this.#box.hash(token)));
  }
}
