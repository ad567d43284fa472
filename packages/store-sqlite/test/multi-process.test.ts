import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { ApiKeyRecord, Store, StoreChange } from "@tokenpool/core";
import { fixtures } from "@tokenpool/testing";
import Database from "better-sqlite3";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MIGRATIONS_TABLE, migrations, sqliteStore } from "../src/index.js";
import type { ChildCommand } from "./fixtures/store-child.js";

const here = dirname(fileURLToPath(import.meta.url));
const childScript = join(here, "fixtures", "store-child.ts");

/** A store-child.ts process, driven with JSON-line commands. */
class StoreChild {
  readonly ready: Promise<void>;
  readonly changes: { change: StoreChange; at: number }[] = [];
  private readonly proc: ChildProcessWithoutNullStreams;
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: Error) => void }
  >();
  private nextId = 1;
  private stderr = "";

  constructor() {
    this.proc = spawn(process.execPath, ["--conditions=source", "--import", "tsx", childScript], {
      cwd: join(here, ".."),
    });
    this.proc.stderr.setEncoding("utf8").on("data", (d: string) => {
      this.stderr += d;
    });
    let markReady!: () => void;
    let failReady!: (err: Error) => void;
    this.ready = new Promise((resolve, reject) => {
      markReady = resolve;
      failReady = reject;
    });
    createInterface({ input: this.proc.stdout }).on("line", (line) => {
      const msg = JSON.parse(line);
      if (msg.ready) return markReady();
      if (msg.event === "change") return void this.changes.push(msg);
      const waiter = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      if (msg.error) waiter?.reject(new Error(`child: ${msg.error}`));
      else waiter?.resolve(msg.result);
    });
    this.proc.on("exit", (code) => {
      const err = new Error(`child exited with code ${code}\n${this.stderr}`);
      failReady(err);
      for (const waiter of this.pending.values()) waiter.reject(err);
      this.pending.clear();
    });
  }

  call<T>(cmd: ChildCommand): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.stdin.write(`${JSON.stringify({ ...cmd, id })}\n`);
    });
  }

  /** Kills the process at once (SIGKILL): nothing it holds is released. */
  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = once(this.proc, "exit");
    this.proc.kill("SIGKILL");
    await exited;
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = once(this.proc, "exit");
    this.proc.stdin.end();
    const timeout = setTimeout(() => this.proc.kill("SIGKILL"), 5_000);
    await exited;
    clearTimeout(timeout);
  }
}

const waitUntil = async (check: () => boolean, timeoutMs: number, what: string) => {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
};

describe("sqliteStore shared by several processes", () => {
  let dir: string;
  let filename: string;
  // Spawning a child with tsx takes about a second: one pool serves every test.
  let pool: StoreChild[] = [];
  const stores: Store[] = [];

  /** `n` children of the pool, each with a fresh store on this test's file. */
  const children = async (n: number): Promise<StoreChild[]> => {
    const picked = pool.slice(0, n);
    for (const c of picked) c.changes.length = 0;
    // Opened together, so the processes also race on creating and migrating a fresh file.
    await Promise.all(picked.map((c) => c.call({ op: "open", filename })));
    return picked;
  };
  const openHere = () => {
    const store = sqliteStore({ filename });
    stores.push(store);
    return store;
  };

  beforeAll(async () => {
    pool = Array.from({ length: 4 }, () => new StoreChild());
    await Promise.all(pool.map((c) => c.ready));
  });
  afterAll(async () => {
    await Promise.all(pool.map((c) => c.stop()));
  });
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "tokenpool-sqlite-mp-"));
    filename = join(dir, "shared.db");
  });
  afterEach(async () => {
    for (const store of stores.splice(0)) await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it("reservations from two processes never overdraw a key: exactly 50 of 200 succeed", async () => {
    const store = openHere();
    const key = await store.keys.create(fixtures.key({ remainQuota: 50 }));
    const pair = await children(2);
    // Both start at the same wall-clock moment and spread their calls over the same 60 ms.
    const startAt = Date.now() + 150;
    const results = await Promise.all(
      pair.map((c) =>
        c.call<{ granted: number; denied: number }>({
          op: "reserve",
          keyId: key.id,
          count: 100,
          startAt,
          spreadMs: 60,
        }),
      ),
    );
    expect(results.reduce((n, r) => n + r.granted, 0)).toBe(50);
    // Both processes got reservations through: they really raced for the same balance.
    for (const r of results) expect(r.granted).toBeGreaterThan(0);
    expect(results.reduce((n, r) => n + r.denied, 0)).toBe(150);
    expect((await store.keys.get(key.id))!.remainQuota).toBe(0);
  });

  it("three processes hitting a 60-per-minute counter admit exactly 60", async () => {
    const store = openHere();
    const trio = await children(3);
    const nowMs = Date.now();
    const startAt = nowMs + 150;
    const results = await Promise.all(
      trio.map((c) =>
        c.call<{ admitted: number }>({ op: "hit", count: 200, startAt, spreadMs: 60, nowMs }),
      ),
    );
    expect(results.reduce((n, r) => n + r.admitted, 0)).toBe(60);
    expect(results.filter((r) => r.admitted > 0).length).toBeGreaterThan(1);
    const probe = await store.hitWindows(
      [{ key: "rpm:key:1", limit: 60, windowMs: 60_000, cost: 0 }],
      nowMs,
    );
    expect(probe).toMatchObject({ ok: true, windows: [{ remaining: 0 }] });
  });

  it("three processes refilling one key for the same period refill it once", async () => {
    const store = openHere();
    const key = await store.keys.create(fixtures.key({ remainQuota: 4, usedQuota: 96 }));
    const trio = await children(3);
    const period = Date.UTC(2026, 11, 1);
    const startAt = Date.now() + 150;
    const results = await Promise.all(
      trio.map((c) =>
        c.call<{ refilled: number }>({
          op: "refill",
          keyId: key.id,
          period,
          count: 30,
          startAt,
          spreadMs: 30,
        }),
      ),
    );
    expect(results.reduce((n, r) => n + r.refilled, 0)).toBe(1);
    expect(await store.keys.get(key.id)).toEqual({
      ...key,
      remainQuota: 1_000,
      usedQuota: 0,
      quotaPeriod: period,
    });
  });

  it("a process killed with SIGKILL while holding a lease gives the slot back at its expiry", async () => {
    const store = openHere();
    const doomed = new StoreChild();
    try {
      await doomed.ready;
      await doomed.call({ op: "open", filename });
      expect(await doomed.call({ op: "holdLease", pool: "one", limit: 1, ttlMs: 600 })).toEqual({
        held: true,
      });
    } finally {
      await doomed.kill();
    }
    const pool = [{ pool: "one", limit: 1 }];
    const refused = await store.acquireLeases(pool, "parent", Date.now() + 5_000, Date.now());
    expect(refused).toMatchObject({ ok: false, pool: "one" });
    if (refused.ok) return;
    expect(refused.retryAfterMs).toBeLessThanOrEqual(600);
    await new Promise((r) => setTimeout(r, refused.retryAfterMs + 20));
    const now = Date.now();
    expect(await store.acquireLeases(pool, "parent", now + 5_000, now)).toEqual({
      ok: true,
      inUse: [1],
    });
  });

  it("two processes racing acquireLock on one name get exactly one token", async () => {
    openHere();
    const pair = await children(2);
    const tokens = await Promise.all(
      pair.map((c) =>
        c.call<(string | null)[]>({
          op: "acquireLock",
          name: "oauth-refresh",
          ttlMs: 10_000,
          count: 10,
          startAt: Date.now() + 150,
        }),
      ),
    );
    expect(tokens.flat().filter((t) => t !== null)).toHaveLength(1);
  });

  it("a change committed in one process reaches watch() in the other within a second", async () => {
    const store = openHere();
    const seen: StoreChange[] = [];
    store.watch((c) => seen.push(c));
    const [child] = await children(1);
    await child!.call({ op: "watch" });

    const writtenAt = Date.now();
    const key = await store.keys.create(fixtures.key());
    await waitUntil(() => child!.changes.length >= 1, 1_000, "the key change in the child");
    expect(child!.changes[0]!.change).toEqual({
      collection: "keys",
      id: String(key.id),
      op: "upsert",
      origin: "remote",
    });
    expect(child!.changes[0]!.at - writtenAt).toBeLessThan(1_000);

    const sentAt = Date.now();
    await child!.call({ op: "setSettings", values: { "request-retry": 4 } });
    await waitUntil(() => seen.length >= 2, 1_000, "the setting change in the parent");
    expect(Date.now() - sentAt).toBeLessThan(1_000);
    expect(seen).toEqual([
      { collection: "keys", id: String(key.id), op: "upsert", origin: "local" },
      { collection: "settings", id: "request-retry", op: "upsert", origin: "remote" },
    ]);
    expect(await store.settings.get("request-retry")).toBe(4);
    // The child's own write reached its listener once, as local, never again as remote.
    await new Promise((r) => setTimeout(r, 300));
    expect(child!.changes.map((c) => c.change)).toEqual([
      { collection: "keys", id: String(key.id), op: "upsert", origin: "remote" },
      { collection: "settings", id: "request-retry", op: "upsert", origin: "local" },
    ]);
  });

  it("processes opening the same fresh file at once migrate it exactly once", async () => {
    const group = await children(4);
    const keys = await Promise.all(
      group.map((c) => c.call<ApiKeyRecord>({ op: "createKey", input: fixtures.key() })),
    );
    expect(new Set(keys.map((k) => k.id)).size).toBe(4);
    const db = new Database(filename, { readonly: true });
    try {
      const versions = db
        .prepare(`SELECT version FROM ${MIGRATIONS_TABLE} ORDER BY version`)
        .pluck()
        .all();
      expect(versions).toEqual(migrations.map((m) => m.version));
      expect(db.prepare("SELECT COUNT(*) FROM keys").pluck().get()).toBe(4);
      expect(db.pragma("journal_mode", { simple: true })).toBe("wal");
    } finally {
      db.close();
    }
  });
});
