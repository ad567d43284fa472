/**
 * The object lists of the management dialect: `claude-api-key`, `codex-api-key` and
 * `openai-compatibility` (CLIProxyAPI's provider key lists). They are not stored anywhere of
 * their own: each list is a VIEW over the pool's API-key credentials.
 *
 * | list | credentials | one item is |
 * | --- | --- | --- |
 * | `claude-api-key` | provider `anthropic`, kind `api-key` | one credential |
 * | `codex-api-key` | provider `codex`, kind `api-key` | one credential |
 * | `openai-compatibility` | provider `openai`, kind `api-key` | the credentials sharing a `label` (= `name`), one per API key |
 *
 * Order and ids: a list's order is the pool's order (the store's creation order). Writes keep
 * it stable because they reuse credentials by POSITION: a PUT updates the credential of item
 * `i` in place with the new item `i`, creates credentials only for items past the old end and
 * deletes the surplus; a PATCH updates in place. New credentials get readable ids,
 * `claude-api-key:<n>` / `codex-api-key:<n>` (n = one more than the largest in use) and
 * `openai-compatibility:<name>:<i>` (the first free `i`, the scheme of the server's config
 * import). An `openai-compatibility` entry without API keys is kept as one disabled credential
 * without a key, so that it stays in the list (the seed lists such entries).
 *
 * Writes are validated whole before anything is written; if the store then fails half-way, the
 * writes already made are undone (best effort) and the reply is a 500.
 *
 * @module
 */
import type { AddCredentialInput } from "../../credentials/pool.js";
import { isGatewayError } from "../../errors.js";
import { type Exchange, json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { CredentialPatch, CredentialRecord } from "../../store/types.js";
import { emptyCredentialState } from "../../store/util.js";
import {
  type ManagementGuard,
  managementError,
  managementOk,
  managementRoute,
  readManagementBody,
} from "./common.js";

/** The pool operations the lists need; a gateway's `CredentialPool` fits. */
export interface ListCredentials {
  /** Every credential with its secrets, in the pool's stable order. */
  list(): CredentialRecord[];
  add(input: AddCredentialInput): Promise<CredentialRecord>;
  update(id: string, patch: CredentialPatch): Promise<CredentialRecord | null>;
  remove(id: string): Promise<boolean>;
}

/** Dependencies of {@link listRoutes}. */
export interface ListRoutesDeps {
  guard: ManagementGuard;
  /** The pool (`gateway.credentials.pool`). */
  pool: ListCredentials;
  maxBodyBytes: number;
}

/** One `claude-api-key` / `codex-api-key` item (CLIProxyAPI's `ClaudeKey` / `CodexKey`). */
export interface ProviderKeyItem {
  "api-key": string;
  /** `""` = the provider's default endpoint. */
  "base-url": string;
  "proxy-url"?: string;
  models?: { name: string; alias: string }[];
  "excluded-models"?: string[];
  headers?: Record<string, string>;
}

/** One `openai-compatibility` entry. */
export interface OpenAICompatibilityItem {
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

/** Reply of `GET /v0/management/<object list>`: `{ "claude-api-key": [...] }`. */
export type ConfigListResponse<N extends ConfigListName> = { [K in N]: ConfigLists[K] };

/** Body of `PUT /v0/management/<object list>`: the whole list, raw or as `{ items }`. */
export type ConfigListPutBody<N extends ConfigListName> =
  | ConfigLists[N]
  | { items: ConfigLists[N] };

/**
 * Body of `PATCH /v0/management/<object list>`: the item at `index`, or the one whose key
 * (`match`: its `api-key` for `claude-api-key`/`codex-api-key`; `name` for
 * `openai-compatibility`) matches, becomes `value`.
 */
export type ConfigListPatchBody<N extends ConfigListName> = {
  index?: number;
  value: ConfigLists[N][number];
} & (N extends "openai-compatibility" ? { name?: string } : { match?: string });

/**
 * Query of `DELETE /v0/management/<object list>`: `index`, or `api-key`
 * (`claude-api-key`/`codex-api-key`) / `name` (`openai-compatibility`).
 */
export type ConfigListDeleteQuery<N extends ConfigListName> =
  | { index: number }
  | (N extends "openai-compatibility" ? { name: string } : { "api-key": string });

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
type ItemFields = Pick<
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
> & { enabled?: boolean };

/** One item of a list as stored: its credentials, in order. */
interface StoredItem<T> {
  value: T;
  creds: CredentialRecord[];
}

/** What the generic list routes need to know about one list. */
interface ListSpec<T> {
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
  /** PATCH selector field and DELETE query parameter besides `index`. */
  keyField: "match" | "name";
  keyQuery: "api-key" | "name";
  matches(value: T, key: string): boolean;
  /** Rejects a list as a whole (e.g. duplicate names). */
  checkList?(values: T[]): boolean;
}

// ---------------------------------------------------------------------------------------------
// Validation helpers

function isObject(v: unknown): v is Record<string, unknown> {
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
      },
    ],
    idPrefix: () => `${name}:`,
    idMode: "max",
    keyField: "match",
    keyQuery: "api-key",
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
  keyField: "name",
  keyQuery: "name",
  matches: (v, key) => v.name === key,
  checkList: (values) => new Set(values.map((v) => v.name)).size === values.length,
};

const SPECS = {
  "claude-api-key": providerKeySpec("claude-api-key"),
  "codex-api-key": providerKeySpec("codex-api-key"),
  [OPENAI_COMPAT]: openaiCompatSpec,
};

/**
 * The three object lists as `GET /config` shows them (full keys: the management API is behind
 * the management key, as in the seed).
 */
export async function configLists(deps: Pick<ListRoutesDeps, "pool">): Promise<ConfigLists> {
  const creds = deps.pool.list();
  return {
    "claude-api-key": SPECS["claude-api-key"].read(creds).map((i) => i.value),
    "codex-api-key": SPECS["codex-api-key"].read(creds).map((i) => i.value),
    "openai-compatibility": SPECS[OPENAI_COMPAT].read(creds).map((i) => i.value),
  };
}

// ---------------------------------------------------------------------------------------------
// Writing: positional reuse, with an undo log

/** Applies credential writes and remembers how to undo them. */
class Writer {
  readonly #pool: ListCredentials;
  readonly #undo: (() => Promise<unknown>)[] = [];
  readonly #ids: Set<string>;

  constructor(pool: ListCredentials, existing: CredentialRecord[]) {
    this.#pool = pool;
    this.#ids = new Set(existing.map((c) => c.id));
  }

  /** A new id `<prefix><n>`. */
  newId(prefix: string, mode: "max" | "first-free"): string {
    let n = 0;
    if (mode === "max") {
      for (const id of this.#ids) {
        if (!id.startsWith(prefix)) continue;
        const rest = id.slice(prefix.length);
        if (/^\d+$/.test(rest)) n = Math.max(n, Number(rest) + 1);
      }
      if (n === 0) n = 1;
    }
    while (this.#ids.has(`${prefix}${n}`)) n++;
    const id = `${prefix}${n}`;
    this.#ids.add(id);
    return id;
  }

  async add(id: string, f: ItemFields): Promise<void> {
    await this.#pool.add({ id, ...f });
    this.#undo.push(() => this.#pool.remove(id));
  }

  async update(old: CredentialRecord, f: ItemFields): Promise<void> {
    const patch: CredentialPatch = { ...f };
    const wasPlaceholder = typeof old.secret.apiKey !== "string";
    const isPlaceholder = typeof f.secret.apiKey !== "string";
    if (f.enabled === undefined && wasPlaceholder && !isPlaceholder) patch.enabled = true;
    // A new key starts with a clean health record; other edits keep cooldowns and counts.
    if (old.secret.apiKey !== f.secret.apiKey && patch.enabled === undefined)
      patch.state = emptyCredentialState();
    // Fields the item does not carry (extra secret fields, tokens) are kept.
    patch.secret = { ...old.secret, ...f.secret };
    if (isPlaceholder) delete patch.secret.apiKey;
    await this.#pool.update(old.id, patch);
    const { id: _id, createdAt: _c, updatedAt: _u, ...before } = old;
    this.#undo.push(() => this.#pool.update(old.id, before));
  }

  async remove(old: CredentialRecord): Promise<void> {
    await this.#pool.remove(old.id);
    const { createdAt: _c, updatedAt: _u, ...before } = old;
    this.#undo.push(() => this.#pool.add(before));
  }

  async rollback(): Promise<void> {
    for (const undo of this.#undo.reverse()) await undo().catch(() => {});
  }
}

/** Makes the credentials of `old` (in order) become the items `next`, reusing by position. */
async function writeItems<T>(
  w: Writer,
  spec: ListSpec<T>,
  old: StoredItem<T>[],
  next: { at: number; value: T }[],
  removeRest: boolean,
): Promise<void> {
  for (const { at, value } of next) {
    const fields = spec.fields(value);
    const creds = old[at]?.creds ?? [];
    for (const [j, f] of fields.entries()) {
      const c = creds[j];
      if (c) await w.update(c, f);
      else await w.add(w.newId(spec.idPrefix(value), spec.idMode), f);
    }
    for (const c of creds.slice(fields.length)) await w.remove(c);
  }
  if (removeRest)
    for (const item of old.slice(next.length)) for (const c of item.creds) await w.remove(c);
}

// ---------------------------------------------------------------------------------------------
// Routes

function invalidBody(): Error {
  return managementError(400, "invalid body");
}

function notFound(): Error {
  return managementError(404, "item not found");
}

/** A non-negative integer from JSON or a query string, `undefined` when absent. */
function parseIndex(v: unknown): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  const n = typeof v === "string" && /^\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw invalidBody();
  return n;
}

/**
 * The routes of the three object lists: GET, PUT (raw array or `{ items }`), PATCH (`{ index,
 * value }` or `{ match | name, value }`) and DELETE (`?index=` or `?api-key=` / `?name=`).
 *
 * @example
 * ```ts
 * router.add(listRoutes({ guard, pool: gateway.credentials.pool, maxBodyBytes: 1 << 20 }));
 * ```
 */
export function listRoutes(deps: ListRoutesDeps): Route[] {
  const { guard, pool, maxBodyBytes } = deps;
  // One list write at a time in this process: each reads the list, then writes by position.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <R>(fn: () => Promise<R>): Promise<R> => {
    const run = chain.then(fn, fn);
    chain = run.catch(() => {});
    return run;
  };

  const write = async <T>(
    spec: ListSpec<T>,
    plan: (items: StoredItem<T>[]) => {
      next: { at: number; value: T }[];
      removeRest: boolean;
      remove?: number[];
    },
  ): Promise<void> => {
    const all = pool.list();
    const items = spec.read(all);
    const { next, removeRest, remove = [] } = plan(items);
    const w = new Writer(pool, all);
    try {
      await writeItems(w, spec, items, next, removeRest);
      for (const at of remove) for (const c of items[at]!.creds) await w.remove(c);
    } catch (error) {
      await w.rollback();
      if (isGatewayError(error) && error.status < 500) throw error;
      throw managementError(500, (error as Error).message ?? String(error));
    }
  };

  const routesOf = <T>(spec: ListSpec<T>): Route[] => [
    managementRoute(guard, "GET", `/${spec.name}`, async () =>
      json(200, { [spec.name]: spec.read(pool.list()).map((i) => i.value) }),
    ),

    managementRoute(guard, "PUT", `/${spec.name}`, async (ex) => {
      const body = await readManagementBody(ex, maxBodyBytes);
      const raw = Array.isArray(body) ? body : isObject(body) ? body.items : undefined;
      if (!Array.isArray(raw)) throw invalidBody();
      const values = raw.map((r) => spec.parse(r));
      if (values.some((v) => v === null)) throw invalidBody();
      const list = values as T[];
      if (spec.checkList && !spec.checkList(list)) throw invalidBody();
      await serial(() =>
        write(spec, () => ({ next: list.map((value, at) => ({ at, value })), removeRest: true })),
      );
      return managementOk();
    }),

    managementRoute(guard, "PATCH", `/${spec.name}`, async (ex) => {
      const body = await readManagementBody(ex, maxBodyBytes);
      if (!isObject(body)) throw invalidBody();
      const index = parseIndex(body.index);
      const key = body[spec.keyField];
      if (key !== undefined && key !== null && typeof key !== "string") throw invalidBody();
      if (index === undefined && (key === undefined || key === null)) throw invalidBody();
      const value = spec.parse(body.value);
      if (value === null) throw invalidBody();
      await serial(() =>
        write(spec, (items) => {
          let at = index !== undefined && index < items.length ? index : -1;
          if (at < 0 && typeof key === "string")
            at = items.findIndex((i) => spec.matches(i.value, key));
          if (at < 0) throw notFound();
          if (spec.checkList) {
            const values = items.map((i, j) => (j === at ? value : i.value));
            if (!spec.checkList(values)) throw invalidBody();
          }
          return { next: [{ at, value }], removeRest: false };
        }),
      );
      return managementOk();
    }),

    managementRoute(guard, "DELETE", `/${spec.name}`, async (ex: Exchange): Promise<Reply> => {
      const q = new URLSearchParams(ex.search);
      const index = parseIndex(q.get("index") ?? undefined);
      const key = q.get(spec.keyQuery);
      if (index === undefined && key === null)
        throw managementError(400, `missing ${spec.keyQuery} or index`);
      await serial(() =>
        write(spec, (items) => {
          let remove: number[];
          if (key !== null) {
            remove = items.flatMap((i, at) => (spec.matches(i.value, key) ? [at] : []));
          } else remove = index! < items.length ? [index!] : [];
          if (remove.length === 0) throw notFound();
          return { next: [], removeRest: false, remove };
        }),
      );
      return managementOk();
    }),
  ];

  return [
    ...routesOf(SPECS["claude-api-key"]),
    ...routesOf(SPECS["codex-api-key"]),
    ...routesOf(SPECS[OPENAI_COMPAT]),
  ];
}

/** The names of the object lists. */
export type ConfigListName = keyof ConfigLists;

/** The object list names, in `GET /config` order. */
export const CONFIG_LIST_NAMES: readonly ConfigListName[] = [
  "claude-api-key",
  "codex-api-key",
  OPENAI_COMPAT,
];

/**
 * Validates a whole object list as `PUT /<name>` would (e.g. entries of a configuration file):
 * the normalised items, or `null` when an entry is invalid.
 */
export function parseConfigList(name: ConfigListName, entries: unknown[]): unknown[] | null {
  const spec = SPECS[name] as ListSpec<unknown>;
  const values = entries.map((e) => spec.parse(e));
  if (values.some((v) => v === null)) return null;
  if (spec.checkList && !spec.checkList(values)) return null;
  return values;
}

/**
 * Replaces the object list `name` with `entries` (the same validation and positional reuse as
 * `PUT /<name>`), e.g. from a configuration file. Throws a 400 `GatewayError` for an invalid
 * entry. Writes nothing when the list already holds exactly these items; resolves with whether
 * it wrote.
 */
export async function replaceConfigList(
  pool: ListCredentials,
  name: ConfigListName,
  entries: unknown[],
): Promise<boolean> {
  const spec = SPECS[name] as ListSpec<unknown>;
  const values = parseConfigList(name, entries);
  if (!values) throw managementError(400, "invalid body");
  const all = pool.list();
  const items = spec.read(all);
  if (JSON.stringify(items.map((i) => i.value)) === JSON.stringify(values)) return false;
  const w = new Writer(pool, all);
  try {
    await writeItems(
      w,
      spec,
      items,
      values.map((value, at) => ({ at, value })),
      true,
    );
  } catch (error) {
    await w.rollback();
    throw error;
  }
  return true;
}

/**
 * Replaces the `openai-compatibility` list with `entries` (the same positional reuse as
 * `PUT /openai-compatibility`), e.g. from a configuration file. Throws a 400 `GatewayError` for
 * an invalid entry. Idempotent: applying the same entries again writes nothing.
 */
export async function replaceOpenAICompatibility(
  pool: ListCredentials,
  entries: unknown[],
): Promise<void> {
  await replaceConfigList(pool, OPENAI_COMPAT, entries);
}
