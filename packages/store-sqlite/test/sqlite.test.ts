import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { recordUsage, type Store, type StoreChange } from "@tokenpool/core";
import { fixtures, runStoreConformance } from "@tokenpool/testing";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MIGRATIONS_TABLE, migrations, sqliteStore } from "../src/index.js";

/** The temp directory of each file-backed store, removed by cleanup. */
const dirs = new WeakMap<Store, string>();

runStoreConformance({
  name: "sqlite (file)",
  create: () => {
    const dir = mkdtempSync(join(tmpdir(), "tokenpool-sqlite-"));
    const store = sqliteStore({ filename: join(dir, "store.db") });
    dirs.set(store, dir);
    return store;
  },
  reopen: (store) => sqliteStore({ filename: join(dirs.get(store)!, "store.db") }),
  cleanup: (store) => rmSync(dirs.get(store)!, { recursive: true, force: true }),
});

runStoreConformance({
  name: "sqlite (:memory:)",
  create: () => sqliteStore({ filename: ":memory:" }),
});

describe("sqliteStore", () => {
  let dir: string;
  let file: string;
  const cleanups: (() => unknown)[] = [];
  const track = <T extends { close(): unknown }>(x: T): T => {
    cleanups.push(() => x.close());
    return x;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "tokenpool-sqlite-unit-"));
    file = join(dir, "store.db");
  });
  afterEach(async () => {
    for (const close of cleanups.splice(0).reverse()) await close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("configures WAL, synchronous=NORMAL and busy_timeout on its connection", async () => {
    const db = track(new Database(file));
    track(sqliteStore({ database: db, busyTimeoutMs: 1234 }));
    expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    expect(db.pragma("synchronous", { simple: true })).toBe(1); // NORMAL
    expect(db.pragma("busy_timeout", { simple: true })).toBe(1234);
  });

  it("a file store is multi-process; a :memory: store is not", async () => {
    expect(track(sqliteStore({ filename: file })).capabilities.multiProcess).toBe(true);
    expect(track(sqliteStore({ filename: ":memory:" })).capabilities.multiProcess).toBe(false);
  });

  it("creates the missing folders of a relative filename, and the file in them", async () => {
    const target = join(dir, "data", "nested", "tokenpool.db");
    // A relative path, as a user writes it: resolved against the working directory.
    const store = track(sqliteStore({ filename: relative(process.cwd(), target) }));
    await store.keys.create(fixtures.key());
    expect(statSync(join(dir, "data", "nested")).isDirectory()).toBe(true);
    expect(statSync(target).size).toBeGreaterThan(0);
    await store.close();
    const reopened = track(sqliteStore({ filename: target }));
    expect((await reopened.keys.list()).total).toBe(1);
  });

  it("names the folder it cannot create when a file is in the way", () => {
    writeFileSync(join(dir, "data"), "not a folder");
    const filename = join(dir, "data", "tokenpool.db");
    expect(() => sqliteStore({ filename })).toThrow(
      `sqliteStore: cannot create the folder ${join(dir, "data")} for the database file ${filename}: a file is in the way`,
    );
    expect(() => sqliteStore({ filename: join(dir, "data", "deeper", "x.db") })).toThrow(
      /cannot create the folder .*deeper.*a file is in the way/,
    );
  });

  it("does not close a database it did not open", async () => {
    const db = track(new Database(file));
    const store = sqliteStore({ database: db });
    await store.keys.create(fixtures.key());
    await store.close();
    expect(db.open).toBe(true);
    expect(db.prepare("SELECT COUNT(*) FROM keys").pluck().get()).toBe(1);
  });

  it("closes the database it opened", async () => {
    const store = sqliteStore({ filename: file });
    await store.close();
    await expect(store.keys.list()).rejects.toThrow(/not open/);
  });

  it("records each migration once and reopens a migrated file unchanged", async () => {
    const first = sqliteStore({ filename: file });
    const key = await first.keys.create(fixtures.key());
    await first.close();
    const second = track(sqliteStore({ filename: file }));
    expect(await second.keys.get(key.id)).toEqual(key);
    const db = track(new Database(file, { readonly: true }));
    const rows = db.prepare(`SELECT version, name FROM ${MIGRATIONS_TABLE} ORDER BY version`).all();
    expect(rows).toEqual(migrations.map((m) => ({ version: m.version, name: m.name })));
  });

  it("sweeps expired window buckets and leases of counters and pools nobody asks about", async () => {
    const db = track(new Database(file));
    const store = track(sqliteStore({ database: db }));
    const T0 = 1_700_000_040_000;
    for (let i = 0; i < 200; i++) {
      await store.hitWindows([{ key: `k${i}`, limit: 5, windowMs: 60_000, cost: 1 }], T0);
      await store.acquireLeases([{ pool: `p${i}`, limit: 5 }], "l", T0 + 1_000, T0);
    }
    const count = (table: string) =>
      db.prepare(`SELECT count(*) FROM ${table}`).pluck().get() as number;
    expect(count("limit_windows")).toBe(200);
    expect(count("limit_leases")).toBe(200);
    const live = { key: "live", limit: 5_000, windowMs: 60_000, cost: 1 };
    for (let i = 0; i < 1_000; i++) await store.hitWindows([live], T0 + 120_000);
    expect(count("limit_windows")).toBe(1);
    expect(count("limit_leases")).toBe(0);
  });

  it("opens a database at schema 3 with reservations in flight, and settles and recovers them as period 0", async () => {
    const old = new Database(file);
    old.exec(
      `CREATE TABLE ${MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`,
    );
    for (const m of migrations.filter((m) => m.version <= 3)) {
      old.exec(m.sql);
      old
        .prepare(`INSERT INTO ${MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, 0)`)
        .run(m.version, m.name);
    }
    // What version 3 wrote: a key owned by a user, both debited by two reservations in flight.
    old.exec(`
      INSERT INTO users (id, username, display_name, role, status, user_group, quota, used_quota, access_token_hash, created_time)
        VALUES (1, 'ada', 'Ada', 'user', 1, 'default', 920, 0, NULL, 1);
      INSERT INTO keys (id, user_id, name, key_hash, key_cipher, key_hint, status, remain_quota, used_quota, unlimited_quota, expired_time, model_limits_enabled, model_limits, allow_ips, key_group, created_time, accessed_time)
        VALUES (1, 1, 'k', 'h1', NULL, 'sk-****', 1, 20, 0, 0, -1, 0, '[]', '[]', 'default', 1, 0);
      INSERT INTO reservations (id, key_id, user_id, units, key_debited, expires_at, owner, request_id, route, model, timestamp)
        VALUES ('r-live', 1, 1, 40, 1, 9999999999999, 'gw', 'req-live', 'r', 'm', 1),
               ('r-dead', 1, 1, 40, 1, 1000, 'gw', 'req-dead', 'r', 'm', 1);
    `);
    old.close();
    const store = track(sqliteStore({ filename: file }));
    const key = (await store.keys.get(1))!;
    expect(Object.keys(key)).not.toContain("quotaPeriod");
    expect(key).toMatchObject({ remainQuota: 20, usedQuota: 0 });
    // The live one, settled by a caller that knows nothing of periods; the dead one, recovered.
    const live = { id: "r-live", keyId: 1, userId: 1, units: 40, keyDebited: true };
    expect(await store.settleQuota(live, 10, 5)).toEqual({ charged: 10 });
    const [rec] = await store.recoverReservations(2_000, 10);
    expect(rec).toMatchObject({ requestId: "req-dead", quota: 40, recovered: true });
    expect(await store.keys.get(1)).toMatchObject({ remainQuota: 50, usedQuota: 50 });
    expect(await store.users.get(1)).toMatchObject({ quota: 950, usedQuota: 50 });
    // A refill now starts period P; a reservation from before it would leave P's balance alone.
    expect(await store.refillQuota("key", 1, 1_000, 70)).toBe(true);
    expect(await store.keys.get(1)).toMatchObject({
      remainQuota: 70,
      usedQuota: 0,
      quotaPeriod: 1_000,
    });
  });

  it("refuses a database migrated by a newer version of the package", async () => {
    await sqliteStore({ filename: file }).close();
    const db = new Database(file);
    db.prepare(
      `INSERT INTO ${MIGRATIONS_TABLE} (version, name, applied_at) VALUES (999, 'x', 0)`,
    ).run();
    db.close();
    expect(() => sqliteStore({ filename: file })).toThrow(/schema version 999.*Upgrade/);
  });

  it("looks keys up by hash and users by access token through an index", () => {
    track(sqliteStore({ filename: file }));
    const db = track(new Database(file, { readonly: true }));
    const plan = (sql: string) =>
      (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all() as { detail: string }[])
        .map((r) => r.detail)
        .join("; ");
    expect(plan("SELECT * FROM keys WHERE key_hash = 'x'")).toMatch(/USING INDEX keys_key_hash/);
    expect(plan("SELECT * FROM users WHERE access_token_hash = 'x'")).toMatch(
      /USING INDEX users_access_token_hash/,
    );
  });

  it("rejects duplicates with an error that names what was duplicated", async () => {
    const store = track(sqliteStore({ filename: ":memory:" }));
    const key = await store.keys.create(fixtures.key());
    await expect(store.keys.create(fixtures.key({ keyHash: key.keyHash }))).rejects.toThrow(
      "a key with this hash already exists",
    );
    const user = await store.users.create(fixtures.user());
    await expect(store.users.create(fixtures.user({ username: user.username }))).rejects.toThrow(
      `username "${user.username}" already exists`,
    );
  });

  it("keeps roll-ups apart whose route and model only differ in where a | falls", async () => {
    const store = track(sqliteStore({ filename: ":memory:" }));
    const timestamp = Date.UTC(2024, 0, 1, 10);
    await recordUsage(store, [
      fixtures.usage({ timestamp, route: "POST /a|b", model: "m" }),
      fixtures.usage({ timestamp, route: "POST /a", model: "b|m" }),
    ]);
    const rows = await store.usage.rollups();
    expect(rows.map((r) => [r.route, r.model, r.requests])).toEqual([
      ["POST /a", "b|m", 1],
      ["POST /a|b", "m", 1],
    ]);
  });

  it("prunes old change rows on its first write", async () => {
    await sqliteStore({ filename: file }).close();
    const db = track(new Database(file));
    db.prepare(
      "INSERT INTO changes (collection, record_id, op, origin_id, at) VALUES ('keys', '1', 'upsert', 'old', 0)",
    ).run();
    const store = track(sqliteStore({ filename: file }));
    await store.settings.set({ a: 1 });
    const rows = db.prepare("SELECT origin_id, record_id FROM changes").all() as {
      origin_id: string;
    }[];
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ record_id: "a" });
    expect(rows[0]!.origin_id).not.toBe("old");
  });

  it("reports whole-collection changes when change rows it never read were pruned", async () => {
    const store = track(sqliteStore({ filename: file, pollIntervalMs: 20 }));
    const seen: StoreChange[] = [];
    store.watch((c) => seen.push(c));
    const db = track(new Database(file));
    const insert = db.prepare(
      "INSERT INTO changes (collection, record_id, op, origin_id, at) VALUES (?, ?, 'upsert', 'other', ?)",
    );
    // Another process wrote two changes and pruned the first before we polled.
    const first = insert.run("keys", "1", Date.now()).lastInsertRowid;
    insert.run("settings", "x", Date.now());
    db.prepare("DELETE FROM changes WHERE seq = ?").run(first);
    const deadline = Date.now() + 1_000;
    while (seen.length < 5 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([
      { collection: "keys", op: "upsert", origin: "remote" },
      { collection: "users", op: "upsert", origin: "remote" },
      { collection: "credentials", op: "upsert", origin: "remote" },
      { collection: "settings", op: "upsert", origin: "remote" },
      { collection: "settings", id: "x", op: "upsert", origin: "remote" },
    ]);
  });

  it("a new watcher starts from now: changes made while nobody watched are not replayed", async () => {
    const store = track(sqliteStore({ filename: file, pollIntervalMs: 10 }));
    const peer = track(sqliteStore({ filename: file }));
    const seen: StoreChange[] = [];
    const stop = store.watch((c) => seen.push(c));
    stop();
    await peer.settings.set({ ignored: 1 });
    await new Promise((r) => setTimeout(r, 60));
    store.watch((c) => seen.push(c));
    await peer.settings.set({ seen: 1 });
    const deadline = Date.now() + 1_000;
    while (seen.length < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 40));
    // A watcher starts from "now": the change made while nobody watched is not replayed.
    expect(seen).toEqual([{ collection: "settings", id: "seen", op: "upsert", origin: "remote" }]);
  });
});
