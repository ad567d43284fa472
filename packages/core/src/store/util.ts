import { randomBytes } from "node:crypto";
import {
  type CredentialRecord,
  type CredentialState,
  DEFAULT_RESERVATION_TTL_MS,
  type NewCredential,
  type NewUsageRecord,
  type Reservation,
  type ReservationMeta,
  type Store,
  type UsageQuery,
  type UsageRecord,
  type UsageRollup,
  type UsageStat,
} from "./types.js";

const HOUR_MS = 3_600_000;
// The last hour computed: nearly every record of a batch falls in the same hour.
let cachedHourStart = Number.NaN;
let cachedHour = "";

/** The UTC hour bucket of a timestamp, `YYYY-MM-DDTHH`, as used by {@link UsageRollup}. */
export function hourBucket(timestampMs: number): string {
  if (timestampMs >= cachedHourStart && timestampMs < cachedHourStart + HOUR_MS) return cachedHour;
  const hour = new Date(timestampMs).toISOString().slice(0, 13);
  if (timestampMs >= 0) {
    cachedHourStart = timestampMs - (timestampMs % HOUR_MS);
    cachedHour = hour;
  }
  return hour;
}

/** A fresh, healthy credential state. */
export function emptyCredentialState(): CredentialState {
  return { cooldowns: {}, errorCount: 0, lastUsedAt: 0, lastError: null, disabledReason: null };
}

/** A random id for credentials created without one. */
export function newCredentialId(): string {
  return `cred_${randomBytes(9).toString("base64url")}`;
}

/** Completes a {@link NewCredential} into a record (id and timestamps). */
export function materializeCredential(input: NewCredential, now = Date.now()): CredentialRecord {
  const { id, ...rest } = input;
  return structuredClone({ ...rest, id: id ?? newCredentialId(), createdAt: now, updatedAt: now });
}

/**
 * The roll-up row key of a usage record (hour, route, model, key, owner, credential),
 * collision-free whatever the names contain.
 */
export function rollupKey(r: RollupIdentity): string {
  return JSON.stringify([
    hourBucket(r.timestamp),
    r.route,
    r.model,
    r.keyId,
    r.userId ?? null,
    r.credentialId ?? null,
  ]);
}

/** What identifies a usage record's roll-up row. */
export type RollupIdentity = Pick<
  NewUsageRecord,
  "timestamp" | "route" | "model" | "keyId" | "userId" | "credentialId"
>;

/** An empty roll-up row for the record's bucket. */
export function emptyRollup(r: RollupIdentity): UsageRollup {
  return {
    hour: hourBucket(r.timestamp),
    route: r.route,
    model: r.model,
    keyId: r.keyId,
    userId: r.userId ?? null,
    credentialId: r.credentialId ?? null,
    requests: 0,
    successes: 0,
    failures: 0,
    inputTokens: 0,
    outputTokens: 0,
    reasoningTokens: 0,
    cachedTokens: 0,
    totalTokens: 0,
    quota: 0,
  };
}

/** The summed fields of a roll-up row (what folding rows together adds up). */
export const ROLLUP_SUMS = [
  "requests",
  "successes",
  "failures",
  "inputTokens",
  "outputTokens",
  "reasoningTokens",
  "cachedTokens",
  "totalTokens",
  "quota",
] as const satisfies readonly (keyof UsageRollup)[];

/** Adds a roll-up row's sums into another's (in place). */
export function addRollupSums(
  into: Record<(typeof ROLLUP_SUMS)[number], number>,
  row: Pick<UsageRollup, (typeof ROLLUP_SUMS)[number]>,
): void {
  for (const f of ROLLUP_SUMS) into[f] += row[f];
}

/** Adds one usage record into a roll-up row (in place). */
export function addToRollup(row: UsageRollup, r: NewUsageRecord): void {
  row.requests += 1;
  if (r.success) row.successes += 1;
  else row.failures += 1;
  row.inputTokens += r.inputTokens;
  row.outputTokens += r.outputTokens;
  row.reasoningTokens += r.reasoningTokens;
  row.cachedTokens += r.cachedTokens;
  row.totalTokens += r.totalTokens;
  row.quota += r.quota;
}

/** Validates reservation units: a non-negative safe integer. */
export function assertUnits(units: number, what = "units"): void {
  if (!Number.isSafeInteger(units) || units < 0) {
    throw new TypeError(`${what} must be a non-negative integer, got ${units}`);
  }
}

/**
 * Validates the arguments of {@link Store.refillQuota}: a target of `"key"` or `"user"`, a
 * positive integer period (ms) and a non-negative integer amount.
 */
export function assertRefill(target: unknown, period: number, amount: number): void {
  if (target !== "key" && target !== "user")
    throw new TypeError(`target must be "key" or "user", got ${String(target)}`);
  if (!Number.isSafeInteger(period) || period <= 0)
    throw new TypeError(`period must be a positive integer (ms), got ${period}`);
  assertUnits(amount, "amount");
}

/**
 * Whether a balance is still in the refill period a reservation debited it in: its
 * `quotaPeriod` (absent = 0) equals the reservation's (absent = 0). Settlement touches only
 * such balances (see {@link Store.settleQuota}).
 */
export function inPeriod(record: { quotaPeriod?: number }, reserved: number | undefined): boolean {
  return (record.quotaPeriod ?? 0) === (reserved ?? 0);
}

/** A durable reservation row as adapters keep it: the reservation plus its filled-in meta. */
export interface ReservationRow extends Reservation, Required<ReservationMeta> {}

/** The row of a reservation granted now, with {@link ReservationMeta}'s defaults filled in. */
export function reservationRow(
  reservation: Reservation,
  meta: ReservationMeta | undefined,
  nowMs: number,
): ReservationRow {
  // Properties listed one by one: an object spread here costs ~10 µs per call, on the proxy path.
  return {
    id: reservation.id,
    keyId: reservation.keyId,
    userId: reservation.userId,
    units: reservation.units,
    keyDebited: reservation.keyDebited,
    keyPeriod: reservation.keyPeriod ?? 0,
    userPeriod: reservation.userPeriod ?? 0,
    expiresAt: meta?.expiresAt ?? nowMs + DEFAULT_RESERVATION_TTL_MS,
    owner: meta?.owner ?? "",
    requestId: meta?.requestId ?? "",
    route: meta?.route ?? "",
    model: meta?.model ?? "",
    timestamp: meta?.timestamp ?? nowMs,
  };
}

/**
 * The usage record {@link Store.recoverReservations} appends for an expired reservation: billed
 * its full units, marked `recovered`, nothing else known about the request.
 */
export function recoveredRecord(row: ReservationRow): NewUsageRecord {
  return {
    timestamp: row.timestamp,
    requestId: row.requestId,
    keyId: row.keyId,
    userId: row.userId,
    credentialId: null,
    provider: "",
    route: row.route,
    model: row.model,
    stream: false,
    status: 0,
    success: false,
    inputTokens: 0,
    outputTokens: 0,
    reasoningTokens: 0,
    cachedTokens: 0,
    totalTokens: 0,
    quota: row.units,
    durationMs: 0,
    error: "recovered: the gateway process ended before settling this request",
    recovered: true,
  };
}

/**
 * The defaults of a credential's optional fields: no proxy, projects, model list, exclusions or
 * extra headers, priority 0, weight 1, enabled, no groups (the default group), a fresh state.
 */
export function credentialDefaults(): Pick<
  NewCredential,
  | "proxyUrl"
  | "projectIds"
  | "models"
  | "excludedModels"
  | "priority"
  | "weight"
  | "enabled"
  | "groups"
  | "headers"
  | "state"
> {
  return {
    proxyUrl: "",
    projectIds: [],
    models: [],
    excludedModels: [],
    priority: 0,
    weight: 1,
    enabled: true,
    groups: [],
    headers: {},
    state: emptyCredentialState(),
  };
}

/**
 * Appends usage records that settle no reservation, with their hourly roll-ups, in one atomic
 * step: one {@link Store.commitUsage} call whose commits carry no reservation, so each record
 * keeps its own `quota`. Returns the records with their ids. Derived here once, so that an
 * adapter implements only `commitUsage`.
 *
 * @example
 * ```ts
 * const [rec] = await recordUsage(store, [{ ...usage, quota: 120 }]);
 * ```
 */
export function recordUsage(
  store: Pick<Store, "commitUsage">,
  records: NewUsageRecord[],
): Promise<UsageRecord[]> {
  if (records.length === 0) return Promise.resolve([]);
  return store.commitUsage(
    records.map((record) => ({ reservation: null, actualUnits: record.quota, record })),
    Math.floor(Date.now() / 1000),
  );
}

/**
 * The patch without the fields no update may change (a record's `id`, a key's `keyHash`, a
 * credential's `createdAt`) and without `undefined` values (they mean "not given", so a caller
 * that passes `{ limits: input.limits }` without limits keeps the stored ones): what a store's
 * `update` applies.
 *
 * @example
 * ```ts
 * Object.assign(record, changeable(patch, "id", "keyHash"));
 * ```
 */
export function changeable<T extends object>(patch: T, ...fixed: string[]): Partial<T> {
  const rest = { ...patch } as Record<string, unknown>;
  for (const field of fixed) delete rest[field];
  for (const [field, value] of Object.entries(rest)) if (value === undefined) delete rest[field];
  return rest as Partial<T>;
}

/**
 * Whether a usage record passes a {@link UsageQuery}'s filters (not its offset and limit): the
 * reference semantics every adapter's `usage.list` and `usage.stat` implement.
 */
export function usageMatches(r: UsageRecord, q: UsageQuery): boolean {
  return (
    (q.from === undefined || r.timestamp >= q.from) &&
    (q.to === undefined || r.timestamp < q.to) &&
    (q.keyId === undefined || r.keyId === q.keyId) &&
    (q.userId === undefined || r.userId === q.userId) &&
    (q.model === undefined || r.model === q.model) &&
    (q.keyName === undefined || (r.keyName ?? "") === q.keyName) &&
    (q.username === undefined || (r.username ?? "") === q.username) &&
    (q.credentialId === undefined || r.credentialId === q.credentialId) &&
    (q.group === undefined || (r.group ?? "") === q.group) &&
    (q.success === undefined || r.success === q.success)
  );
}

/** Adds a record into a {@link UsageStat} (in place). */
export function addToStat(stat: UsageStat, r: Pick<UsageRecord, "quota" | "totalTokens">): void {
  stat.requests += 1;
  stat.quota += r.quota;
  stat.totalTokens += r.totalTokens;
}
