import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { recordUsage, type UsageQuery } from "@tokenpool/core";
import { fixtures } from "@tokenpool/testing";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MIGRATIONS_TABLE, migrations, sqliteStore } from "../src/index.js";

const H = Date.UTC(2024, 2, 1, 8);

describe("sqliteStore request log", () => {
  let dir: string;
  let file: string;
  const cleanups: (() => unknown)[] = [];
  const track = <T extends { close(): unknown }>(x: T): T => {
    cleanups.push(() => x.close());
    return x;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "tokenpool-sqlite-log-"));
    file = join(dir, "store.db");
  });
  afterEach(async () => {
    for (const close of cleanups.splice(0).reverse()) await close();
    rmSync(dir, { recursive: true, force: true });
  });

  /** A database file as schema version 4 left it: only the migrations up to 4 applied. */
  const schema4 = (): Database.Database => {
    const old = new Database(file);
    old.exec(
      `CREATE TABLE ${MIGRATIONS_TABLE} (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL)`,
    );
    for (const m of migrations.filter((m) => m.version <= 4)) {
      old.exec(m.sql);
      old
        .prepare(`INSERT INTO ${MIGRATIONS_TABLE} (version, name, applied_at) VALUES (?, ?, 0)`)
        .run(m.version, m.name);
    }
    return old;
  };

  it("opens a database at schema 4: old records and roll-ups read back, new writes work", async () => {
    const old = schema4();
    // What version 4 wrote: two details (one with a key and a credential, one recovered without)
    // and their roll-ups (key_id -1 for none).
    old.exec(`
      INSERT INTO usage_records (id, timestamp, request_id, key_id, user_id, credential_id, provider, route, model, stream, status, success, input_tokens, output_tokens, reasoning_tokens, cached_tokens, total_tokens, quota, duration_ms, error, recovered)
        VALUES (1, ${H}, 'req-1', 7, 3, 'cred-a', 'openai', 'POST /v1/chat/completions', 'gpt-4o', 1, 200, 1, 10, 20, 0, 0, 30, 15, 100, NULL, 0),
               (2, ${H + 1000}, 'req-2', NULL, NULL, NULL, '', 'POST /v1/chat/completions', 'gpt-4o', 0, 0, 0, 0, 0, 0, 0, 0, 40, 0, 'recovered: x', 1);
      INSERT INTO usage_rollups (hour, route, model, key_id, requests, successes, failures, input_tokens, output_tokens, reasoning_tokens, cached_tokens, total_tokens, quota)
        VALUES ('2024-03-01T08', 'POST /v1/chat/completions', 'gpt-4o', 7, 1, 1, 0, 10, 20, 0, 0, 30, 15),
               ('2024-03-01T08', 'POST /v1/chat/completions', 'gpt-4o', -1, 1, 0, 1, 0, 0, 0, 0, 0, 40);
    `);
    old.close();

    const store = track(sqliteStore({ filename: file }));
    const db = track(new Database(file, { readonly: true }));
    expect(db.prepare(`SELECT MAX(version) FROM ${MIGRATIONS_TABLE}`).pluck().get()).toBe(
      migrations[migrations.length - 1]!.version,
    );

    const { items, total } = await store.usage.list();
    expect(total).toBe(2);
    expect(items[1]).toEqual({
      id: 1,
      timestamp: H,
      requestId: "req-1",
      keyId: 7,
      userId: 3,
      credentialId: "cred-a",
      provider: "openai",
      route: "POST /v1/chat/completions",
      model: "gpt-4o",
      stream: true,
      status: 200,
      success: true,
      inputTokens: 10,
      outputTokens: 20,
      reasoningTokens: 0,
      cachedTokens: 0,
      totalTokens: 30,
      quota: 15,
      durationMs: 100,
      error: null,
    });
    expect(items[0]).toMatchObject({ id: 2, keyId: null, recovered: true, quota: 40 });
    for (const r of items) {
      for (const f of ["keyName", "username", "group", "format", "firstTokenMs", "retries"])
        expect(r).not.toHaveProperty(f);
      expect(r).not.toHaveProperty("errorType");
      expect(r).not.toHaveProperty("bodies");
    }
    // The reference treats a missing name or group as "".
    expect((await store.usage.list({ group: "" })).total).toBe(2);
    expect((await store.usage.list({ keyName: "", username: "" })).total).toBe(2);
    expect((await store.usage.list({ group: "vip" })).total).toBe(0);
    expect(await store.usage.stat({ model: "gpt-4o", success: false })).toEqual({
      requests: 1,
      quota: 40,
      totalTokens: 0,
    });

    const route = "POST /v1/chat/completions";
    const oldRollups = [
      { keyId: null, requests: 1, quota: 40 },
      { keyId: 7, requests: 1, quota: 15 },
    ];
    expect(
      (await store.usage.rollups()).map(({ keyId, userId, credentialId, requests, quota }) => ({
        keyId,
        userId,
        credentialId,
        requests,
        quota,
      })),
    ).toEqual(oldRollups.map((r) => ({ ...r, userId: null, credentialId: null })));

    // New writes: a record with the log fields gets its own roll-up row (owner and credential
    // known); one without owner and credential adds to the migrated row of its key.
    const [added] = await recordUsage(store, [
      fixtures.usage({
        timestamp: H + 2000,
        route,
        model: "gpt-4o",
        keyId: 7,
        keyName: "prod",
        userId: 3,
        username: "ann",
        credentialId: "cred-a",
        group: "vip",
        format: "openai",
        firstTokenMs: null,
        retries: 0,
        errorType: null,
        quota: 5,
      }),
      fixtures.usage({ timestamp: H + 3000, route, model: "gpt-4o", keyId: 7, quota: 1 }),
    ]);
    expect((await store.usage.list({ group: "vip" })).items).toEqual([added]);
    expect(added).toMatchObject({ firstTokenMs: null, errorType: null });
    expect((await store.usage.list({ keyName: "prod", username: "ann" })).total).toBe(1);
    expect((await store.usage.list({ credentialId: "cred-a" })).total).toBe(2);
    const rollups = await store.usage.rollups({ keyId: 7 });
    expect(rollups.map((r) => [r.userId, r.credentialId, r.requests, r.quota])).toEqual([
      [null, null, 2, 16],
      [3, "cred-a", 1, 5],
    ]);
    expect((await store.usage.rollups({ userId: 3 })).map((r) => r.quota)).toEqual([5]);
    expect((await store.usage.rollups({ credentialId: "cred-a" })).map((r) => r.quota)).toEqual([
      5,
    ]);
  });

  it("a page and its total read the index of the most selective filter, in the page's order", async () => {
    // The schema, and the names the filters below look up (recorded with key 1 and user 1).
    const seed = sqliteStore({ filename: file });
    await recordUsage(seed, [fixtures.usage({ keyId: 1, keyName: "k", userId: 1, username: "u" })]);
    await seed.close();
    const db = track(new Database(file));
    let prepared: string[] = [];
    const prepare = db.prepare.bind(db);
    db.prepare = ((sql: string) => {
      prepared.push(sql);
      return prepare(sql);
    }) as typeof db.prepare;
    const plan = (sql: string) =>
      (
        prepare(`EXPLAIN QUERY PLAN ${sql}`).all(
          ...Array((sql.match(/\?/g) ?? []).length).fill(null),
        ) as { detail: string }[]
      )
        .map((r) => r.detail)
        .join("; ");
    const T = { from: H, to: H + 3_600_000 };
    const cases: [UsageQuery, string][] = [
      // COUNT(*) of everything may read whichever index is smallest.
      [{}, "\\w+"],
      [T, "timestamp"],
      // All minus the failures.
      [{ success: true }, "\\w+"],
      [{ model: "m" }, "model"],
      [{ model: "m", ...T }, "model"],
      [{ keyName: "k" }, "key_id"],
      [{ keyName: "", ...T }, "timestamp"],
      [{ username: "u", ...T }, "user_id"],
      [{ credentialId: "c" }, "credential_id"],
      [{ group: "" }, "group"],
      [{ success: false, ...T }, "failures"],
      [{ keyId: 1 }, "key_id"],
      [{ userId: 1 }, "user_id"],
      // Several filters: the one that selects fewest records in a typical gateway leads.
      [{ group: "", username: "u", ...T }, "user_id"],
      [{ model: "m", keyName: "k" }, "key_id"],

      [{ keyName: "", model: "m" }, "model"],
      [{ credentialId: "c", success: false }, "credential_id"],
      [{ group: "vip", success: false }, "failures"],
      [{ model: "m", success: true }, "model"],
      [{ keyId: 1, userId: 2, model: "m" }, "key_id"],
    ];
    for (const [q, index] of cases) {
      prepared = [];
      // A store per case: each compiles its query shapes anew.
      const store = sqliteStore({ database: db });
      await store.usage.list({ ...q, limit: 20 });
      await store.close();
      const reads = prepared.filter((sql) =>
        /^SELECT (COUNT\(\*\)|\*) FROM usage_records/.test(sql),
      );
      expect(reads.length, JSON.stringify(q)).toBeGreaterThanOrEqual(2);
      for (const sql of reads) {
        const p = plan(sql);
        expect(p, `${JSON.stringify(q)}: ${sql}`).toMatch(
          new RegExp(`USING (COVERING )?INDEX usage_records_${index}\\b`),
        );
        expect(p, `${JSON.stringify(q)}: ${sql}`).not.toMatch(/TEMP B-TREE/);
      }
    }
  });
});
