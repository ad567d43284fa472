export { MIGRATIONS_TABLE, type Migration, migrations } from "./migrations.js";
export {
  type BetterSqlite3Database,
  type SqliteStoreBaseOptions,
  type SqliteStoreOptions,
  sqliteStore,
} from "./sqlite-store.js";
