/**
 * Seeding of the SQLite files of `pnpm bench:scale`: N downstream keys, then C credentials, each
 * cached under `bench/results/scale-cache/` (git-ignored) so that reruns skip it.
 *
 * Keys are created by the gateway's own `gateway.keys.create` (so each stored row is exactly what
 * the gateway writes: the keyed hash, the sealed plain key, the hint, the limit and refill
 * fields), with a preset plain key that the load generator can derive again from the key's index
 * ({@link plainKey}). What makes a million of them quick: the calls run inside one better-sqlite3
 * transaction per 10,000 keys (the store's own per-key `BEGIN IMMEDIATE` becomes a savepoint in
 * it, and its body runs synchronously up to the returned promise), so SQLite commits 100 times
 * instead of a million. The change-feed rows those writes leave (one per key, which a gateway
 * would prune in its first minute) are deleted before the file is cached.
 *
 * @module
 */
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { createGateway } from "@tokenpool/core";
import { type BetterSqlite3Database, sqliteStore } from "@tokenpool/store-sqlite";
import { FEATURES, UPSTREAM_KEY } from "./child.js";
import { log } from "./runner.js";

/** What this file uses of a better-sqlite3 database (the bench has no @types/better-sqlite3). */
interface Db extends BetterSqlite3Database {
  pragma(source: string): unknown;
  exec(source: string): unknown;
  prepare(source: string): {
    run(...params: unknown[]): unknown;
    pluck(): { get(...params: unknown[]): unknown };
  };
  transaction<A extends unknown[]>(fn: (...args: A) => void): (...args: A) => void;
  close(): void;
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new (file: string) => Db;

/** The server secret of every scale gateway (the keys' hashes depend on it). */
export const SCALE_SECRET = "bench-scale-secret-0123456789abcdef012345";
/** Groups the keys are spread over (`g0` … `g99`), and the credentials with them. */
export const GROUPS = 100;
/** Keys per transaction while seeding. */
const BATCH = 10_000;

/** The plain key of seeded key `i` (0-based; its id is i + 1): `sk-` and 48 characters. */
export function plainKey(i: number): string {
  const head = createHash("sha256").update(`tokenpool-scale-${i}`).digest("base64url");
  return `sk-${head.slice(0, 40)}${i.toString(36).padStart(8, "0")}`;
}

/** The group of seeded key `i`. */
export function groupOf(i: number): string {
  return `g${i % GROUPS}`;
}

/**
 * The groups of credential `j` of `count`: with 100 credentials or more each serves one group
 * (credential j the group j % 100), with fewer each serves every group g with g % count = j, so
 * that every group has at least one credential.
 */
function credentialGroups(j: number, count: number): string[] {
  if (count >= GROUPS) return [`g${j % GROUPS}`];
  const out: string[] = [];
  for (let g = j; g < GROUPS; g += count) out.push(`g${g}`);
  return out;
}

interface Seeded {
  file: string;
  /** Seconds the seeding took when it was done (0 when this run found it cached: see `cached`). */
  seconds: number;
  cached: boolean;
}

/** Writes `file.json` beside a finished file: what was seeded and how long it took. */
function marker(file: string): { seconds: number } | null {
  try {
    return JSON.parse(readFileSync(`${file}.json`, "utf8")) as { seconds: number };
  } catch {
    return null;
  }
}

/** Closes a database after its seeding: drops the change rows, folds the WAL into the file. */
function finish(db: Db): void {
  db.pragma("secure_delete = OFF");
  db.exec("DELETE FROM changes");
  db.pragma("wal_checkpoint(TRUNCATE)");
  db.close();
}

/** The database file being seeded, and a gateway on it (quiet, no metrics). */
async function openSeeding(file: string) {
  const db = new Database(file);
  const gateway = createGateway({
    store: sqliteStore({ database: db }),
    secret: SCALE_SECRET,
    logger: false,
    metrics: false,
  });
  await gateway.ready;
  return { db, gateway };
}

/** A SQLite file with `n` keys (ids 1..n, plain keys {@link plainKey}), cached in `dir`. */
export async function seedKeys(dir: string, n: number): Promise<Seeded> {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `keys-${n}.db`);
  const done = marker(file);
  if (done && existsSync(file)) return { file, seconds: done.seconds, cached: true };
  const tmp = `${file}.tmp`;
  for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`]) rmSync(f, { force: true });
  const t0 = performance.now();
  const { db, gateway } = await openSeeding(tmp);
  // Nothing to zero in a fresh file: inserts only.
  db.pragma("secure_delete = OFF");
  const inTransaction = db.transaction((from: number, to: number, out: Promise<unknown>[]) => {
    for (let i = from; i < to; i++) {
      out.push(
        gateway.keys.create({
          name: `scale-${i}`,
          key: plainKey(i),
          remainQuota: 1_000_000_000,
          group: groupOf(i),
          ...FEATURES,
        }),
      );
    }
  });
  let last = t0;
  for (let from = 0; from < n; from += BATCH) {
    const out: Promise<unknown>[] = [];
    inTransaction(from, Math.min(n, from + BATCH), out);
    // Settled already (the inserts ran inside the transaction); a failed one rejects here.
    await Promise.all(out);
    if (performance.now() - last > 10_000) {
      last = performance.now();
      log(
        `seeding ${n} keys: ${Math.min(n, from + BATCH)} after ${((last - t0) / 1000).toFixed(0)} s`,
      );
    }
  }
  await gateway.close();
  const check = db.prepare("SELECT count(*) FROM keys").pluck().get() as number;
  if (check !== n) throw new Error(`seeded ${check} keys, wanted ${n}`);
  finish(db);
  const seconds = (performance.now() - t0) / 1000;
  renameSync(tmp, file);
  writeFileSync(`${file}.json`, JSON.stringify({ keys: n, seconds }));
  return { file, seconds, cached: false };
}

/**
 * A SQLite file with `n` keys (from {@link seedKeys}) and `c` OpenAI credentials spread over the
 * groups, cached in `dir`. Their base URL is a placeholder: {@link runCopy} points it at the
 * mock upstream of a run.
 */
export async function seedCredentials(
  dir: string,
  keysFile: string,
  n: number,
  c: number,
): Promise<Seeded> {
  const file = join(dir, `scale-${n}-${c}.db`);
  const done = marker(file);
  if (done && existsSync(file)) return { file, seconds: done.seconds, cached: true };
  const tmp = `${file}.tmp`;
  for (const f of [tmp, `${tmp}-wal`, `${tmp}-shm`]) rmSync(f, { force: true });
  const t0 = performance.now();
  copyFileSync(keysFile, tmp);
  const { db, gateway } = await openSeeding(tmp);
  for (let j = 0; j < c; j++) {
    await gateway.credentials.add({
      provider: "openai",
      kind: "api-key",
      baseUrl: "http://127.0.0.1:9/v1",
      secret: { apiKey: UPSTREAM_KEY },
      label: `scale-${j}`,
      groups: credentialGroups(j, c),
    });
  }
  await gateway.close();
  finish(db);
  const seconds = (performance.now() - t0) / 1000;
  renameSync(tmp, file);
  writeFileSync(`${file}.json`, JSON.stringify({ keys: n, credentials: c, seconds }));
  return { file, seconds, cached: false };
}

/** A working copy of a seeded file for one run, its credentials pointing at `upstreamUrl`. */
export function runCopy(seeded: string, copy: string, upstreamUrl: string): void {
  removeDb(copy);
  copyFileSync(seeded, copy);
  const db = new Database(copy);
  db.prepare("UPDATE credentials SET base_url = ?").run(upstreamUrl);
  db.close();
}

/** Deletes a SQLite file with its WAL and shared-memory files. */
export function removeDb(file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
}
