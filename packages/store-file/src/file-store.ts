import { type FSWatcher, mkdirSync, readdirSync, readFileSync, watch } from "node:fs";
import { rm } from "node:fs/promises";
import { join, resolve } from "node:path";
import type { CredentialRecord, Store, StoreChange, UsageRollup } from "@tokenpool/core";
import { canonicalJson } from "@tokenpool/core/config-model";
import {
  assertUnits,
  type KernelCall,
  liftKernel,
  type TableGroup,
  tableKernel,
} from "@tokenpool/core/store-kernel";
import { acquireDirLock, isTempName, sha256, writeFileAtomic } from "./fs-util.js";
import {
  type KvFile,
  parseKeysFile,
  parseKvFile,
  parseUsageFile,
  parseUsersFile,
} from "./records.js";
import {
  assembleCredentials,
  type ConfigFile,
  type CredentialLayout,
  type CredentialTexts,
  configView,
  parseAccounts,
  parseAuthText,
  parseConfigFile,
  parseIndex,
  renderConfigFile,
  renderCredentials,
} from "./seed-files.js";

/** A file of the store directory that could not be read or parsed (reported, never overwritten). */
export interface FileStoreError extends Error {
  /** The file, relative to the store directory (e.g. `config.yaml`, `auths/a.json`). */
  file: string;
}

/** Options of {@link fileStore}. */
export interface FileStoreOptions {
  /** The store directory (created when missing). One process at a time may open it. */
  dir: string;
  /**
   * The provider whose OAuth accounts live in `data/accounts.json` (the pool dialect's
   * provider); other OAuth credentials are auth files under `auths/`.
   * @default "antigravity"
   */
  poolProvider?: string;
  /**
   * Base URL of accounts added to `data/accounts.json` by hand.
   * @default "https://daily-cloudcode-pa.sandbox.googleapis.com"
   */
  poolBaseUrl?: string;
  /**
   * Usage details kept in `usage.json` (the oldest are dropped beyond it; roll-ups are kept).
   * @default 10000
   */
  maxUsageRecords?: number;
  /** Pick up hand edits of the files (a debounced directory watcher). @default true */
  watch?: boolean;
  /** Quiet time after a file event before the files are read again. @default 150 */
  watchDebounceMs?: number;
  /**
   * Called when a file cannot be read or parsed (the last good state is kept, the file is not
   * written until it is fixed) or a write fails.
   * @default writes the message to stderr
   */
  onError?: (error: FileStoreError) => void;
  /** Clock used for TTLs, lock expiry and timestamps (ms). @default Date.now */
  now?: () => number;
}

const CONFIG = "config.yaml";
const INDEX = "credentials.json";
const ACCOUNTS = "data/accounts.json";
const AUTHS = "auths";
const KEYS = "keys.json";
const USERS = "users.json";
const USAGE = "usage.json";
const KV = "kv.json";
const FIXED = [CONFIG, INDEX, ACCOUNTS, KEYS, USERS, USAGE, KV] as const;
const CREDENTIAL_FILES = new Set<string>([CONFIG, INDEX, ACCOUNTS]);
const isAuth = (rel: string) => rel.startsWith(`${AUTHS}/`);

const clone = <T>(v: T): T => structuredClone(v);
const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;

function fileError(file: string, error: unknown): FileStoreError {
  const message = error instanceof Error ? error.message : String(error);
  return Object.assign(new Error(`${file}: ${message}`), { name: "FileStoreError", file });
}

/**
 * Applies what changed on disk since `base` (the file's content as last read or written) to
 * the in-memory collection, record by record: a record the file changed takes the file's
 * version, every other record keeps the memory's (which may hold changes not yet written).
 * Then `base` becomes the file's content.
 */
function merge3<K, T>(
  mem: Map<K, T>,
  base: Map<K, string>,
  disk: Map<K, T>,
  changed?: (k: K, op: StoreChange["op"]) => void,
): void {
  for (const k of new Set([...base.keys(), ...disk.keys()])) {
    const d = disk.get(k);
    if ((d === undefined ? undefined : canonicalJson(d)) === base.get(k)) continue;
    if (d === undefined) {
      if (mem.delete(k)) changed?.(k, "delete");
    } else {
      mem.set(k, clone(d));
      changed?.(k, "upsert");
    }
  }
  base.clear();
  for (const [k, v] of disk) base.set(k, canonicalJson(v));
}

/**
 * A store kept in files, in the seeds' own formats, so that an existing deployment can point
 * tokenpool at its files:
 *
 * - `config.yaml`: settings as top-level keys and API-key credentials as the management seed's
 *   lists (`claude-api-key`, `codex-api-key`, `openai-compatibility`,
 *   `generative-language-api-key`); comments of a hand-written file survive writes;
 * - `data/accounts.json`: the pool seed's account list (OAuth accounts of `poolProvider`);
 * - `auths/<name>.json`: other OAuth credentials as CLIProxyAPI auth files;
 * - `credentials.json` (ids, order, health and the fields no seed file expresses), `keys.json`,
 *   `users.json`, `usage.json`, `kv.json`.
 *
 * The whole state lives in memory; every atomic step of the contract runs synchronously on it
 * (so it is atomic: one process owns the data), then the files it changed are written
 * atomically (temp file, fsync, rename; mode 0600). Writes are serialised and coalesced, and a
 * mutating call resolves only once its change is on disk. Hand edits are picked up by a
 * debounced watcher and delivered by `watch()` with origin `remote`; a file that does not parse
 * is reported through `onError`, the last good state keeps serving, and the file is not written
 * until it is fixed.
 *
 * Locks and the admission state (rate-limit windows and concurrency leases of `hitWindows` and
 * `acquireLeases`) stay in memory and are never written: one process owns the data, and after a
 * restart windows start empty and no lease is held (as a lease's expiry would free it anyway).
 *
 * It serves ONE process: a `.lock` file refuses a second process (or a second store object)
 * on the same directory. Use `@tokenpool/store-sqlite` or `@tokenpool/store-redis` to share
 * state between processes.
 *
 * @example
 * ```ts
 * const gateway = createGateway({
 *   store: fileStore({ dir: "/etc/tokenpool" }),
 *   secret: process.env.TOKENPOOL_SECRET,
 * });
 * ```
 */
export function fileStore(options: FileStoreOptions): Store {
  const dir = resolve(options.dir);
  const now = options.now ?? Date.now;
  const maxUsage = options.maxUsageRecords ?? 10_000;
  const debounceMs = options.watchDebounceMs ?? 150;
  const layout: CredentialLayout = {
    poolProvider: options.poolProvider ?? "antigravity",
    poolBaseUrl: options.poolBaseUrl ?? "https://daily-cloudcode-pa.sandbox.googleapis.com",
  };
  const report =
    options.onError ??
    ((e: FileStoreError) => process.stderr.write(`tokenpool file store (${dir}): ${e.message}\n`));
  const path = (rel: string) => join(dir, rel);

  mkdirSync(join(dir, "data"), { recursive: true });
  mkdirSync(join(dir, AUTHS), { recursive: true });
  const releaseDirLock = acquireDirLock(dir);

  // The state: the kernel's tables. The changes a call makes wait for its write.
  const pending: StoreChange[] = [];
  const kernel = tableKernel({ now, maxUsageRecords: maxUsage, onChange: (c) => pending.push(c) });
  const t = kernel.tables;
  const { keys, keyByHash, users, credentials, settings, usage, rollups, kv, reservations } = t;
  const listeners = new Set<(c: StoreChange) => void>();

  // What the files hold: content as last read or written (good versions only), hashes of what
  // was last seen (good or not), files that do not parse, and the per-record bases of merge3.
  const known = new Map<string, { text: string; canon: string }>();
  const seen = new Map<string, string>();
  const broken = new Set<string>();
  const base = {
    keys: new Map<number, string>(),
    reservations: new Map<string, string>(),
    users: new Map<number, string>(),
    settings: new Map<string, string>(),
    credentials: new Map<string, string>(),
    usage: new Map<number, string>(),
    rollups: new Map<string, string>(),
    kv: new Map<string, string>(),
  };

  const deliver = (change: StoreChange) => {
    for (const l of listeners) {
      try {
        l(change);
      } catch {
        // A listener's error is its own.
      }
    }
  };

  // ------------------------------------------------------------------------------------------
  // Reading

  /** The store's files as they are on disk now (auth files: every `auths/*.json`). */
  const readAll = (): Map<string, string | undefined> => {
    const texts = new Map<string, string | undefined>();
    const read = (rel: string) => {
      try {
        return readFileSync(path(rel), "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
        throw fileError(rel, error);
      }
    };
    for (const rel of FIXED) texts.set(rel, read(rel));
    let names: string[] = [];
    try {
      names = readdirSync(path(AUTHS)).filter((n) => n.endsWith(".json") && !isTempName(n));
    } catch {
      // No auths directory: no auth files.
    }
    for (const n of names) texts.set(`${AUTHS}/${n}`, read(`${AUTHS}/${n}`));
    for (const rel of known.keys()) if (isAuth(rel) && !texts.has(rel)) texts.set(rel, undefined);
    return texts;
  };

  /** The text to assemble credentials from: the file's text, or its last good one when broken. */
  const goodText = (rel: string, texts: Map<string, string | undefined>) =>
    broken.has(rel) ? known.get(rel)?.text : texts.get(rel);

  const credentialTexts = (
    texts: Map<string, string | undefined>,
    config: ConfigFile | undefined,
  ): CredentialTexts => {
    const auths = new Map<string, string>();
    for (const rel of new Set([...texts.keys(), ...known.keys()])) {
      if (!isAuth(rel)) continue;
      const t = goodText(rel, texts);
      if (t !== undefined) auths.set(rel.slice(AUTHS.length + 1), t);
    }
    return {
      index: goodText(INDEX, texts),
      config,
      accounts: goodText(ACCOUNTS, texts),
      auths,
    };
  };

  const knownTexts = () => {
    const texts = new Map<string, string | undefined>();
    for (const [rel, k] of known) texts.set(rel, k.text);
    return texts;
  };

  const configOf = (text: string | undefined) =>
    text === undefined ? undefined : parseConfigFile(text);

  /**
   * Reads the files again and applies what changed by hand. Runs on the write chain, so it
   * never overlaps a write; applying is synchronous, so no store call sees half of it.
   */
  const reload = async (): Promise<void> => {
    const texts = readAll();
    const changed = new Set<string>();
    for (const [rel, text] of texts) {
      const h = text === undefined ? "" : sha256(text);
      if (seen.get(rel) === h) continue;
      seen.set(rel, h);
      changed.add(rel);
    }
    if (changed.size === 0) return;
    const changes: StoreChange[] = [];
    const note =
      (collection: StoreChange["collection"]) => (id: string | number, op: StoreChange["op"]) =>
        changes.push({ collection, id: String(id), op, origin: "remote" });
    const touched = new Set<TableGroup>();

    /** Parses a changed file; on failure reports it and keeps the last good state. */
    const parse = <T>(rel: string, fn: (text: string) => T, view: (v: T) => unknown) => {
      const text = texts.get(rel);
      if (text === undefined) {
        // Gone (deleted by hand, or never written): written again from the state.
        known.delete(rel);
        broken.delete(rel);
        return undefined;
      }
      try {
        const value = fn(text);
        broken.delete(rel);
        known.set(rel, { text, canon: canonicalJson(view(value)) });
        return value;
      } catch (error) {
        broken.add(rel);
        report(
          fileError(
            rel,
            new Error(
              `${(error as Error).message}; keeping the last good state (the file is not written until it is fixed)`,
            ),
          ),
        );
        return undefined;
      }
    };
    const asJson = (text: string) => JSON.parse(text) as unknown;

    if (changed.has(KEYS)) {
      touched.add("keys");
      const file = parse(KEYS, parseKeysFile, () => asJson(texts.get(KEYS)!));
      if (file) {
        merge3(keys, base.keys, new Map(file.keys.map((k) => [k.id, k])), note("keys"));
        merge3(reservations, base.reservations, new Map(file.reservations.map((r) => [r.id, r])));
        keyByHash.clear();
        for (const k of keys.values()) keyByHash.set(k.keyHash, k.id);
        t.next.key = Math.max(t.next.key, file.nextId, ...[...keys.keys()].map((id) => id + 1));
      }
    }
    if (changed.has(USERS)) {
      touched.add("users");
      const file = parse(USERS, parseUsersFile, () => asJson(texts.get(USERS)!));
      if (file) {
        merge3(users, base.users, new Map(file.users.map((u) => [u.id, u])), note("users"));
        t.next.user = Math.max(t.next.user, file.nextId, ...[...users.keys()].map((id) => id + 1));
      }
    }
    if (changed.has(USAGE)) {
      touched.add("usage");
      const file = parse(USAGE, parseUsageFile, () => asJson(texts.get(USAGE)!));
      if (file) {
        merge3(usage, base.usage, new Map(file.records.map((r) => [r.id, r])));
        merge3(rollups, base.rollups, new Map(file.rollups.map((r) => [rollupIdOf(r), r])));
        t.next.usage = Math.max(
          t.next.usage,
          file.nextId,
          ...[...usage.keys()].map((id) => id + 1),
        );
      }
    }
    if (changed.has(KV)) {
      touched.add("kv");
      const file = parse(KV, parseKvFile, () => asJson(texts.get(KV)!));
      if (file) merge3(kv, base.kv, new Map(Object.entries(file.entries)));
    }

    let config: ConfigFile | undefined;
    if (changed.has(CONFIG)) {
      touched.add("settings");
      config = parse(CONFIG, parseConfigFile, (c) => c.view);
      if (config) merge3(settings, base.settings, config.settings, note("settings"));
    }
    if (!config && !broken.has(CONFIG)) config = configOf(texts.get(CONFIG));
    if (!config && broken.has(CONFIG)) config = configOf(known.get(CONFIG)?.text);

    if ([...changed].some((rel) => CREDENTIAL_FILES.has(rel) || isAuth(rel))) {
      touched.add("credentials");
      for (const rel of changed) {
        if (rel === INDEX) parse(INDEX, parseIndex, () => asJson(texts.get(INDEX)!));
        if (rel === ACCOUNTS)
          parse(
            ACCOUNTS,
            (t) => parseAccounts(t, layout),
            () => asJson(texts.get(ACCOUNTS)!),
          );
        if (isAuth(rel)) parse(rel, parseAuthText, () => asJson(texts.get(rel)!));
      }
      let disk: Map<string, CredentialRecord> | undefined;
      try {
        disk = await assembleCredentials(credentialTexts(texts, config), layout);
      } catch (error) {
        report(fileError((error as { file?: string }).file ?? CONFIG, error));
      }
      if (disk) {
        const stamp = now();
        const before = new Map(credentials);
        merge3(credentials, base.credentials, disk, note("credentials"));
        for (const [id, c] of credentials) {
          if (c === before.get(id)) continue;
          // New by hand: stamp it; changed by hand: it was updated now.
          if (c.createdAt === 0) c.createdAt = stamp;
          if (before.has(id) || c.updatedAt === 0) c.updatedAt = stamp;
        }
      }
    }
    for (const g of touched) dirty.add(g);
    for (const c of changes) deliver(c);
  };

  const rollupIdOf = (r: UsageRollup) =>
    JSON.stringify([r.hour, r.route, r.model, r.keyId, r.userId, r.credentialId]);

  // ------------------------------------------------------------------------------------------
  // Writing

  const dirty = new Set<TableGroup>();

  /** Writes one file when its content differs from what the file holds (never a broken one). */
  const put = async (rel: string, view: unknown, text: () => string): Promise<void> => {
    if (broken.has(rel)) return;
    const c = canonicalJson(view);
    if (known.get(rel)?.canon === c) return;
    const t = text();
    await writeFileAtomic(path(rel), t);
    known.set(rel, { text: t, canon: c });
    seen.set(rel, sha256(t));
  };

  /** Writes every file of the dirty groups whose content changed. */
  const flush = async (): Promise<void> => {
    const groups = new Set(dirty);
    dirty.clear();
    try {
      // Snapshot synchronously: later changes belong to the next flush.
      const jobs: Promise<void>[] = [];
      if (groups.has("keys")) {
        const view = {
          nextId: t.next.key,
          keys: [...keys.values()].sort((a, b) => a.id - b.id),
          reservations: [...reservations.values()],
        };
        jobs.push(put(KEYS, view, () => json(view)));
      }
      if (groups.has("users")) {
        const view = {
          nextId: t.next.user,
          users: [...users.values()].sort((a, b) => a.id - b.id),
        };
        jobs.push(put(USERS, view, () => json(view)));
      }
      if (groups.has("usage")) {
        const view = {
          nextId: t.next.usage,
          records: [...usage.values()],
          rollups: [...rollups.values()],
        };
        jobs.push(put(USAGE, view, () => json(view)));
      }
      if (groups.has("kv")) {
        const t = now();
        const entries: KvFile["entries"] = {};
        for (const [k, e] of kv) if (e.expiresAt === null || e.expiresAt > t) entries[k] = e;
        const view = { entries };
        jobs.push(put(KV, view, () => json(view)));
      }
      if (groups.has("settings") || groups.has("credentials")) {
        const settingsNow = clone(settings);
        const creds = [...credentials.values()].map(clone);
        const files = await renderCredentials(creds, layout);
        const view = configView(settingsNow, files.lists);
        jobs.push(put(CONFIG, view, () => renderConfigFile(view, known.get(CONFIG)?.text)));
        if (groups.has("credentials")) {
          const index = { credentials: files.index };
          jobs.push(put(INDEX, index, () => json(index)));
          jobs.push(put(ACCOUNTS, files.accounts, () => json(files.accounts)));
          for (const [name, content] of files.auths)
            jobs.push(put(`${AUTHS}/${name}`, content, () => json(content)));
          for (const rel of [...known.keys()]) {
            if (!isAuth(rel) || files.auths.has(rel.slice(AUTHS.length + 1))) continue;
            if (broken.has(rel)) continue;
            known.delete(rel);
            seen.delete(rel);
            jobs.push(rm(path(rel), { force: true }));
          }
        }
        for (const [k, v] of settingsNow) base.settings.set(k, canonicalJson(v));
        for (const k of [...base.settings.keys()]) if (!settingsNow.has(k)) base.settings.delete(k);
      }
      const results = await Promise.allSettled(jobs);
      const failed = results.find((r) => r.status === "rejected");
      if (failed) throw (failed as PromiseRejectedResult).reason;
      if (groups.has("keys")) {
        rebase(base.keys, keys);
        rebase(base.reservations, reservations);
      }
      if (groups.has("users")) rebase(base.users, users);
      if (groups.has("usage")) {
        rebase(base.usage, usage);
        rebase(base.rollups, rollups);
      }
      if (groups.has("kv")) rebase(base.kv, kv);
      if (groups.has("credentials") || groups.has("settings")) {
        const texts = knownTexts();
        const disk = await assembleCredentials(
          credentialTexts(texts, configOf(known.get(CONFIG)?.text)),
          layout,
        );
        base.credentials.clear();
        for (const [id, c] of disk) base.credentials.set(id, canonicalJson(c));
      }
    } catch (error) {
      for (const g of groups) dirty.add(g);
      throw error;
    }
  };

  const rebase = <K, T>(b: Map<K, string>, mem: Map<K, T>) => {
    b.clear();
    for (const [k, v] of mem) b.set(k, canonicalJson(v));
  };

  // One file operation at a time (writes and reloads), in order.
  let chain: Promise<void> = Promise.resolve();
  let batch: { changes: StoreChange[]; done: Promise<void> } | null = null;

  /**
   * Marks groups dirty and resolves once a write that includes the current state is on disk;
   * then delivers the batch's changes. Changes made while a write runs join the next one.
   */
  const commit = (groups: TableGroup[], changes: StoreChange[] = []): Promise<void> => {
    for (const g of groups) dirty.add(g);
    if (!batch) {
      const current: { changes: StoreChange[]; done: Promise<void> } = {
        changes: [],
        done: Promise.resolve(),
      };
      current.done = chain.then(async () => {
        batch = null;
        try {
          await flush();
        } catch (error) {
          report(fileError("(write)", error));
          throw error;
        }
        for (const c of current.changes) deliver(c);
      });
      chain = current.done.catch(() => {});
      batch = current;
    }
    batch.changes.push(...changes);
    return batch.done;
  };

  // ------------------------------------------------------------------------------------------
  // Opening

  // Check every file before anything else, so that a broken file fails the open with its name.
  {
    const texts = readAll();
    const check = (rel: string, fn: (t: string) => unknown) => {
      const t = texts.get(rel);
      if (t === undefined) return;
      try {
        fn(t);
      } catch (error) {
        releaseDirLock();
        throw new Error(
          `cannot open the file store ${dir}: ${rel} is invalid: ${(error as Error).message}`,
        );
      }
    };
    check(CONFIG, parseConfigFile);
    check(INDEX, parseIndex);
    check(ACCOUNTS, (t) => parseAccounts(t, layout));
    check(KEYS, parseKeysFile);
    check(USERS, parseUsersFile);
    check(USAGE, parseUsageFile);
    check(KV, parseKvFile);
    for (const rel of texts.keys()) if (isAuth(rel)) check(rel, parseAuthText);
  }

  let closed = false;
  const ready: Promise<void> = chain.then(async () => {
    await reload();
    // Write what the files lack (a fresh directory, ids of accounts added by hand ...).
    for (const g of ["keys", "users", "settings", "credentials", "usage", "kv"] as TableGroup[])
      dirty.add(g);
    await flush();
  });
  chain = ready.catch(() => {});
  ready.catch((error: unknown) => report(fileError("(open)", error)));

  let watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | null = null;
  const onEvent = (_event: string, name: string | Buffer | null) => {
    const n = name?.toString() ?? "";
    if (closed || n === ".lock" || isTempName(n) || n.startsWith(".lock.")) return;
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      if (closed) return;
      // Already on the chain: write what the reload left to write (merged changes) right here.
      chain = chain
        .then(async () => {
          await reload();
          if (dirty.size > 0) await flush();
        })
        .catch((error: unknown) => report(fileError("(reload)", error)));
    }, debounceMs);
  };
  if (options.watch !== false) {
    for (const d of [dir, join(dir, "data"), join(dir, AUTHS)]) {
      try {
        const w = watch(d, onEvent);
        w.on("error", (error) => report(fileError(d, error)));
        watchers.push(w);
      } catch (error) {
        report(fileError(d, new Error(`cannot watch: hand edits need a restart (${error})`)));
      }
    }
  }

  /** Waits for the initial load; refuses calls after close. */
  const open = async () => {
    if (closed) throw new Error(`the file store ${dir} is closed`);
    await ready;
  };

  // ------------------------------------------------------------------------------------------
  // The contract: the kernel's steps (atomic: synchronous on the state), then the write

  /**
   * Runs one kernel call once the store is open; resolves once what it changed is on disk.
   * Locks, windows and leases change no group, so they are not written: one process owns the
   * directory, so they live and die with it. Reads (`reservationUnits`, the collections' gets
   * and lists) change none either, so they write nothing.
   */
  const call: KernelCall = async (run) => {
    await open();
    let groups: TableGroup[];
    let changes: StoreChange[];
    let out: ReturnType<typeof run>;
    try {
      out = run();
    } finally {
      groups = kernel.takeTouched();
      changes = pending.splice(0);
    }
    if (groups.length > 0) await commit(groups, changes);
    return out;
  };
  const members = liftKernel(kernel, call);

  return {
    name: "file",
    capabilities: { multiProcess: false, plaintextSecrets: true, quotaShares: true },
    ...members,

    async reserveQuota(keyId, units, meta) {
      assertUnits(units);
      return members.reserveQuota(keyId, units, meta);
    },

    watch(listener) {
      listeners.add(listener);
      return () => {
        listeners.delete(listener);
      };
    },

    async close() {
      if (closed) return;
      closed = true;
      if (timer) clearTimeout(timer);
      for (const w of watchers) w.close();
      watchers = [];
      // Changes already made reach the disk before the lock is released.
      await chain.catch(() => {});
      listeners.clear();
      releaseDirLock();
    },
  };
}
