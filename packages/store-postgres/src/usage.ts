/**
 * The usage collection of the PostgreSQL store (request log, stats, roll-ups, retention) and the
 * statements that append records and bump their roll-ups. Internal to this package.
 */
import type {
  NewUsageRecord,
  RollupQuery,
  UsageCollection,
  UsageQuery,
  UsageRecord,
  UsageRollup,
  UsageStat,
} from "@tokenpool/core";
import {
  addToRollup,
  emptyRollup,
  type RollupRow,
  rollupFromRow,
  rollupKey,
  rollupParams,
  type UsageRow,
  usageFromRow,
  usageParams,
} from "@tokenpool/core/store-kernel";
import type { PgContext, Runner, Tables } from "./context.js";

/** The columns of `usage_records` in the order of `usageParams`, with their SQL types. */
const USAGE_COLUMNS: readonly (readonly [column: string, type: string])[] = [
  ["timestamp", "bigint"],
  ["request_id", "text"],
  ["key_id", "bigint"],
  ["user_id", "bigint"],
  ["credential_id", "text"],
  ["provider", "text"],
  ["route", "text"],
  ["model", "text"],
  ["stream", "smallint"],
  ["status", "integer"],
  ["success", "smallint"],
  ["input_tokens", "bigint"],
  ["output_tokens", "bigint"],
  ["reasoning_tokens", "bigint"],
  ["cached_tokens", "bigint"],
  ["total_tokens", "bigint"],
  ["quota", "bigint"],
  ["duration_ms", "bigint"],
  ["error", "text"],
  ["recovered", "smallint"],
  ["log_fields", "integer"],
  ["key_name", "text"],
  ["username", "text"],
  ["usage_group", "text"],
  ["format", "text"],
  ["first_token_ms", "bigint"],
  ["retries", "integer"],
  ["error_type", "text"],
  ["bodies", "text"],
];

/** The columns of `usage_rollups` in the order of `rollupParams`, with their SQL types. */
const ROLLUP_COLUMNS: readonly (readonly [column: string, type: string])[] = [
  ["hour", "text"],
  ["route", "text"],
  ["model", "text"],
  ["key_id", "bigint"],
  ["user_id", "bigint"],
  ["credential_id", "text"],
  ["requests", "bigint"],
  ["successes", "bigint"],
  ["failures", "bigint"],
  ["input_tokens", "bigint"],
  ["output_tokens", "bigint"],
  ["reasoning_tokens", "bigint"],
  ["cached_tokens", "bigint"],
  ["total_tokens", "bigint"],
  ["quota", "bigint"],
];

/** The roll-up columns that add up (everything after the primary key). */
const ROLLUP_SUMS = ROLLUP_COLUMNS.slice(6).map(([c]) => c);

/** `unnest($1::bigint[], $2::text[], ...)` over `columns`: one array parameter per column. */
const unnestOf = (columns: readonly (readonly [string, string])[]): string =>
  `unnest(${columns.map(([, type], i) => `$${i + 1}::${type}[]`).join(", ")})`;

/** The rows' positional parameters turned into one array per column (for {@link unnestOf}). */
function columnArrays(rows: unknown[][], width: number): unknown[][] {
  const out: unknown[][] = Array.from({ length: width }, () => new Array(rows.length));
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    for (let j = 0; j < width; j++) out[j]![i] = row[j];
  }
  return out;
}

/** The statements that write usage, built once per store for its tables. */
export interface UsageWriter {
  /**
   * Appends the records and bumps their roll-ups inside the caller's transaction; returns them
   * with their ids, increasing in the order given.
   */
  append(tx: Runner, records: NewUsageRecord[]): Promise<UsageRecord[]>;
}

/** The writer of {@link UsageWriter} for the tables `t`. */
export function usageWriter(t: Tables): UsageWriter {
  // One statement per batch whatever its size: a parameter per column (an array), not per value.
  // The rows are inserted, and take their identity values, in the arrays' order; RETURNING hands
  // them back in that order.
  const insertUsage = `INSERT INTO ${t.usage_records} (${USAGE_COLUMNS.map(([c]) => c).join(", ")})
    SELECT * FROM ${unnestOf(USAGE_COLUMNS)} RETURNING id`;
  // Increments, never read-modify-write: concurrent batches on the same bucket add up.
  const bumpRollups = `INSERT INTO ${t.usage_rollups} AS r (${ROLLUP_COLUMNS.map(([c]) => c).join(", ")})
    SELECT * FROM ${unnestOf(ROLLUP_COLUMNS)}
    ON CONFLICT (hour, route, model, key_id, user_id, credential_id) DO UPDATE SET
    ${ROLLUP_SUMS.map((c) => `${c} = r.${c} + EXCLUDED.${c}`).join(", ")}`;
  // Last in the transaction (after the key, owner and roll-up locks, which every writer takes
  // in the same order before it): the one row every batch bumps is held the shortest time.
  const countUsage = `INSERT INTO ${t.usage_totals} AS u (id, records) VALUES (1, $1)
    ON CONFLICT (id) DO UPDATE SET records = u.records + EXCLUDED.records`;

  return {
    async append(tx, records) {
      if (records.length === 0) return [];
      const { rows } = await tx.run(
        insertUsage,
        columnArrays(records.map(usageParams), USAGE_COLUMNS.length),
      );
      if (rows.length !== records.length) {
        throw new Error(`commitUsage: ${rows.length} of ${records.length} usage records inserted`);
      }
      const out: UsageRecord[] = new Array(records.length);
      // Sum the batch per bucket first: one row per bucket (ON CONFLICT may touch a row once).
      const buckets = new Map<string, UsageRollup>();
      for (let i = 0; i < records.length; i++) {
        const r = records[i]!;
        out[i] = { ...r, id: (rows[i] as { id: number }).id };
        const k = rollupKey(r);
        let bucket = buckets.get(k);
        if (!bucket) {
          bucket = emptyRollup(r);
          buckets.set(k, bucket);
        }
        addToRollup(bucket, r);
      }
      // Buckets in one order for every transaction, so two batches that bump the same rows lock
      // them in the same order and never deadlock.
      const sorted = [...buckets.entries()]
        .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
        .map(([, bucket]) => rollupParams(bucket));
      await tx.run(bumpRollups, columnArrays(sorted, ROLLUP_COLUMNS.length));
      await tx.run(countUsage, [records.length]);
      return out;
    },
  };
}

/** The conditions of a WHERE clause with `$n` placeholders, added filter by filter. */
class Where {
  readonly #conditions: string[] = [];
  /** The parameters, in the order of their placeholders. */
  readonly params: unknown[] = [];

  /** Adds `column op $n` with `value` when `applies`. */
  and(applies: boolean, column: string, op: string, value: unknown): this {
    if (applies) {
      this.params.push(value);
      this.#conditions.push(`${column} ${op} $${this.params.length}`);
    }
    return this;
  }

  /** Adds a condition without parameters when `applies`. */
  literal(applies: boolean, sql: string): this {
    if (applies) this.#conditions.push(sql);
    return this;
  }

  /** ` WHERE a AND b`, or `""` without conditions. */
  get clause(): string {
    return this.#conditions.length ? ` WHERE ${this.#conditions.join(" AND ")}` : "";
  }
}

/**
 * The filters of a usage query, with the reference semantics of `usageMatches`: the names and
 * the group hold '' when absent, so `""` finds the records without one. Each filter is an
 * equality on a column whose index is (column, timestamp, id), so that the planner reads one
 * filter's index backwards in the page's order (newest first) and stops at the page's end.
 * `success` is a literal, not a parameter, so that the partial index of failures applies.
 */
function usageWhere(q: UsageQuery): Where {
  return new Where()
    .and(q.from !== undefined, "timestamp", ">=", q.from)
    .and(q.to !== undefined, "timestamp", "<", q.to)
    .and(q.keyId !== undefined, "key_id", "=", q.keyId)
    .and(q.userId !== undefined, "user_id", "=", q.userId)
    .and(q.model !== undefined, "model", "=", q.model)
    .and(q.keyName !== undefined, "key_name", "=", q.keyName)
    .and(q.username !== undefined, "username", "=", q.username)
    .and(q.credentialId !== undefined, "credential_id", "=", q.credentialId)
    .and(q.group !== undefined, "usage_group", "=", q.group)
    .literal(q.success !== undefined, q.success ? "success = 1" : "success = 0");
}

/** The usage collection of the store `ctx`. */
export function usageCollection(ctx: PgContext): UsageCollection {
  const { t } = ctx;
  return {
    async list(q: UsageQuery = {}) {
      const where = usageWhere(q);
      const n = where.params.length;
      const [items, count] = await Promise.all([
        ctx.rows<UsageRow>(
          `SELECT * FROM ${t.usage_records}${where.clause}
           ORDER BY timestamp DESC, id DESC LIMIT $${n + 1} OFFSET $${n + 2}`,
          [...where.params, Math.max(0, q.limit ?? 100), Math.max(0, q.offset ?? 0)],
        ),
        // Without a filter the total is the kept count (O(1)); a filter counts its index range.
        n === 0 && q.success === undefined
          ? ctx.one<{ n: number }>(`SELECT records AS n FROM ${t.usage_totals} WHERE id = 1`)
          : ctx.one<{ n: number }>(
              `SELECT COUNT(*) AS n FROM ${t.usage_records}${where.clause}`,
              where.params,
            ),
      ]);
      return { items: items.map(usageFromRow), total: count?.n ?? 0 };
    },

    async stat(q: UsageQuery = {}) {
      const where = usageWhere(q);
      const row = await ctx.one<UsageStat>(
        `SELECT COUNT(*) AS requests, COALESCE(SUM(quota), 0) AS quota,
           COALESCE(SUM(total_tokens), 0) AS "totalTokens"
         FROM ${t.usage_records}${where.clause}`,
        where.params,
      );
      return {
        requests: row?.requests ?? 0,
        quota: row?.quota ?? 0,
        totalTokens: row?.totalTokens ?? 0,
      };
    },

    async rollups(q: RollupQuery = {}) {
      const where = new Where()
        .and(q.fromHour !== undefined, "hour", ">=", q.fromHour)
        .and(q.toHour !== undefined, "hour", "<", q.toHour)
        .and(q.keyId !== undefined, "key_id", "=", q.keyId)
        .and(q.userId !== undefined, "user_id", "=", q.userId)
        .and(q.credentialId !== undefined, "credential_id", "=", q.credentialId);
      const rows = await ctx.rows<RollupRow>(
        `SELECT * FROM ${t.usage_rollups}${where.clause}
         ORDER BY hour, route, model, key_id, user_id, credential_id`,
        where.params,
      );
      return rows.map(rollupFromRow);
    },

    async prune(before, keep) {
      return ctx.tx(async (tx) => {
        let n =
          (await tx.run(`DELETE FROM ${t.usage_records} WHERE timestamp < $1`, [before]))
            .rowCount ?? 0;
        if (keep !== undefined) {
          // The newest detail beyond the `keep` newest; it and every older one go.
          const edge = await tx.one<{ timestamp: number; id: number }>(
            `SELECT timestamp, id FROM ${t.usage_records}
             ORDER BY timestamp DESC, id DESC LIMIT 1 OFFSET $1`,
            [Math.max(0, Math.floor(keep))],
          );
          if (edge) {
            n +=
              (
                await tx.run(
                  `DELETE FROM ${t.usage_records} WHERE (timestamp, id) <= ($1::bigint, $2::bigint)`,
                  [edge.timestamp, edge.id],
                )
              ).rowCount ?? 0;
          }
        }
        if (n > 0) {
          await tx.run(`UPDATE ${t.usage_totals} SET records = records - $1 WHERE id = 1`, [n]);
        }
        return n;
      });
    },
  };
}
