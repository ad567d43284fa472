export type { BetterSqlite3Database } from "./database.js";
export { MIGRATIONS_TABLE, type Migration, migrations } from "./migrations.js";
export {
  type SqliteStoreBaseOptions,
  type SqliteStoreOptions,
  sqliteStore,
} from "./sqlite-store.js";
