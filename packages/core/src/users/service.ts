import { GatewayError } from "../errors.js";
import { type KeyService, type UserView, userView } from "../keys/service.js";
import type { NewUser, Page, Store, UserPatch, UserRecord } from "../store/types.js";
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
}

/** Query of {@link UserService.list}. */
export interface UserQuery {
  offset?: number;
  limit?: number;
  /** Case-insensitive substring of the username or display name. */
  keyword?: string;
}

const viewOrNull = (record: UserRecord | null): UserView | null =>
  record ? userView(record) : null;

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

  /**
   * @param knownGroups the groups a user (or key) may belong to; read on every validation so
   *   that runtime changes of the `group-ratio` setting apply at once.
   */
  constructor(
    store: Store,
    box: SecretBox,
    keys: KeyService,
    knownGroups: () => readonly string[],
  ) {
    this.#store = store;
    this.#box = box;
    this.#keys = keys;
    this.#knownGroups = knownGroups;
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
    };
    this.validate(user);
    if (await this.#store.users.getByUsername(user.username)) throw bad("Username already exists");
    return { accessToken, record: userView(await this.#store.users.create(user)) };
  }

  async get(id: number): Promise<UserView | null> {
    return viewOrNull(await this.#store.users.get(id));
  }

  /** Ascending id. */
  async list(query?: UserQuery): Promise<Page<UserView>> {
    const page = await this.#store.users.list(query);
    return { ...page, items: page.items.map(userView) };
  }

  /** Applies a validated partial update; returns null for an unknown id. */
  async update(id: number, patch: UserPatch): Promise<UserView | null> {
    this.validate(patch);
    if (patch.username !== undefined) {
      const other = await this.#store.users.getByUsername(patch.username);
      if (other && other.id !== id) throw bad("Username already exists");
    }
    const rec = await this.#store.users.update(id, patch);
    this.#keys.invalidateUser(id);
    return viewOrNull(rec);
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
    return viewOrNull(await this.#store.users.getByAccessTokenHash(this.#box.hash(token)));
  }
}
