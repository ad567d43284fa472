/**
 * The usage collection of the PostgreSQL store: the request log, stats, roll-ups and retention.
 * Records and their roll-ups are written by the ledger's server-side functions (`ledger_append`
 * in `ledger-sql.ts`, called by commitUsage and recoverReservations). Internal to this package.
 */
import type { RollupQuery, UsageCollection, UsageQuery, UsageStat } from "@tokenpool/core";
import {
  type RollupRow,
  rollupFromRow,
  type UsageRow,
  usageFromRow,
} from "@tokenpool/core/store-kernel";
import type { PgContext } from "./context.js";

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
