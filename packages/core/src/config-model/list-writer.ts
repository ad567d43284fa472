/**
 * Reading and writing CLIProxyAPI's object lists over the pool. They are not stored anywhere of
 * their own: each list is a VIEW over the pool's API-key credentials (see `list-items.ts`).
 *
 * Order and ids: a list's order is the pool's order (the store's creation order). Writes keep
 * it stable because they reuse credentials by POSITION: a replace updates the credential of item
 * `i` in place with the new item `i`, creates credentials only for items past the old end and
 * deletes the surplus; an update of one item works in place. New credentials get readable ids,
 * `<list>:<n>` (n = one more than the largest in use) and `openai-compatibility:<name>:<i>` (the
 * first free `i`, the scheme of the server's config import). An `openai-compatibility` entry
 * without API keys is kept as one disabled credential without a key, so that it stays in the
 * list (the seed lists such entries).
 *
 * What a write keeps: every written item is merged over the stored item it continues (a PATCH's
 * target, or the item a PUT entry identifies by its key, see `ListSpec.identify`), so a field the
 * client omits keeps its stored value; credentials are reused by position, but the values come
 * from the identified item, so nothing of one key's item ends up on another's.
 *
 * Writes are validated whole before anything is written; if the store then fails half-way, the
 * writes already made are undone (best effort).
 *
 * @module
 */
import type { AddCredentialInput } from "../credentials/pool.js";
import { GatewayError, isGatewayError } from "../errors.js";
import type { CredentialLimits, CredentialPatch, CredentialRecord } from "../store/types.js";
import { emptyCredentialState } from "../store/util.js";
import {
  ALL_CONFIG_LIST_NAMES,
  type ConfigListName,
  type ConfigLists,
  ITEM_LIMIT_FIELDS,
  type ItemFields,
  ItemProblem,
  itemLimitProblem,
  LIST_SPECS,
  type ListSpec,
  type StoredItem,
} from "./list-items.js";

/** The pool operations the lists need; a gateway's `CredentialPool` fits. */
export interface ListCredentials {
  /** Every credential with its secrets, in the pool's stable order. */
  list(): CredentialRecord[];
  add(input: AddCredentialInput): Promise<CredentialRecord>;
  update(id: string, patch: CredentialPatch): Promise<CredentialRecord | null>;
  remove(id: string): Promise<boolean>;
}

/**
 * The 400 of an invalid item or list (the management dialect's `invalid body`, with what is
 * wrong when it is known).
 */
export function invalidListError(detail?: string): GatewayError {
  return new GatewayError("INVALID_REQUEST", detail ? `invalid body: ${detail}` : "invalid body", {
    status: 400,
  });
}

/** Throws the 400 naming a bad limit field of `raw`, if it has one. */
function checkLimits(raw: unknown): void {
  const problem = itemLimitProblem(raw);
  if (problem !== null) throw invalidListError(problem);
}

/** Every limit field, at 0 where `l` sets none: as a patch, it makes the stored limits exactly `l`. */
function exactLimits(l: CredentialLimits | undefined): CredentialLimits {
  const out: CredentialLimits = {};
  for (const field of Object.keys(ITEM_LIMIT_FIELDS) as (keyof CredentialLimits)[])
    out[field] = l?.[field] ?? 0;
  return out;
}

/** `l` without the fields at 0. */
function setLimits(l: CredentialLimits): CredentialLimits {
  const out: CredentialLimits = {};
  for (const [field, n] of Object.entries(l) as [keyof CredentialLimits, number][])
    if (n > 0) out[field] = n;
  return out;
}

function itemNotFound(): GatewayError {
  return new GatewayError("NOT_FOUND", "item not found", { status: 404 });
}

/**
 * The object lists as `GET /config` shows them (full keys: the management API is behind the
 * management key, as in the seed).
 */
export async function configLists(deps: {
  pool: Pick<ListCredentials, "list">;
}): Promise<ConfigLists> {
  const creds = deps.pool.list();
  const out = {} as Record<ConfigListName, unknown[]>;
  for (const name of ALL_CONFIG_LIST_NAMES)
    out[name] = (LIST_SPECS[name] as ListSpec<unknown>).read(creds).map((i) => i.value);
  return out as unknown as ConfigLists;
}

/** A 400 for a value that is not an item, with what is wrong. */
function problemError(p: ItemProblem, where?: string): GatewayError {
  return invalidListError(where ? `${where}: ${p.message}` : p.message);
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
    const { limits, ...rest } = f;
    const set = setLimits(limits);
    await this.#pool.add({ id, ...rest, ...(Object.keys(set).length > 0 ? { limits: set } : {}) });
    this.#undo.push(() => this.#pool.remove(id));
  }

  async update(old: CredentialRecord, f: ItemFields): Promise<void> {
    const { limits, ...rest } = f;
    const set = setLimits(limits);
    const patch: CredentialPatch = { ...rest };
    // Records that never had limits are left without the field.
    if (Object.keys(set).length > 0 || old.limits !== undefined) patch.limits = exactLimits(set);
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
    this.#undo.push(() =>
      this.#pool.update(
        old.id,
        patch.limits ? { ...before, limits: exactLimits(old.limits) } : before,
      ),
    );
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

/**
 * Makes the credentials of `old` (in order) become the items `next`, reusing by position.
 *
 * Limits: an item's credential gets the limits stored for the same API key in this list (a
 * client that does not know the limit fields keeps them, even when its items moved), with the
 * fields the item names on top; a new API key starts without limits. A credential without a key
 * (an `openai-compatibility` entry without keys) keeps those of the credential it replaces.
 */
async function writeItems<T>(
  w: Writer,
  spec: ListSpec<T>,
  old: StoredItem<T>[],
  next: { at: number; value: T }[],
  removeRest: boolean,
): Promise<void> {
  const byKey = new Map<string, CredentialLimits | undefined>();
  for (const item of old)
    for (const c of item.creds)
      if (typeof c.secret.apiKey === "string" && !byKey.has(c.secret.apiKey))
        byKey.set(c.secret.apiKey, c.limits);
  for (const { at, value } of next) {
    const fields = spec.fields(value);
    const creds = old[at]?.creds ?? [];
    for (const [j, f] of fields.entries()) {
      const c = creds[j];
      const apiKey = f.secret.apiKey;
      const stored = typeof apiKey === "string" ? byKey.get(apiKey) : c?.limits;
      const limits = { ...stored, ...f.limits };
      if (c) await w.update(c, { ...f, limits });
      else await w.add(w.newId(spec.idPrefix(value), spec.idMode), { ...f, limits });
    }
    for (const c of creds.slice(fields.length)) await w.remove(c);
  }
  if (removeRest)
    for (const item of old.slice(next.length)) for (const c of item.creds) await w.remove(c);
}

/** Which item of a list an update or removal is about: its position, or its key. */
export interface ConfigListTarget {
  index?: number | undefined;
  /** The item's `api-key` (key lists) or `name` (`openai-compatibility`). */
  key?: string | undefined;
  /** Narrows `key` to the items with this `base-url` (`""` = the default endpoint). */
  baseUrl?: string | undefined;
}

/**
 * Edits of the object lists, one at a time (each reads the list, then writes by position).
 * Errors are `GatewayError`s in CLIProxyAPI's wording: 400 `invalid body: <what>` for an invalid
 * item or list, 404 `item not found`, 400 for ambiguous or missing selectors, and 500 with the
 * store's message when a write failed (the writes made are undone).
 */
export interface ConfigListEditor {
  /** The items of a list. */
  read<N extends ConfigListName>(name: N): ConfigLists[N];
  /**
   * Replaces the whole list with `entries` (each validated, and merged over the stored item
   * it continues: omitted fields are kept).
   */
  replace(name: ConfigListName, entries: unknown[]): Promise<void>;
  /**
   * Merges `value` over one item (a merge patch: only the fields sent change): the item at
   * `index` when it exists, else the first whose key is `key` (narrowed by `baseUrl`).
   */
  update(name: ConfigListName, target: ConfigListTarget, value: unknown): Promise<void>;
  /**
   * Removes items by key (CLIProxyAPI's rules per list: see `DELETE` in docs/dialects.md) or by
   * `index`.
   */
  remove(name: ConfigListName, target: ConfigListTarget): Promise<void>;
}

function badRequest(message: string): GatewayError {
  return new GatewayError("INVALID_REQUEST", message, { status: 400 });
}

/** The positions of the items with key `key`, narrowed to `baseUrl` when given. */
function keyMatches<T>(
  spec: ListSpec<T>,
  items: StoredItem<T>[],
  key: string,
  baseUrl: string | undefined,
): { all: number[]; exact: number[] | undefined } {
  const all = items.flatMap((i, at) => (spec.matches(i.value, key) ? [at] : []));
  if (baseUrl === undefined) return { all, exact: undefined };
  const base = spec.normalizeBase(baseUrl);
  return { all, exact: all.filter((at) => spec.baseOf(items[at]!.value) === base) };
}

/** The values of a whole list written over `items` (each merged over the item it continues). */
function planReplace<T>(
  spec: ListSpec<T>,
  items: StoredItem<T>[],
  entries: unknown[],
  merge: boolean,
): T[] {
  const values = entries.map((raw, at) => {
    const from = spec.identify(raw, items, at);
    const stored = from >= 0 ? items[from]!.value : undefined;
    const v = merge ? spec.parse(raw, stored) : spec.parseFile(raw, stored);
    if (v instanceof ItemProblem) throw problemError(v, `${spec.name}[${at}]`);
    return v;
  });
  const problem = spec.checkList?.(values);
  if (problem) throw invalidListError(problem);
  return values;
}

/**
 * An editor of the object lists over `pool`, serialising its own writes.
 *
 * @example
 * ```ts
 * const lists = configListEditor(gateway.credentials.pool);
 * await lists.replace("claude-api-key", [{ "api-key": "sk-ant-1" }]);
 * ```
 */
export function configListEditor(pool: ListCredentials): ConfigListEditor {
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
      throw new GatewayError("INTERNAL", (error as Error).message ?? String(error), {
        status: 500,
      });
    }
  };

  const specOf = (name: ConfigListName) => LIST_SPECS[name] as ListSpec<unknown>;

  return {
    read: (name) => LIST_SPECS[name].read(pool.list()).map((i) => i.value) as never,

    async replace(name, entries) {
      const spec = specOf(name);
      for (const r of entries) checkLimits(r);
      await serial(() =>
        write(spec, (items) => {
          const values = planReplace(spec, items, entries, true);
          return { next: values.map((value, at) => ({ at, value })), removeRest: true };
        }),
      );
    },

    async update(name, { index, key, baseUrl }, raw) {
      const spec = specOf(name);
      checkLimits(raw);
      await serial(() =>
        write(spec, (items) => {
          let at = index !== undefined && index < items.length ? index : -1;
          if (at < 0 && typeof key === "string") {
            const { all, exact } = keyMatches(spec, items, key, baseUrl);
            const found = exact ?? all;
            // Gemini keys may repeat across endpoints: CLIProxyAPI refuses to guess.
            if (spec.strictKeyMatch && found.length > 1)
              throw badRequest("multiple items match; index is required");
            at = found[0] ?? -1;
          }
          if (at < 0) throw itemNotFound();
          const value = spec.parse(raw, items[at]!.value);
          if (value instanceof ItemProblem) throw problemError(value);
          const problem = spec.checkList?.(items.map((i, j) => (j === at ? value : i.value)));
          if (problem) throw invalidListError(problem);
          return { next: [{ at, value }], removeRest: false };
        }),
      );
    },

    async remove(name, { index, key, baseUrl }) {
      const spec = specOf(name);
      await serial(() =>
        write(spec, (items) => {
          let remove: number[];
          if (key !== undefined && key.trim() !== "") {
            const { all, exact } = keyMatches(spec, items, key, baseUrl);
            if (name === "openai-compatibility") remove = all;
            else if (spec.strictKeyMatch) {
              const found = exact ?? all;
              if (found.length === 0) throw itemNotFound();
              if (found.length > 1)
                throw badRequest(
                  exact
                    ? "multiple items match; index is required"
                    : "multiple items match api-key; base-url is required",
                );
              remove = found;
            } else if (exact) remove = exact;
            else if (all.length > 1)
              throw badRequest("multiple items match api-key; base-url is required");
            else remove = all;
          } else if (index !== undefined && index < items.length) remove = [index];
          else throw badRequest(`missing ${spec.keyParam} or index`);
          // A key that matches nothing is a no-op, as in CLIProxyAPI (200).
          return { next: [], removeRest: false, remove };
        }),
      );
    },
  };
}

/**
 * Validates a whole object list as `PUT /<name>` would (e.g. entries of a configuration file):
 * the normalised items, or `null` when an entry is invalid. Without the stored state,
 * `openai-compatibility` key shapes that disagree are not an error here (the writer decides).
 */
export function parseConfigList(name: ConfigListName, entries: unknown[]): unknown[] | null {
  const spec = LIST_SPECS[name] as ListSpec<unknown>;
  const values = entries.map((e) => spec.parseFile(e, undefined, true));
  if (values.some((v) => v instanceof ItemProblem)) return null;
  if (spec.checkList?.(values)) return null;
  return values;
}

/**
 * Replaces the object list `name` with `entries` (the same validation and positional reuse as
 * `PUT /<name>`), e.g. from a configuration file. A file is the whole truth about the fields it
 * shows, so entries are not merged over the stored items, except for what a file cannot say
 * otherwise: an `openai-compatibility` entry's keys written in one shape keep the stored
 * proxies of the same keys, and limits the entry does not name are kept. Throws a 400
 * `GatewayError` for an invalid entry. Writes nothing when the list already holds exactly these
 * items; resolves with whether it wrote.
 */
export async function replaceConfigList(
  pool: ListCredentials,
  name: ConfigListName,
  entries: unknown[],
): Promise<boolean> {
  const spec = LIST_SPECS[name] as ListSpec<unknown>;
  const all = pool.list();
  const items = spec.read(all);
  const values = planReplace(spec, items, entries, false);
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
  await replaceConfigList(pool, "openai-compatibility", entries);
}
