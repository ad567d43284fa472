/** Keys, users, credentials, settings and kv of the SQLite store. Internal to this package. */
import type {
  ApiKeyRecord,
  CredentialCollection,
  CredentialRecord,
  KeyCollection,
  KvCollection,
  SettingsCollection,
  UserCollection,
  UserRecord,
} from "@tokenpool/core";
import {
  type CredentialRow,
  changeable,
  credentialFromRow,
  credentialParams,
  type KeyRow,
  keyFromRow,
  keyParams,
  materializeCredential,
  type UserRow,
  userFromRow,
  userParams,
} from "@tokenpool/core/store-kernel";
import type { ChangeFeed, Collection } from "./change-feed.js";
import { type QueryShapes, type Statements, Where } from "./statements.js";

/** What the collections need of the store. */
export interface CollectionContext {
  s: Statements;
  mutate: ChangeFeed["mutate"];
  maintain: ChangeFeed["maintain"];
  shapes: QueryShapes;
}

/** Runs a write a UNIQUE index may refuse; a refusal becomes an error that says what was duplicated. */
function unique<T>(write: () => T, message: string): T {
  try {
    return write();
  } catch (err) {
    if ((err as { code?: unknown } | null)?.code === "SQLITE_CONSTRAINT_UNIQUE") {
      throw new Error(message, { cause: err });
    }
    throw err;
  }
}

/** A lookup by one statement's parameter: the record of the row it finds, or null. */
function lookup<P, Row, T>(
  statement: { get(param: P): unknown },
  fromRow: (row: Row) => T,
): (param: P) => T | null {
  return (param) => {
    const row = statement.get(param) as Row | undefined;
    return row ? fromRow(row) : null;
  };
}

/** Inserts one row SQLite numbers, notes it and returns the stored record. */
function insertRow<T>(
  mutate: ChangeFeed["mutate"],
  collection: Collection,
  insert: () => { lastInsertRowid: number | bigint },
  duplicate: string,
  get: (id: number) => T | null,
): T {
  return mutate((note) => {
    const { lastInsertRowid } = unique(insert, duplicate);
    const id = Number(lastInsertRowid);
    note(collection, id, "upsert");
    return get(id)!;
  });
}

/** Changes one row (`write` gets the current record), notes it and returns the new record; null for an unknown id. */
function updateRow<K extends string | number, T>(
  mutate: ChangeFeed["mutate"],
  collection: Collection,
  id: K,
  get: (id: K) => T | null,
  write: (current: T) => void,
): T | null {
  return mutate((note) => {
    const current = get(id);
    if (!current) return null;
    write(current);
    note(collection, id, "upsert");
    return get(id);
  });
}

/** Deletes one row (`remove` answers how many rows went) and notes it; whether there was one. */
function deleteRow(
  mutate: ChangeFeed["mutate"],
  collection: Collection,
  id: string | number,
  remove: () => { changes: number },
): boolean {
  return mutate((note) => {
    if (remove().changes === 0) return false;
    note(collection, id, "delete");
    return true;
  });
}

/** The `keys` table. */
export function keys({ s, mutate, shapes }: CollectionContext): KeyCollection {
  const getKey = lookup<number, KeyRow, ApiKeyRecord>(s.keyById, keyFromRow);
  const getByHash = lookup<string, KeyRow, ApiKeyRecord>(s.keyByHash, keyFromRow);
  return {
    async create(input) {
      const insert = () => s.insertKey.run(keyParams(input));
      return insertRow(mutate, "keys", insert, "a key with this hash already exists", getKey);
    },
    async get(id) {
      return getKey(id);
    },
    async getByHash(keyHash) {
      return getByHash(keyHash);
    },
    async list(q = {}) {
      const where = new Where()
        .and(q.userId !== undefined, "user_id IS ?", q.userId)
        .and(!!q.keyword, "instr(tokenpool_lower(name), ?) > 0", q.keyword?.toLowerCase())
        .and(!!q.hint, "instr(key_hint, ?) > 0", q.hint);
      return shapes.page("keys", where, "id DESC", q.offset ?? 0, q.limit ?? 20, keyFromRow);
    },
    async update(id, patch) {
      const rest = changeable(patch, "id", "keyHash");
      return updateRow(mutate, "keys", id, getKey, (current) => {
        s.updateKey.run({ ...keyParams({ ...current, ...rest }), id });
      });
    },
    async rekey(id, keyHash, keyCipher) {
      return mutate((note) => {
        // The unique index on key_hash moves the lookup with the row, or refuses a hash
        // another key holds.
        const { changes } = unique(
          () => s.rekey.run(keyHash, keyCipher, id),
          "a key with this hash already exists",
        );
        if (changes === 0) return null;
        note("keys", id, "upsert");
        return getKey(id);
      });
    },
    async delete(ids) {
      return mutate((note) => {
        let n = 0;
        for (const id of new Set(ids)) {
          if (s.deleteKey.run(id).changes === 0) continue;
          n++;
          note("keys", id, "delete");
        }
        return n;
      });
    },
  };
}

/** The `users` table. */
export function users({ s, mutate, shapes }: CollectionContext): UserCollection {
  const getUser = lookup<number, UserRow, UserRecord>(s.userById, userFromRow);
  const getByUsername = lookup<string, UserRow, UserRecord>(s.userByName, userFromRow);
  const getByToken = lookup<string, UserRow, UserRecord>(s.userByToken, userFromRow);
  return {
    async create(input) {
      const insert = () => s.insertUser.run(userParams(input));
      return insertRow(
        mutate,
        "users",
        insert,
        `username "${input.username}" already exists`,
        getUser,
      );
    },
    async get(id) {
      return getUser(id);
    },
    async getByUsername(username) {
      return getByUsername(username);
    },
    async getByAccessTokenHash(hash) {
      return getByToken(hash);
    },
    async list(q = {}) {
      const kw = q.keyword?.toLowerCase();
      const where = new Where().and(
        !!kw,
        "(instr(tokenpool_lower(username), ?) > 0 OR instr(tokenpool_lower(display_name), ?) > 0)",
        kw,
        kw,
      );
      return shapes.page("users", where, "id", q.offset ?? 0, q.limit ?? 20, userFromRow);
    },
    async update(id, patch) {
      const rest = changeable(patch, "id");
      return updateRow(mutate, "users", id, getUser, (current) => {
        const next = { ...current, ...rest };
        unique(
          () => s.updateUser.run({ ...userParams(next), id }),
          `username "${next.username}" already exists`,
        );
      });
    },
    async delete(id) {
      return deleteRow(mutate, "users", id, () => s.deleteUser.run(id));
    },
  };
}

/** The `credentials` table. */
export function credentials({ s, mutate }: CollectionContext): CredentialCollection {
  const getCredential = lookup<string, CredentialRow, CredentialRecord>(
    s.credentialById,
    credentialFromRow,
  );
  return {
    async create(input) {
      return mutate((note) => {
        const rec = materializeCredential(input, Date.now());
        unique(
          () => s.insertCredential.run(credentialParams(rec)),
          `credential "${rec.id}" already exists`,
        );
        note("credentials", rec.id, "upsert");
        return rec;
      });
    },
    async get(id) {
      return getCredential(id);
    },
    async list() {
      return (s.credentials.all() as CredentialRow[]).map(credentialFromRow);
    },
    async update(id, patch) {
      const rest = changeable(patch, "id", "createdAt");
      return updateRow(mutate, "credentials", id, getCredential, (current) => {
        s.updateCredential.run(
          credentialParams({ ...current, ...rest, id, updatedAt: Date.now() }),
        );
      });
    },
    async delete(id) {
      return deleteRow(mutate, "credentials", id, () => s.deleteCredential.run(id));
    },
  };
}

/** The `settings` table: JSON values by name. */
export function settings({ s, mutate }: CollectionContext): SettingsCollection {
  return {
    async all() {
      const rows = s.settings.all() as { name: string; value: string }[];
      return Object.fromEntries(rows.map((r) => [r.name, JSON.parse(r.value)]));
    },
    async get(name) {
      const value = s.setting.get(name) as string | undefined;
      return value === undefined ? undefined : JSON.parse(value);
    },
    async set(values) {
      mutate((note) => {
        for (const [name, value] of Object.entries(values)) {
          s.putSetting.run(name, JSON.stringify(value) ?? "null");
          note("settings", name, "upsert");
        }
      });
    },
    async delete(name) {
      return mutate((note) => {
        if (s.deleteSetting.run(name).changes === 0) return false;
        note("settings", name, "delete");
        return true;
      });
    },
  };
}

/** The `kv` table: values with an optional expiry, and atomic counters. */
export function kv({ s, maintain }: CollectionContext): KvCollection {
  return {
    async get(key) {
      return (s.kvGet.get(key, Date.now()) as string | undefined) ?? null;
    },
    async set(key, value, ttlMs) {
      s.kvSet.run(key, value, ttlMs === undefined ? null : Date.now() + ttlMs);
      maintain();
    },
    async delete(key) {
      const expiresAt = s.kvDelete.get(key) as number | null | undefined;
      return expiresAt === null || (expiresAt !== undefined && expiresAt > Date.now());
    },
    async incr(key, by, ttlMs) {
      const now = Date.now();
      const value = s.kvIncr.get({
        key,
        by,
        expiresAt: ttlMs === undefined ? null : now + ttlMs,
        now,
      });
      maintain();
      return Number(value);
    },
  };
}
