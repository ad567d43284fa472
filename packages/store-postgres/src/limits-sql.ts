/**
 * The server-side functions of the admission steps (PL/pgSQL), created by the migrations in the
 * store's schema. Internal to this package.
 *
 * Each function is one call of `limits.ts` (one round trip): it takes the transaction-scoped
 * advisory locks of the counters or pools it changes, in sorted order, then judges and writes.
 * The function runs in the implicit transaction of its `SELECT`, so the locks are released at
 * the statement's end. Under READ COMMITTED every statement of a (volatile) function takes a
 * new snapshot: the statements after the locks see everything the previous holder committed.
 *
 * The lock keys are those of the earlier client-side transactions: `hashtextextended` of
 * `<quoted table>:<counter or pool>`, so stores in other schemas of the database never wait for
 * each other. The names are sorted in the "C" collation: every caller takes them in one order,
 * so two calls on overlapping counters cannot deadlock.
 *
 * `hit_windows` and `acquire_leases` pin `plan_cache_mode = force_generic_plan`: with array
 * arguments the cached generic plan of their judging query looks costlier than a custom one
 * (which knows the arrays' lengths), so PL/pgSQL would plan it afresh on every call, which
 * cost two to four times the execution. The generic plan is the same index scan.
 *
 * Each function commits asynchronously (`synchronous_commit` off for its transaction only): its
 * advisory locks are released without waiting for the WAL flush, so a hot counter is not capped
 * at one call per flush. What a crash of the database server can lose is the last fraction of a
 * second of window hits and leases: a few requests not counted against a limit, never quota or
 * usage (the ledger commits synchronously).
 *
 * The window arithmetic on milliseconds (`windowSpan`, `bucketLeavesAt` of
 * `@tokenpool/core/store-kernel`) stays in TypeScript: the caller passes each hit's current and
 * oldest bucket and the time its current bucket leaves the window, and turns the bucket indices
 * the function answers into `resetMs` and `retryAfterMs`. The functions do the judging on the
 * stored rows, with the rules of `judgeWindow`/`judgeWindows` and of the memory store's leases.
 */

/** `text` as a SQL string literal. */
const literal = (text: string): string => `'${text.replaceAll("'", "''")}'`;

/** The `CREATE FUNCTION` statements of the admission steps for the quoted schema `s`. */
export const limitFunctions = (s: string): string => {
  const windows = literal(`${s}.limit_windows:`);
  const leases = literal(`${s}.limit_leases:`);
  return `
      -- hitWindows: hit i (1-based) is counter hit_ids[i] (windowId) with its limit and cost,
      -- its window's current and oldest bucket at the caller's now, and when its current bucket
      -- leaves the window (the new row's expires_at). All or nothing: answers
      -- {"ok":true,"count":[…],"first":[…]} (per hit: the units counted before it, and the
      -- oldest bucket counted after adding it, null when none) or
      -- {"ok":false,"index":<0-based>,"count":…,"retry":<bucket whose leaving lets it pass, or
      -- null when its cost is above its limit>}.
      CREATE FUNCTION ${s}.hit_windows(
        hit_ids TEXT[], hit_limits BIGINT[], hit_costs BIGINT[],
        hit_currents BIGINT[], hit_oldests BIGINT[], hit_leaves BIGINT[]
      ) RETURNS JSON LANGUAGE plpgsql
      SET plan_cache_mode = force_generic_plan AS $fn$
      DECLARE
        lock_key TEXT;
        h RECORD;
        counts BIGINT[] := '{}';
        firsts BIGINT[] := '{}';
        adds BOOLEAN := EXISTS (SELECT FROM unnest(hit_costs) AS c WHERE c > 0);
      BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);
        -- A call that only reads (every cost 0) takes no lock: its judgement is one statement,
        -- one consistent snapshot.
        IF adds THEN
          FOR lock_key IN
            SELECT DISTINCT (${windows} || u.id) COLLATE "C" FROM unnest(hit_ids) AS u(id) ORDER BY 1
          LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
          END LOOP;
        END IF;
        -- Every hit is judged in one statement: the stored buckets the window counts (from the
        -- oldest on, later ones included), plus the costs of the call's earlier hits on the same
        -- counter (pending, in the current bucket).
        FOR h IN
          SELECT q.i, q.lim, q.cost, c.n,
            CASE
              WHEN c.n + q.cost <= q.lim THEN
                CASE WHEN q.cost > 0 THEN least(c.first, q.cur) ELSE c.first END
              WHEN q.cost <= q.lim THEN (
                -- The oldest bucket whose leaving (with every older one) lets the hit fit.
                SELECT min(x.bucket) FROM (
                  SELECT y.bucket, sum(y.units) OVER (ORDER BY y.bucket) AS through
                  FROM (
                    SELECT z.bucket, sum(z.units) AS units FROM (
                      SELECT b.bucket, b.units FROM ${s}.limit_windows AS b
                      WHERE b.window_key = q.id AND b.bucket >= q.oldest AND b.units > 0
                      UNION ALL SELECT q.cur, q.pending WHERE q.pending > 0
                    ) AS z GROUP BY z.bucket
                  ) AS y
                ) AS x
                WHERE c.n - x.through + q.cost <= q.lim)
            END AS bucket
          FROM (
            SELECT u.*, coalesce(sum(u.cost) OVER (PARTITION BY u.id ORDER BY u.i
              ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)::BIGINT AS pending
            FROM unnest(hit_ids, hit_limits, hit_costs, hit_currents, hit_oldests)
              WITH ORDINALITY AS u(id, lim, cost, cur, oldest, i)
          ) AS q
          CROSS JOIN LATERAL (
            SELECT q.pending + coalesce(sum(b.units), 0)::BIGINT AS n,
              least(CASE WHEN q.pending > 0 THEN q.cur END, min(b.bucket)) AS first
            FROM ${s}.limit_windows AS b
            WHERE b.window_key = q.id AND b.bucket >= q.oldest AND b.units > 0
          ) AS c
          ORDER BY q.i
        LOOP
          IF h.n + h.cost > h.lim THEN
            RETURN json_build_object('ok', false, 'index', h.i - 1, 'count', h.n, 'retry', h.bucket);
          END IF;
          counts := counts || h.n;
          firsts := firsts || h.bucket;
        END LOOP;
        -- Hits of one call on one counter go into the same bucket: summed, since one
        -- INSERT … ON CONFLICT cannot update a row twice.
        IF adds THEN
          INSERT INTO ${s}.limit_windows AS w (window_key, bucket, units, expires_at)
          SELECT u.id, min(u.cur), sum(u.cost), min(u.leaves)
          FROM unnest(hit_ids, hit_costs, hit_currents, hit_leaves) AS u(id, cost, cur, leaves)
          WHERE u.cost > 0 GROUP BY u.id
          ON CONFLICT (window_key, bucket) DO UPDATE SET units = w.units + EXCLUDED.units;
        END IF;
        RETURN json_build_object('ok', true, 'count', counts, 'first', firsts);
      END
      $fn$;

      -- adjustWindow: adds delta to a bucket the caller found still in the window, never taking
      -- it below 0 (a bucket at 0 is deleted; a missing one is only created by a positive delta).
      CREATE FUNCTION ${s}.adjust_window(
        counter TEXT, at_bucket BIGINT, delta BIGINT, leaves BIGINT
      ) RETURNS VOID LANGUAGE plpgsql AS $fn$
      BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);
        PERFORM pg_advisory_xact_lock(hashtextextended(${windows} || counter, 0));
        IF delta > 0 THEN
          INSERT INTO ${s}.limit_windows AS w (window_key, bucket, units, expires_at)
          VALUES (counter, at_bucket, delta, leaves)
          ON CONFLICT (window_key, bucket) DO UPDATE SET units = w.units + EXCLUDED.units;
        ELSE
          DELETE FROM ${s}.limit_windows AS w
          WHERE w.window_key = counter AND w.bucket = at_bucket AND w.units + delta <= 0;
          IF NOT FOUND THEN
            UPDATE ${s}.limit_windows AS w SET units = w.units + delta
            WHERE w.window_key = counter AND w.bucket = at_bucket;
          END IF;
        END IF;
      END
      $fn$;

      -- acquireLeases: ask i (1-based) is pool ask_pools[i] of at most ask_limits[i] leases.
      -- Answers {"ok":true,"inUse":[…]} or {"ok":false,"index":<0-based>,"earliest":<expiry
      -- of the full pool's earliest live lease>}.
      CREATE FUNCTION ${s}.acquire_leases(
        ask_pools TEXT[], ask_limits BIGINT[], lease TEXT, new_expiry BIGINT, now_ms BIGINT
      ) RETURNS JSON LANGUAGE plpgsql
      SET plan_cache_mode = force_generic_plan AS $fn$
      DECLARE
        lock_key TEXT;
        a RECORD;
        adding TEXT[] := '{}';
        in_use BIGINT[] := '{}';
        added BOOLEAN;
        mine BOOLEAN;
        n BIGINT;
      BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);
        FOR lock_key IN
          SELECT DISTINCT (${leases} || u.pool) COLLATE "C" FROM unnest(ask_pools) AS u(pool) ORDER BY 1
        LOOP
          PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
        END LOOP;
        -- One scan of the pools reads their live leases and sees whether any expired; those are
        -- deleted (before the first ask is judged, so also when the call is refused) only then.
        FOR a IN
          SELECT u.i, u.pool, u.lim, coalesce(p.n, 0) AS held, p.earliest, coalesce(p.mine, false) AS mine,
            coalesce(bool_or(p.stale) OVER (), false) AS stale
          FROM unnest(ask_pools, ask_limits) WITH ORDINALITY AS u(pool, lim, i)
          LEFT JOIN (
            SELECT l.pool,
              count(*) FILTER (WHERE l.expires_at > now_ms) AS n,
              min(l.expires_at) FILTER (WHERE l.expires_at > now_ms) AS earliest,
              bool_or(l.lease_id = lease AND l.expires_at > now_ms) AS mine,
              bool_or(l.expires_at <= now_ms) AS stale
            FROM ${s}.limit_leases AS l
            WHERE l.pool = ANY(ask_pools)
            GROUP BY l.pool
          ) AS p ON p.pool = u.pool
          ORDER BY u.i
        LOOP
          IF a.i = 1 AND a.stale THEN
            DELETE FROM ${s}.limit_leases AS l
            WHERE l.pool = ANY(ask_pools) AND l.expires_at <= now_ms;
          END IF;
          -- A pool named twice in one call: its lease counts once.
          added := a.pool = ANY(adding);
          n := a.held + CASE WHEN added AND NOT a.mine THEN 1 ELSE 0 END;
          mine := a.mine OR added;
          IF NOT mine AND n >= a.lim THEN
            -- A full pool holds at least one live lease, so earliest is there.
            RETURN json_build_object('ok', false, 'index', a.i - 1, 'earliest', a.earliest);
          END IF;
          IF NOT added THEN adding := adding || a.pool; END IF;
          in_use := in_use || CASE WHEN mine THEN n ELSE n + 1 END;
        END LOOP;
        -- A lease the pool already holds keeps its slot and gets the new expiry.
        INSERT INTO ${s}.limit_leases AS l (pool, lease_id, expires_at)
        SELECT u.pool, lease, new_expiry FROM unnest(adding) AS u(pool)
        ON CONFLICT (pool, lease_id) DO UPDATE SET expires_at = EXCLUDED.expires_at;
        RETURN json_build_object('ok', true, 'inUse', in_use);
      END
      $fn$;

      -- renewLeases: extends the lease in each of the (distinct) pools where it is still live;
      -- answers how many it renewed.
      CREATE FUNCTION ${s}.renew_leases(
        renew_pools TEXT[], lease TEXT, new_expiry BIGINT, now_ms BIGINT
      ) RETURNS INTEGER LANGUAGE plpgsql AS $fn$
      DECLARE
        lock_key TEXT;
        renewed INTEGER;
      BEGIN
        PERFORM set_config('synchronous_commit', 'off', true);
        FOR lock_key IN
          SELECT DISTINCT (${leases} || u.pool) COLLATE "C" FROM unnest(renew_pools) AS u(pool) ORDER BY 1
        LOOP
          PERFORM pg_advisory_xact_lock(hashtextextended(lock_key, 0));
        END LOOP;
        UPDATE ${s}.limit_leases AS l SET expires_at = new_expiry
        WHERE l.pool = ANY(renew_pools) AND l.lease_id = lease AND l.expires_at > now_ms;
        GET DIAGNOSTICS renewed = ROW_COUNT;
        RETURN renewed;
      END
      $fn$;`;
};
