/**
 * CLIProxyAPI's object lists (`claude-api-key`, `codex-api-key`, `gemini-api-key`,
 * `interactions-api-key`, `vertex-api-key`, `xai-api-key`, `openai-compatibility`): the shape of one item, its
 * validation, and how items map to the pool's API-key credentials. No HTTP here: the management
 * dialect, the standalone server and the file store all use it.
 *
 * | list | credentials | one item is |
 * | --- | --- | --- |
 * | `claude-api-key` | provider `anthropic`, kind `api-key` | one credential |
 * | `codex-api-key` | provider `codex`, kind `api-key` | one credential |
 * | `gemini-api-key` | provider `gemini`, kind `api-key`, label `generative-language-api-key` | one credential (the same credentials as the string list `generative-language-api-key`: one pool, two views) |
 * | `interactions-api-key` | provider `gemini-interactions`, kind `api-key` | one credential (Gemini Interactions API keys, CLIProxyAPI's `GeminiKey`: stored and shown; no upstream adapter serves them yet) |
 * | `vertex-api-key` | provider `vertex`, kind `api-key` | one credential (stored and shown; no upstream adapter serves it yet) |
 * | `xai-api-key` | provider `xai`, kind `api-key` | one credential (stored and shown; no upstream adapter serves it yet) |
 * | `openai-compatibility` | provider `openai`, kind `api-key` | the credentials sharing a `label` (= `name`), one per API key |
 *
 * **Writes never lose what the client did not send.** A written item is merged over the stored
 * item it continues ({@link ListSpec.identify}: a PATCH's target; for a PUT entry, the stored
 * item with the same `api-key` — narrowed by `base-url` when several share it — or, for
 * `openai-compatibility`, the same `name`): a field the client omits keeps its stored value, a
 * field sent as `null` (or `""`, `[]`, `{}`) is cleared. A field tokenpool cannot store is a 400
 * naming it when it carries a value (an empty one is accepted: nothing is lost), never dropped.
 * The response-only `auth-index` is ignored.
 *
 * `openai-compatibility` keys have two shapes, both always shown: `api-keys` (strings, the seed's)
 * and `api-key-entries` (`{ api-key, proxy-url, weight? }`, CLIProxyAPI's current one). A write
 * may carry either or both: one shape alone is the new key list; both agreeing is that list;
 * both disagreeing means a client echoed one shape unchanged from a read and edited the other,
 * so the one that differs from the stored keys wins (both differing is a 400). `null` for a key
 * list counts as not sent (serialisers write nil lists as `null`); `[]` is an explicit wipe. A key
 * sent without its `proxy-url` / `weight` keeps the stored ones of the same key.
 *
 * Limits of the credentials ({@link CredentialLimits}) are extra fields of an item, in the
 * lists' kebab-case ({@link ITEM_LIMIT_FIELDS}): `rpm-limit`, `tpm-limit`, `max-concurrency`,
 * `spend-limit-day`, `spend-limit-month` (non-negative integers, 0 = none). An item lists the
 * limits set (above 0); an item written without a field keeps the stored value of the
 * credential with the same API key, so that a client that does not know the fields never wipes
 * them. An `openai-compatibility` entry's limits apply to each of its API keys (each counted on
 * its own); it shows those of its first key. `priority` and `weight` are the credentials' own.
 *
 * @module
 */
import type { CredentialLimits, CredentialRecord } from "../store/types.js";

/** The item field of each credential limit, in the lists' kebab-case. */
export const ITEM_LIMIT_FIELDS = {
  rpm: "rpm-limit",
  tpm: "tpm-limit",
  maxConcurrency: "max-concurrency",
  spendPerDay: "spend-limit-day",
  spendPerMonth: "spend-limit-month",
} as const satisfies Record<keyof CredentialLimits, string>;

const LIMIT_ENTRIES = Object.entries(ITEM_LIMIT_FIELDS) as [
  keyof CredentialLimits,
  (typeof ITEM_LIMIT_FIELDS)[keyof CredentialLimits],
][];

/**
 * The limits of an item's credentials (see the module's description): requests per minute,
 * tokens per minute, requests in flight at once, and quota units spent per calendar day and
 * month (in the `quota-refill-time-zone` setting). Non-negative integers; 0 = none.
 */
export interface ItemLimits {
  "rpm-limit"?: number;
  "tpm-limit"?: number;
  "max-concurrency"?: number;
  "spend-limit-day"?: number;
  "spend-limit-month"?: number;
}

/**
 * One key item of `claude-api-key`, `codex-api-key`, `gemini-api-key`, `vertex-api-key` or
 * `xai-api-key` (CLIProxyAPI's `ClaudeKey` / `CodexKey` / `GeminiKey` / `VertexKey`).
 */
export interface ProviderKeyItem extends ItemLimits {
  "api-key": string;
  /** `""` = the provider's default endpoint. */
  "base-url": string;
  "proxy-url"?: string;
  models?: { name: string; alias: string }[];
  "excluded-models"?: string[];
  headers?: Record<string, string>;
  /** The credential's priority tier (higher first); shown when not 0. */
  priority?: number;
  /** The credential's weight (weighted selection); shown when not 1. */
  weight?: number;
}

/** One item of `gemini-api-key` or `interactions-api-key` (the same fields as the other key lists). */
export type GeminiKeyItem = ProviderKeyItem;

/** One key of an `openai-compatibility` entry, in CLIProxyAPI's current shape. */
export interface OpenAICompatibilityKeyEntry {
  "api-key": string;
  "proxy-url": string;
  /** The key's credential weight; shown when not 1. */
  weight?: number;
}

/** One `openai-compatibility` entry. */
export interface OpenAICompatibilityItem extends ItemLimits {
  name: string;
  "base-url": string;
  /** The keys as strings (the seed's shape); always answered beside `api-key-entries`. */
  "api-keys": string[];
  models: { name: string; alias: string }[];
  /** The keys with their proxies (CLIProxyAPI's current shape); always answered. */
  "api-key-entries"?: OpenAICompatibilityKeyEntry[];
  headers?: Record<string, string>;
  priority?: number;
  /** Shown (true) when every key's credential is disabled; a write sets every key's. */
  disabled?: boolean;
}

/** The object lists, as `GET /config` shows them. */
export interface ConfigLists {
  "claude-api-key": ProviderKeyItem[];
  "codex-api-key": ProviderKeyItem[];
  "openai-compatibility": OpenAICompatibilityItem[];
  "gemini-api-key": GeminiKeyItem[];
  /** Gemini Interactions API keys (stored and shown; no upstream adapter serves them yet). */
  "interactions-api-key": GeminiKeyItem[];
  "vertex-api-key": ProviderKeyItem[];
  "xai-api-key": ProviderKeyItem[];
}

/** Default upstream of each provider key list: stored as the credential's base URL, shown as `""`. */
export const PROVIDER_KEY_DEFAULT_BASE_URLS = {
  "claude-api-key": "https://api.anthropic.com",
  "codex-api-key": "https://chatgpt.com/backend-api/codex",
  "gemini-api-key": "https://generativelanguage.googleapis.com",
  "interactions-api-key": "https://generativelanguage.googleapis.com",
  "vertex-api-key": "https://aiplatform.googleapis.com",
  "xai-api-key": "https://api.x.ai/v1",
} as const;

/** Label of the `gemini-api-key` / `generative-language-api-key` credentials. */
const GEMINI_LABEL = "generative-language-api-key";

const KEY_LIST_PROVIDERS = {
  "claude-api-key": "anthropic",
  "codex-api-key": "codex",
  "gemini-api-key": "gemini",
  "interactions-api-key": "gemini-interactions",
  "vertex-api-key": "vertex",
  "xai-api-key": "xai",
} as const;
type KeyListName = keyof typeof KEY_LIST_PROVIDERS;
const OPENAI_COMPAT = "openai-compatibility";
const OPENAI_COMPAT_PROVIDER = "openai";

/** Credential fields an item sets (everything else keeps its value or default). */
export type ItemFields = Pick<
  CredentialRecord,
  | "provider"
  | "kind"
  | "label"
  | "baseUrl"
  | "secret"
  | "proxyUrl"
  | "models"
  | "excludedModels"
  | "headers"
  | "priority"
  | "weight"
> & {
  enabled?: boolean;
  /**
   * The limits the item names (a field at 0 removes that limit); fields it does not name keep
   * the stored values of the credential with the same API key.
   */
  limits: CredentialLimits;
};

/** One item of a list as stored: its credentials, in order. */
export interface StoredItem<T> {
  value: T;
  creds: CredentialRecord[];
}

/** A client value that is not a valid item: what is wrong, for the 400. */
export class ItemProblem {
  constructor(readonly message: string) {}
}

/** What the generic list operations need to know about one list. */
export interface ListSpec<T> {
  name: string;
  /** The items of the list, in order. */
  read(creds: CredentialRecord[]): StoredItem<T>[];
  /**
   * Validates a client value written over `stored` (the item it continues, if any): fields the
   * value omits keep the stored ones. An {@link ItemProblem} when it is not a valid item.
   */
  parse(raw: unknown, stored?: T): T | ItemProblem;
  /**
   * Validates an entry of a configuration file: the whole truth about the fields it shows (no
   * merge), except that `openai-compatibility` keys in one shape keep the stored proxies of the
   * same keys. `lenient` (validation without the stored state): key shapes that disagree are not
   * an error (the writer decides against the stored keys).
   */
  parseFile(raw: unknown, stored?: T, lenient?: boolean): T | ItemProblem;
  /** The credentials an item is made of (at least one). */
  fields(value: T): ItemFields[];
  /** The id prefix of new credentials of an item. */
  idPrefix(value: T): string;
  /** Id scheme: `<prefix><n>` with n above the largest in use, or the first free n. */
  idMode: "max" | "first-free";
  /** Whether an item is the one a client names by its key (`api-key`, or `name`). */
  matches(value: T, key: string): boolean;
  /** The item's `base-url` as shown (`""` = default), for selectors that narrow by it. */
  baseOf(value: T): string;
  /** Normalises a `base-url` a client sends as a selector (the default endpoint → `""`). */
  normalizeBase(base: string): string;
  /**
   * The position of the stored item a PUT entry continues (see the module's description), or -1.
   * `at` is the entry's own position (the tie-break among several items with its key).
   */
  identify(raw: unknown, items: StoredItem<T>[], at: number): number;
  /** The field a PATCH names the item by, and the DELETE query parameter (`api-key` / `name`). */
  keyField: "match" | "name";
  keyParam: "api-key" | "name";
  /**
   * CLIProxyAPI's `GeminiKey` selectors (`gemini-api-key`, `interactions-api-key`): a key may
   * repeat across endpoints, so a PATCH or DELETE naming several items is a 400 (no guess) and a
   * DELETE naming none is a 404. Otherwise a DELETE naming none is a 200 no-op.
   */
  strictKeyMatch?: boolean;
  /** Rejects a list as a whole (e.g. duplicate names); the message of the 400. */
  checkList?(values: T[]): string | null;
}

// ---------------------------------------------------------------------------------------------
// Validation helpers

/** Whether `v` is a plain object (not null, not an array). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isHttpUrl(v: string): boolean {
  try {
    const u = new URL(v);
    return u.protocol === "http:" || u.protocol === "https:";
  } catch {
    return false;
  }
}

function isProxyUrl(v: string): boolean {
  try {
    return ["http:", "https:", "socks5:", "socks5h:"].includes(new URL(v).protocol);
  } catch {
    return false;
  }
}

/** A value that carries nothing (absent, null, false, "", [], {}): dropping it loses nothing. */
function isEmptyValue(v: unknown): boolean {
  if (v === undefined || v === null || v === false || v === "") return true;
  if (Array.isArray(v)) return v.length === 0;
  if (isObject(v)) return Object.keys(v).length === 0;
  return false;
}

/** Fields only answers carry; a client echoing them back is ignored. */
const RESPONSE_ONLY = new Set(["auth-index"]);

/** The 400 for a field tokenpool cannot store, when it carries a value. */
function unknownField(
  o: Record<string, unknown>,
  known: ReadonlySet<string>,
  where: string,
): ItemProblem | null {
  for (const [k, v] of Object.entries(o)) {
    if (known.has(k) || RESPONSE_ONLY.has(k) || isEmptyValue(v)) continue;
    return new ItemProblem(
      `${where}\`${k}\` is not supported by tokenpool (sent with a value, it would be lost)`,
    );
  }
  return null;
}

const fail = (m: string) => new ItemProblem(m);

/** An optional string field: `undefined` when absent or null, `null` when of another type. */
function optString(o: Record<string, unknown>, k: string): string | undefined | null {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  return typeof v === "string" ? v : null;
}

const MODEL_FIELDS = new Set(["name", "alias"]);

function parseModels(v: unknown, where: string): { name: string; alias: string }[] | ItemProblem {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) return fail(`${where}\`models\` must be a list`);
  const out: { name: string; alias: string }[] = [];
  for (const [i, m] of v.entries()) {
    if (!isObject(m) || typeof m.name !== "string" || m.name.trim() === "")
      return fail(`${where}\`models[${i}].name\` is required`);
    const alias = optString(m, "alias");
    if (alias === null) return fail(`${where}\`models[${i}].alias\` must be a string`);
    const extra = unknownField(m, MODEL_FIELDS, `${where}models[${i}]: `);
    if (extra) return extra;
    out.push({ name: m.name.trim(), alias: (alias ?? "").trim() });
  }
  return out;
}

/** A list of strings; with `joined`, also a comma/newline separated string (CLIProxyAPI's UIs accept both). */
function parseStrings(
  v: unknown,
  field: string,
  where: string,
  joined = false,
): string[] | ItemProblem {
  if (v === undefined || v === null) return [];
  const parts = joined && typeof v === "string" ? v.split(/[,\n]/) : v;
  if (!Array.isArray(parts) || !parts.every((s) => typeof s === "string"))
    return fail(`${where}\`${field}\` must be a list of strings`);
  return [...new Set((parts as string[]).map((s) => s.trim()).filter((s) => s !== ""))];
}

function parseHeaders(v: unknown, where: string): Record<string, string> | ItemProblem {
  if (v === undefined || v === null) return {};
  // CLIProxyAPI's UIs also know headers as `[{ key, value }]`.
  const pairs = Array.isArray(v)
    ? v.map((p) => (isObject(p) ? [p.key, p.value] : [undefined, undefined]))
    : isObject(v)
      ? Object.entries(v)
      : null;
  if (!pairs) return fail(`${where}\`headers\` must be a mapping of strings`);
  const out: Record<string, string> = {};
  for (const [k, val] of pairs) {
    if (typeof k !== "string" || typeof val !== "string")
      return fail(`${where}\`headers\` must be a mapping of strings`);
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || /[\r\n\0]/.test(val))
      return fail(`${where}invalid header ${JSON.stringify(k)}`);
    out[k] = val;
  }
  return out;
}

/** An optional integer field with a floor; `undefined` when absent or null. */
function optInt(
  o: Record<string, unknown>,
  k: string,
  min: number,
  where: string,
): number | undefined | ItemProblem {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  if (!Number.isSafeInteger(v) || (v as number) < min)
    return fail(`${where}\`${k}\` must be an integer of at least ${min}`);
  return v as number;
}

/**
 * The first limit field of an item that is not a non-negative integer, as a message for a 400;
 * null when every limit field present is valid (absent and null fields are fine).
 */
export function itemLimitProblem(raw: unknown): string | null {
  if (!isObject(raw)) return null;
  for (const [, wire] of LIMIT_ENTRIES) {
    const v = raw[wire];
    if (v === undefined || v === null) continue;
    if (!Number.isSafeInteger(v) || (v as number) < 0)
      return `\`${wire}\` must be a non-negative integer (0 = none), got ${JSON.stringify(v)}`;
  }
  return null;
}

/** Copies the valid limit fields of `raw` into `value`. */
function parseLimits(raw: Record<string, unknown>, value: ItemLimits): ItemProblem | null {
  const problem = itemLimitProblem(raw);
  if (problem !== null) return fail(problem);
  for (const [, wire] of LIMIT_ENTRIES) {
    const v = raw[wire];
    // 0 is kept: it removes that limit (an absent field keeps the stored one).
    if (typeof v === "number") value[wire] = v;
  }
  return null;
}

/** Shows the limits of `c` that are set (above 0) on `value`. */
function showLimits(c: CredentialRecord, value: ItemLimits): void {
  const l = c.limits;
  if (!l) return;
  for (const [field, wire] of LIMIT_ENTRIES) {
    const n = l[field];
    if (n !== undefined && n > 0) value[wire] = n;
  }
}

/** The limits an item names, as credential limits. */
function limitsOf(v: ItemLimits): CredentialLimits {
  const out: CredentialLimits = {};
  for (const [field, wire] of LIMIT_ENTRIES) {
    const n = v[wire];
    if (n !== undefined) out[field] = n;
  }
  return out;
}

function toCredentialModels(models: { name: string; alias: string }[]) {
  return models.map((m) => (m.alias ? { name: m.name, alias: m.alias } : { name: m.name }));
}

function fromCredentialModels(c: CredentialRecord): { name: string; alias: string }[] {
  return c.models.map((m) => ({ name: m.name, alias: m.alias ?? "" }));
}

/** `{ ...stored, ...raw }` for an object `raw` (fields `raw` sends win, `null` included). */
function mergeOver(raw: unknown, stored: object | undefined): unknown {
  if (!isObject(raw) || !stored) return raw;
  return { ...(stored as Record<string, unknown>), ...raw };
}

const LIMIT_WIRE = LIMIT_ENTRIES.map(([, w]) => w);

// ---------------------------------------------------------------------------------------------
// The key lists

const PROVIDER_KEY_FIELDS = new Set([
  "api-key",
  "base-url",
  "proxy-url",
  "models",
  "excluded-models",
  "headers",
  "priority",
  "weight",
  ...LIMIT_WIRE,
]);

function providerKeySpec(name: KeyListName): ListSpec<ProviderKeyItem> {
  const provider = KEY_LIST_PROVIDERS[name];
  const defaultBase = PROVIDER_KEY_DEFAULT_BASE_URLS[name];
  const label = name === "gemini-api-key" ? GEMINI_LABEL : "";
  const belongs = (c: CredentialRecord) =>
    c.provider === provider &&
    c.kind === "api-key" &&
    (name !== "gemini-api-key" || c.label === GEMINI_LABEL);
  const normalizeBase = (b: string) => {
    const t = b.trim().replace(/\/+$/, "");
    return t === defaultBase ? "" : t;
  };

  const parse = (input: unknown, stored?: ProviderKeyItem): ProviderKeyItem | ItemProblem => {
    const raw = mergeOver(input, stored);
    if (!isObject(raw)) return fail("an item must be an object");
    const key = optString(raw, "api-key");
    const base = optString(raw, "base-url");
    const proxy = optString(raw, "proxy-url");
    if (!key?.trim()) return fail("`api-key` is required");
    if (base === null || (base?.trim() && !isHttpUrl(base.trim())))
      return fail("`base-url` must be an http(s) URL or empty (the default endpoint)");
    if (proxy === null || (proxy?.trim() && !isProxyUrl(proxy.trim())))
      return fail("`proxy-url` must be an http(s) or socks5 URL, or empty");
    const models = parseModels(raw.models, "");
    if (models instanceof ItemProblem) return models;
    const excluded = parseStrings(raw["excluded-models"], "excluded-models", "", true);
    if (excluded instanceof ItemProblem) return excluded;
    const headers = parseHeaders(raw.headers, "");
    if (headers instanceof ItemProblem) return headers;
    const priority = optInt(raw, "priority", Number.MIN_SAFE_INTEGER, "");
    if (priority instanceof ItemProblem) return priority;
    const weight = optInt(raw, "weight", 1, "");
    if (weight instanceof ItemProblem) return weight;
    const extra = unknownField(raw, PROVIDER_KEY_FIELDS, "");
    if (extra) return extra;
    const value: ProviderKeyItem = {
      "api-key": key.trim(),
      "base-url": normalizeBase(base ?? ""),
    };
    if (proxy?.trim()) value["proxy-url"] = proxy.trim();
    if (models.length > 0) value.models = models;
    if (excluded.length > 0) value["excluded-models"] = excluded;
    if (Object.keys(headers).length > 0) value.headers = headers;
    if (priority !== undefined && priority !== 0) value.priority = priority;
    if (weight !== undefined && weight !== 1) value.weight = weight;
    const bad = parseLimits(raw, value);
    return bad ?? value;
  };

  return {
    name,
    read: (creds) =>
      creds.filter(belongs).map((c) => {
        const value: ProviderKeyItem = {
          "api-key": c.secret.apiKey ?? "",
          "base-url": c.baseUrl === defaultBase ? "" : c.baseUrl,
        };
        if (c.proxyUrl) value["proxy-url"] = c.proxyUrl;
        if (c.models.length > 0) value.models = fromCredentialModels(c);
        if (c.excludedModels.length > 0) value["excluded-models"] = [...c.excludedModels];
        if (Object.keys(c.headers).length > 0) value.headers = { ...c.headers };
        if (c.priority !== 0) value.priority = c.priority;
        if (c.weight !== 1) value.weight = c.weight;
        showLimits(c, value);
        return { value, creds: [c] };
      }),
    parse,
    parseFile: (raw) => parse(raw),
    fields: (v) => [
      {
        provider,
        kind: "api-key",
        label,
        baseUrl: v["base-url"] || defaultBase,
        secret: { apiKey: v["api-key"] },
        proxyUrl: v["proxy-url"] ?? "",
        models: toCredentialModels(v.models ?? []),
        excludedModels: v["excluded-models"] ?? [],
        headers: v.headers ?? {},
        priority: v.priority ?? 0,
        weight: v.weight ?? 1,
        limits: limitsOf(v),
      },
    ],
    idPrefix: () => `${name}:`,
    idMode: "max",
    matches: (v, key) => v["api-key"] === key.trim(),
    baseOf: (v) => v["base-url"],
    normalizeBase,
    identify(raw, items, at) {
      if (!isObject(raw) || typeof raw["api-key"] !== "string") return -1;
      const key = raw["api-key"].trim();
      let found = items.flatMap((it, i) => (it.value["api-key"] === key ? [i] : []));
      if (found.length > 1 && typeof raw["base-url"] === "string") {
        const base = normalizeBase(raw["base-url"]);
        const narrowed = found.filter((i) => items[i]!.value["base-url"] === base);
        if (narrowed.length > 0) found = narrowed;
      }
      if (found.length === 0) return -1;
      return found.includes(at) ? at : found[0]!;
    },
    keyField: "match",
    keyParam: "api-key",
    strictKeyMatch: name === "gemini-api-key" || name === "interactions-api-key",
  };
}

// ---------------------------------------------------------------------------------------------
// openai-compatibility

const OPENAI_FIELDS = new Set([
  "name",
  "base-url",
  "api-keys",
  "api-key-entries",
  "models",
  "headers",
  "priority",
  "disabled",
  ...LIMIT_WIRE,
]);
const ENTRY_FIELDS = new Set(["api-key", "proxy-url", "weight"]);

/** A key as a client sent it: `proxy-url` / `weight` undefined when not sent. */
interface SentKey {
  key: string;
  proxy: string | undefined;
  weight: number | undefined;
}

function parseKeyStrings(v: unknown): SentKey[] | ItemProblem | undefined {
  if (v === undefined || v === null) return undefined;
  const keys = parseStrings(v, "api-keys", "");
  if (keys instanceof ItemProblem) return keys;
  return keys.map((key) => ({ key, proxy: undefined, weight: undefined }));
}

function parseKeyEntries(v: unknown): SentKey[] | ItemProblem | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) return fail("`api-key-entries` must be a list");
  const out: SentKey[] = [];
  for (const [i, e] of v.entries()) {
    const where = `api-key-entries[${i}]: `;
    if (!isObject(e)) return fail(`${where}must be an object`);
    const k = optString(e, "api-key");
    const p = optString(e, "proxy-url");
    if (!k?.trim()) return fail(`${where}\`api-key\` is required`);
    if (p === null || (p?.trim() && !isProxyUrl(p.trim())))
      return fail(`${where}\`proxy-url\` must be an http(s) or socks5 URL, or empty`);
    const weight = optInt(e, "weight", 1, where);
    if (weight instanceof ItemProblem) return weight;
    const extra = unknownField(e, ENTRY_FIELDS, where);
    if (extra) return extra;
    out.push({ key: k.trim(), proxy: p === undefined ? undefined : p.trim(), weight });
  }
  return out;
}

const sameKeys = (a: SentKey[], b: readonly string[]) =>
  a.length === b.length && a.every((k, i) => k.key === b[i]);

/** The keys of an entry write (see the module's description for how the two shapes combine). */
function resolveKeys(
  raw: Record<string, unknown>,
  stored: OpenAICompatibilityItem | undefined,
  lenient: boolean,
): OpenAICompatibilityKeyEntry[] | ItemProblem {
  const strings = parseKeyStrings(raw["api-keys"]);
  if (strings instanceof ItemProblem) return strings;
  const entries = parseKeyEntries(raw["api-key-entries"]);
  if (entries instanceof ItemProblem) return entries;
  const storedEntries = stored?.["api-key-entries"] ?? [];
  const storedKeys = stored?.["api-keys"] ?? [];
  let chosen: SentKey[];
  if (!strings && !entries)
    chosen = storedEntries.map((e) => ({ key: e["api-key"], proxy: undefined, weight: undefined }));
  else if (!strings || !entries) chosen = (entries ?? strings)!;
  else if (
    sameKeys(
      entries,
      strings.map((s) => s.key),
    )
  )
    chosen = entries;
  // Both shapes, different keys: one is an echo of a read, the other the client's edit.
  else if (sameKeys(strings, storedKeys)) chosen = entries;
  else if (sameKeys(entries, storedKeys) || lenient) chosen = strings;
  else
    return fail(
      "`api-keys` and `api-key-entries` name different keys and both differ from the stored ones: send one of them",
    );
  const byKey = new Map(storedEntries.map((e) => [e["api-key"], e]));
  const seen = new Set<string>();
  const out: OpenAICompatibilityKeyEntry[] = [];
  for (const k of chosen) {
    if (seen.has(k.key)) continue;
    seen.add(k.key);
    const old = byKey.get(k.key);
    const e: OpenAICompatibilityKeyEntry = {
      "api-key": k.key,
      "proxy-url": k.proxy ?? old?.["proxy-url"] ?? "",
    };
    const weight = k.weight ?? old?.weight;
    if (weight !== undefined && weight !== 1) e.weight = weight;
    out.push(e);
  }
  return out;
}

function parseOpenAI(
  input: unknown,
  stored: OpenAICompatibilityItem | undefined,
  merge: boolean,
  lenient = false,
): OpenAICompatibilityItem | ItemProblem {
  if (!isObject(input)) return fail("an entry must be an object");
  // The key shapes are resolved from what the client sent; the other fields merge over stored.
  const { "api-keys": _k, "api-key-entries": _e, ...rest } = stored ?? ({} as never);
  const raw = mergeOver(input, stored && merge ? rest : undefined) as Record<string, unknown>;
  const name = optString(raw, "name");
  const base = optString(raw, "base-url");
  if (!name?.trim()) return fail("`name` is required");
  if (!base?.trim() || !isHttpUrl(base.trim())) return fail("`base-url` must be an http(s) URL");
  const keys = resolveKeys(input, stored, lenient);
  if (keys instanceof ItemProblem) return keys;
  const models = parseModels(raw.models, "");
  if (models instanceof ItemProblem) return models;
  const headers = parseHeaders(raw.headers, "");
  if (headers instanceof ItemProblem) return headers;
  const priority = optInt(raw, "priority", Number.MIN_SAFE_INTEGER, "");
  if (priority instanceof ItemProblem) return priority;
  const disabled = raw.disabled;
  if (disabled !== undefined && disabled !== null && typeof disabled !== "boolean")
    return fail("`disabled` must be a boolean");
  const extra = unknownField(raw, OPENAI_FIELDS, "");
  if (extra) return extra;
  const value = openaiValue(
    name.trim(),
    base.trim(),
    keys,
    models,
    headers,
    priority ?? 0,
    disabled === true ? true : disabled === false ? false : undefined,
  );
  return parseLimits(raw, value) ?? value;
}

/** An entry in its one canonical shape (reads and parses build it alike). */
function openaiValue(
  name: string,
  base: string,
  keys: OpenAICompatibilityKeyEntry[],
  models: { name: string; alias: string }[],
  headers: Record<string, string>,
  priority: number,
  disabled: boolean | undefined,
): OpenAICompatibilityItem {
  const value: OpenAICompatibilityItem = {
    name,
    "base-url": base,
    "api-keys": keys.map((e) => e["api-key"]),
    "api-key-entries": keys,
    models,
  };
  if (Object.keys(headers).length > 0) value.headers = headers;
  if (priority !== 0) value.priority = priority;
  // `false` is kept on a parsed value (it enables every key); reads show only `true`.
  if (disabled !== undefined) value.disabled = disabled;
  return value;
}

const openaiCompatSpec: ListSpec<OpenAICompatibilityItem> = {
  name: OPENAI_COMPAT,
  read(creds) {
    const groups = new Map<string, CredentialRecord[]>();
    for (const c of creds) {
      if (c.provider !== OPENAI_COMPAT_PROVIDER || c.kind !== "api-key") continue;
      const g = groups.get(c.label);
      if (g) g.push(c);
      else groups.set(c.label, [c]);
    }
    return [...groups.entries()].map(([name, group]) => {
      const first = group[0]!;
      const keyed = group.filter((c) => typeof c.secret.apiKey === "string");
      const keys = keyed.map((c) => {
        const e: OpenAICompatibilityKeyEntry = {
          "api-key": c.secret.apiKey!,
          "proxy-url": c.proxyUrl,
        };
        if (c.weight !== 1) e.weight = c.weight;
        return e;
      });
      const allDisabled = keyed.length > 0 && keyed.every((c) => !c.enabled);
      const value = openaiValue(
        name,
        first.baseUrl,
        keys,
        fromCredentialModels(first),
        { ...first.headers },
        (keyed[0] ?? first).priority,
        allDisabled ? true : undefined,
      );
      showLimits(keyed[0] ?? first, value);
      return { value, creds: group };
    });
  },
  parse: (raw, stored) => parseOpenAI(raw, stored, true),
  parseFile: (raw, stored, lenient) => parseOpenAI(raw, stored, false, lenient),
  fields(v) {
    const common = {
      provider: OPENAI_COMPAT_PROVIDER,
      kind: "api-key" as const,
      label: v.name,
      baseUrl: v["base-url"],
      models: toCredentialModels(v.models),
      excludedModels: [],
      headers: v.headers ?? {},
      priority: v.priority ?? 0,
      limits: limitsOf(v),
    };
    const entries = v["api-key-entries"] ?? v["api-keys"].map((k) => ({ "api-key": k }));
    // No key: one disabled credential without a key keeps the entry in the list.
    if (entries.length === 0)
      return [{ ...common, secret: {}, proxyUrl: "", weight: 1, enabled: false }];
    return entries.map((e) => ({
      ...common,
      secret: { apiKey: e["api-key"] },
      proxyUrl: (e as OpenAICompatibilityKeyEntry)["proxy-url"] ?? "",
      weight: (e as OpenAICompatibilityKeyEntry).weight ?? 1,
      ...(v.disabled === undefined ? {} : { enabled: !v.disabled }),
    }));
  },
  idPrefix: (v) => `${OPENAI_COMPAT}:${v.name}:`,
  idMode: "first-free",
  matches: (v, key) => v.name === key.trim(),
  baseOf: (v) => v["base-url"],
  normalizeBase: (b) => b.trim(),
  identify(raw, items) {
    if (!isObject(raw) || typeof raw.name !== "string") return -1;
    const name = raw.name.trim();
    return items.findIndex((it) => it.value.name === name);
  },
  keyField: "name",
  keyParam: "name",
  checkList: (values) =>
    new Set(values.map((v) => v.name)).size === values.length ? null : "duplicate `name`",
};

/** The object lists, by name. */
export const LIST_SPECS: { [N in keyof ConfigLists]: ListSpec<ConfigLists[N][number]> } = {
  "claude-api-key": providerKeySpec("claude-api-key"),
  "codex-api-key": providerKeySpec("codex-api-key"),
  [OPENAI_COMPAT]: openaiCompatSpec,
  "gemini-api-key": providerKeySpec("gemini-api-key"),
  "interactions-api-key": providerKeySpec("interactions-api-key"),
  "vertex-api-key": providerKeySpec("vertex-api-key"),
  "xai-api-key": providerKeySpec("xai-api-key"),
};

/** The names of the object lists. */
export type ConfigListName = keyof ConfigLists;

/**
 * The object lists that own their credentials in a configuration file (`config.yaml`), in
 * `GET /config` order. `gemini-api-key` is not one of them: its credentials are the string
 * list `generative-language-api-key`'s (the file store keeps their other fields in its index).
 * `interactions-api-key`, `vertex-api-key` and `xai-api-key` are applied from a file but not
 * written into the file store's `config.yaml` (their credentials stay in its index).
 */
export const CONFIG_LIST_NAMES: readonly ConfigListName[] = [
  "claude-api-key",
  "codex-api-key",
  OPENAI_COMPAT,
];

/** Every object list, in `GET /config` order. */
export const ALL_CONFIG_LIST_NAMES: readonly ConfigListName[] = [
  "gemini-api-key",
  "interactions-api-key",
  "claude-api-key",
  "codex-api-key",
  "xai-api-key",
  "vertex-api-key",
  OPENAI_COMPAT,
];
