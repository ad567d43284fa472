import { createGateway, type StoreChange } from "@tokenpool/core";
import { fixtures, runStoreConformance } from "@tokenpool/testing";
import { startPostgresServer } from "@tokenpool/testing/postgres-server";
import pg from "pg";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { type PostgresStore, type PostgresStoreOptions, postgresStore } from "../src/index.js";

// Top-level: the conformance suite creates a probe store while tests are collected.
const server = await startPostgresServer();
const admin = new pg.Pool({ connectionString: server.url, max: 2 });
admin.on("error", () => {});
afterAll(async () => {
  await admin.end();
  await server.stop();
});

let counter = 0;
const uniqueSchema = () => `tp_test_${process.pid}_${counter++}`;
const schemas = new WeakMap<object, string>();

const open = (schema: string): PostgresStore => {
  const store = postgresStore({ connectionString: server.url, schema, max: 20 });
  schemas.set(store, schema);
  return store;
};

/**
 * Migrated schemas the conformance tests hand back, emptied: migrating a fresh schema for each of
 * ~150 tests would cost ~0.2-0.5 s each (mostly index builds), emptying one costs a TRUNCATE.
 */
const spare: string[] = [];
/** Empties a migrated schema as a fresh one: no rows, identities restarted, versions at 0. */
async function empty(schema: string): Promise<void> {
  const { rows } = await admin.query<{ tablename: string }>(
    "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename NOT IN ('tokenpool_migrations', 'change_versions')",
    [schema],
  );
  await admin.query(
    `TRUNCATE ${rows.map((r) => `"${schema}"."${r.tablename}"`).join(", ")} RESTART IDENTITY;
     UPDATE "${schema}".change_versions SET version = 0`,
  );
}

runStoreConformance({
  name: "postgres",
  // Ready before the test starts: a test that reads the clock before its first call (a lease of
  // 60 ms) must not have the start-up counted in it.
  create: async () => {
    const store = open(spare.pop() ?? uniqueSchema());
    await store.ready;
    return store;
  },
  reopen: async (store) => {
    const peer = open(schemas.get(store)!);
    await peer.ready;
    return peer;
  },
  cleanup: async (store) => {
    const schema = schemas.get(store)!;
    await empty(schema);
    spare.push(schema);
  },
});

describe("postgresStore", () => {
  const opened: PostgresStore[] = [];
  const made: string[] = [];
  afterEach(async () => {
    for (const store of opened.splice(0)) await store.close();
    for (const schema of made.splice(0)) {
      await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
    }
  });
  const openHere = (schema: string, extra: Partial<PostgresStoreOptions> = {}) => {
    const store = postgresStore({ connectionString: server.url, schema, max: 5, ...extra });
    opened.push(store);
    if (!made.includes(schema)) made.push(schema);
    return store;
  };

  it("five instances starting together on a fresh schema migrate it once", async () => {
    const schema = uniqueSchema();
    const stores = Array.from({ length: 5 }, () => openHere(schema));
    await Promise.all(stores.map((s) => s.ready));
    const { rows } = await admin.query(
      `SELECT version, count(*)::int AS n FROM "${schema}".tokenpool_migrations GROUP BY version`,
    );
    expect(rows.length).toBeGreaterThan(0);
    for (const row of rows) expect(row.n).toBe(1);
    // They all work on the one schema.
    const key = await stores[0]!.keys.create(fixtures.key());
    for (const s of stores) expect(await s.keys.get(key.id)).toEqual(key);
  });

  it("refuses a schema migrated by a newer version, naming both versions", async () => {
    const schema = uniqueSchema();
    await openHere(schema).ready;
    await admin.query(
      `INSERT INTO "${schema}".tokenpool_migrations (version, name, applied_at) VALUES (999, 'future', 0)`,
    );
    const newer = openHere(schema);
    await expect(newer.ready).rejects.toThrow(
      /schema version 999.*Upgrade @tokenpool\/store-postgres/,
    );
    // Every call rejects likewise, instead of touching tables it does not know.
    await expect(newer.keys.get(1)).rejects.toThrow(/schema version 999/);
  });

  it("keeps stores in different schemas of one database apart", async () => {
    const a = openHere(uniqueSchema());
    const b = openHere(uniqueSchema());
    const key = await a.keys.create(fixtures.key());
    expect(await b.keys.getByHash(key.keyHash)).toBeNull();
    await b.settings.set({ only: "b" });
    expect(await a.settings.get("only")).toBeUndefined();
  });

  it("rejects a schema name that is not a plain identifier", () => {
    for (const schema of ['x"; DROP TABLE users; --', "a.b", "", "9lives", "x".repeat(64)]) {
      expect(() => postgresStore({ connectionString: server.url, schema })).toThrow(TypeError);
    }
    expect(() => postgresStore({ schema: "ok" } as PostgresStoreOptions)).toThrow(
      /connectionString, poolConfig or pool/,
    );
  });

  it("rejects ready and every call when the server cannot be reached, and still closes", async () => {
    const errors: unknown[] = [];
    const store = postgresStore({
      connectionString: "postgres://postgres@127.0.0.1:1/postgres",
      schema: uniqueSchema(),
      onError: (e) => errors.push(e),
    });
    await expect(store.ready).rejects.toThrow(/ECONNREFUSED/);
    await expect(store.keys.get(1)).rejects.toThrow(/ECONNREFUSED/);
    await expect(store.close()).resolves.toBeUndefined();
  });

  it("a change whose notification was lost with the connection is reported at the resync", async () => {
    const schema = uniqueSchema();
    const here = openHere(schema, { resyncIntervalMs: 200, onError: () => {} });
    const there = openHere(schema);
    await Promise.all([here.ready, there.ready]);
    const seen: StoreChange[] = [];
    here.watch((c) => seen.push(c));
    // Cut `here`'s LISTEN connection (as a network failure or a server restart would) and
    // write through the other instance before it can reconnect.
    const killed = await admin.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query LIKE 'LISTEN %' AND datname = 'postgres'",
    );
    expect(killed.rowCount).toBeGreaterThan(0);
    await there.keys.create(fixtures.key());
    await waitFor(() => seen.some((c) => c.collection === "keys"), 5_000);
    expect(seen.find((c) => c.collection === "keys")).toMatchObject({
      collection: "keys",
      origin: "remote",
    });
    // Listening again: the next change arrives with its id.
    seen.length = 0;
    const next = await there.keys.create(fixtures.key());
    await waitFor(() => seen.some((c) => c.id === String(next.id)), 5_000);
  });

  it("uses an application's pool without changing its type parsers or ending it", async () => {
    const pool = new pg.Pool({ connectionString: server.url, max: 4 });
    pool.on("error", () => {});
    const schema = uniqueSchema();
    made.push(schema);
    const store = postgresStore({ pool, schema });
    const key = await store.keys.create(fixtures.key({ remainQuota: 2 ** 40 }));
    expect((await store.keys.get(key.id))!.remainQuota).toBe(2 ** 40);
    await store.close();
    // The application's own queries: int8 still comes back as node-postgres' default, a string.
    const { rows } = await pool.query("SELECT 5::int8 AS n");
    expect(rows[0].n).toBe("5");
    await pool.end();
  });

  it("keeps no credential secret in the clear: a gateway seals it before the store sees it", async () => {
    const schema = uniqueSchema();
    const store = openHere(schema);
    const gateway = createGateway({
      store,
      secret: "pg-secret-0123456789-0123456789-0123456789",
      logger: false,
      oauth: { scanIntervalMs: 0 },
    });
    await gateway.ready;
    const plain = "sk-plain-upstream-key-0a1b2c3d4e5f6a7b";
    await gateway.credentials.add({
      provider: "openai",
      kind: "api-key",
      baseUrl: "https://api.openai.com/v1",
      secret: { apiKey: plain },
    });
    const { rows } = await admin.query(`SELECT secret FROM "${schema}".credentials`);
    expect(rows).toHaveLength(1);
    expect(rows[0].secret).not.toContain(plain);
    expect(JSON.parse(rows[0].secret).sealed).toMatch(/^v1\./);
    await gateway.close();
  });
});

async function waitFor(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 20));
  }
}
