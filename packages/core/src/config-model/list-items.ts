/**
 * CLIProxyAPI's object lists (`claude-api-key`, `codex-api-key`, `openai-compatibility`): the
 * shape of one item, its validation, and how items map to the pool's API-key credentials. No
 * HTTP here: the management dialect, the standalone server and the file store all use it.
 *
 * | list | credentials | one item is |
 * | --- | --- | --- |
 * | `claude-api-key` | provider `anthropic`, kind `api-key` | one credential |
 * | `codex-api-key` | provider `codex`, kind `api-key` | one credential |
 * | `openai-compatibility` | provider `openai`, kind `api-key` | the credentials sharing a `label` (= `name`), one per API key |
 *
 * Limits of the credentials ({@link CredentialLimits}) are extra fields of an item, in the
 * lists' kebab-case ({@link ITEM_LIMIT_FIELDS}): `rpm-limit`, `tpm-limit`, `max-concurrency`,
 * `spend-limit-day`, `spend-limit-month` (non-negative integers, 0 = none). An item lists the
 * limits set (above 0); an item written without a field keeps the stored value of the
 * credential with the same API key, so that a client that does not know the fields never wipes
 * them. An `openai-compatibility` entry's limits apply to each of its API keys (each counted on
 * its own); it shows those of its first key.
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

/** One `claude-api-key` / `codex-api-key` item (CLIProxyAPI's `ClaudeKey` / `CodexKey`). */
export interface ProviderKeyItem extends ItemLimits {
  "api-key": string;
  /** `""` = the provider's default endpoint. */
  "base-url": string;
  "proxy-url"?: string;
  models?: { name: string; alias: string }[];
  "excluded-models"?: string[];
  headers?: Record<string, string>;
}

/** One `openai-compatibility` entry. */
export interface OpenAICompatibilityItem extends ItemLimits {
  name: string;
  "base-url": string;
  "api-keys": string[];
  models: { name: string; alias: string }[];
  /** Present when some key has its own proxy (CLIProxyAPI's newer per-key form). */
  "api-key-entries"?: { "api-key": string; "proxy-url": string }[];
  headers?: Record<string, string>;
}

/** The three object lists, as `GET /config` shows them. */
export interface ConfigLists {
  "claude-api-key": ProviderKeyItem[];
  "codex-api-key": ProviderKeyItem[];
  "openai-compatibility": OpenAICompatibilityItem[];
}

/** Default upstream of each provider key list: stored as the credential's base URL, shown as `""`. */
export const PROVIDER_KEY_DEFAULT_BASE_URLS = {
  "claude-api-key": "https://api.anthropic.com",
  "codex-api-key": "https://chatgpt.com/backend-api/codex",
} as const;

const KEY_LIST_PROVIDERS = { "claude-api-key": "anthropic", "codex-api-key": "codex" } as const;
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

/** What the generic list operations need to know about one list. */
export interface ListSpec<T> {
  name: string;
  /** The items of the list, in order. */
  read(creds: CredentialRecord[]): StoredItem<T>[];
  /** Validates a client value; `null` when it is not a valid item. */
  parse(raw: unknown): T | null;
  /** The credentials an item is made of (at least one). */
  fields(value: T): ItemFields[];
  /** The id prefix of new credentials of an item. */
  idPrefix(value: T): string;
  /** Id scheme: `<prefix><n>` with n above the largest in use, or the first free n. */
  idMode: "max" | "first-free";
  /** Whether an item is the one a client names by its key (`api-key`, or `name`). */
  matches(value: T, key: string): boolean;
  /** Rejects a list as a whole (e.g. duplicate names). */
  checkList?(values: T[]): boolean;
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

/** An optional string field: `undefined` when absent or null, `null` when of another type. */
function optString(o: Record<string, unknown>, k: string): string | undefined | null {
  const v = o[k];
  if (v === undefined || v === null) return undefined;
  return typeof v === "string" ? v : null;
}

function parseModels(v: unknown): { name: string; alias: string }[] | null {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) return null;
  const out: { name: string; alias: string }[] = [];
  for (const m of v) {
    if (!isObject(m) || typeof m.name !== "string" || m.name.trim() === "") return null;
    const alias = optString(m, "alias");
    if (alias === null) return null;
    out.push({ name: m.name.trim(), alias: (alias ?? "").trim() });
  }
  return out;
}

function parseStrings(v: unknown): string[] | null {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) return null;
  return (v as string[]).map((s) => s.trim()).filter((s) => s !== "");
}

function parseHeaders(v: unknown): Record<string, string> | null {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) return null;
  const out: Record<string, string> = {};
  for (const [k, val] of Object.entries(v)) {
    if (typeof val !== "string" || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k)) return null;
    if (/[\r\n\0]/.test(val)) return null;
    out[k] = val;
  }
  return out;
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

/** Copies the valid limit fields of `raw` into `value`; false when one is invalid. */
function parseLimits(raw: Record<string, unknown>, value: ItemLimits): boolean {
  if (itemLimitProblem(raw) !== null) return false;
  for (const [, wire] of LIMIT_ENTRIES) {
    const v = raw[wire];
    if (typeof v === "number") value[wire] = v;
  }
  return true;
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

/** The limits an item names, as credential limits (0 kept: it removes that limit). */
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

// ---------------------------------------------------------------------------------------------
// The lists

function providerKeySpec(name: KeyListName): ListSpec<ProviderKeyItem> {
  const provider = KEY_LIST_PROVIDERS[name];
  const defaultBase = PROVIDER_KEY_DEFAULT_BASE_URLS[name];
  const belongs = (c: CredentialRecord) => c.provider === provider && c.kind === "api-key";
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
        showLimits(c, value);
        return { value, creds: [c] };
      }),
    parse(raw) {
      if (!isObject(raw)) return null;
      const key = optString(raw, "api-key");
      const base = optString(raw, "base-url");
      const proxy = optString(raw, "proxy-url");
      if (!key?.trim() || base === null || proxy === null) return null;
      if (base?.trim() && !isHttpUrl(base.trim())) return null;
      if (proxy?.trim() && !isProxyUrl(proxy.trim())) return null;
      const models = parseModels(raw.models);
      const excluded = parseStrings(raw["excluded-models"]);
      const headers = parseHeaders(raw.headers);
      if (!models || !excluded || !headers) return null;
      const value: ProviderKeyItem = { "api-key": key.trim(), "base-url": base?.trim() ?? "" };
      if (proxy?.trim()) value["proxy-url"] = proxy.trim();
      if (models.length > 0) value.models = models;
      if (excluded.length > 0) value["excluded-models"] = excluded;
      if (Object.keys(headers).length > 0) value.headers = headers;
      if (!parseLimits(raw, value)) return null;
      return value;
    },
    fields: (v) => [
      {
        provider,
        kind: "api-key",
        label: "",
        baseUrl: v["base-url"] || defaultBase,
        secret: { apiKey: v["api-key"] },
        proxyUrl: v["proxy-url"] ?? "",
        models: toCredentialModels(v.models ?? []),
        excludedModels: v["excluded-models"] ?? [],
        headers: v.headers ?? {},
        limits: limitsOf(v),
      },
    ],
    idPrefix: () => `${name}:`,
    idMode: "max",
    matches: (v, key) => v["api-key"] === key,
  };
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
      const value: OpenAICompatibilityItem = {
        name,
        "base-url": first.baseUrl,
        "api-keys": keyed.map((c) => c.secret.apiKey!),
        models: fromCredentialModels(first),
      };
      if (keyed.some((c) => c.proxyUrl))
        value["api-key-entries"] = keyed.map((c) => ({
          "api-key": c.secret.apiKey!,
          "proxy-url": c.proxyUrl,
        }));
      if (Object.keys(first.headers).length > 0) value.headers = { ...first.headers };
      showLimits(keyed[0] ?? first, value);
      return { value, creds: group };
    });
  },
  parse(raw) {
    if (!isObject(raw)) return null;
    const name = optString(raw, "name");
    const base = optString(raw, "base-url");
    if (!name?.trim() || !base?.trim() || !isHttpUrl(base.trim())) return null;
    const keys = parseStrings(raw["api-keys"]);
    const models = parseModels(raw.models);
    const headers = parseHeaders(raw.headers);
    if (!keys || !models || !headers) return null;
    const value: OpenAICompatibilityItem = {
      name: name.trim(),
      "base-url": base.trim(),
      "api-keys": keys,
      models,
    };
    // CLIProxyAPI's newer form: `api-key-entries: [{ api-key, proxy-url }]`, used when given.
    const entries = raw["api-key-entries"];
    if (entries !== undefined && entries !== null) {
      if (!Array.isArray(entries)) return null;
      const parsed: { "api-key": string; "proxy-url": string }[] = [];
      for (const e of entries) {
        if (!isObject(e)) return null;
        const k = optString(e, "api-key");
        const p = optString(e, "proxy-url");
        if (!k?.trim() || p === null || (p?.trim() && !isProxyUrl(p.trim()))) return null;
        parsed.push({ "api-key": k.trim(), "proxy-url": p?.trim() ?? "" });
      }
      value["api-keys"] = parsed.map((e) => e["api-key"]);
      if (parsed.some((e) => e["proxy-url"])) value["api-key-entries"] = parsed;
    }
    if (Object.keys(headers).length > 0) value.headers = headers;
    if (!parseLimits(raw, value)) return null;
    return value;
  },
  fields(v) {
    const common = {
      provider: OPENAI_COMPAT_PROVIDER,
      kind: "api-key" as const,
      label: v.name,
      baseUrl: v["base-url"],
      models: toCredentialModels(v.models),
      excludedModels: [],
      headers: v.headers ?? {},
      limits: limitsOf(v),
    };
    // No key: one disabled credential without a key keeps the entry in the list.
    if (v["api-keys"].length === 0)
      return [{ ...common, secret: {}, proxyUrl: "", enabled: false }];
    return v["api-keys"].map((apiKey, i) => ({
      ...common,
      secret: { apiKey },
      proxyUrl: v["api-key-entries"]?.[i]?.["proxy-url"] ?? "",
    }));
  },
  idPrefix: (v) => `${OPENAI_COMPAT}:${v.name}:`,
  idMode: "first-free",
  matches: (v, key) => v.name === key,
  checkList: (values) => new Set(values.map((v) => v.name)).size === values.length,
};

/** The three lists, by name. */
export const LIST_SPECS: { [N in keyof ConfigLists]: ListSpec<ConfigLists[N][number]> } = {
  "claude-api-key": providerKeySpec("claude-api-key"),
  "codex-api-key": providerKeySpec("codex-api-key"),
  [OPENAI_COMPAT]: openaiCompatSpec,
};

/** The names of the object lists. */
export type ConfigListName = keyof ConfigLists;

/** The object list names, in `GET /config` order. */
export const CONFIG_LIST_NAMES: readonly ConfigListName[] = [
  "claude-api-key",
  "codex-api-key",
  OPENAI_COMPAT,
];
