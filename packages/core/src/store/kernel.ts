import { randomUUID } from "node:crypto";
import {
  assertLeaseAsk,
  assertWindowAdjust,
  assertWindowHit,
  bucketLeavesAt,
  judgeWindows,
  windowId,
  windowSpan,
} from "./limits.js";
import { settleAmounts } from "./settlement.js";
import type {
  ApiKeyRecord,
  CredentialCollection,
  CredentialRecord,
  KeyCollection,
  KvCollection,
  NewUsageRecord,
  Page,
  Reservation,
  SettingsCollection,
  Settlement,
  Store,
  StoreChange,
  UsageCollection,
  UsageRecord,
  UsageRollup,
  UsageStat,
  UserCollection,
  UserRecord,
} from "./types.js";
import {
  addToRollup,
  addToStat,
  assertRefill,
  assertUnits,
  changeable,
  emptyRollup,
  inPeriod,
  materializeCredential,
  type ReservationRow,
  recoveredRecord,
  reservationRow,
  rollupKey,
  usageMatches,
} from "./util.js";

/** The synchronous twin of an interface whose methods return promises. */
export type Sync<T> = {
  [K in keyof T]: T[K] extends (...args: infer A) => Promise<infer R> ? (...args: A) => R : never;
};

/** The parts of the state a persistent store writes separately (one file, one table ...). */
export type TableGroup = "keys" | "users" | "settings" | "credentials" | "usage" | "kv";

/** A kv entry: its value and when it expires (ms, `null` = never). */
export interface KvEntry {
  value: string;
  expiresAt: number | null;
}

/**
 * The tables of a {@link TableKernel}, for a store that persists them (it may read and replace
 * their content directly, e.g. when files change on disk).
 */
export interface KernelTables {
  keys: Map<number, ApiKeyRecord>;
  /** Index of `keys` by key hash. */
  keyByHash: Map<string, number>;
  users: Map<number, UserRecord>;
  credentials: Map<string, CredentialRecord>;
  settings: Map<string, unknown>;
  /** Usage details in insertion (id) order. */
  usage: Map<number, UsageRecord>;
  /** Roll-up rows by {@link rollupKey}. */
  rollups: Map<string, UsageRollup>;
  kv: Map<string, KvEntry>;
  locks: Map<string, { token: string; expiresAt: number }>;
  /** Unsettled reservations by id. */
  reservations: Map<string, ReservationRow>;
  /**
   * Rolling-window counters of `hitWindows` by `windowMs:key`: their window and their buckets
   * (index → units). Kept in memory only, also by the file store (one process owns its data).
   */
  windows: Map<string, { windowMs: number; buckets: Map<number, number> }>;
  /** Concurrency pools of `acquireLeases`: lease id → expiry (ms). In memory only, as `windows`. */
  leases: Map<string, Map<string, number>>;
  /** The next ids to hand out. */
  next: { key: number; user: number; usage: number };
}

/** Options of {@link tableKernel}. */
export interface TableKernelOptions {
  /** Clock used for TTLs, lock expiry and timestamps (ms). @default Date.now */
  now?: () => number;
  /** Usage details kept (the oldest are dropped beyond it; roll-ups keep the totals). @default Infinity */
  maxUsageRecords?: number;
  /** Called synchronously for every change a call makes (origin `local`). */
  onChange?: (change: StoreChange) => void;
}

/** The atomic steps of the Store contract, as the kernel runs them. */
export type KernelSteps = Sync<
  Pick<
    Store,
    | "reserveQuota"
    | "renewReservations"
    | "recoverReservations"
    | "settleQuota"
    | "commitUsage"
    | "refillQuota"
    | "acquireLock"
    | "releaseLock"
    | "hitWindows"
    | "adjustWindow"
    | "acquireLeases"
    | "renewLeases"
    | "releaseLeases"
  >
> & {
  /** {@link Store.reservationUnits}: the kernel shares reservations (`quotaShares`). */
  reservationUnits(id: string): number | null;
};

/**
 * The in-memory tables of a store and every operation of the Store contract on them, run
 * synchronously (so each one is atomic inside one process). The memory store is this kernel;
 * the file store is this kernel plus persistence and a watcher.
 */
export interface TableKernel extends KernelSteps {
  /** The tables themselves. */
  readonly tables: KernelTables;
  readonly keys: Sync<KeyCollection>;
  readonly users: Sync<UserCollection>;
  readonly credentials: Sync<CredentialCollection>;
  readonly usage: Sync<UsageCollection>;
  readonly settings: Sync<SettingsCollection>;
  readonly kv: Sync<KvCollection>;
  /** The groups the calls since the last `takeTouched()` changed (and forgets them). */
  takeTouched(): TableGroup[];
}

const clone = <T>(v: T): T => structuredClone(v);

function paginate<T>(items: T[], offset = 0, limit = 20): Page<T> {
  return { items: items.slice(offset, offset + limit).map(clone), total: items.length };
}

/**
 * Creates an in-memory table kernel (see {@link TableKernel}).
 *
 * @example
 * ```ts
 * const kernel = tableKernel({ onChange: (c) => console.log(c) });
 * const store = { ...liftKernel(kernel, async (run) => run()), name: "mine" };
 * ```
 */
export function tableKernel(options: TableKernelOptions = {}): TableKernel {
  const now = options.now ?? Date.now;
  const maxUsage = options.maxUsageRecords ?? Number.POSITIVE_INFINITY;
  const onChange = options.onChange ?? (() => {});
  const t: KernelTables = {
    keys: new Map(),
    keyByHash: new Map(),
    users: new Map(),
    credentials: new Map(),
    settings: new Map(),
    usage: new Map(),
    rollups: new Map(),
    kv: new Map(),
    locks: new Map(),
    reservations: new Map(),
    windows: new Map(),
    leases: new Map(),
    next: { key: 1, user: 1, usage: 1 },
  };
  const { keys, keyByHash, users, credentials, settings, usage, rollups, kv, locks } = t;
  const { reservations, windows, leases } = t;
  const touched = new Set<TableGroup>();

  const touch = (...groups: TableGroup[]) => {
    for (const g of groups) touched.add(g);
  };
  const changed = (
    collection: StoreChange["collection"],
    id: string | number,
    op: StoreChange["op"],
  ) => onChange({ collection, id: String(id), op, origin: "local" });
  /** A record written: its table is to be persisted, and listeners hear of the change. */
  const wrote = (
    collection: StoreChange["collection"],
    id: string | number,
    op: StoreChange["op"],
  ) => {
    touch(collection);
    changed(collection, id, op);
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
    touch("keys", "users");
    // Already recovered (charged in full then): nothing more to charge or give back.
    if (!reservations.delete(res.id)) return { charged: 0 };
    return charge(res, res.units, actualUnits, nowSeconds);
  };

  /** Settles `share` units of a shared reservation (`UsageCommit.share`); the row keeps the rest. */
  const settlePart = (
    res: Reservation,
    share: number,
    actualUnits: number,
    nowSeconds: number,
  ): Settlement => {
    const row = reservations.get(res.id);
    // Already recovered (charged in full, what was left of it): nothing more.
    if (!row) return { charged: 0 };
    if (share >= row.units) return settle({ ...res, units: row.units }, actualUnits, nowSeconds);
    assertUnits(actualUnits, "actualUnits");
    touch("keys", "users");
    row.units -= share;
    return charge(res, share, actualUnits, nowSeconds);
  };

  /** Charges `units` of reservation `res` (its row removed or shrunk already) to `actualUnits`. */
  const charge = (
    res: Reservation,
    units: number,
    actualUnits: number,
    nowSeconds: number,
  ): Settlement => {
    const key = keys.get(res.keyId);
    const user = res.userId === null ? undefined : users.get(res.userId);
    // A balance refilled since the debit belongs to a later period: it is neither settled nor a cap.
    const keyOpen = key !== undefined && inPeriod(key, res.keyPeriod);
    const userOpen = user !== undefined && inPeriod(user, res.userPeriod);
    const { charged, delta } = settleAmounts(
      units,
      actualUnits,
      keyOpen && res.keyDebited ? key.remainQuota : undefined,
      userOpen ? user.quota : undefined,
    );
    if (key) {
      if (keyOpen) {
        if (res.keyDebited) key.remainQuota += delta;
        key.usedQuota += charged;
      }
      key.accessedTime = nowSeconds;
    }
    if (userOpen) {
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
    const rec: UsageRecord = { ...clone(r), id: t.next.usage++ };
    usage.set(rec.id, rec);
    const k = rollupKey(r);
    const row = rollups.get(k) ?? emptyRollup(r);
    rollups.set(k, row);
    addToRollup(row, r);
    // Details are bounded: the oldest go first (roll-ups keep the totals).
    while (usage.size > maxUsage) usage.delete(usage.keys().next().value!);
    touch("usage");
    return clone(rec);
  };

  const assertFreeUsername = (username: string) => {
    for (const u of users.values())
      if (u.username === username) throw new Error(`username "${username}" already exists`);
  };

  /** A copy of the record `id` of `table`, or null. */
  const copyOf = <K, V>(table: Map<K, V>, id: K): V | null => {
    const r = table.get(id);
    return r ? clone(r) : null;
  };

  /** Changes the record `id` in place, announces it and returns a copy; null for an unknown id. */
  const changeRecord = <K extends string | number, V>(
    collection: StoreChange["collection"],
    table: Map<K, V>,
    id: K,
    change: (r: V) => void,
  ): V | null => {
    const r = table.get(id);
    if (!r) return null;
    change(r);
    wrote(collection, id, "upsert");
    return clone(r);
  };

  /** Deletes the record `id` and announces it; whether there was one. */
  const deleteRecord = <K extends string | number>(
    collection: StoreChange["collection"],
    table: Map<K, unknown>,
    id: K,
  ): boolean => {
    if (!table.delete(id)) return false;
    wrote(collection, id, "delete");
    return true;
  };

  /** A counter's buckets still inside its window at `nowMs` (older ones are dropped). */
  const liveBuckets = (key: string, windowMs: number, nowMs: number) => {
    const id = windowId(key, windowMs);
    const w = windows.get(id);
    if (!w) return undefined;
    const { oldest } = windowSpan(windowMs, nowMs);
    for (const index of w.buckets.keys()) if (index < oldest) w.buckets.delete(index);
    if (w.buckets.size === 0) {
      windows.delete(id);
      return undefined;
    }
    return w.buckets;
  };

  /** A pool's live leases at `nowMs` (expired ones are dropped). */
  const livePool = (pool: string, nowMs: number) => {
    const held = leases.get(pool);
    if (!held) return undefined;
    for (const [id, expiresAt] of held) if (expiresAt <= nowMs) held.delete(id);
    if (held.size === 0) {
      leases.delete(pool);
      return undefined;
    }
    return held;
  };

  // Counters and pools nobody asks about again are dropped by an occasional sweep, so memory
  // stays bounded by the live ones.
  let callsSinceSweep = 0;
  const maybeSweep = (nowMs: number) => {
    if (++callsSinceSweep < 1_000) return;
    callsSinceSweep = 0;
    for (const [key, w] of [...windows]) {
      let newest = Number.NEGATIVE_INFINITY;
      for (const index of w.buckets.keys()) newest = Math.max(newest, index);
      const { bucketMs } = windowSpan(w.windowMs, nowMs);
      if (bucketLeavesAt(newest, bucketMs, w.windowMs) <= nowMs) windows.delete(key);
    }
    for (const pool of [...leases.keys()]) livePool(pool, nowMs);
  };

  return {
    tables: t,
    takeTouched() {
      const out = [...touched];
      touched.clear();
      return out;
    },
    keys: {
      create(input) {
        if (keyByHash.has(input.keyHash)) throw new Error("a key with this hash already exists");
        const rec: ApiKeyRecord = { ...clone(input), id: t.next.key++ };
        keys.set(rec.id, rec);
        keyByHash.set(rec.keyHash, rec.id);
        wrote("keys", rec.id, "upsert");
        return clone(rec);
      },
      get(id) {
        return copyOf(keys, id);
      },
      getByHash(hash) {
        const id = keyByHash.get(hash);
        const r = id === undefined ? undefined : keys.get(id);
        return r ? clone(r) : null;
      },
      list(q = {}) {
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
      update(id, patch) {
        const rest = changeable(patch, "id", "keyHash");
        return changeRecord("keys", keys, id, (r) => Object.assign(r, clone(rest)));
      },
      rekey(id, keyHash, keyCipher) {
        const r = keys.get(id);
        if (!r) return null;
        const holder = keyByHash.get(keyHash);
        if (holder !== undefined && holder !== id)
          throw new Error("a key with this hash already exists");
        keyByHash.delete(r.keyHash);
        keyByHash.set(keyHash, id);
        r.keyHash = keyHash;
        r.keyCipher = keyCipher;
        wrote("keys", id, "upsert");
        return clone(r);
      },
      delete(ids) {
        let n = 0;
        for (const id of new Set(ids)) {
          const r = keys.get(id);
          if (!r) continue;
          keys.delete(id);
          keyByHash.delete(r.keyHash);
          n++;
          wrote("keys", id, "delete");
        }
        return n;
      },
    },
    users: {
      create(input) {
        assertFreeUsername(input.username);
        const rec: UserRecord = { ...clone(input), id: t.next.user++ };
        users.set(rec.id, rec);
        wrote("users", rec.id, "upsert");
        return clone(rec);
      },
      get(id) {
        return copyOf(users, id);
      },
      getByUsername(name) {
        for (const u of users.values()) if (u.username === name) return clone(u);
        return null;
      },
      getByAccessTokenHash(hash) {
        for (const u of users.values()) if (u.accessTokenHash === hash) return clone(u);
        return null;
      },
      list(q = {}) {
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
      update(id, patch) {
        const rest = changeable(patch, "id");
        return changeRecord("users", users, id, (r) => {
          if (patch.username !== undefined && patch.username !== r.username)
            assertFreeUsername(patch.username);
          Object.assign(r, clone(rest));
        });
      },
      delete(id) {
        return deleteRecord("users", users, id);
      },
    },
    credentials: {
      create(input) {
        const rec = materializeCredential(input, now());
        if (credentials.has(rec.id)) throw new Error(`credential "${rec.id}" already exists`);
        credentials.set(rec.id, rec);
        wrote("credentials", rec.id, "upsert");
        return clone(rec);
      },
      get(id) {
        return copyOf(credentials, id);
      },
      list() {
        return [...credentials.values()].map(clone);
      },
      update(id, patch) {
        const rest = changeable(patch, "id", "createdAt");
        return changeRecord("credentials", credentials, id, (r) =>
          Object.assign(r, clone(rest), { updatedAt: now() }),
        );
      },
      delete(id) {
        return deleteRecord("credentials", credentials, id);
      },
    },
    usage: {
      list(q = {}) {
        const items: UsageRecord[] = [];
        for (const r of usage.values()) if (usageMatches(r, q)) items.push(r);
        items.sort((a, b) => b.timestamp - a.timestamp || b.id - a.id);
        return paginate(items, q.offset, q.limit ?? 100);
      },
      stat(q = {}) {
        const stat: UsageStat = { requests: 0, quota: 0, totalTokens: 0 };
        for (const r of usage.values()) if (usageMatches(r, q)) addToStat(stat, r);
        return stat;
      },
      rollups(q = {}) {
        return [...rollups.values()]
          .filter(
            (r) =>
              (q.fromHour === undefined || r.hour >= q.fromHour) &&
              (q.toHour === undefined || r.hour < q.toHour) &&
              (q.keyId === undefined || r.keyId === q.keyId) &&
              (q.userId === undefined || r.userId === q.userId) &&
              (q.credentialId === undefined || r.credentialId === q.credentialId),
          )
          .sort((a, b) => (a.hour < b.hour ? -1 : a.hour > b.hour ? 1 : 0))
          .map(clone);
      },
      prune(before, keep) {
        let n = 0;
        for (const [id, r] of usage) {
          if (r.timestamp < before) {
            usage.delete(id);
            n++;
          }
        }
        if (keep !== undefined && usage.size > keep) {
          // The newest `keep` by (timestamp, id) stay.
          const order = [...usage.values()].sort(
            (a, b) => a.timestamp - b.timestamp || a.id - b.id,
          );
          for (const r of order.slice(0, order.length - Math.max(0, keep))) {
            usage.delete(r.id);
            n++;
          }
        }
        if (n > 0) touch("usage");
        return n;
      },
    },
    settings: {
      all() {
        return Object.fromEntries([...settings].map(([k, v]) => [k, clone(v)]));
      },
      get(name) {
        return clone(settings.get(name));
      },
      set(values) {
        for (const [k, v] of Object.entries(values)) settings.set(k, clone(v));
        touch("settings");
        for (const k of Object.keys(values)) changed("settings", k, "upsert");
      },
      delete(name) {
        if (!settings.delete(name)) return false;
        wrote("settings", name, "delete");
        return true;
      },
    },
    kv: {
      get(key) {
        return kvLive(key)?.value ?? null;
      },
      set(key, value, ttlMs) {
        kv.set(key, { value, expiresAt: ttlMs === undefined ? null : now() + ttlMs });
        touch("kv");
      },
      delete(key) {
        const live = kvLive(key) !== null;
        if (kv.delete(key)) touch("kv");
        return live;
      },
      incr(key, by, ttlMs) {
        touch("kv");
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

    reserveQuota(keyId, units, meta) {
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
        keyPeriod: key.quotaPeriod ?? 0,
        userPeriod: user?.quotaPeriod ?? 0,
      };
      reservations.set(reservation.id, reservationRow(reservation, meta, now()));
      // Reservation rows are kept with the keys.
      touch(...(user ? (["keys", "users"] as const) : (["keys"] as const)));
      return { ok: true, reservation };
    },

    renewReservations(ids, expiresAt) {
      let n = 0;
      for (const id of ids) {
        const row = reservations.get(id);
        if (!row) continue;
        row.expiresAt = expiresAt;
        n++;
      }
      if (n > 0) touch("keys");
      return n;
    },

    recoverReservations(nowMs, limit) {
      const due = [...reservations.values()]
        .filter((r) => r.expiresAt <= nowMs)
        .sort((a, b) => a.expiresAt - b.expiresAt)
        .slice(0, limit);
      return due.map((row) => {
        settle(row, row.units, Math.floor(nowMs / 1000));
        return append(recoveredRecord(row));
      });
    },

    settleQuota: settle,

    refillQuota(target, id, period, amount) {
      assertRefill(target, period, amount);
      const rec = target === "key" ? keys.get(id) : users.get(id);
      if (!rec || (rec.quotaPeriod ?? 0) >= period) return false;
      if (target === "key") (rec as ApiKeyRecord).remainQuota = amount;
      else (rec as UserRecord).quota = amount;
      rec.usedQuota = 0;
      rec.quotaPeriod = period;
      wrote(target === "key" ? "keys" : "users", id, "upsert");
      return true;
    },

    commitUsage(commits, nowSeconds) {
      // Checked before anything is written: a bad commit rejects the whole batch.
      for (const c of commits) {
        assertUnits(c.actualUnits, "actualUnits");
        if (c.share !== undefined) assertUnits(c.share, "share");
      }
      // settle() marks keys and users changed; a commit without a reservation changes neither.
      return commits.map((c) => {
        const quota = !c.reservation
          ? c.actualUnits
          : c.share === undefined
            ? settle(c.reservation, c.actualUnits, nowSeconds).charged
            : settlePart(c.reservation, c.share, c.actualUnits, nowSeconds).charged;
        return append({ ...c.record, quota });
      });
    },

    reservationUnits(id) {
      return reservations.get(id)?.units ?? null;
    },

    acquireLock(name, ttlMs) {
      const held = locks.get(name);
      if (held && held.expiresAt > now()) return null;
      const token = randomUUID();
      locks.set(name, { token, expiresAt: now() + ttlMs });
      return token;
    },

    releaseLock(name, token) {
      const held = locks.get(name);
      if (!held || held.token !== token) return false;
      locks.delete(name);
      return held.expiresAt > now();
    },

    hitWindows(hits, nowMs) {
      for (const hit of hits) assertWindowHit(hit);
      maybeSweep(nowMs);
      return judgeWindows(
        hits,
        nowMs,
        (_id, hit) => liveBuckets(hit.key, hit.windowMs, nowMs) ?? [],
        (id, hit, { current }) => {
          let w = windows.get(id);
          if (!w) {
            w = { windowMs: hit.windowMs, buckets: new Map() };
            windows.set(id, w);
          }
          w.buckets.set(current, (w.buckets.get(current) ?? 0) + hit.cost);
        },
      );
    },

    adjustWindow(key, windowMs, atMs, delta, nowMs) {
      assertWindowAdjust(key, windowMs, delta);
      const { bucketMs, oldest } = windowSpan(windowMs, nowMs);
      const index = Math.floor(atMs / bucketMs);
      if (index < oldest || delta === 0) return;
      const id = windowId(key, windowMs);
      let w = windows.get(id);
      if (!w) {
        if (delta < 0) return;
        w = { windowMs, buckets: new Map() };
        windows.set(id, w);
      }
      const units = Math.max(0, (w.buckets.get(index) ?? 0) + delta);
      if (units > 0) w.buckets.set(index, units);
      else w.buckets.delete(index);
      if (w.buckets.size === 0) windows.delete(id);
    },

    acquireLeases(asks, leaseId, expiresAt, nowMs) {
      for (const ask of asks) assertLeaseAsk(ask);
      maybeSweep(nowMs);
      const inUse: number[] = [];
      const adding = new Set<string>();
      for (const [index, ask] of asks.entries()) {
        const held = livePool(ask.pool, nowMs);
        const already = held?.has(leaseId) === true;
        // A pool named twice in one call: its lease counts once.
        const count = (held?.size ?? 0) + (adding.has(ask.pool) && !already ? 1 : 0);
        const mine = already || adding.has(ask.pool);
        if (!mine && count >= ask.limit) {
          let earliest = Number.POSITIVE_INFINITY;
          for (const at of held?.values() ?? []) earliest = Math.min(earliest, at);
          return { ok: false, index, pool: ask.pool, retryAfterMs: earliest - nowMs };
        }
        adding.add(ask.pool);
        inUse.push(mine ? count : count + 1);
      }
      for (const pool of adding) {
        let held = leases.get(pool);
        if (!held) {
          held = new Map();
          leases.set(pool, held);
        }
        held.set(leaseId, expiresAt);
      }
      return { ok: true, inUse };
    },

    renewLeases(leaseId, pools, expiresAt, nowMs) {
      let n = 0;
      for (const pool of new Set(pools)) {
        const held = leases.get(pool);
        const at = held?.get(leaseId);
        if (at === undefined || at <= nowMs) continue;
        held!.set(leaseId, expiresAt);
        n++;
      }
      return n;
    },

    releaseLeases(leaseId, pools) {
      let n = 0;
      for (const pool of new Set(pools)) {
        const held = leases.get(pool);
        if (!held?.delete(leaseId)) continue;
        n++;
        if (held.size === 0) leases.delete(pool);
      }
      return n;
    },
  };
}

/**
 * Runs one kernel call for a store: `run` is the synchronous call; the result is what the
 * store's method resolves to (e.g. after waiting until the store is open, and until the change
 * is persisted).
 */
export type KernelCall = <R>(run: () => R) => Promise<R>;

/** The Store members a {@link TableKernel} provides. */
export type KernelStore = Omit<Store, "name" | "capabilities" | "watch" | "close">;

function lift<T extends object>(sync: T, call: KernelCall): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [name, fn] of Object.entries(sync) as [string, (...a: unknown[]) => unknown][])
    out[name] = (...args: unknown[]) => call(() => fn(...args));
  return out;
}

/**
 * The Store members of a kernel as async methods, each running through `call`.
 *
 * @example
 * ```ts
 * const members = liftKernel(tableKernel(), async (run) => run());
 * ```
 */
export function liftKernel(kernel: TableKernel, call: KernelCall): KernelStore {
  const {
    tables: _t,
    takeTouched: _tt,
    keys,
    users,
    credentials,
    usage,
    settings,
    kv,
    ...steps
  } = kernel;
  return {
    keys: lift(keys, call),
    users: lift(users, call),
    credentials: lift(credentials, call),
    usage: lift(usage, call),
    settings: lift(settings, call),
    kv: lift(kv, call),
    ...lift(steps, call),
  } as unknown as KernelStore;
}
