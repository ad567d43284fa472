/** What the parts of the Redis store share: the key layout, the scripts, the record codec. */
import type { Page, StoreChange } from "@tokenpool/core";
import type { RedisClient } from "./connect.js";
import * as lua from "./lua/scripts.js";

/** A Redis hash reply. */
export type Hash = Record<string, string>;

/** The Lua scripts, by the ioredis command name they are defined under. */
export const COMMANDS = {
  tpKeyCreate: lua.KEY_CREATE,
  tpRecordUpdate: lua.RECORD_UPDATE,
  tpKeyDelete: lua.KEY_DELETE,
  tpIndexGet: lua.INDEX_GET,
  tpUserCreate: lua.USER_CREATE,
  tpUserUpdate: lua.USER_UPDATE,
  tpUserDelete: lua.USER_DELETE,
  tpCredCreate: lua.CRED_CREATE,
  tpKeyRekey: lua.KEY_REKEY,
  tpCredDelete: lua.CRED_DELETE,
  tpSettingsSet: lua.SETTINGS_SET,
  tpSettingsDelete: lua.SETTINGS_DELETE,
  tpReserve: lua.RESERVE,
  tpSettle: lua.SETTLE,
  tpCommit: lua.COMMIT,
  tpRecover: lua.RECOVER,
  tpRefill: lua.REFILL,
  tpPrune: lua.PRUNE,
  tpUsageScan: lua.USAGE_SCAN,
  tpKvIncr: lua.KV_INCR,
  tpLockRelease: lua.LOCK_RELEASE,
  tpHitWindows: lua.HIT_WINDOWS,
  tpAdjustWindow: lua.ADJUST_WINDOW,
  tpAcquireLeases: lua.ACQUIRE_LEASES,
  tpRenewLeases: lua.RENEW_LEASES,
  tpReleaseLeases: lua.RELEASE_LEASES,
} as const;
/** The name of one of the {@link COMMANDS}. */
export type CommandName = keyof typeof COMMANDS;
/** A script argument. */
export type ScriptArg = string | number;

/** Encodes the defined fields of a record or patch as HSET field/value pairs (JSON values). */
export function encode(obj: object): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined) continue;
    out.push(k, JSON.stringify(v));
  }
  return out;
}

/** Decodes a record hash (HGETALL reply) written by {@link encode}; null when empty. */
export function decode<T>(hash: Hash | null | undefined): T | null {
  if (!hash || Object.keys(hash).length === 0) return null;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(hash)) out[k] = JSON.parse(v);
  return out as T;
}

/** Turns a flat [field, value, ...] reply into a hash. */
export function toHash(flat: unknown): Hash {
  const out: Hash = {};
  const arr = flat as string[];
  for (let i = 0; i + 1 < arr.length; i += 2) out[arr[i]!] = arr[i + 1]!;
  return out;
}

/** Every Redis key of a store, under the hash tag `base` (`{<prefix>}:`). */
export function redisKeys(base: string) {
  return {
    log: `${base}changes`,
    keySeq: `${base}seq:key`,
    keyHash: `${base}idx:keyhash`,
    keys: `${base}keys`,
    key: (id: number | string) => `${base}key:${id}`,
    /** The prefix of every key record (`key(id)` is it followed by the id). */
    keyPrefix: `${base}key:`,
    userSeq: `${base}seq:user`,
    username: `${base}idx:username`,
    userToken: `${base}idx:usertoken`,
    users: `${base}users`,
    user: (id: number | string) => `${base}user:${id}`,
    /** The prefix of every user record (`user(id)` is it followed by the id). */
    userPrefix: `${base}user:`,
    credSeq: `${base}seq:cred`,
    creds: `${base}creds`,
    cred: (id: string) => `${base}cred:${id}`,
    settings: `${base}settings`,
    usageSeq: `${base}seq:usage`,
    usage: `${base}usage`,
    usageRec: (member: string) => `${base}usage:${member}`,
    usageByKey: (id: number) => `${base}usage:key:${id}`,
    usageByUser: (id: number) => `${base}usage:user:${id}`,
    /** ZSETs of the request log's filters (see `APPEND_FN` in `lua/scripts.ts`). */
    usageByModel: (model: string) => `${base}usage:model:${model}`,
    usageByCred: (id: string) => `${base}usage:cred:${id}`,
    usageByKeyName: (name: string) => `${base}usage:kname:${name}`,
    usageByUsername: (name: string) => `${base}usage:uname:${name}`,
    usageByGroup: (group: string) => `${base}usage:group:${group}`,
    /** SET: the group names `usageByGroup` indexes. */
    usageGroups: `${base}usage:groups`,
    /** ZSET: failed requests only. */
    usageFail: `${base}usage:fail`,
    rollups: `${base}rollups`,
    rollup: (rk: string) => `${base}rollup:${rk}`,
    kv: (key: string) => `${base}kv:${key}`,
    lock: (name: string) => `${base}lock:${name}`,
    /** HASH: bucket index -> units, of the hitWindows counter (`key`, `windowMs`). */
    window: (key: string, windowMs: number) => `${base}win:${windowMs}:${key}`,
    /** ZSET: lease id -> expiresAt (ms), of an acquireLeases pool. */
    lease: (pool: string) => `${base}lease:${pool}`,
    /** ZSET: reservation id -> expiresAt (ms). */
    reservations: `${base}res`,
    /** HASH: reservation id -> `keyId|userId|units|keyDebited|metaJSON`. */
    reservationRows: `${base}res:data`,
    /** HASH: `k:<keyId>` / `u:<userId>` -> units held by unsettled reservations. */
    inFlight: `${base}res:inflight`,
  };
}

/** The key layout of one store (see {@link redisKeys}). */
export type RedisKeys = ReturnType<typeof redisKeys>;

/** What the collections and the ledger need of the store. */
export interface RedisContext {
  client: RedisClient;
  k: RedisKeys;
  /** The key prefix with its hash tag, `{<prefix>}:`: the scripts build their keys from it. */
  base: string;
  /** Runs a script. */
  run(name: CommandName, keys: string[], args: ScriptArg[]): Promise<unknown>;
  /** Runs a notifying script (its ARGV starts with BASE, channel, instance id). */
  write(name: CommandName, keys: string[], args: ScriptArg[]): Promise<unknown>;
  /** Tells this store object's listeners about a committed change. */
  emitLocal(
    collection: StoreChange["collection"],
    id: string | number,
    op: StoreChange["op"],
  ): void;
}

/** Reads record hashes in one pipeline; null for a missing one. */
export async function loadHashes<T>(client: RedisClient, keys: string[]): Promise<(T | null)[]> {
  if (keys.length === 0) return [];
  const pipe = client.pipeline();
  for (const key of keys) pipe.hgetall(key);
  const res = (await pipe.exec()) ?? [];
  return res.map(([err, v]) => {
    if (err) throw err;
    return decode<T>(v as Hash);
  });
}

/** One page of an already filtered list. */
export const page = <T>(items: T[], offset = 0, limit = 20): Page<T> => ({
  items: items.slice(offset, offset + limit),
  total: items.length,
});
