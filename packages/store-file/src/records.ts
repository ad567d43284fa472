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

type Kind = "number" | "integer" | "string" | "boolean" | "array" | "object";
type Spec = Record<string, readonly Kind[] | Kind>;

export const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

function kindOk(kind: Kind, v: unknown): boolean {
  switch (kind) {
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

/** Checks the fields of `value` present in `spec`, then fills the absent ones from `defaults`. */
function record<T>(value: unknown, where: string, spec: Spec, defaults: T): T {
  if (!isObject(value)) throw new FileFormatError(`${where} must be an object`);
  for (const [field, kinds] of Object.entries(spec)) {
    const v = value[field];
    if (v === undefined) continue;
    const list = typeof kinds === "string" ? [kinds] : kinds;
    const ok = list.some((k) => (k === ("null" as Kind) ? v === null : kindOk(k, v)));
    if (!ok) throw new FileFormatError(`${where}.${field} must be ${list.join(" or ")}`);
  }
  return { ...structuredClone(defaults), ...structuredClone(value) } as T;
}

const NULL = "null" as Kind;

const KEY_SPEC: Spec = {
  id: "integer",
  userId: ["integer", NULL],
  name: "string",
  keyHash: "string",
  keyCipher: ["string", NULL],
  keyHint: "string",
  status: "integer",
  remainQuota: "number",
  usedQuota: "number",
  unlimitedQuota: "boolean",
  expiredTime: "number",
  modelLimitsEnabled: "boolean",
  modelLimits: "array",
  allowIps: "array",
  group: "string",
  createdTime: "number",
  accessedTime: "number",
};

/** A key from `keys.json`. */
export function parseKey(v: unknown, where: string): ApiKeyRecord {
  const r = record<ApiKeyRecord>(v, where, KEY_SPEC, {
    id: 0,
    userId: null,
    name: "",
    keyHash: "",
    keyCipher: null,
    keyHint: "",
    status: 1,
    remainQuota: 0,
    usedQuota: 0,
    unlimitedQuota: false,
    expiredTime: -1,
    modelLimitsEnabled: false,
    modelLimits: [],
    allowIps: [],
    group: "default",
    createdTime: 0,
    accessedTime: 0,
  });
  if (!(r.id > 0)) throw new FileFormatError(`${where}.id must be a positive integer`);
  if (r.keyHash === "") throw new FileFormatError(`${where}.keyHash is required`);
  return r;
}

const USER_SPEC: Spec = {
  id: "integer",
  username: "string",
  displayName: "string",
  role: "string",
  status: "integer",
  group: "string",
  quota: "number",
  usedQuota: "number",
  accessTokenHash: ["string", NULL],
  createdTime: "number",
};

/** A user from `users.json`. */
export function parseUser(v: unknown, where: string): UserRecord {
  const r = record<UserRecord>(v, where, USER_SPEC, {
    id: 0,
    username: "",
    displayName: "",
    role: "user",
    status: 1,
    group: "default",
    quota: 0,
    usedQuota: 0,
    accessTokenHash: null,
    createdTime: 0,
  });
  if (!(r.id > 0)) throw new FileFormatError(`${where}.id must be a positive integer`);
  if (r.username === "") throw new FileFormatError(`${where}.username is required`);
  if (r.role !== "admin" && r.role !== "user")
    throw new FileFormatError(`${where}.role must be "admin" or "user"`);
  return r;
}

const CREDENTIAL_SPEC: Spec = {
  id: "string",
  provider: "string",
  kind: "string",
  label: "string",
  baseUrl: "string",
  secret: "object",
  proxyUrl: "string",
  projectIds: "array",
  models: "array",
  excludedModels: "array",
  priority: "number",
  weight: "number",
  enabled: "boolean",
  groups: "array",
  headers: "object",
  state: "object",
  createdAt: "number",
  updatedAt: "number",
};

/** A credential with every field, from what may be a partial record. */
export function parseCredential(v: unknown, where: string): CredentialRecord {
  const r = record<CredentialRecord>(v, where, CREDENTIAL_SPEC, {
    id: "",
    provider: "",
    kind: "api-key",
    label: "",
    baseUrl: "",
    secret: {},
    ...credentialDefaults(),
    createdAt: 0,
    updatedAt: 0,
  });
  if (r.id === "") throw new FileFormatError(`${where}.id is required`);
  if (r.provider === "") throw new FileFormatError(`${where}.provider is required`);
  if (r.kind !== "api-key" && r.kind !== "oauth")
    throw new FileFormatError(`${where}.kind must be "api-key" or "oauth"`);
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
  return v as unknown as UsageRollup;
}

/** A stable text of a JSON value with sorted object keys: equal values give equal texts. */
export function canon(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    isObject(val)
      ? Object.fromEntries(
          Object.keys(val)
            .sort()
            .map((k) => [k, val[k]]),
        )
      : val,
  );
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

/** Parses `keys.json`; ids and key hashes must be unique. */
export function parseKeysFile(text: string): KeysFile {
  const v = JSON.parse(text) as unknown;
  const ids = new Set<number>();
  const hashes = new Set<string>();
  const keys = listField(v, "keys").map((k, i) => {
    const r = parseKey(k, `keys[${i}]`);
    if (ids.has(r.id)) throw new FileFormatError(`keys[${i}].id ${r.id} is used twice`);
    if (hashes.has(r.keyHash)) throw new FileFormatError(`keys[${i}].keyHash is used twice`);
    ids.add(r.id);
    hashes.add(r.keyHash);
    return r;
  });
  const list = isObject(v) && Array.isArray(v.reservations) ? v.reservations : [];
  const reservations = list.map((r, i) => parseReservation(r, `reservations[${i}]`));
  return { nextId: nextIdOf(v), keys, reservations };
}

/** Parses `users.json`; ids and usernames must be unique. */
export function parseUsersFile(text: string): UsersFile {
  const v = JSON.parse(text) as unknown;
  const ids = new Set<number>();
  const names = new Set<string>();
  const users = listField(v, "users").map((u, i) => {
    const r = parseUser(u, `users[${i}]`);
    if (ids.has(r.id)) throw new FileFormatError(`users[${i}].id ${r.id} is used twice`);
    if (names.has(r.username))
      throw new FileFormatError(`users[${i}].username "${r.username}" is used twice`);
    ids.add(r.id);
    names.add(r.username);
    return r;
  });
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
