/**
 * The seeds' own file formats for settings and credentials, both ways:
 *
 * - `config.yaml` (CLIProxyAPI): every setting as a top-level key, API-key credentials as the
 *   seed's lists (`claude-api-key`, `codex-api-key`, `openai-compatibility`,
 *   `generative-language-api-key`), written with core's own list views (`configLists`) and read
 *   back with core's list writer (`replaceConfigList`), so the file is what `GET /config` shows;
 * - `data/accounts.json` (antigravity2api): the OAuth accounts of the pool provider;
 * - `auths/<name>.json` (CLIProxyAPI): every other OAuth credential;
 * - `credentials.json`: tokenpool's index of every credential, in creation order, with the
 *   fields the seed files cannot express (id, priority, weight, groups, health state ...)
 *   and without the secrets a seed file holds. A credential no seed format can express
 *   faithfully is kept whole here.
 *
 * @module
 */
import type { AddCredentialInput, CredentialRecord, CredentialSecret } from "@tokenpool/core";
import {
  authFileName,
  CONFIG_LIST_NAMES,
  type ConfigListName,
  canonicalJson,
  configLists,
  GL_API_KEY_LABEL,
  type ListCredentials,
  mergeYaml,
  parseAuthFile,
  parseConfigList,
  renderAuthFile,
  replaceConfigList,
} from "@tokenpool/core/config-model";
import { emptyCredentialState } from "@tokenpool/core/store-kernel";
import { parseDocument } from "yaml";
import { sha256 } from "./fs-util.js";
import { FileFormatError, isObject, parseCredential } from "./records.js";

/** Top-level keys of `config.yaml` that are not settings. */
export const GL_LIST = GL_API_KEY_LABEL;
const GL_BASE_URL = "https://generativelanguage.googleapis.com";
const LIST_KEYS = new Set<string>([...CONFIG_LIST_NAMES, GL_LIST]);
/** `api-keys` holds plain downstream keys, which a store never sees: the file keeps it as is. */
const UNMANAGED_KEYS = new Set(["api-keys"]);
const TOKENPOOL_KEY = "tokenpool";
const isReservedName = (name: string) =>
  LIST_KEYS.has(name) || UNMANAGED_KEYS.has(name) || name === TOKENPOOL_KEY;

// ---------------------------------------------------------------------------------------------
// config.yaml

/** What `config.yaml` holds for the store. */
export interface ConfigFile {
  settings: Map<string, unknown>;
  /** The lists the file owns (`CONFIG_LIST_NAMES`; absent ones are empty). */
  lists: Partial<Record<ConfigListName, unknown[]>>;
  gl: string[];
  /** The managed part of the file (everything but `api-keys`), to compare with the state. */
  view: Record<string, unknown>;
}

/** Parses `config.yaml`; throws a message naming the bad field. */
export function parseConfigFile(text: string): ConfigFile {
  const doc = parseDocument(text);
  if (doc.errors.length > 0) throw new FileFormatError(`not valid YAML: ${doc.errors[0]!.message}`);
  const js = (doc.toJS() ?? {}) as unknown;
  if (!isObject(js)) throw new FileFormatError("must hold a mapping");
  const settings = new Map<string, unknown>();
  const lists = {} as Record<ConfigListName, unknown[]>;
  let gl: string[] = [];
  for (const [k, v] of Object.entries(js)) {
    if (UNMANAGED_KEYS.has(k)) continue;
    if (k === TOKENPOOL_KEY) {
      const inner = isObject(v) ? v.settings : undefined;
      if (v !== null && !isObject(v)) throw new FileFormatError("`tokenpool` must be a mapping");
      if (inner !== undefined && inner !== null && !isObject(inner))
        throw new FileFormatError("`tokenpool.settings` must be a mapping");
      for (const [name, value] of Object.entries(inner ?? {})) settings.set(name, value);
    } else if (k === GL_LIST) {
      if (v === null) continue;
      if (!Array.isArray(v) || !v.every((s) => typeof s === "string" && s.trim() !== ""))
        throw new FileFormatError(`\`${GL_LIST}\` must be a list of non-empty strings`);
      gl = (v as string[]).map((s) => s.trim());
    } else if (LIST_KEYS.has(k)) {
      if (v === null) continue;
      if (!Array.isArray(v) || parseConfigList(k as ConfigListName, v) === null)
        throw new FileFormatError(
          `\`${k}\` has an invalid entry (see the management API's PUT /${k})`,
        );
      lists[k as ConfigListName] = v;
    } else settings.set(k, v);
  }
  for (const name of CONFIG_LIST_NAMES) lists[name] ??= [];
  const view: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(js)) if (!UNMANAGED_KEYS.has(k)) view[k] = v;
  return { settings, lists, gl, view };
}

/** The managed part of `config.yaml` for the given settings and list views. */
export function configView(
  settings: Map<string, unknown>,
  lists: Record<string, unknown[]>,
): Record<string, unknown> {
  const view: Record<string, unknown> = {};
  const reserved: Record<string, unknown> = {};
  for (const [k, v] of settings) {
    if (v === undefined) continue;
    if (isReservedName(k)) reserved[k] = v;
    else view[k] = v;
  }
  for (const [k, items] of Object.entries(lists)) if (items.length > 0) view[k] = items;
  if (Object.keys(reserved).length > 0) view[TOKENPOOL_KEY] = { settings: reserved };
  return view;
}

/**
 * Writes `view` into the YAML text `previous` (core's config-file merge), touching only what
 * differs: mappings are merged key by key so that comments and order of unchanged entries
 * survive; managed top-level keys absent from `view` are removed (and so are the entries of
 * `tokenpool` it no longer has); `api-keys` is never touched.
 */
export function renderConfigFile(view: Record<string, unknown>, previous: string | undefined) {
  return mergeYaml(previous, view, {
    prune: (path) =>
      path.length === 1
        ? !UNMANAGED_KEYS.has(path[0]!)
        : path.length === 2 && path[0] === TOKENPOOL_KEY,
  });
}

// ---------------------------------------------------------------------------------------------
// Credentials

/** Where a credential's secret lives. */
export type Source = "config.yaml" | "data/accounts.json" | `auths/${string}`;

/** One entry of `credentials.json`. */
export type IndexEntry = CredentialRecord & { source?: Source };

/** The parsed fields of an account or auth file entry. */
interface Carried {
  id?: string;
  provider: string;
  baseUrl: string;
  label: string;
  secret: CredentialSecret;
  projectIds: string[];
  enabled: boolean;
}

const str = (v: unknown) => (typeof v === "string" && v.trim() !== "" ? v.trim() : undefined);

/** An account of `data/accounts.json` in the pool seed's shape, plus the fields tokenpool needs. */
function renderAccount(c: CredentialRecord): Record<string, unknown> {
  const s = c.secret;
  const lifetime = Number(s.extra?.expiresIn);
  const known = s.expiresAt !== undefined && Number.isFinite(lifetime) && lifetime > 0;
  const out: Record<string, unknown> = {
    id: c.id,
    access_token: s.accessToken ?? "",
    refresh_token: s.refreshToken ?? "",
    expires_in: known ? lifetime : 0,
    timestamp: known ? s.expiresAt! - lifetime * 1000 : (s.expiresAt ?? c.updatedAt),
    enable: c.enabled,
    projectId: c.projectIds[0] ?? null,
  };
  if (s.expiresAt !== undefined) out.expires_at = s.expiresAt;
  if (c.label) out.email = c.label;
  if (s.idToken) out.id_token = s.idToken;
  const { expiresIn: _e, ...extra } = s.extra ?? {};
  if (Object.keys(extra).length > 0) out.extra = extra;
  return out;
}

function parseAccount(
  v: unknown,
  where: string,
  provider: string,
  baseUrl: string,
): Carried & { id: string } {
  if (!isObject(v)) throw new FileFormatError(`${where} must be an object`);
  const refresh = str(v.refresh_token);
  if (!refresh) throw new FileFormatError(`${where}.refresh_token is required`);
  for (const f of ["expires_in", "timestamp", "expires_at"] as const)
    if (v[f] !== undefined && v[f] !== null && typeof v[f] !== "number")
      throw new FileFormatError(`${where}.${f} must be a number`);
  if (v.enable !== undefined && typeof v.enable !== "boolean")
    throw new FileFormatError(`${where}.enable must be a boolean`);
  if (v.id !== undefined && typeof v.id !== "string")
    throw new FileFormatError(`${where}.id must be a string`);
  if (v.extra !== undefined && !isObject(v.extra))
    throw new FileFormatError(`${where}.extra must be an object`);
  const secret: CredentialSecret = { refreshToken: refresh };
  const access = str(v.access_token);
  if (access) secret.accessToken = access;
  const idToken = str(v.id_token);
  if (idToken) secret.idToken = idToken;
  const expiresIn = typeof v.expires_in === "number" ? v.expires_in : 0;
  if (expiresIn > 0 && typeof v.timestamp === "number")
    secret.expiresAt = v.timestamp + expiresIn * 1000;
  else if (typeof v.expires_at === "number") secret.expiresAt = v.expires_at;
  const extra: Record<string, string> = {};
  for (const [k, x] of Object.entries((v.extra as Record<string, unknown>) ?? {}))
    extra[k] = String(x);
  if (expiresIn > 0) extra.expiresIn = String(expiresIn);
  if (Object.keys(extra).length > 0) secret.extra = extra;
  const project = str(v.projectId);
  return {
    // Accounts written by hand have no id: derive one from the token, so it is stable.
    id: typeof v.id === "string" && v.id !== "" ? v.id : `acct_${sha256(refresh).slice(0, 16)}`,
    provider,
    baseUrl,
    label: str(v.email) ?? "",
    secret,
    projectIds: project ? [project] : [],
    enabled: v.enable !== false,
  };
}

function parseAuth(v: unknown, where: string): Carried {
  const parsed = parseAuthFile(v);
  if (!parsed.ok) throw new FileFormatError(`${where}: ${parsed.error}`);
  const f = parsed.fields;
  return {
    provider: f.provider,
    baseUrl: f.baseUrl,
    label: f.label ?? "",
    secret: f.secret,
    projectIds: f.projectIds ?? [],
    enabled: f.enabled ?? true,
  };
}

/** The secret fields of `full` that `carried` does not hold as they are. */
function secretRest(full: CredentialSecret, carried: CredentialSecret): CredentialSecret {
  const rest: CredentialSecret = {};
  for (const [k, v] of Object.entries(full) as [keyof CredentialSecret, unknown][]) {
    if (k === "extra") {
      const extra: Record<string, string> = {};
      for (const [ek, ev] of Object.entries(full.extra ?? {}))
        if (carried.extra?.[ek] !== ev) extra[ek] = ev;
      if (Object.keys(extra).length > 0) rest.extra = extra;
    } else if (canonicalJson(v) !== canonicalJson(carried[k]))
      (rest as Record<string, unknown>)[k] = v;
  }
  return rest;
}

/** A credential from a seed file entry and its index entry (absent for a file added by hand). */
function join(id: string, kind: CredentialRecord["kind"], p: Carried, index?: IndexEntry) {
  const { source: _s, ...base } = index ?? {
    ...parseCredential({ id, provider: p.provider, baseUrl: p.baseUrl, kind }, id),
  };
  const rest = base.secret;
  const secret: CredentialSecret = { ...p.secret, ...rest };
  const extra = { ...p.secret.extra, ...rest.extra };
  if (Object.keys(extra).length > 0) secret.extra = extra;
  else delete secret.extra;
  const keepProjects =
    canonicalJson(p.projectIds) === canonicalJson(base.projectIds) ||
    (p.projectIds.length === 1 && p.projectIds[0] === base.projectIds[0]);
  return {
    ...base,
    label: p.label,
    enabled: p.enabled,
    projectIds: keepProjects ? base.projectIds : p.projectIds,
    secret,
  } as CredentialRecord;
}

/** The pool operations core's list writer needs, over a plain map (no gateway involved). */
function poolOver(
  map: Map<string, CredentialRecord>,
  others?: Map<string, CredentialRecord>,
): ListCredentials {
  return {
    list: () => [...map.values()],
    async add(input: AddCredentialInput) {
      const rec = parseCredential(
        { ...input, state: input.state ?? emptyCredentialState(), createdAt: 0, updatedAt: 0 },
        "a new list item",
      );
      if (map.has(rec.id) || others?.has(rec.id))
        throw new Error(`credential "${rec.id}" already exists`);
      map.set(rec.id, rec);
      return rec;
    },
    async update(id, patch) {
      const r = map.get(id);
      if (!r) return null;
      const { id: _i, ...rest } = patch as typeof patch & { id?: string; createdAt?: number };
      delete (rest as { createdAt?: number }).createdAt;
      Object.assign(r, structuredClone(rest));
      return r;
    },
    async remove(id) {
      return map.delete(id);
    },
  };
}

const isGl = (c: CredentialRecord) =>
  c.provider === "gemini" && c.kind === "api-key" && c.label === GL_LIST;

function listOf(c: CredentialRecord): ConfigListName | typeof GL_LIST | null {
  if (c.kind !== "api-key") return null;
  if (isGl(c)) return GL_LIST;
  if (c.provider === "anthropic") return "claude-api-key";
  if (c.provider === "codex") return "codex-api-key";
  if (c.provider === "openai") return "openai-compatibility";
  return null;
}

/** The seed files of a set of credentials. */
export interface CredentialFiles {
  index: IndexEntry[];
  accounts: Record<string, unknown>[];
  /** File name → content. */
  auths: Map<string, Record<string, unknown>>;
  /** The list views for `config.yaml`. */
  lists: Record<string, unknown[]>;
}

/** Options shared by rendering and assembling. */
export interface CredentialLayout {
  /** Provider whose OAuth accounts live in `data/accounts.json`. */
  poolProvider: string;
  poolBaseUrl: string;
}

/** Splits credentials into the seed files and the index (each kept where it is expressed faithfully). */
export async function renderCredentials(
  creds: CredentialRecord[],
  layout: CredentialLayout,
): Promise<CredentialFiles> {
  const files: CredentialFiles = { index: [], accounts: [], auths: new Map(), lists: {} };
  const listed: CredentialRecord[] = [];
  for (const c of creds) {
    const list = listOf(c);
    if (list === GL_LIST) {
      const key = c.secret.apiKey;
      if (typeof key === "string" && key !== "" && key === key.trim()) {
        const { apiKey: _k, ...secret } = c.secret;
        files.index.push({ ...c, secret, source: "config.yaml" });
        listed.push(c);
        continue;
      }
    } else if (list) {
      const one = await configLists({ pool: poolOver(new Map([[c.id, c]])) });
      const items = one[list];
      const parsed = parseConfigList(list, items);
      if (parsed && canonicalJson(parsed) === canonicalJson(items)) {
        const { apiKey: _k, ...secret } = c.secret;
        files.index.push({ ...c, secret, source: "config.yaml" });
        listed.push(c);
        continue;
      }
    } else if (c.kind === "oauth") {
      const toAccounts = c.provider === layout.poolProvider;
      const name = authFileName(c);
      const entry = toAccounts ? renderAccount(c) : renderAuthFile(c);
      try {
        const carried = toAccounts
          ? parseAccount(entry, "", c.provider, c.baseUrl)
          : parseAuth(entry, "");
        const source: Source = toAccounts ? "data/accounts.json" : `auths/${name}`;
        const index: IndexEntry = { ...c, secret: secretRest(c.secret, carried.secret), source };
        const faithful =
          canonicalJson(join(c.id, c.kind, carried, index)) === canonicalJson(c) &&
          (toAccounts || !files.auths.has(name));
        if (faithful) {
          files.index.push(index);
          if (toAccounts) files.accounts.push(entry);
          else files.auths.set(name, entry);
          continue;
        }
      } catch {
        // Not expressible in the seed format (e.g. no token yet): kept whole in the index.
      }
    }
    files.index.push(c);
  }
  const views = await configLists({ pool: poolOver(new Map(listed.map((c) => [c.id, c]))) });
  for (const name of CONFIG_LIST_NAMES) files.lists[name] = views[name];
  files.lists[GL_LIST] = listed.filter(isGl).map((c) => c.secret.apiKey!);
  return files;
}

/** The texts of the credential files, as read from disk (undefined = the file is absent). */
export interface CredentialTexts {
  index: string | undefined;
  config: ConfigFile | undefined;
  accounts: string | undefined;
  auths: Map<string, string>;
}

/** Parses `credentials.json`. */
export function parseIndex(text: string): IndexEntry[] {
  const v = JSON.parse(text) as unknown;
  const list = isObject(v) ? v.credentials : undefined;
  if (!Array.isArray(list))
    throw new FileFormatError("must be an object with a `credentials` list");
  const seen = new Set<string>();
  return list.map((e, i) => {
    const where = `credentials[${i}]`;
    const rec = parseCredential(e, where) as IndexEntry;
    if (seen.has(rec.id)) throw new FileFormatError(`${where}.id "${rec.id}" is used twice`);
    seen.add(rec.id);
    const source = (e as Record<string, unknown>).source;
    if (source !== undefined) {
      if (
        source !== "config.yaml" &&
        source !== "data/accounts.json" &&
        !(typeof source === "string" && /^auths\/[^/]+\.json$/.test(source))
      )
        throw new FileFormatError(`${where}.source is not a seed file`);
      rec.source = source as Source;
    }
    return rec;
  });
}

/** Parses `data/accounts.json` (a list of accounts, or `{ accounts: [...] }`). */
export function parseAccounts(text: string, layout: CredentialLayout) {
  const v = JSON.parse(text) as unknown;
  const list = Array.isArray(v) ? v : isObject(v) ? v.accounts : undefined;
  if (!Array.isArray(list)) throw new FileFormatError("must be a list of accounts");
  const seen = new Set<string>();
  return list.map((a, i) => {
    const acc = parseAccount(a, `[${i}]`, layout.poolProvider, layout.poolBaseUrl);
    if (seen.has(acc.id))
      throw new FileFormatError(`[${i}]: the account ${acc.id} is listed twice`);
    seen.add(acc.id);
    return acc;
  });
}

/** Parses one auth file. */
export function parseAuthText(text: string) {
  return parseAuth(JSON.parse(text) as unknown, "the file");
}

/**
 * Builds the credentials from their files: the index gives ids, order and the fields the seed
 * files cannot express; the seed files give the secrets and win for the fields they show.
 * Entries of a seed file that the index does not know (added by hand) become new credentials
 * (`createdAt` 0: the caller stamps them); index entries whose seed entry is gone are dropped.
 * Throws {@link FileFormatError} (with `.file`) for a file that does not parse.
 */
export async function assembleCredentials(
  t: CredentialTexts,
  layout: CredentialLayout,
): Promise<Map<string, CredentialRecord>> {
  const inFile = <T>(file: string, fn: () => T): T => {
    try {
      return fn();
    } catch (error) {
      throw Object.assign(
        error instanceof FileFormatError ? error : new FileFormatError((error as Error).message),
        { file },
      );
    }
  };
  const index = t.index === undefined ? [] : inFile("credentials.json", () => parseIndex(t.index!));
  const accounts =
    t.accounts === undefined
      ? []
      : inFile("data/accounts.json", () => parseAccounts(t.accounts!, layout));
  const auths = new Map<string, Carried>();
  for (const [name, text] of t.auths)
    auths.set(
      name,
      inFile(`auths/${name}`, () => parseAuthText(text)),
    );

  const out = new Map<string, CredentialRecord>();
  const accountById = new Map(accounts.map((a) => [a.id, a]));
  const usedAccounts = new Set<string>();
  const usedAuths = new Set<string>();
  for (const e of index) {
    if (e.source === "data/accounts.json") {
      const a = accountById.get(e.id);
      if (!a) continue;
      usedAccounts.add(e.id);
      out.set(e.id, join(e.id, "oauth", a, e));
    } else if (e.source?.startsWith("auths/")) {
      const name = e.source.slice("auths/".length);
      const f = auths.get(name);
      if (!f) continue;
      usedAuths.add(name);
      out.set(e.id, join(e.id, "oauth", f, e));
    } else {
      const { source: _s, ...rec } = e;
      out.set(e.id, rec);
    }
  }
  for (const a of accounts)
    if (!usedAccounts.has(a.id) && !out.has(a.id)) out.set(a.id, join(a.id, "oauth", a));
  for (const [name, f] of auths)
    if (!usedAuths.has(name) && !out.has(name)) out.set(name, join(name, "oauth", f));

  // The lists of config.yaml: give the index's members their keys by position, then let core's
  // list writer reconcile what differs (items added, removed or edited by hand).
  const lists: Partial<Record<ConfigListName, unknown[]>> = t.config?.lists ?? {};
  const members = (pred: (c: CredentialRecord) => boolean) =>
    index
      .filter((e) => e.source === "config.yaml" && out.has(e.id) && pred(out.get(e.id)!))
      .map((e) => out.get(e.id)!);
  const fill = (creds: CredentialRecord[], keys: { label?: string; key: string | undefined }[]) =>
    creds.forEach((c, i) => {
      const k = keys[i];
      if (k && k.key !== undefined && (k.label === undefined || k.label === c.label))
        c.secret = { ...c.secret, apiKey: k.key };
    });
  const pick = (provider: string) => (c: CredentialRecord) =>
    c.kind === "api-key" && c.provider === provider && !isGl(c);
  for (const [name, provider] of [
    ["claude-api-key", "anthropic"],
    ["codex-api-key", "codex"],
  ] as const) {
    const items = (lists[name] ?? []) as Record<string, unknown>[];
    fill(
      members(pick(provider)),
      items.map((it) => ({ key: str(it["api-key"]) })),
    );
  }
  const compat = members(pick("openai"));
  const groups = new Map<string, CredentialRecord[]>();
  for (const c of compat) groups.set(c.label, [...(groups.get(c.label) ?? []), c]);
  const flat: { label: string; key: string | undefined }[] = [];
  for (const it of (lists["openai-compatibility"] ?? []) as Record<string, unknown>[]) {
    const entries = Array.isArray(it["api-key-entries"])
      ? (it["api-key-entries"] as Record<string, unknown>[]).map((e) => str(e["api-key"]))
      : ((it["api-keys"] as unknown[] | undefined) ?? []).map(str);
    for (const key of entries.length > 0 ? entries : [undefined])
      flat.push({ label: String(it.name ?? "").trim(), key });
  }
  fill([...groups.values()].flat(), flat);
  const gl = members(isGl);
  fill(
    gl,
    (t.config?.gl ?? []).map((key) => ({ key })),
  );

  // Only the credentials that live in config.yaml take part: a credential of the same provider
  // kept whole in the index (one the lists cannot express) is not a list item.
  const listed = index.filter((e) => e.source === "config.yaml" && out.has(e.id)).map((e) => e.id);
  const sub = new Map(listed.map((id) => [id, out.get(id)!]));
  const pool = poolOver(sub, out);
  for (const name of CONFIG_LIST_NAMES) await replaceConfigList(pool, name, lists[name] ?? []);
  // generative-language-api-key: position by position, as the management API's PUT does.
  const values = t.config?.gl ?? [];
  for (const [i, value] of values.entries()) {
    const m = gl[i];
    if (!m) {
      let n = 0;
      while (out.has(`${GL_LIST}:${n}`) || sub.has(`${GL_LIST}:${n}`)) n++;
      await pool.add({
        id: `${GL_LIST}:${n}`,
        provider: "gemini",
        kind: "api-key",
        label: GL_LIST,
        baseUrl: GL_BASE_URL,
        secret: { apiKey: value },
      });
    } else if (m.secret.apiKey !== value)
      await pool.update(m.id, {
        secret: { ...m.secret, apiKey: value },
        state: emptyCredentialState(),
      });
  }
  for (const m of gl.slice(values.length)) sub.delete(m.id);
  for (const id of listed) if (!sub.has(id)) out.delete(id);
  for (const [id, c] of sub) out.set(id, c);
  return out;
}
