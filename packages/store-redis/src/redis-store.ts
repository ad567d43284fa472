import { randomUUID } from "node:crypto";
import {
  type ApiKeyPatch,
  type ApiKeyRecord,
  assertUnits,
  type CredentialPatch,
  type CredentialRecord,
  type KeyQuery,
  materializeCredential,
  type NewUsageRecord,
  type Page,
  type Reservation,
  type ReservationMeta,
  type ReservationRow,
  type ReserveDenial,
  type ReserveResult,
  recoveredRecord,
  reservationRow,
  rollupKey,
  type Store,
  type StoreChange,
  type UsageCommit,
  type UsageQuery,
  type UsageRecord,
  type UsageRollup,
  type UserPatch,
  type UserRecord,
} from "@tokenpool/core";
import { Redis, type RedisOptions } from "ioredis";
import * as lua from "./lua/scripts.js";

/** Options of {@link redisStore}. */
export interface RedisStoreOptions {
  /**
   * A connected ioredis client (not closed by the store), or options / a `redis://` URL for a
   * client the store creates and closes.
   */
  redis: Redis | RedisOptions | string;
  /**
   * Prefix of every key, so several deployments can share one Redis. Keys are
   * `{<prefix>}:...` (one hash tag), the change channel is `<prefix>:changes`.
   * @default "tokenpool"
   */
  prefix?: string;
  /**
   * Retention bound of usage details: when more are stored, the oldest are deleted as new
   * ones are written (roll-ups are kept). 0 = no bound.
   * @default 1_000_000
   */
  usageDetailsLimit?: number;
}

type Collection = StoreChange["collection"];
type Hash = Record<string, string>;

const COMMANDS = {
  tpKeyCreate: lua.KEY_CREATE,
  tpRecordUpdate: lua.RECORD_UPDATE,
  tpKeyDelete: lua.KEY_DELETE,
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
  tpPrune: lua.PRUNE,
  tpKvIncr: lua.KV_INCR,
  tpLockRelease: lua.LOCK_RELEASE,
} as const;
type CommandName = keyof typeof COMMANDS;
type ScriptArg = string | number;

const PRUNE_BATCH = 1_000;

/** Encodes the defined fields of a record or patch as HSET field/value pairs (JSON values). */
function encode(obj: object): string[] {
  const out: string[] = [];
  for (const [k, v] of Object.entries(obj)) {
    if (v === undefined) continue;
    out.push(k, JSON.stringify(v));
  }
  return out;
}

/** Decodes a record hash (HGETALL reply) written by {@link encode}; null when empty. */
function decode<T>(hash: Hash | null | undefined): T | null {
  if (!hash || Object.keys(hash).length === 0) return null;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(hash)) out[k] = JSON.parse(v);
  return out as T;
}

/** Turns a flat [field, value, ...] reply into a hash. */
function toHash(flat: unknown): Hash {
  const out: Hash = {};
  const arr = flat as string[];
  for (let i = 0; i + 1 < arr.length; i += 2) out[arr[i]!] = arr[i + 1]!;
  return out;
}

const isClient = (x: RedisStoreOptions["redis"]): x is Redis =>
  typeof x === "object" && x !== null && typeof (x as Redis).duplicate === "function";

const rollupFields = [
  "requests",
  "successes",
  "failures",
  "inputTokens",
  "outputTokens",
  "reasoningTokens",
  "cachedTokens",
  "totalTokens",
  "quota",
] as const;

/**
 * The Redis store: every atomic step of the Store contract is one Lua script, so any number of
 * gateway processes can share one Redis. Changes are announced on the pub/sub channel
 * `<prefix>:changes` and reach every other instance's `watch()` within milliseconds.
 *
 * All keys share the hash tag `{<prefix>}`: the store works on Redis Cluster, in one hash slot.
 *
 * @example
 * ```ts
 * const store = redisStore({ redis: "redis://127.0.0.1:6379/0", prefix: "tokenpool" });
 * ```
 */
export function redisStore(options: RedisStoreOptions): Store {
  const prefix = options.prefix ?? "tokenpool";
  const detailsLimit = options.usageDetailsLimit ?? 1_000_000;
  const owned = !isClient(options.redis);
  const client: Redis = isClient(options.redis)
    ? options.redis
    : typeof options.redis === "string"
      ? new Redis(options.redis)
      : new Redis(options.redis);
  if (owned) client.on("error", () => {}); // commands reject with the error; avoid unhandled events
  for (const [name, script] of Object.entries(COMMANDS)) {
    client.defineCommand(name, { lua: script });
  }

  const base = `{${prefix}}:`;
  const channel = `${prefix}:changes`;
  const instanceId = randomUUID();
  const k = {
    log: `${base}changes`,
    keySeq: `${base}seq:key`,
    keyHash: `${base}idx:keyhash`,
    keys: `${base}keys`,
    key: (id: number | string) => `${base}key:${id}`,
    userSeq: `${base}seq:user`,
    username: `${base}idx:username`,
    userToken: `${base}idx:usertoken`,
    users: `${base}users`,
    user: (id: number | string) => `${base}user:${id}`,
    credSeq: `${base}seq:cred`,
    creds: `${base}creds`,
    cred: (id: string) => `${base}cred:${id}`,
    settings: `${base}settings`,
    usageSeq: `${base}seq:usage`,
    usage: `${base}usage`,
    usageRec: (member: string) => `${base}usage:${member}`,
    usageByKey: (id: number) => `${base}usage:key:${id}`,
    usageByUser: (id: number) => `${base}usage:user:${id}`,
    rollups: `${base}rollups`,
    rollup: (rk: string) => `${base}rollup:${rk}`,
    kv: (key: string) => `${base}kv:${key}`,
    lock: (name: string) => `${base}lock:${name}`,
    /** ZSET: reservation id -> expiresAt (ms). */
    reservations: `${base}res`,
    /** HASH: reservation id -> `keyId|userId|units|keyDebited|metaJSON`. */
    reservationRows: `${base}res:data`,
    /** HASH: `k:<keyId>` / `u:<userId>` -> units held by unsettled reservations. */
    inFlight: `${base}res:inflight`,
  };

  let closed = false;

  const run = (name: CommandName, keys: string[], args: ScriptArg[]): Promise<unknown> =>
    (client as unknown as Record<string, (...a: ScriptArg[]) => Promise<unknown>>)[name]!(
      keys.length,
      ...keys,
      ...args,
    );
  /** Runs a notifying script (its ARGV starts with BASE, channel, instance id). */
  const write = (name: CommandName, keys: string[], args: ScriptArg[]) =>
    run(name, [k.log, ...keys], [base, channel, instanceId, ...args]);

  // ---- watch ---------------------------------------------------------------------------------
  const listeners = new Set<(c: StoreChange) => void>();
  let subscriber: Redis | null = null;

  const emitLocal = (collection: Collection, id: string | number, op: StoreChange["op"]) => {
    const change: StoreChange = { collection, id: String(id), op, origin: "local" };
    queueMicrotask(() => {
      for (const l of [...listeners]) l(change);
    });
  };

  const streamIdAfter = (a: string, b: string) => {
    const [am, as] = a.split("-").map(Number) as [number, number];
    const [bm, bs] = b.split("-").map(Number) as [number, number];
    return am > bm || (am === bm && as > bs);
  };

  const startSubscriber = () => {
    const sub = client.duplicate();
    subscriber = sub;
    sub.on("error", () => {});
    // Changes committed after this moment are delivered: the stream covers the time until the
    // subscription is active, pub/sub the rest. Stream ids are compared to deliver each once.
    const start = `${Date.now()}-0`;
    let lastSeen = "0-0";
    let catchingUp = true;
    const queued: string[] = [];
    const deliver = (sid: string, json: string) => {
      if (subscriber !== sub || !streamIdAfter(sid, lastSeen)) return;
      lastSeen = sid;
      let m: { o: string; c: Collection; i: string; p: StoreChange["op"] };
      try {
        m = JSON.parse(json);
      } catch {
        return;
      }
      if (m.o === instanceId) return;
      const change: StoreChange = { collection: m.c, id: m.i, op: m.p, origin: "remote" };
      for (const l of [...listeners]) l(change);
    };
    const onMessage = (_ch: string, message: string) => {
      if (catchingUp) queued.push(message);
      else {
        const sp = message.indexOf(" ");
        deliver(message.slice(0, sp), message.slice(sp + 1));
      }
    };
    sub.on("message", onMessage);
    sub
      .subscribe(channel)
      .then(() => client.xrange(k.log, start, "+"))
      .then((entries) => {
        for (const [sid, fields] of entries) {
          const i = fields.indexOf("m");
          if (i >= 0) deliver(sid, fields[i + 1]!);
        }
      })
      .catch(() => {})
      .finally(() => {
        catchingUp = false;
        for (const message of queued.splice(0)) onMessage(channel, message);
      });
  };

  const stopSubscriber = () => {
    const sub = subscriber;
    subscriber = null;
    if (sub) sub.quit().catch(() => sub.disconnect());
  };

  // ---- helpers -------------------------------------------------------------------------------
  const loadHashes = async <T>(keys: string[]): Promise<(T | null)[]> => {
    if (keys.length === 0) return [];
    const pipe = client.pipeline();
    for (const key of keys) pipe.hgetall(key);
    const res = (await pipe.exec()) ?? [];
    return res.map(([err, v]) => {
      if (err) throw err;
      return decode<T>(v as Hash);
    });
  };

  const page = <T>(items: T[], offset = 0, limit = 20): Page<T> => ({
    items: items.slice(offset, offset + limit),
    total: items.length,
  });

  const toReservation = (
    id: string,
    keyId: number,
    units: number,
    reply: unknown[],
  ): ReserveResult => {
    if (reply[0] !== 1) {
      const reason = reply[1] as ReserveDenial;
      return reason === "key_not_found"
        ? { ok: false, reason }
        : { ok: false, reason, inFlight: Number(reply[2] ?? 0) };
    }
    const uid = reply[1] as string;
    return {
      ok: true,
      reservation: {
        id,
        keyId,
        userId: uid === "" ? null : Number(uid),
        units,
        keyDebited: reply[2] === 1,
      },
    };
  };

  const commitArgs = (c: UsageCommit): ScriptArg[] => {
    const res = c.reservation;
    return [
      res ? 1 : 0,
      res ? res.id : "",
      res ? res.keyId : "",
      res && res.userId !== null ? res.userId : "",
      res ? res.units : 0,
      res?.keyDebited ? 1 : 0,
      c.actualUnits,
      ...recordArgs(c.record),
    ];
  };

  /** The {@link lua.RECORD_STRIDE} script values of one usage record. */
  const recordArgs = (r: NewUsageRecord): ScriptArg[] => {
    const { quota: _q, ...rest } = r;
    return [
      JSON.stringify(rest),
      r.timestamp,
      r.keyId === null ? "" : r.keyId,
      r.userId === null ? "" : r.userId,
      rollupKey(r),
      r.inputTokens,
      r.outputTokens,
      r.reasoningTokens,
      r.cachedTokens,
      r.totalTokens,
      r.success ? 1 : 0,
    ];
  };

  const commit = async (commits: UsageCommit[], nowSeconds: number): Promise<UsageRecord[]> => {
    if (commits.length === 0) return [];
    for (const c of commits) assertUnits(c.actualUnits, "actualUnits");
    const args: ScriptArg[] = [base, nowSeconds, detailsLimit, commits.length];
    for (const c of commits) args.push(...commitArgs(c));
    const out = (await run("tpCommit", [k.usageSeq, k.usage, k.rollups], args)) as number[];
    return commits.map((c, i) => ({
      ...structuredClone(c.record),
      id: Number(out[2 * i]),
      quota: Number(out[2 * i + 1]),
    }));
  };

  /** Parses a reservation row (`keyId|userId|units|keyDebited|metaJSON`). */
  const parseReservation = (id: string, value: string): ReservationRow => {
    const parts = value.split("|", 4);
    const meta = JSON.parse(value.slice(parts.join("|").length + 1)) as Required<ReservationMeta>;
    return {
      ...meta,
      id,
      keyId: Number(parts[0]),
      userId: parts[1] === "" ? null : Number(parts[1]),
      units: Number(parts[2]),
      keyDebited: parts[3] === "1",
    };
  };

  const recover = async (nowMs: number, limit: number): Promise<UsageRecord[]> => {
    if (limit <= 0) return [];
    const ids = await client.zrangebyscore(k.reservations, "-inf", nowMs, "LIMIT", 0, limit);
    if (ids.length === 0) return [];
    const values = await client.hmget(k.reservationRows, ...ids);
    const rows: ReservationRow[] = [];
    ids.forEach((id, i) => {
      const v = values[i];
      if (v != null) rows.push(parseReservation(id, v)); // settled meanwhile
    });
    if (rows.length === 0) return [];
    // The script re-checks each row under its atomicity: only the caller that still finds it
    // (expired, not renewed, not settled, not recovered by another instance) recovers it.
    const args: ScriptArg[] = [base, Math.floor(nowMs / 1000), nowMs, rows.length];
    const records = rows.map(recoveredRecord);
    rows.forEach((r, i) => {
      args.push(r.id, r.keyId, r.userId ?? "", r.units, r.keyDebited ? 1 : 0, "");
      args.push(...recordArgs(records[i]!));
    });
    const out = (await run("tpRecover", [k.reservations], args)) as number[];
    const done: UsageRecord[] = [];
    records.forEach((r, i) => {
      const id = Number(out[2 * i]);
      if (id > 0) done.push({ ...r, id });
    });
    return done;
  };

  const readUsage = async (members: string[]): Promise<UsageRecord[]> => {
    if (members.length === 0) return [];
    const pipe = client.pipeline();
    for (const m of members) pipe.hmget(k.usageRec(m), "r", "id", "quota");
    const res = (await pipe.exec()) ?? [];
    const out: UsageRecord[] = [];
    for (const [err, v] of res) {
      if (err) throw err;
      const [r, id, quota] = v as (string | null)[];
      if (r == null) continue; // pruned meanwhile
      out.push({ ...JSON.parse(r), id: Number(id), quota: Number(quota) });
    }
    return out;
  };

  const userDuplicate = (username: string) => new Error(`username "${username}" already exists`);

  return {
    name: "redis",
    capabilities: { multiProcess: true },

    keys: {
      async create(input) {
        const { id: _i, ...rest } = input as typeof input & { id?: number };
        const id = (await write(
          "tpKeyCreate",
          [k.keySeq, k.keyHash, k.keys],
          [input.keyHash, ...encode(rest)],
        )) as number;
        if (id === -1) throw new Error("a key with this hash already exists");
        emitLocal("keys", id, "upsert");
        return { ...structuredClone(rest), id } as ApiKeyRecord;
      },
      async get(id) {
        return decode<ApiKeyRecord>(await client.hgetall(k.key(id)));
      },
      async getByHash(hash) {
        const id = await client.hget(k.keyHash, hash);
        return id === null ? null : decode<ApiKeyRecord>(await client.hgetall(k.key(id)));
      },
      async list(q: KeyQuery = {}) {
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
          const items = (await loadHashes<ApiKeyRecord>(ids.map(k.key))).filter(
            (x): x is ApiKeyRecord => x !== null,
          );
          return { items, total };
        }
        const ids = await client.zrevrange(k.keys, 0, -1);
        const kw = q.keyword?.toLowerCase();
        const all = (await loadHashes<ApiKeyRecord>(ids.map(k.key))).filter(
          (x): x is ApiKeyRecord =>
            x !== null &&
            (q.userId === undefined || x.userId === q.userId) &&
            (!kw || x.name.toLowerCase().includes(kw)) &&
            (!q.hint || x.keyHint.includes(q.hint)),
        );
        return page(all, offset, limit);
      },
      async update(id, patch: ApiKeyPatch) {
        const {
          id: _i,
          keyHash: _h,
          ...rest
        } = patch as ApiKeyPatch & { id?: number; keyHash?: string };
        const reply = await write("tpRecordUpdate", [k.key(id)], ["keys", id, ...encode(rest)]);
        const rec = decode<ApiKeyRecord>(toHash(reply));
        if (rec) emitLocal("keys", id, "upsert");
        return rec;
      },
      async rekey(id, keyHash, keyCipher) {
        const reply = await write(
          "tpKeyRekey",
          [k.key(id), k.keyHash],
          [id, keyHash, JSON.stringify(keyCipher)],
        );
        if (reply === -1) throw new Error("a key with this hash already exists");
        const rec = decode<ApiKeyRecord>(toHash(reply));
        if (rec) emitLocal("keys", id, "upsert");
        return rec;
      },
      async delete(ids) {
        const unique = [...new Set(ids)];
        if (unique.length === 0) return 0;
        const deleted = (await write("tpKeyDelete", [k.keyHash, k.keys], unique)) as string[];
        for (const id of deleted) emitLocal("keys", id, "delete");
        return deleted.length;
      },
    },

    users: {
      async create(input) {
        const { id: _i, ...rest } = input as typeof input & { id?: number };
        const id = (await write(
          "tpUserCreate",
          [k.userSeq, k.username, k.userToken, k.users],
          [input.username, input.accessTokenHash ?? "", ...encode(rest)],
        )) as number;
        if (id === -1) throw userDuplicate(input.username);
        emitLocal("users", id, "upsert");
        return { ...structuredClone(rest), id } as UserRecord;
      },
      async get(id) {
        return decode<UserRecord>(await client.hgetall(k.user(id)));
      },
      async getByUsername(name) {
        const id = await client.hget(k.username, name);
        return id === null ? null : decode<UserRecord>(await client.hgetall(k.user(id)));
      },
      async getByAccessTokenHash(hash) {
        const id = await client.hget(k.userToken, hash);
        return id === null ? null : decode<UserRecord>(await client.hgetall(k.user(id)));
      },
      async list(q = {}) {
        const ids = await client.zrange(k.users, 0, -1);
        const kw = q.keyword?.toLowerCase();
        const all = (await loadHashes<UserRecord>(ids.map(k.user))).filter(
          (u): u is UserRecord =>
            u !== null &&
            (!kw ||
              u.username.toLowerCase().includes(kw) ||
              u.displayName.toLowerCase().includes(kw)),
        );
        return page(all, q.offset ?? 0, q.limit ?? 20);
      },
      async update(id, patch: UserPatch) {
        const { id: _i, ...rest } = patch as UserPatch & { id?: number };
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
        const rec = decode<UserRecord>(toHash(reply));
        if (rec) emitLocal("users", id, "upsert");
        return rec;
      },
      async delete(id) {
        const ok =
          (await write("tpUserDelete", [k.user(id), k.username, k.userToken, k.users], [id])) === 1;
        if (ok) emitLocal("users", id, "delete");
        return ok;
      },
    },

    credentials: {
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
        return (await loadHashes<CredentialRecord>(ids.map(k.cred))).filter(
          (c): c is CredentialRecord => c !== null,
        );
      },
      async update(id, patch: CredentialPatch) {
        const {
          id: _i,
          createdAt: _c,
          ...rest
        } = patch as CredentialPatch & { id?: string; createdAt?: number };
        const reply = await write(
          "tpRecordUpdate",
          [k.cred(id)],
          ["credentials", id, ...encode({ ...rest, updatedAt: Date.now() })],
        );
        const rec = decode<CredentialRecord>(toHash(reply));
        if (rec) emitLocal("credentials", id, "upsert");
        return rec;
      },
      async delete(id) {
        const ok = (await write("tpCredDelete", [k.cred(id), k.creds], [id])) === 1;
        if (ok) emitLocal("credentials", id, "delete");
        return ok;
      },
    },

    usage: {
      async list(q: UsageQuery = {}) {
        const offset = q.offset ?? 0;
        const limit = q.limit ?? 100;
        const index =
          q.keyId !== undefined
            ? k.usageByKey(q.keyId)
            : q.userId !== undefined
              ? k.usageByUser(q.userId)
              : k.usage;
        const min = q.from === undefined ? "-inf" : String(q.from);
        const max = q.to === undefined ? "+inf" : `(${q.to}`;
        if (q.keyId !== undefined && q.userId !== undefined) {
          const members = await client.zrevrangebyscore(index, max, min);
          const all = (await readUsage(members)).filter((r) => r.userId === q.userId);
          return page(all, offset, limit);
        }
        const res = await client
          .multi()
          .zcount(index, min, max)
          .zrevrangebyscore(index, max, min, "LIMIT", offset, limit)
          .exec();
        const total = Number(res?.[0]?.[1] ?? 0);
        const items = await readUsage((res?.[1]?.[1] as string[]) ?? []);
        return { items, total };
      },
      async rollups(q = {}) {
        const min =
          q.fromHour === undefined ? "-" : `[${JSON.stringify([q.fromHour]).slice(0, -1)}`;
        const max = q.toHour === undefined ? "+" : `(${JSON.stringify([q.toHour]).slice(0, -1)}`;
        const ids = await client.zrangebylex(k.rollups, min, max);
        const rows: UsageRollup[] = [];
        const hashes = ids.length
          ? ((await ids.reduce((p, id) => p.hgetall(k.rollup(id)), client.pipeline()).exec()) ?? [])
          : [];
        ids.forEach((id, i) => {
          const [hour, route, model, keyId] = JSON.parse(id) as [
            string,
            string,
            string,
            number | null,
          ];
          if (q.keyId !== undefined && keyId !== q.keyId) return;
          const h = (hashes[i]?.[1] ?? {}) as Hash;
          const row = { hour, route, model, keyId } as UsageRollup;
          for (const f of rollupFields) row[f] = Number(h[f] ?? 0);
          rows.push(row);
        });
        return rows.sort((a, b) => (a.hour < b.hour ? -1 : a.hour > b.hour ? 1 : 0));
      },
      async prune(before) {
        let total = 0;
        for (;;) {
          const n = (await run("tpPrune", [k.usage], [base, before, PRUNE_BATCH])) as number;
          total += n;
          if (n < PRUNE_BATCH) return total;
        }
      },
    },

    settings: {
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
        if (ok) emitLocal("settings", name, "delete");
        return ok;
      },
    },

    kv: {
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
    },

    async reserveQuota(keyId, units, meta) {
      assertUnits(units);
      const id = randomUUID();
      const row = reservationRow(
        { id, keyId, userId: null, units, keyDebited: false },
        meta,
        Date.now(),
      );
      // What the row keeps besides the debit (the script adds keyId, userId, units, keyDebited).
      const rest = JSON.stringify({
        owner: row.owner,
        requestId: row.requestId,
        route: row.route,
        model: row.model,
        timestamp: row.timestamp,
      });
      const reply = (await run(
        "tpReserve",
        [k.key(keyId), k.reservations, k.reservationRows, k.inFlight],
        [base, units, id, row.expiresAt, rest, keyId],
      )) as unknown[];
      return toReservation(id, keyId, units, reply);
    },

    async renewReservations(ids, expiresAt) {
      if (ids.length === 0) return 0;
      const args: (string | number)[] = [];
      for (const id of ids) args.push(expiresAt, id);
      // XX: only rows that still exist; CH: count the ones whose expiry moved.
      return Number(await client.zadd(k.reservations, "XX", "CH", ...args));
    },

    recoverReservations: recover,

    async settleQuota(res: Reservation, actualUnits, nowSeconds) {
      assertUnits(actualUnits, "actualUnits");
      const charged = await run(
        "tpSettle",
        [k.key(res.keyId)],
        [
          base,
          res.keyId,
          res.userId ?? "",
          res.units,
          res.keyDebited ? 1 : 0,
          actualUnits,
          nowSeconds,
          res.id,
        ],
      );
      return { charged: Number(charged) };
    },

    commitUsage: commit,

    async acquireLock(name, ttlMs) {
      const token = randomUUID();
      const ok = await client.set(k.lock(name), token, "PX", Math.max(1, Math.ceil(ttlMs)), "NX");
      return ok === "OK" ? token : null;
    },

    async releaseLock(name, token) {
      return (await run("tpLockRelease", [k.lock(name)], [token])) === 1;
    },

    watch(listener) {
      listeners.add(listener);
      if (!subscriber && !closed) startSubscriber();
      let active = true;
      return () => {
        if (!active) return;
        active = false;
        listeners.delete(listener);
        if (listeners.size === 0) stopSubscriber();
      };
    },

    async close() {
      if (closed) return;
      closed = true;
      listeners.clear();
      stopSubscriber();
      if (owned) await client.quit().catch(() => client.disconnect());
    },
  };
}
