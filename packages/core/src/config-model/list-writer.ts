/**
 * Reading and writing CLIProxyAPI's object lists over the pool. They are not stored anywhere of
 * their own: each list is a VIEW over the pool's API-key credentials (see `list-items.ts`).
 *
 * Order and ids: a list's order is the pool's order (the store's creation order). Writes keep
 * it stable because they reuse credentials by POSITION: a replace updates the credential of item
 * `i` in place with the new item `i`, creates credentials only for items past the old end and
 * deletes the surplus; an update of one item works in place. New credentials get readable ids,
 * `claude-api-key:<n>` / `codex-api-key:<n>` (n = one more than the largest in use) and
 * `openai-compatibility:<name>:<i>` (the first free `i`, the scheme of the server's config
 * import). An `openai-compatibility` entry without API keys is kept as one disabled credential
 * without a key, so that it stays in the list (the seed lists such entries).
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
  type ConfigListName,
  type ConfigLists,
  ITEM_LIMIT_FIELDS,
  type ItemFields,
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
 * The three object lists as `GET /config` shows them (full keys: the management API is behind
 * the management key, as in the seed).
 */
export async function configLists(deps: {
  pool: Pick<ListCredentials, "list">;
}): Promise<ConfigLists> {
  const creds = deps.pool.list();
  return {
    "claude-api-key": LIST_SPECS["claude-api-key"].read(creds).map((i) => i.value),
    "codex-api-key": LIST_SPECS["codex-api-key"].read(creds).map((i) => i.value),
    "openai-compatibility": LIST_SPECS["openai-compatibility"].read(creds).map((i) => i.value),
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
  /** The item's `api-key` (`claude-api-key`/`codex-api-key`) or `name` (`openai-compatibility`). */
  key?: string | undefined;
}

/**
 * Edits of the object lists, one at a time (each reads the list, then writes by position).
 * Errors are `GatewayError`s: 400 `invalid body` for an invalid item or list, 404 `item not
 * found`, and 500 with the store's message when a write failed (the writes made are undone).
 */
export interface ConfigListEditor {
  /** The items of a list. */
  read<N extends ConfigListName>(name: N): ConfigLists[N];
  /** Replaces the whole list with `entries` (each validated). */
  replace(name: ConfigListName, entries: unknown[]): Promise<void>;
  /** Replaces one item (by `index` when it exists, else by `key`) with `value` (validated). */
  update(name: ConfigListName, target: ConfigListTarget, value: unknown): Promise<void>;
  /** Removes one item by `index`, or every item whose key is `key`. */
  remove(name: ConfigListName, target: ConfigListTarget): Promise<void>;
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
      const values = entries.map((r) => spec.parse(r));
      if (values.some((v) => v === null)) throw invalidListError();
      if (spec.checkList && !spec.checkList(values)) throw invalidListError();
      await serial(() =>
        write(spec, () => ({ next: values.map((value, at) => ({ at, value })), removeRest: true })),
      );
    },

    async update(name, { index, key }, raw) {
      const spec = specOf(name);
      checkLimits(raw);
      const value = spec.parse(raw);
      if (value === null) throw invalidListError();
      await serial(() =>
        write(spec, (items) => {
          let at = index !== undefined && index < items.length ? index : -1;
          if (at < 0 && typeof key === "string")
            at = items.findIndex((i) => spec.matches(i.value, key));
          if (at < 0) throw itemNotFound();
          if (spec.checkList) {
            const values = items.map((i, j) => (j === at ? value : i.value));
            if (!spec.checkList(values)) throw invalidListError();
          }
          return { next: [{ at, value }], removeRest: false };
        }),
      );
    },

    async remove(name, { index, key }) {
      const spec = specOf(name);
      await serial(() =>
        write(spec, (items) => {
          let remove: number[];
          if (key !== undefined) {
            remove = items.flatMap((i, at) => (spec.matches(i.value, key) ? [at] : []));
          } else remove = index !== undefined && index < items.length ? [index] : [];
          if (remove.length === 0) throw itemNotFound();
          return { next: [], removeRest: false, remove };
        }),
      );
    },
  };
}

/**
 * Validates a whole object list as `PUT /<name>` would (e.g. entries of a configuration file):
 * the normalised items, or `null` when an entry is invalid.
 */
export function parseConfigList(name: ConfigListName, entries: unknown[]): unknown[] | null {
  const spec = LIST_SPECS[name] as ListSpec<unknown>;
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
  const spec = LIST_SPECS[name] as ListSpec<unknown>;
  const values = parseConfigList(name, entries);
  if (!values) throw invalidListError();
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
  await replaceConfigList(pool, "openai-compatibility", entries);
}
