/**
 * The server-side functions of the ledger (PL/pgSQL), created by the migrations in the store's
 * schema. Internal to this package.
 *
 * Each step of the proxy's hot path is one call, `SELECT <schema>.ledger_<step>(...)`: one round
 * trip, one statement, so one implicit transaction whose row locks are held only while the
 * function runs (and its commit), never across client round trips. Inside, every function takes
 * its row locks in the one global order of the store, so that no two steps wait for each other in
 * a cycle: reservation rows first (deleted; recovery skips locked ones instead of waiting), then
 * keys in ascending id, then users in ascending id, then roll-up rows in their sorted primary key
 * order, and the single `usage_totals` row last (held the shortest time: every append bumps it).
 *
 * - `ledger_reserve`: the key (and its owner) locked, checked and debited, with the reservation
 *   row; a denial says why, with the units its reservation rows hold.
 * - `ledger_settle_quota`: the reservation row deleted and settled (charged 0 when gone).
 * - `ledger_commit`: a batch of settlements and their usage records with their roll-ups.
 * - `ledger_recover`: expired reservation rows claimed (`SKIP LOCKED`), settled in full, recorded.
 * - `ledger_settle` and `ledger_append`: the parts the steps above share.
 */
import { type ReservationRow, recoveredRecord, usageParams } from "@tokenpool/core/store-kernel";

/** The columns of `usage_records` in the order of `usageParams`, with their SQL types. */
export const USAGE_COLUMNS: readonly (readonly [column: string, type: string])[] = [
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

/** The summed token columns of a roll-up (also columns of `usage_records`). */
const TOKEN_SUMS = [
  "input_tokens",
  "output_tokens",
  "reasoning_tokens",
  "cached_tokens",
  "total_tokens",
  "quota",
];

/** Every summed column of a roll-up (everything after its primary key). */
const ROLLUP_SUMS = ["requests", "successes", "failures", ...TOKEN_SUMS];

/** The roll-up's primary key. */
const ROLLUP_KEY = "hour, route, model, key_id, user_id, credential_id";

/** The parameter list `p_timestamp bigint[], p_request_id text[], ...` of a batch of records. */
const USAGE_ARGS = USAGE_COLUMNS.map(([c, type]) => `p_${c} ${type}[]`).join(", ");

/**
 * The `ledger_append` arguments of a batch, one array per usage column: `p_<column>` unless
 * `replace` gives another expression for the column.
 */
const appendArgs = (replace: Record<string, string>): string =>
  USAGE_COLUMNS.map(([c]) => replace[c] ?? `p_${c}`).join(", ");

/** A value of the recovered record's template as an SQL literal. */
const literal = (v: unknown): string =>
  v === null || v === undefined
    ? "NULL"
    : typeof v === "number"
      ? String(v)
      : `'${String(v).replaceAll("'", "''")}'`;

/**
 * The columns of a recovered usage record that come from its reservation row, with the arrays
 * `ledger_recover` gathers them in; every other column is the same for every recovered record.
 */
const RECOVERED_FROM_ROW: Record<string, string> = {
  timestamp: "v_timestamp",
  request_id: "v_request_id",
  key_id: "v_key",
  user_id: "v_user",
  route: "v_route",
  model: "v_model",
  quota: "v_units",
};

/**
 * The `ledger_append` arguments of recovered records: the row's values, and for the other
 * columns the values `recoveredRecord` (the kernel's mapping, the reference) gives every such
 * record, repeated `v_n` times.
 */
function recoveredArgs(): string {
  const template: ReservationRow = {
    id: "",
    keyId: 0,
    userId: null,
    units: 0,
    keyDebited: false,
    expiresAt: 0,
    owner: "",
    requestId: "",
    route: "",
    model: "",
    timestamp: 0,
  };
  const values = usageParams(recoveredRecord(template));
  return USAGE_COLUMNS.map(
    ([c, type], i) =>
      RECOVERED_FROM_ROW[c] ?? `array_fill(${literal(values[i])}::${type}, ARRAY[v_n])`,
  ).join(", ");
}

/** The `CREATE FUNCTION` statements of the ledger for the quoted schema `s`. */
export const ledgerFunctions = (s: string): string => `
-- The settlement of reservations whose rows the caller has just deleted (so no other settlement
-- or recovery can apply them), one array element per reservation: locks their keys, then their
-- owners, each in ascending id; applies each settlement in order on the running balances (as
-- settleQuota would one after the other; the arithmetic is settleAmounts of core's
-- store/settlement.ts) and writes every balance once. Returns the amounts charged, in order.
-- A balance whose quota_period is no longer the reservation's was refilled since the debit: it
-- is neither settled nor a cap. Every key still there gets accessed_time (a closed period's too).
CREATE FUNCTION ${s}.ledger_settle(
  p_key bigint[], p_user bigint[], p_units bigint[], p_key_debited boolean[],
  p_key_period bigint[], p_user_period bigint[], p_actual bigint[], p_now bigint
) RETURNS bigint[] LANGUAGE plpgsql AS $fn$
DECLARE
  k_id bigint[] := '{}';
  k_remain bigint[] := '{}';
  k_period bigint[] := '{}';
  k_delta bigint[] := '{}';
  k_used bigint[] := '{}';
  k_held bigint[] := '{}';
  u_id bigint[] := '{}';
  u_quota bigint[] := '{}';
  u_period bigint[] := '{}';
  u_delta bigint[] := '{}';
  u_used bigint[] := '{}';
  u_held bigint[] := '{}';
  u_touched boolean[] := '{}';
  v_charged bigint[] := '{}';
  ki integer;
  ui integer;
  key_open boolean;
  user_open boolean;
  v_room bigint;
  v_cost bigint;
  v_delta bigint;
BEGIN
  IF coalesce(cardinality(p_key), 0) = 0 THEN
    RETURN v_charged;
  END IF;
  -- ORDER BY runs before the row locks are taken: they are taken in ascending id.
  SELECT coalesce(array_agg(x.id), '{}'), coalesce(array_agg(x.remain_quota), '{}'),
    coalesce(array_agg(x.quota_period), '{}')
  INTO k_id, k_remain, k_period
  FROM (
    SELECT k.id, k.remain_quota, COALESCE(k.quota_period, 0) AS quota_period
    FROM ${s}.keys AS k WHERE k.id = ANY (p_key) ORDER BY k.id FOR UPDATE
  ) AS x;
  k_delta := array_fill(0::bigint, ARRAY[cardinality(k_id)]);
  k_used := k_delta;
  k_held := k_delta;
  IF cardinality(array_remove(p_user, NULL)) > 0 THEN
    SELECT coalesce(array_agg(x.id), '{}'), coalesce(array_agg(x.quota), '{}'),
      coalesce(array_agg(x.quota_period), '{}')
    INTO u_id, u_quota, u_period
    FROM (
      SELECT u.id, u.quota, COALESCE(u.quota_period, 0) AS quota_period
      FROM ${s}.users AS u WHERE u.id = ANY (p_user) ORDER BY u.id FOR UPDATE
    ) AS x;
    u_delta := array_fill(0::bigint, ARRAY[cardinality(u_id)]);
    u_used := u_delta;
    u_held := u_delta;
    u_touched := array_fill(false, ARRAY[cardinality(u_id)]);
  END IF;
  FOR i IN 1 .. cardinality(p_key) LOOP
    ki := array_position(k_id, p_key[i]);
    ui := CASE WHEN p_user[i] IS NULL THEN NULL ELSE array_position(u_id, p_user[i]) END;
    -- The row is gone: its units leave in_flight whatever the period.
    IF ki IS NOT NULL THEN
      k_held[ki] := k_held[ki] + p_units[i];
    END IF;
    IF ui IS NOT NULL THEN
      u_held[ui] := u_held[ui] + p_units[i];
      u_touched[ui] := true;
    END IF;
    key_open := ki IS NOT NULL AND k_period[ki] = COALESCE(p_key_period[i], 0);
    user_open := ui IS NOT NULL AND u_period[ui] = COALESCE(p_user_period[i], 0);
    -- settleAmounts: the extra beyond the reservation is capped by what the debited key and the
    -- owner (each only in the reservation's period) still have.
    v_cost := p_actual[i];
    IF p_actual[i] > p_units[i] THEN
      v_room := p_actual[i] - p_units[i];
      IF key_open AND p_key_debited[i] THEN
        v_room := LEAST(v_room, k_remain[ki]);
      END IF;
      IF user_open THEN
        v_room := LEAST(v_room, u_quota[ui]);
      END IF;
      v_cost := p_units[i] + GREATEST(0, v_room);
    END IF;
    v_delta := p_units[i] - v_cost;
    IF key_open THEN
      IF p_key_debited[i] THEN
        k_remain[ki] := k_remain[ki] + v_delta;
        k_delta[ki] := k_delta[ki] + v_delta;
      END IF;
      k_used[ki] := k_used[ki] + v_cost;
    END IF;
    IF user_open THEN
      u_quota[ui] := u_quota[ui] + v_delta;
      u_delta[ui] := u_delta[ui] + v_delta;
      u_used[ui] := u_used[ui] + v_cost;
      u_touched[ui] := true;
    END IF;
    v_charged := array_append(v_charged, v_cost);
  END LOOP;
  -- Increments on the locked rows.
  UPDATE ${s}.keys AS k SET remain_quota = k.remain_quota + v.delta,
    used_quota = k.used_quota + v.used, in_flight = k.in_flight - v.held, accessed_time = p_now
  FROM unnest(k_id, k_delta, k_used, k_held) AS v(id, delta, used, held)
  WHERE k.id = v.id;
  IF true = ANY (u_touched) THEN
    UPDATE ${s}.users AS u SET quota = u.quota + v.delta, used_quota = u.used_quota + v.used,
      in_flight = u.in_flight - v.held
    FROM unnest(u_id, u_delta, u_used, u_held, u_touched) AS v(id, delta, used, held, touched)
    WHERE u.id = v.id AND v.touched;
  END IF;
  RETURN v_charged;
END
$fn$;

-- Appends a batch of usage records (one array per column, in the order of usageParams; p_hour
-- is each record's roll-up hour) and bumps their roll-ups and the kept count. Returns the
-- records' ids, increasing in the batch's order.
CREATE FUNCTION ${s}.ledger_append(p_hour text[], ${USAGE_ARGS})
RETURNS bigint[] LANGUAGE plpgsql AS $fn$
DECLARE
  v_ids bigint[];
BEGIN
  -- The rows are inserted, and take their identity values, in the arrays' order.
  WITH ins AS (
    INSERT INTO ${s}.usage_records (${USAGE_COLUMNS.map(([c]) => c).join(", ")})
    SELECT * FROM unnest(${appendArgs({})})
    RETURNING id
  )
  SELECT coalesce(array_agg(ins.id ORDER BY ins.id), '{}') INTO v_ids FROM ins;
  -- One row per bucket (ON CONFLICT may touch a row once), inserted in the primary key's order,
  -- so that two batches bumping the same rows lock them in the same order. Increments, never
  -- read-modify-write: concurrent batches on the same bucket add up.
  INSERT INTO ${s}.usage_rollups AS r (${ROLLUP_KEY}, ${ROLLUP_SUMS.join(", ")})
  SELECT g.* FROM (
    SELECT v.hour, v.route, v.model, COALESCE(v.key_id, -1), COALESCE(v.user_id, -1),
      COALESCE(v.credential_id, ''), count(*), count(*) FILTER (WHERE v.success <> 0),
      count(*) FILTER (WHERE v.success = 0),
      ${TOKEN_SUMS.map((c) => `sum(v.${c})::bigint`).join(", ")}
    FROM unnest(p_hour, p_route, p_model, p_key_id, p_user_id, p_credential_id, p_success,
      ${TOKEN_SUMS.map((c) => `p_${c}`).join(", ")})
      AS v(${ROLLUP_KEY}, success, ${TOKEN_SUMS.join(", ")})
    GROUP BY 1, 2, 3, 4, 5, 6
  ) AS g (${ROLLUP_KEY}, ${ROLLUP_SUMS.join(", ")})
  ORDER BY g.hour COLLATE "C", g.route COLLATE "C", g.model COLLATE "C", g.key_id, g.user_id,
    g.credential_id COLLATE "C"
  ON CONFLICT (${ROLLUP_KEY}) DO UPDATE SET
    ${ROLLUP_SUMS.map((c) => `${c} = r.${c} + EXCLUDED.${c}`).join(", ")};
  -- Last: the one row every batch bumps is held the shortest time.
  INSERT INTO ${s}.usage_totals AS t (id, records) VALUES (1, cardinality(p_timestamp))
  ON CONFLICT (id) DO UPDATE SET records = t.records + EXCLUDED.records;
  RETURN v_ids;
END
$fn$;

-- reserveQuota: the key locked, then its owner (when it has one that exists), both checked, then
-- both debited or neither, with the reservation row. Returns {ok, userId, keyDebited, keyPeriod,
-- userPeriod} or {ok: false, reason[, inFlight]}.
CREATE FUNCTION ${s}.ledger_reserve(
  p_key bigint, p_units bigint, p_id text, p_expires_at bigint, p_owner text,
  p_request_id text, p_route text, p_model text, p_timestamp bigint
) RETURNS json LANGUAGE plpgsql AS $fn$
DECLARE
  v_key record;
  v_user record;
  v_period bigint;
  v_user_id bigint;
  v_user_period bigint := 0;
BEGIN
  -- The common case, a limited key without an owner: one guarded debit (re-checked on the
  -- newest row version under concurrent updates).
  UPDATE ${s}.keys AS k SET remain_quota = k.remain_quota - p_units,
    in_flight = k.in_flight + p_units
  WHERE k.id = p_key AND k.user_id IS NULL AND k.unlimited_quota = 0 AND k.remain_quota >= p_units
  RETURNING COALESCE(k.quota_period, 0) INTO v_period;
  IF FOUND THEN
    INSERT INTO ${s}.reservations (id, key_id, user_id, units, key_debited, expires_at, owner,
      request_id, route, model, timestamp, key_period, user_period)
    VALUES (p_id, p_key, NULL, p_units, 1, p_expires_at, p_owner, p_request_id, p_route, p_model,
      p_timestamp, v_period, 0);
    RETURN json_build_object('ok', true, 'userId', NULL, 'keyDebited', true,
      'keyPeriod', v_period, 'userPeriod', 0);
  END IF;
  -- An owner, an unlimited key, too little left or no such key. A denial is decided on a plain
  -- read first (the statement's snapshot is as good a moment as any to find the balance short),
  -- so that requests refused in a burst do not queue on the key's row lock ahead of the
  -- settlements that would give quota back.
  SELECT k.user_id, k.remain_quota, k.unlimited_quota, k.in_flight INTO v_key
  FROM ${s}.keys AS k WHERE k.id = p_key;
  IF NOT FOUND THEN
    RETURN json_build_object('ok', false, 'reason', 'key_not_found');
  END IF;
  IF v_key.unlimited_quota = 0 AND v_key.remain_quota < p_units THEN
    RETURN json_build_object('ok', false, 'reason', 'key_quota', 'inFlight', v_key.in_flight);
  END IF;
  IF v_key.user_id IS NOT NULL THEN
    SELECT u.quota, u.in_flight INTO v_user FROM ${s}.users AS u WHERE u.id = v_key.user_id;
    IF FOUND AND v_user.quota < p_units THEN
      RETURN json_build_object('ok', false, 'reason', 'user_quota', 'inFlight', v_user.in_flight);
    END IF;
  END IF;
  -- It may pass: the same checks again, on the locked rows.
  SELECT k.user_id, k.remain_quota, k.unlimited_quota, k.in_flight,
    COALESCE(k.quota_period, 0) AS quota_period
  INTO v_key FROM ${s}.keys AS k WHERE k.id = p_key FOR UPDATE;
  IF NOT FOUND THEN
    RETURN json_build_object('ok', false, 'reason', 'key_not_found');
  END IF;
  IF v_key.unlimited_quota = 0 AND v_key.remain_quota < p_units THEN
    RETURN json_build_object('ok', false, 'reason', 'key_quota', 'inFlight', v_key.in_flight);
  END IF;
  IF v_key.user_id IS NOT NULL THEN
    SELECT u.quota, u.in_flight, COALESCE(u.quota_period, 0) AS quota_period
    INTO v_user FROM ${s}.users AS u WHERE u.id = v_key.user_id FOR UPDATE;
    IF FOUND THEN
      IF v_user.quota < p_units THEN
        RETURN json_build_object('ok', false, 'reason', 'user_quota', 'inFlight', v_user.in_flight);
      END IF;
      v_user_id := v_key.user_id;
      v_user_period := v_user.quota_period;
    END IF;
  END IF;
  -- Every reservation row counts in its key's and owner's in_flight (the units a denial reports).
  UPDATE ${s}.keys AS k SET in_flight = k.in_flight + p_units,
    remain_quota = k.remain_quota - CASE WHEN v_key.unlimited_quota = 0 THEN p_units ELSE 0 END
  WHERE k.id = p_key;
  IF v_user_id IS NOT NULL THEN
    UPDATE ${s}.users AS u SET quota = u.quota - p_units, in_flight = u.in_flight + p_units
    WHERE u.id = v_user_id;
  END IF;
  INSERT INTO ${s}.reservations (id, key_id, user_id, units, key_debited, expires_at, owner,
    request_id, route, model, timestamp, key_period, user_period)
  VALUES (p_id, p_key, v_user_id, p_units, CASE WHEN v_key.unlimited_quota = 0 THEN 1 ELSE 0 END,
    p_expires_at, p_owner, p_request_id, p_route, p_model, p_timestamp, v_key.quota_period,
    v_user_period);
  RETURN json_build_object('ok', true, 'userId', v_user_id,
    'keyDebited', v_key.unlimited_quota = 0, 'keyPeriod', v_key.quota_period,
    'userPeriod', v_user_period);
END
$fn$;

-- settleQuota: the reservation row deleted and settled. The row is gone when
-- recoverReservations already charged it in full: nothing changes, charged 0.
CREATE FUNCTION ${s}.ledger_settle_quota(
  p_id text, p_key bigint, p_user bigint, p_units bigint, p_key_debited boolean,
  p_key_period bigint, p_user_period bigint, p_actual bigint, p_now bigint
) RETURNS bigint LANGUAGE plpgsql AS $fn$
BEGIN
  DELETE FROM ${s}.reservations AS r WHERE r.id = p_id;
  IF NOT FOUND THEN
    RETURN 0;
  END IF;
  RETURN (${s}.ledger_settle(ARRAY[p_key], ARRAY[p_user], ARRAY[p_units], ARRAY[p_key_debited],
    ARRAY[p_key_period], ARRAY[p_user_period], ARRAY[p_actual], p_now))[1];
END
$fn$;

-- commitUsage: every reservation row of the batch deleted first (a row gone was recovered: its
-- commit is charged 0; a reservation listed twice settles once), the live ones settled in order,
-- then the records appended with their quota set to the amount charged (actualUnits without a
-- reservation). The reservation arrays hold NULL for a commit without one; p_quota is ignored.
-- Returns {quota: [...], ids: [...]}, one element per commit.
CREATE FUNCTION ${s}.ledger_commit(
  p_reservation text[], p_key bigint[], p_user bigint[], p_units bigint[],
  p_key_debited boolean[], p_key_period bigint[], p_user_period bigint[], p_actual bigint[],
  p_now bigint, p_hour text[], ${USAGE_ARGS}
) RETURNS json LANGUAGE plpgsql AS $fn$
DECLARE
  v_n integer := coalesce(cardinality(p_actual), 0);
  v_live text[];
  v_due integer[] := '{}';
  d_key bigint[] := '{}';
  d_user bigint[] := '{}';
  d_units bigint[] := '{}';
  d_key_debited boolean[] := '{}';
  d_key_period bigint[] := '{}';
  d_user_period bigint[] := '{}';
  d_actual bigint[] := '{}';
  v_charged bigint[];
  v_quota bigint[];
  v_ids bigint[];
BEGIN
  WITH d AS (DELETE FROM ${s}.reservations AS r WHERE r.id = ANY (p_reservation) RETURNING r.id)
  SELECT coalesce(array_agg(d.id), '{}') INTO v_live FROM d;
  v_quota := array_fill(NULL::bigint, ARRAY[v_n]);
  FOR i IN 1 .. v_n LOOP
    IF p_reservation[i] IS NULL THEN
      v_quota[i] := p_actual[i];
    ELSIF p_reservation[i] = ANY (v_live) THEN
      v_live := array_remove(v_live, p_reservation[i]);
      v_due := array_append(v_due, i);
      d_key := array_append(d_key, p_key[i]);
      d_user := array_append(d_user, p_user[i]);
      d_units := array_append(d_units, p_units[i]);
      d_key_debited := array_append(d_key_debited, p_key_debited[i]);
      d_key_period := array_append(d_key_period, p_key_period[i]);
      d_user_period := array_append(d_user_period, p_user_period[i]);
      d_actual := array_append(d_actual, p_actual[i]);
    ELSE
      v_quota[i] := 0;
    END IF;
  END LOOP;
  v_charged := ${s}.ledger_settle(d_key, d_user, d_units, d_key_debited, d_key_period,
    d_user_period, d_actual, p_now);
  FOR j IN 1 .. cardinality(v_due) LOOP
    v_quota[v_due[j]] := v_charged[j];
  END LOOP;
  v_ids := ${s}.ledger_append(p_hour, ${appendArgs({ quota: "v_quota" })});
  RETURN json_build_object('quota', v_quota, 'ids', v_ids);
END
$fn$;

-- recoverReservations: up to p_limit expired reservation rows (NULL: no limit), oldest expiry
-- first, each claimed by the one call that locks and deletes it: rows another caller (or a
-- settlement) holds are skipped, not waited for, and a row a settlement deleted first is no longer
-- there. Settled in full (the request may have been answered) and recorded as recovered, in the
-- order (expires_at, id). Returns {rows: [reservation rows], ids: [their records' ids]}.
CREATE FUNCTION ${s}.ledger_recover(p_now bigint, p_limit bigint, p_now_seconds bigint)
RETURNS json LANGUAGE plpgsql AS $fn$
DECLARE
  v_rows ${s}.reservations[];
  v_row ${s}.reservations;
  v_n integer;
  v_key bigint[] := '{}';
  v_user bigint[] := '{}';
  v_units bigint[] := '{}';
  v_key_debited boolean[] := '{}';
  v_key_period bigint[] := '{}';
  v_user_period bigint[] := '{}';
  v_hour text[] := '{}';
  v_timestamp bigint[] := '{}';
  v_request_id text[] := '{}';
  v_route text[] := '{}';
  v_model text[] := '{}';
  v_ids bigint[];
BEGIN
  WITH d AS (
    DELETE FROM ${s}.reservations AS r WHERE r.id IN (
      SELECT e.id FROM ${s}.reservations AS e WHERE e.expires_at <= p_now
      ORDER BY e.expires_at LIMIT p_limit FOR UPDATE SKIP LOCKED
    ) RETURNING r
  )
  SELECT array_agg(d.r ORDER BY (d.r).expires_at, (d.r).id COLLATE "C") INTO v_rows FROM d;
  v_n := coalesce(cardinality(v_rows), 0);
  IF v_n = 0 THEN
    RETURN json_build_object('rows', '[]'::json, 'ids', '[]'::json);
  END IF;
  FOREACH v_row IN ARRAY v_rows LOOP
    v_key := array_append(v_key, v_row.key_id);
    v_user := array_append(v_user, v_row.user_id);
    v_units := array_append(v_units, v_row.units);
    v_key_debited := array_append(v_key_debited, v_row.key_debited <> 0);
    v_key_period := array_append(v_key_period, v_row.key_period);
    v_user_period := array_append(v_user_period, v_row.user_period);
    -- hourBucket: the UTC hour, as Date.toISOString().slice(0, 13).
    v_hour := array_append(v_hour, to_char(timestamp '1970-01-01' +
      v_row.timestamp * interval '1 millisecond', 'YYYY-MM-DD"T"HH24'));
    v_timestamp := array_append(v_timestamp, v_row.timestamp);
    v_request_id := array_append(v_request_id, v_row.request_id);
    v_route := array_append(v_route, v_row.route);
    v_model := array_append(v_model, v_row.model);
  END LOOP;
  PERFORM ${s}.ledger_settle(v_key, v_user, v_units, v_key_debited, v_key_period, v_user_period,
    v_units, p_now_seconds);
  v_ids := ${s}.ledger_append(v_hour, ${recoveredArgs()});
  RETURN json_build_object('rows', to_json(v_rows), 'ids', v_ids);
END
$fn$;
`;
