import { runStoreConformance } from "@tokenpool/testing";
import { startPostgresServer } from "@tokenpool/testing/postgres-server";
import pg from "pg";
import { afterAll } from "vitest";
import { type PostgresStore, postgresStore } from "../src/index.js";

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

runStoreConformance({
  name: "postgres",
  create: () => open(uniqueSchema()),
  reopen: (store) => open(schemas.get(store)!),
  cleanup: async (store) => {
    await admin.query(`DROP SCHEMA IF EXISTS "${schemas.get(store)!}" CASCADE`);
  },
});
