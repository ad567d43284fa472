import { randomUUID } from "node:crypto";
import type {
  ApiKeyPatch,
  ApiKeyRecord,
  CredentialPatch,
  CredentialRecord,
  KeyQuery,
  NewApiKey,
  NewCredential,
  NewUsageRecord,
  NewUser,
  Page,
  Reservation,
  ReservationMeta,
  ReserveResult,
  Settlement,
  Store,
  StoreChange,
  UsageQuery,
  UsageRecord,
  UsageRollup,
  UserPatch,
  UserRecord,
} from "./types.js";
import {
  addToRollup,
  assertUnits,
  emptyRollup,
  materializeCredential,
  type ReservationRow,
  recoveredRecord,
  reservationRow,
  rollupKey,
} from "./util.js";

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /** Clock used for TTLs and lock expiry (ms). @default Date.now */
  now?: () => number;
}

const clone = <T>(v: T): T => structuredClone(v);

function paginate<T>(items: T[], offset = 0, limit = 20): Page<T> {
  return { items: items.slice(offset, offset + limit).map(clone), total: items.length };
}

/**
 * The in-memory reference store: everything lives in this process and is lost on exit.
 * Every step runs synchronously inside one call, so the atomic steps are atomic by construction.
 * Use it for tests and for embedding where persistence is not wanted.
 *
 * @example
 * ```ts
 * const gateway = createGateway({ store: memoryStore(), secret: process.env.TOKENPOOL_SECRET });
 * ```
 */
export function memoryStore(options: MemoryStoreOptions = {}): Store {
  const now = options.now ?? Date.now;
  const keys = new Map<number, ApiKeyRecord>();
  const keyByHash = new Map<string, number>();
  const users = new Map<number, UserRecord>();
  const credentials = new Map<string, CredentialRecord>();
  const usage: UsageRecord[] = [];
  const rollups = new Map<string, UsageRollup>();
  const settings = new Map<string, unknown>();
  const kv = new Map<string, { value: string; expiresAt: number | null }>();
  const locks = new Map<string, { token: string; expiresAt: number }>();
  const listeners = new Set<(c: StoreChange) => void>();
  const reservations = new Map<string, ReservationRow>();
  let nextKeyId = 1;
  let nextUserId = 1;
  let nextUsageId = 1;

  const emit = (
    collection: StoreChange["collection"],
    id: string | number | undefined,
    op: StoreChange["op"],
  ) => {
    const change: StoreChange = {
      collection,
      op,
      origin: "local",
      ...(id === undefined ? {} : { id: String(id) }),
    };
    // Deliver after the caller's await resumes, like an adapter that commits first.
    queueMicrotask(() => {
      for (const l of listeners) l(change);
    });
  };

  const kvLive = (key: string) => {
    const e = kv.get(key);
    if (!e) return null;
    if (e.expiresAt !== null && e.expiresAt <= now()) {
      kv.delete(key);
      return null;
    }
    return e;
  };

  const settle = (res: Reservation, actualUnits: number, nowSeconds: number): Settlement => {
    assertUnits(actualUnits, "actualUnits");
    // Already recovered (charged in full then): nothing more to charge or give back.
    if (!reservations.delete(res.id)) return { charged: 0 };
    const key = keys.get(res.keyId);
    const user = res.userId === null ? undefined : users.get(res.userId);
    let charged = actualUnits;
    if (actualUnits > res.units) {
      let room = actualUnits - res.units;
      if (key && res.keyDebited) room = Math.min(room, key.remainQuota);
      if (user) room = Math.min(room, user.quota);
      charged = res.units + Math.max(0, room);
    }
    const delta = res.units - charged; // > 0: give back; < 0: take more
    if (key) {
      if (res.keyDebited) key.remainQuota += delta;
      key.usedQuota += charged;
      key.accessedTime = nowSeconds;
    }
    if (user) {
      user.quota += delta;
      user.usedQuota += charged;
    }
    return { charged };
  };

  /** Units held by the unsettled reservations that match. */
  const inFlight = (match: (r: ReservationRow) => boolean): number => {
    let sum = 0;
    for (const r of reservations.values()) if (match(r)) sum += r.units;
    return sum;
  };

  const append = (r: NewUsageRecord): UsageRecord => {
    const rec: UsageRecord = { ...clone(r), id: nextUsageId++ };
    usage.push(rec);
    const k = rollupKey(r);
    const row = rollups.get(k) ?? emptyRollup(r);
    rollups.set(k, row);
    addToRollup(row, r);
    return clone(rec);
  };

  return {
    name: "memory",
    capabilities: { multiProcess: false },
    keys: {
      async create(input: NewApiKey) {
        if (keyByHash.has(input.keyHash)) throw new Error("a key with this hash already exists");
        const rec: ApiKeyRecord = { ...clone(input), id: nextKeyId++ };
        keys.set(rec.id, rec);
        keyByHash.set(rec.keyHash, rec.id);
        emit("keys", rec.id, "upsert");
        return clone(rec);
      },
      async get(id) {
        const r = keys.get(id);
        return r ? clone(r) : null;
      },
      async getByHash(hash) {
        const id = keyByHash.get(hash);
        const r = id === undefined ? undefined : keys.get(id);
        return r ? clone(r) : null;
      },
      async list(q: KeyQuery = {}) {
        const kw = q.keyword?.toLowerCase();
        const items = [...keys.values()]
          .filter(
            (k) =>
              (q.userId === undefined || k.userId === q.userId) &&
              (!kw || k.name.toLowerCase().includes(kw)) &&
              (!q.hint || k.keyHint.includes(q.hint)),
          )
          .sort((a, b) => b.id - a.id);
        return paginate(items, q.offset, q.limit ?? 20);
      },
      async update(id, patch: ApiKeyPatch) {
        const r = keys.get(id);
        if (!r) return null;
        const {
          id: _i,
          keyHash: _h,
          ...rest
        } = patch as ApiKeyPatch & { id?: number; keyHash?: string };
        Object.assign(r, clone(rest));
        emit("keys", id, "upsert");
        return clone(r);
      },
      async rekey(id, keyHash, keyCipher) {
        const r = keys.get(id);
        if (!r) return null;
        const holder = keyByHash.get(keyHash);
        if (holder !== undefined && holder !== id)
          throw new Error("a key with this hash already exists");
        keyByHash.delete(r.keyHash);
        keyByHash.set(keyHash, id);
        r.keyHash = keyHash;
        r.keyCipher = keyCipher;
        emit("keys", id, "upsert");
        return clone(r);
      },
      async delete(ids) {
        let n = 0;
        for (const id of new Set(ids)) {
          const r = keys.get(id);
          if (!r) continue;
          keys.delete(id);
          keyByHash.delete(r.keyHash);
          n++;
          emit("keys", id, "delete");
        }
        return n;
      },
    },
    users: {
      async create(input: NewUser) {
        for (const u of users.values()) {
          if (u.username === input.username)
            throw new Error(`username "${input.username}" already exists`);
        }
        const rec: UserRecord = { ...clone(input), id: nextUserId++ };
        users.set(rec.id, rec);
        emit("users", rec.id, "upsert");
        return clone(rec);
      },
      async get(id) {
        const r = users.get(id);
        return r ? clone(r) : null;
      },
      async getByUsername(name) {
        for (const u of users.values()) if (u.username === name) return clone(u);
        return null;
      },
      async getByAccessTokenHash(hash) {
        for (const u of users.values()) if (u.accessTokenHash === hash) return clone(u);
        return null;
      },
      async list(q = {}) {
        const kw = q.keyword?.toLowerCase();
        const items = [...users.values()]
          .filter(
            (u) =>
              !kw ||
              u.username.toLowerCase().includes(kw) ||
              u.displayName.toLowerCase().includes(kw),
          )
          .sort((a, b) => a.id - b.id);
        return paginate(items, q.offset, q.limit ?? 20);
      },
      async update(id, patch: UserPatch) {
        const r = users.get(id);
        if (!r) return null;
        if (patch.username !== undefined && patch.username !== r.username) {
          for (const u of users.values()) {
            if (u.username === patch.username)
              throw new Error(`username "${patch.username}" already exists`);
          }
        }
        const { id: _i, ...rest } = patch as UserPatch & { id?: number };
        Object.assign(r, clone(rest));
        emit("users", id, "upsert");
        return clone(r);
      },
      async delete(id) {
        const ok = users.delete(id);
        if (ok) emit("users", id, "delete");
        return ok;
      },
    },
    credentials: {
      async create(input: NewCredential) {
        const rec = materializeCredential(input, now());
        if (credentials.has(rec.id)) throw new Error(`credential "${rec.id}" already exists`);
        credentials.set(rec.id, rec);
        emit("credentials", rec.id, "upsert");
        return clone(rec);
      },
      async get(id) {
        const r = credentials.get(id);
        return r ? clone(r) : null;
      },
      async list() {
        return [...credentials.values()].map(clone);
      },
      async update(id, patch: CredentialPatch) {
        const r = credentials.get(id);
        if (!r) return null;
        const {
          id: _i,
          createdAt: _c,
          ...rest
        } = patch as CredentialPatch & { id?: string; createdAt?: number };
        Object.assign(r, clone(rest), { updatedAt: now() });
        emit("credentials", id, "upsert");
        return clone(r);
      },
      async delete(id) {
        const ok = credentials.delete(id);
        if (ok) emit("credentials", id, "delete");
        return ok;
      },
    },
    usage: {
      async list(q: UsageQuery = {}) {
        const items: UsageRecord[] = [];
        for (let i = usage.length - 1; i >= 0; i--) {
          const r = usage[i]!;
          if (q.from !== undefined && r.timestamp < q.from) continue;
          if (q.to !== undefined && r.timestamp >= q.to) continue;
          if (q.keyId !== undefined && r.keyId !== q.keyId) continue;
          if (q.userId !== undefined && r.userId !== q.userId) continue;
          items.push(r);
        }
        items.sort((a, b) => b.timestamp - a.timestamp || b.id - a.id);
        return paginate(items, q.offset, q.limit ?? 100);
      },
      async rollups(q = {}) {
        return [...rollups.values()]
          .filter(
            (r) =>
              (q.fromHour === undefined || r.hour >= q.fromHour) &&
              (q.toHour === undefined || r.hour < q.toHour) &&
              (q.keyId === undefined || r.keyId === q.keyId),
          )
          .sort((a, b) => (a.hour < b.hour ? -1 : a.hour > b.hour ? 1 : 0))
          .map(clone);
      },
      async prune(before) {
        const keep = usage.filter((r) => r.timestamp >= before);
        const n = usage.length - keep.length;
        usage.length = 0;
        usage.push(...keep);
        return n;
      },
    },
    settings: {
      async all() {
        return Object.fromEntries([...settings].map(([k, v]) => [k, clone(v)]));
      },
      async get(name) {
        return clone(settings.get(name));
      },
      async set(values) {
        for (const [k, v] of Object.entries(values)) settings.set(k, clone(v));
        for (const k of Object.keys(values)) emit("settings", k, "upsert");
      },
      async delete(name) {
        const ok = settings.delete(name);
        if (ok) emit("settings", name, "delete");
        return ok;
      },
    },
    kv: {
      async get(key) {
        return kvLive(key)?.value ?? null;
      },
      async set(key, value, ttlMs) {
        kv.set(key, { value, expiresAt: ttlMs === undefined ? null : now() + ttlMs });
      },
      async delete(key) {
        const live = kvLive(key) !== null;
        kv.delete(key);
        return live;
      },
      async incr(key, by, ttlMs) {
        const e = kvLive(key);
        if (!e) {
          kv.set(key, { value: String(by), expiresAt: ttlMs === undefined ? null : now() + ttlMs });
          return by;
        }
        const n = Number(e.value) + by;
        e.value = String(n);
        return n;
      },
    },

    async reserveQuota(keyId, units, meta?: ReservationMeta): Promise<ReserveResult> {
      assertUnits(units);
      const key = keys.get(keyId);
      if (!key) return { ok: false, reason: "key_not_found" };
      const debitKey = !key.unlimitedQuota;
      if (debitKey && key.remainQuota < units)
        return { ok: false, reason: "key_quota", inFlight: inFlight((r) => r.keyId === keyId) };
      const user = key.userId === null ? undefined : users.get(key.userId);
      if (user && user.quota < units)
        return { ok: false, reason: "user_quota", inFlight: inFlight((r) => r.userId === user.id) };
      if (debitKey) key.remainQuota -= units;
      if (user) user.quota -= units;
      const reservation: Reservation = {
        id: randomUUID(),
        keyId,
        userId: user ? user.id : null,
        units,
        keyDebited: debitKey,
      };
      reservations.set(reservation.id, reservationRow(reservation, meta, now()));
      return { ok: true, reservation };
    },

    async renewReservations(ids, expiresAt) {
      let n = 0;
      for (const id of ids) {
        const row = reservations.get(id);
        if (!row) continue;
        row.expiresAt = expiresAt;
        n++;
      }
      return n;
    },

    async recoverReservations(nowMs, limit) {
      const due = [...reservations.values()]
        .filter((r) => r.expiresAt <= nowMs)
        .sort((a, b) => a.expiresAt - b.expiresAt)
        .slice(0, limit);
      return due.map((row) => {
        settle(row, row.units, Math.floor(nowMs / 1000));
        return append(recoveredRecord(row));
      });
    },

    async settleQuota(res, actualUnits, nowSeconds): Promise<Settlement> {
      return settle(res, actualUnits, nowSeconds);
    },

    async recordUsage(records: NewUsageRecord[]) {
      return records.map(append);
    },

    async commitUsage(commits, nowSeconds) {
      return commits.map((c) => {
        const quota = c.reservation
          ? settle(c.reservation, c.actualUnits, nowSeconds).charged
          : c.actualUnits;
        return append({ ...c.record, quota });
      });
    },

    async acquireLock(name, ttlMs) {
      const held = locks.get(name);
      if (held && held.expiresAt > now()) return null;
      const token = randomUUID();
      locks.set(name, { token, expiresAt: now() + ttlMs });
      return token;
    },

    async releaseLock(name, token) {
      const held = locks.get(name);
      if (!held || held.token !== token) return false;
      locks.delete(name);
      return held.expiresAt > now();
    },

    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async close() {
      listeners.clear();
    },
  };
}
