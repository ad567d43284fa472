/** Keys, users, credentials, settings and kv of the Redis store. Internal to this package. */
import type {
  ApiKeyRecord,
  CredentialCollection,
  CredentialRecord,
  KeyCollection,
  KvCollection,
  SettingsCollection,
  StoreChange,
  UserCollection,
  UserRecord,
} from "@tokenpool/core";
import { changeable, materializeCredential } from "@tokenpool/core/store-kernel";
import { decode, encode, loadHashes, page, type RedisContext, toHash } from "./context.js";

/**
 * The record an update script answered (its fields, flat), announced to the listeners when it
 * exists; null for an unknown id.
 */
function updated<T>(
  emitLocal: RedisContext["emitLocal"],
  collection: StoreChange["collection"],
  id: string | number,
  reply: unknown,
): T | null {
  const rec = decode<T>(toHash(reply));
  if (rec) emitLocal(collection, id, "upsert");
  return rec;
}

/**
 * The record a create script numbered, announced to the listeners; `id` -1 means a unique index
 * refused it, and `duplicate` says which.
 */
function created<T>(
  emitLocal: RedisContext["emitLocal"],
  collection: StoreChange["collection"],
  id: number,
  fields: object,
  duplicate: () => Error,
): T {
  if (id === -1) throw duplicate();
  emitLocal(collection, id, "upsert");
  return { ...structuredClone(fields), id } as T;
}

/** Whether a delete script removed the record, announced to the listeners when it did. */
function deleted(
  emitLocal: RedisContext["emitLocal"],
  collection: StoreChange["collection"],
  id: string | number,
  ok: boolean,
): boolean {
  if (ok) emitLocal(collection, id, "delete");
  return ok;
}

const keyDuplicate = () => new Error("a key with this hash already exists");

/**
 * The record a unique index names (`index` field `value` -> id -> record `prefix` + id), read in
 * one round trip (one script); null when the index has no entry or its record is gone.
 */
async function byIndex<T>(
  run: RedisContext["run"],
  index: string,
  prefix: string,
  value: string,
): Promise<T | null> {
  return decode<T>(toHash(await run("tpIndexGet", [index], [prefix, value])));
}

/** The keys: one hash each, a hash index and a sorted set by id. */
export function keys({ client, k, run, write, emitLocal }: RedisContext): KeyCollection {
  return {
    async create(input) {
      const rest = changeable(input, "id");
      const id = (await write(
        "tpKeyCreate",
        [k.keySeq, k.keyHash, k.keys],
        [input.keyHash, ...encode(rest)],
      )) as number;
      return created<ApiKeyRecord>(emitLocal, "keys", id, rest, keyDuplicate);
    },
    async get(id) {
      return decode<ApiKeyRecord>(await client.hgetall(k.key(id)));
    },
    async getByHash(hash) {
      return byIndex<ApiKeyRecord>(run, k.keyHash, k.keyPrefix, hash);
    },
    async list(q = {}) {
      const offset = q.offset ?? 0;
      const limit = q.limit ?? 20;
      const filtered = q.userId !== undefined || !!q.keyword || !!q.hint;
      if (!filtered) {
        const res = await client
          .multi()
          .zcard(k.keys)
          .zrevrange(k.keys, offset, offset + limit - 1)
          .exec();
        const total = Number(res?.[0]?.[1] ?? 0);
        const ids = (res?.[1]?.[1] as string[]) ?? [];
        const items = (await loadHashes<ApiKeyRecord>(client, ids.map(k.key))).filter(
          (x): x is ApiKeyRecord => x !== null,
        );
        return { items, total };
      }
      const ids = await client.zrevrange(k.keys, 0, -1);
      const kw = q.keyword?.toLowerCase();
      const all = (await loadHashes<ApiKeyRecord>(client, ids.map(k.key))).filter(
        (x): x is ApiKeyRecord =>
          x !== null &&
          (q.userId === undefined || x.userId === q.userId) &&
          (!kw || x.name.toLowerCase().includes(kw)) &&
          (!q.hint || x.keyHint.includes(q.hint)),
      );
      return page(all, offset, limit);
    },
    async update(id, patch) {
      const rest = changeable(patch, "id", "keyHash");
      const reply = await write("tpRecordUpdate", [k.key(id)], ["keys", id, ...encode(rest)]);
      return updated<ApiKeyRecord>(emitLocal, "keys", id, reply);
    },
    async rekey(id, keyHash, keyCipher) {
      const reply = await write(
        "tpKeyRekey",
        [k.key(id), k.keyHash],
        [id, keyHash, JSON.stringify(keyCipher)],
      );
      if (reply === -1) throw keyDuplicate();
      return updated<ApiKeyRecord>(emitLocal, "keys", id, reply);
    },
    async delete(ids) {
      const unique = [...new Set(ids)];
      if (unique.length === 0) return 0;
      const gone = (await write("tpKeyDelete", [k.keyHash, k.keys], unique)) as string[];
      for (const id of gone) emitLocal("keys", id, "delete");
      return gone.length;
    },
  };
}

const userDuplicate = (username: string) => new Error(`username "${username}" already exists`);

/** The users: one hash each, indexes by username and access token, a sorted set by id. */
export function users({ client, k, run, write, emitLocal }: RedisContext): UserCollection {
  return {
    async create(input) {
      const rest = changeable(input, "id");
      const id = (await write(
        "tpUserCreate",
        [k.userSeq, k.username, k.userToken, k.users],
        [input.username, input.accessTokenHash ?? "", ...encode(rest)],
      )) as number;
      return created<UserRecord>(emitLocal, "users", id, rest, () => userDuplicate(input.username));
    },
    async get(id) {
      return decode<UserRecord>(await client.hgetall(k.user(id)));
    },
    async getByUsername(name) {
      return byIndex<UserRecord>(run, k.username, k.userPrefix, name);
    },
    async getByAccessTokenHash(hash) {
      return byIndex<UserRecord>(run, k.userToken, k.userPrefix, hash);
    },
    async list(q = {}) {
      const ids = await client.zrange(k.users, 0, -1);
      const kw = q.keyword?.toLowerCase();
      const all = (await loadHashes<UserRecord>(client, ids.map(k.user))).filter(
        (u): u is UserRecord =>
          u !== null &&
          (!kw ||
            u.username.toLowerCase().includes(kw) ||
            u.displayName.toLowerCase().includes(kw)),
      );
      return page(all, q.offset ?? 0, q.limit ?? 20);
    },
    async update(id, patch) {
      const rest = changeable(patch, "id");
      const reply = await write(
        "tpUserUpdate",
        [k.user(id), k.username, k.userToken],
        [
          id,
          rest.username !== undefined ? "1" : "0",
          rest.username ?? "",
          rest.accessTokenHash !== undefined ? "1" : "0",
          rest.accessTokenHash ?? "",
          ...encode(rest),
        ],
      );
      if (reply === -1) throw userDuplicate(rest.username!);
      return updated<UserRecord>(emitLocal, "users", id, reply);
    },
    async delete(id) {
      const ok =
        (await write("tpUserDelete", [k.user(id), k.username, k.userToken, k.users], [id])) === 1;
      return deleted(emitLocal, "users", id, ok);
    },
  };
}

/** The credentials: one hash each and a sorted set in creation order. */
export function credentials({ client, k, write, emitLocal }: RedisContext): CredentialCollection {
  return {
    async create(input) {
      const rec = materializeCredential(input, Date.now());
      const r = await write(
        "tpCredCreate",
        [k.cred(rec.id), k.creds, k.credSeq],
        [rec.id, ...encode(rec)],
      );
      if (r === -1) throw new Error(`credential "${rec.id}" already exists`);
      emitLocal("credentials", rec.id, "upsert");
      return rec;
    },
    async get(id) {
      return decode<CredentialRecord>(await client.hgetall(k.cred(id)));
    },
    async list() {
      const ids = await client.zrange(k.creds, 0, -1);
      return (await loadHashes<CredentialRecord>(client, ids.map(k.cred))).filter(
        (c): c is CredentialRecord => c !== null,
      );
    },
    async update(id, patch) {
      const rest = changeable(patch, "id", "createdAt");
      const reply = await write(
        "tpRecordUpdate",
        [k.cred(id)],
        ["credentials", id, ...encode({ ...rest, updatedAt: Date.now() })],
      );
      return updated<CredentialRecord>(emitLocal, "credentials", id, reply);
    },
    async delete(id) {
      const ok = (await write("tpCredDelete", [k.cred(id), k.creds], [id])) === 1;
      return deleted(emitLocal, "credentials", id, ok);
    },
  };
}

/** The settings: one hash of JSON values. */
export function settings({ client, k, write, emitLocal }: RedisContext): SettingsCollection {
  return {
    async all() {
      const h = await client.hgetall(k.settings);
      return Object.fromEntries(Object.entries(h).map(([n, v]) => [n, JSON.parse(v)]));
    },
    async get(name) {
      const v = await client.hget(k.settings, name);
      return v === null ? undefined : JSON.parse(v);
    },
    async set(values) {
      const pairs = encode(values);
      if (pairs.length === 0) return;
      await write("tpSettingsSet", [k.settings], pairs);
      for (let i = 0; i < pairs.length; i += 2) emitLocal("settings", pairs[i]!, "upsert");
    },
    async delete(name) {
      const ok = (await write("tpSettingsDelete", [k.settings], [name])) === 1;
      return deleted(emitLocal, "settings", name, ok);
    },
  };
}

/** The kv space: plain Redis strings with PX expiry. */
export function kv({ client, k, run }: RedisContext): KvCollection {
  return {
    async get(key) {
      return client.get(k.kv(key));
    },
    async set(key, value, ttlMs) {
      if (ttlMs === undefined) await client.set(k.kv(key), value);
      else if (ttlMs <= 0) await client.del(k.kv(key));
      else await client.set(k.kv(key), value, "PX", Math.ceil(ttlMs));
    },
    async delete(key) {
      return (await client.del(k.kv(key))) === 1;
    },
    async incr(key, by, ttlMs) {
      const ttl = ttlMs === undefined ? "" : Math.max(1, Math.ceil(ttlMs));
      return Number(await run("tpKvIncr", [k.kv(key)], [by, ttl]));
    },
  };
}
