/**
 * An open better-sqlite3 `Database` (what `new Database(file)` returns), described by a few of its
 * members so that the public types do not need `@types/better-sqlite3`: any better-sqlite3
 * `Database` fits it.
 */
export interface BetterSqlite3Database {
  readonly name: string;
  readonly open: boolean;
  readonly memory: boolean;
  prepare(source: string): unknown;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  close(): unknown;
}
