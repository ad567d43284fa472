/**
 * Validation and defaults of the JSON files a person may edit: a hand-written record may leave
 * out fields (they get their defaults) but a field of the wrong type makes the file invalid.
 *
 * @module
 */
import type {
  ApiKeyRecord,
  CredentialRecord,
  UsageRecord,
  UsageRollup,
  UserRecord,
} from "@tokenpool/core";
import {
  credentialDefaults,
  emptyCredentialState,
  type ReservationRow,
} from "@tokenpool/core/store-kernel";

/** Thrown for a file that does not hold what the store expects. */
export class FileFormatError extends Error {
  override readonly name = "FileFormatError";
}

type Kind = "number" | "integer" | "string" | "boolean" | "array" | "object" | "null";

/** One field of a hand-written record: the kinds it may hold, and its value when absent. */
type Field<V> = readonly [kinds: Kind | readonly Kind[], absent: V];

/** Every field of a record, one entry each. */
type Fields<T> = { readonly [K in keyof T]-?: Field<T[K]> };

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function kindOk(kind: Kind, v: unknown): boolean {
  switch (kind) {
    case "null":
      return v === null;
    case "integer":
      return Number.isSafeInteger(v);
    case "array":
      return Array.isArray(v);
    case "object":
      return isObject(v);
    default:
      return typeof v === kind;
  }
}

/**
 * Checks the fields of `value` present in `fields`, then fills the absent ones (an optional
 * field whose absent value is `undefined` stays absent).
 */
function record<T>(value: unknown, where: string, fields: Fields<T>): T {
  if (!isObject(value)) throw new FileFormatError(`${where} must be an object`);
  const defaults: Record<string, unknown> = {};
  for (const [field, [kinds, absent]] of Object.entries<Field<unknown>>(fields)) {
    if (absent !== undefined) defaults[field] = absent;
    const v = value[field];
    if (v === undefined) continue;
    const list = typeof kinds === "string" ? [kinds] : kinds;
    if (!list.some((k) => kindOk(k, v)))
      throw new FileFormatError(`${where}.${field} must be ${list.join(" or ")}`);
  }
  return { ...structuredClone(defaults), ...structuredClone(value) } as T;
}

const KEY_FIELDS: Fields<ApiKeyRecord> = {
  id: ["integer", 0],
  userId: [["integer", "null"], null],
  name: ["string", ""],
  keyHash: ["string", ""],
  keyCipher: [["string", "null"], null],
  keyHint: ["string", ""],
  status: ["integer", 1],
  remainQuota: ["number", 0],
  usedQuota: ["number", 0],
  unlimitedQuota: ["boolean", false],
  expiredTime: ["number", -1],
  modelLimitsEnabled: ["boolean", false],
  modelLimits: ["array", []],
  allowIps: ["array", []],
  group: ["string", "default"],
  createdTime: ["number", 0],
  accessedTime: ["number", 0],
  limits: ["object", undefined],
  quotaRefill: [["object", "null"], undefined],
  quotaPeriod: ["integer", undefined],
};

const REFILL_INTERVALS: readonly string[] = ["1d", "7d", "30d", "month"];

/** Throws unless every field of a limits object is a non-negative integer. */
function checkLimits(limits: object | undefined, where: string): void {
  if (limits === undefined) return;
  for (const [field, v] of Object.entries(limits))
    if (!Number.isSafeInteger(v) || (v as number) < 0)
      throw new FileFormatError(`${where}.limits.${field} must be a non-negative integer`);
}

/** Throws unless the admission fields of a key or user (limits, quotaRefill, quotaPeriod) are well formed. */
function checkAdmission(
  r: Pick<ApiKeyRecord, "limits" | "quotaRefill" | "quotaPeriod">,
  where: string,
) {
  checkLimits(r.limits, where);
  const refill = r.quotaRefill;
  if (
    refill &&
    (!REFILL_INTERVALS.includes(refill.interval) ||
      !Number.isSafeInteger(refill.amount) ||
      refill.amount < 0)
  )
    throw new FileFormatError(
      `${where}.quotaRefill must be { interval: "1d" | "7d" | "30d" | "month", amount: a non-negative integer }`,
    );
  if (r.quotaPeriod !== undefined && r.quotaPeriod < 0)
    throw new FileFormatError(`${where}.quotaPeriod must be a non-negative integer`);
}

/** A key from `keys.json`. */
export function parseKey(v: unknown, where: string): ApiKeyRecord {
  const r = record(v, where, KEY_FIELDS);
  if (!(r.id > 0)) throw new FileFormatError(`${where}.id must be a positive integer`);
  if (r.keyHash === "") throw new FileFormatError(`${where}.keyHash is required`);
  checkAdmission(r, where);
  return r;
}

const USER_FIELDS: Fields<UserRecord> = {
  id: ["integer", 0],
  username: ["string", ""],
  displayName: ["string", ""],
  role: ["string", "user"],
  status: ["integer", 1],
  group: ["string", "default"],
  quota: ["number", 0],
  usedQuota: ["number", 0],
  accessTokenHash: [["string", "null"], null],
  createdTime: ["number", 0],
  limits: ["object", undefined],
  quotaRefill: [["object", "null"], undefined],
  quotaPeriod: ["integer", undefined],
};

/** A user from `users.json`. */
export function parseUser(v: unknown, where: string): UserRecord {
  const r = record(v, where, USER_FIELDS);
  if (!(r.id > 0)) throw new FileFormatError(`${where}.id must be a positive integer`);
  if (r.username === "") throw new FileFormatError(`${where}.username is required`);
  if (r.role !== "admin" && r.role !== "user")
    throw new FileFormatError(`${where}.role must be "admin" or "user"`);
  checkAdmission(r, where);
  return r;
}

const CREDENTIAL_DEFAULTS = credentialDefaults();

const CREDENTIAL_FIELDS: Fields<CredentialRecord> = {
  id: ["string", ""],
  provider: ["string", ""],
  kind: ["string", "api-key"],
  label: ["string", ""],
  baseUrl: ["string", ""],
  secret: ["object", {}],
  proxyUrl: ["string", CREDENTIAL_DEFAULTS.proxyUrl],
  projectIds: ["array", CREDENTIAL_DEFAULTS.projectIds],
  models: ["array", CREDENTIAL_DEFAULTS.models],
  excludedModels: ["array", CREDENTIAL_DEFAULTS.excludedModels],
  priority: ["number", CREDENTIAL_DEFAULTS.priority],
  weight: ["number", CREDENTIAL_DEFAULTS.weight],
  enabled: ["boolean", CREDENTIAL_DEFAULTS.enabled],
  groups: ["array", CREDENTIAL_DEFAULTS.groups],
  headers: ["object", CREDENTIAL_DEFAULTS.headers],
  state: ["object", CREDENTIAL_DEFAULTS.state],
  createdAt: ["number", 0],
  updatedAt: ["number", 0],
  limits: ["object", undefined],
};

/** A credential with every field, from what may be a partial record. */
export function parseCredential(v: unknown, where: string): CredentialRecord {
  const r = record(v, where, CREDENTIAL_FIELDS);
  if (r.id === "") throw new FileFormatError(`${where}.id is required`);
  if (r.provider === "") throw new FileFormatError(`${where}.provider is required`);
  if (r.kind !== "api-key" && r.kind !== "oauth")
    throw new FileFormatError(`${where}.kind must be "api-key" or "oauth"`);
  checkLimits(r.limits, where);
  r.state = { ...emptyCredentialState(), ...r.state };
  return r;
}

/** A usage record from `usage.json` (written by the store; only the id is checked). */
export function parseUsageRecord(v: unknown, where: string): UsageRecord {
  if (!isObject(v) || !Number.isSafeInteger(v.id) || typeof v.timestamp !== "number")
    throw new FileFormatError(`${where} must be a usage record with an integer id`);
  return v as unknown as UsageRecord;
}

/** A roll-up row from `usage.json`. */
export function parseRollup(v: unknown, where: string): UsageRollup {
  if (!isObject(v) || typeof v.hour !== "string" || typeof v.requests !== "number")
    throw new FileFormatError(`${where} must be a roll-up row`);
  // Rows written before roll-ups had owners and credentials: null for both.
  return { ...v, userId: v.userId ?? null, credentialId: v.credentialId ?? null } as UsageRollup;
}

/**
 * `keys.json`. Unsettled quota reservations live here too, so that a key's debit and its
 * reservation row are written by one atomic file replace.
 */
export interface KeysFile {
  nextId: number;
  keys: ApiKeyRecord[];
  reservations: ReservationRow[];
}

/** A reservation row from `keys.json`. */
function parseReservation(v: unknown, where: string): ReservationRow {
  if (
    !isObject(v) ||
    typeof v.id !== "string" ||
    !Number.isSafeInteger(v.keyId) ||
    !Number.isSafeInteger(v.units) ||
    typeof v.expiresAt !== "number"
  )
    throw new FileFormatError(
      `${where} must be a reservation with an id, keyId, units and expiresAt`,
    );
  return v as unknown as ReservationRow;
}
/** `users.json`. */
export interface UsersFile {
  nextId: number;
  users: UserRecord[];
}
/** `usage.json`: details (bounded) and hourly roll-ups (kept). */
export interface UsageFile {
  nextId: number;
  records: UsageRecord[];
  rollups: UsageRollup[];
}
/** `kv.json`. */
export interface KvFile {
  entries: Record<string, { value: string; expiresAt: number | null }>;
}

function listField(v: unknown, field: string): unknown[] {
  const list = isObject(v) ? v[field] : undefined;
  if (!Array.isArray(list)) throw new FileFormatError(`must be an object with a \`${field}\` list`);
  return list;
}

function nextIdOf(v: unknown): number {
  const n = isObject(v) ? v.nextId : undefined;
  return Number.isSafeInteger(n) ? (n as number) : 1;
}

/** A field no two records of a file may share: its name, its value and how an error shows it. */
type UniqueField<T> = readonly [name: string, value: (r: T) => unknown, shown?: (r: T) => string];

/** The records of a file's list `field`, each parsed, and none sharing a value of a `unique` field. */
function parseRecords<T>(
  v: unknown,
  field: string,
  parse: (item: unknown, where: string) => T,
  unique: readonly UniqueField<T>[],
): T[] {
  const seen = unique.map(() => new Set<unknown>());
  return listField(v, field).map((item, i) => {
    const where = `${field}[${i}]`;
    const r = parse(item, where);
    unique.forEach(([name, value, shown], u) => {
      if (seen[u]!.has(value(r)))
        throw new FileFormatError(`${where}.${name}${shown ? ` ${shown(r)}` : ""} is used twice`);
    });
    unique.forEach(([, value], u) => {
      seen[u]!.add(value(r));
    });
    return r;
  });
}

/** Parses `keys.json`; ids and key hashes must be unique. */
export function parseKeysFile(text: string): KeysFile {
  const v = JSON.parse(text) as unknown;
  const keys = parseRecords(v, "keys", parseKey, [
    ["id", (r) => r.id, (r) => `${r.id}`],
    ["keyHash", (r) => r.keyHash],
  ]);
  const list = isObject(v) && Array.isArray(v.reservations) ? v.reservations : [];
  const reservations = list.map((r, i) => parseReservation(r, `reservations[${i}]`));
  return { nextId: nextIdOf(v), keys, reservations };
}

/** Parses `users.json`; ids and usernames must be unique. */
export function parseUsersFile(text: string): UsersFile {
  const v = JSON.parse(text) as unknown;
  const users = parseRecords(v, "users", parseUser, [
    ["id", (r) => r.id, (r) => `${r.id}`],
    ["username", (r) => r.username, (r) => `"${r.username}"`],
  ]);
  return { nextId: nextIdOf(v), users };
}

/** Parses `usage.json`. */
export function parseUsageFile(text: string): UsageFile {
  const v = JSON.parse(text) as unknown;
  return {
    nextId: nextIdOf(v),
    records: listField(v, "records").map((r, i) => parseUsageRecord(r, `records[${i}]`)),
    rollups: listField(v, "rollups").map((r, i) => parseRollup(r, `rollups[${i}]`)),
  };
}

/** Parses `kv.json`. */
export function parseKvFile(text: string): KvFile {
  const v = JSON.parse(text) as unknown;
  const entries = isObject(v) ? v.entries : undefined;
  if (!isObject(entries)) throw new FileFormatError("must be an object with an `entries` mapping");
  for (const [k, e] of Object.entries(entries))
    if (
      !isObject(e) ||
      typeof e.value !== "string" ||
      !(e.expiresAt === null || typeof e.expiresAt === "number")
    )
      throw new FileFormatError(`entries[${JSON.stringify(k)}] must be { value, expiresAt }`);
  return { entries: entries as KvFile["entries"] };
}
