/**
 * The management dialect's string lists, as views over the domain model (nothing stored twice):
 *
 * - `api-keys`: downstream keys without an owner and with unlimited quota, named
 *   `api-keys:<position>`. Only keys named so belong to the list (keys made through the token
 *   dialect never do); their plain values are read back with the key service's reveal.
 * - `generative-language-api-key`: pool credentials of provider `gemini`, kind `api-key`, base
 *   URL `https://generativelanguage.googleapis.com`, labelled `generative-language-api-key`;
 *   in the pool's (creation) order. Replacing a value updates the credential in place.
 *
 * Forms (the seed's): GET → `{ "<name>": [...] }`; PUT a raw array or `{ items }`; PATCH
 * `{ old, new }` or `{ index, value }`; DELETE `?value=` or `?index=`. Unknown items → 404
 * `item not found`; malformed bodies → 400 `invalid body`.
 *
 * @module
 */
import type { CredentialPool } from "../../credentials/pool.js";
import type { Exchange } from "../../exchange.js";
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { KeyService } from "../../keys/service.js";
import type { ApiKeyRecord, CredentialRecord } from "../../store/types.js";
import { emptyCredentialState } from "../../store/util.js";
import {
  type ManagementGuard,
  managementError,
  managementOk,
  managementRoute,
  readManagementBody,
} from "./common.js";

/** Name prefix of the keys of the `api-keys` list. */
export const API_KEYS_NAME_PREFIX = "api-keys:";
/** Label of the credentials of the `generative-language-api-key` list. */
export const GL_API_KEY_LABEL = "generative-language-api-key";
/** Base URL of the Generative Language API. */
export const GL_API_BASE_URL = "https://generativelanguage.googleapis.com";

/** The string lists of the management dialect. */
export type ManagementStringListName = "api-keys" | "generative-language-api-key";

/** Reply of `GET /v0/management/<string list>`: `{ "api-keys": [...] }`. */
export type ManagementStringListResponse<N extends ManagementStringListName> = {
  [K in N]: string[];
};

/** Body of `PUT /v0/management/<string list>`: the whole list, raw or as `{ items }`. */
export type ManagementStringListPutBody = string[] | { items: string[] };

/** Body of `PATCH /v0/management/<string list>`: replace one value, by value or by position. */
export type ManagementStringListPatchBody =
  | { old: string; new: string }
  | { index: number; value: string };

/** Query of `DELETE /v0/management/<string list>`: by value or by position. */
export type ManagementStringListDeleteQuery = { value: string } | { index: number };

/** What the string list routes need. */
export interface StringListDeps {
  keys: KeyService;
  pool: CredentialPool;
  maxBodyBytes: number;
}

/** One string list over some domain records (`api-keys`, `generative-language-api-key`). */
export interface ListModel<T> {
  members(): Promise<{ record: T; value: string }[]>;
  /** Rewrites the whole list (values already validated and deduplicated). */
  replaceAll(values: string[]): Promise<void>;
  /** Replaces one member's value. */
  replace(member: { record: T; value: string }, value: string): Promise<void>;
  remove(member: { record: T; value: string }): Promise<void>;
}

const invalid = () => managementError(400, "invalid body");
const notFound = () => managementError(404, "item not found");

function dedupe(values: string[]): string[] {
  return [...new Set(values)];
}

function parseItems(body: unknown): string[] {
  const items = Array.isArray(body) ? body : (body as { items?: unknown } | null)?.items;
  if (!Array.isArray(items)) throw invalid();
  const out: string[] = [];
  for (const v of items) {
    if (typeof v !== "string") throw invalid();
    const t = v.trim();
    if (t) out.push(t);
  }
  return dedupe(out);
}

function apiKeySeq(k: ApiKeyRecord): number | null {
  if (k.userId !== null || !k.name.startsWith(API_KEYS_NAME_PREFIX)) return null;
  const n = Number(k.name.slice(API_KEYS_NAME_PREFIX.length));
  return Number.isInteger(n) && n >= 0 ? n : null;
}

/** The `api-keys` list over downstream keys. */
export function apiKeysModel(keys: KeyService): ListModel<ApiKeyRecord> {
  const members = async () => {
    const found: { record: ApiKeyRecord; seq: number }[] = [];
    for (let offset = 0; ; offset += 500) {
      const page = await keys.list({
        userId: null,
        keyword: API_KEYS_NAME_PREFIX,
        offset,
        limit: 500,
      });
      for (const k of page.items) {
        const seq = apiKeySeq(k);
        if (seq !== null) found.push({ record: k, seq });
      }
      if (page.items.length < 500) break;
    }
    found.sort((a, b) => a.seq - b.seq || a.record.id - b.record.id);
    const out: { record: ApiKeyRecord; value: string }[] = [];
    for (const { record } of found) {
      const value = await keys.reveal(record.id);
      out.push({ record, value: value ?? record.keyHint });
    }
    return out;
  };
  /** Refuses a value that is already a key outside the list (keys are unique). */
  const assertFree = async (value: string, mine: ReadonlySet<number>) => {
    const other = await keys.findByPlain(value);
    if (other && !mine.has(other.id)) throw managementError(409, "key already in use");
  };
  const create = (value: string, seq: number) =>
    keys.create({
      key: value,
      name: `${API_KEYS_NAME_PREFIX}${seq}`,
      unlimitedQuota: true,
      userId: null,
    });
  return {
    members,
    async replaceAll(values) {
      const current = await members();
      const mine = new Set(current.map((m) => m.record.id));
      for (const v of values) await assertFree(v, mine);
      const byValue = new Map(current.map((m) => [m.value, m]));
      const wanted = new Set(values);
      const gone = current.filter((m) => !wanted.has(m.value)).map((m) => m.record.id);
      if (gone.length > 0) await keys.delete(gone);
      for (const [i, v] of values.entries()) {
        const m = byValue.get(v);
        const name = `${API_KEYS_NAME_PREFIX}${i}`;
        if (!m) await create(v, i);
        else if (m.record.name !== name) await keys.update(m.record.id, { name });
      }
    },
    async replace(member, value) {
      if (value === member.value) return;
      await assertFree(value, new Set([member.record.id]));
      // A key's value is its identity (keyed hash): replace the record, keep its position.
      await keys.delete([member.record.id]);
      await create(value, apiKeySeq(member.record) ?? 0);
    },
    async remove(member) {
      await keys.delete([member.record.id]);
    },
  };
}

function isGlCredential(c: CredentialRecord): boolean {
  return c.provider === "gemini" && c.kind === "api-key" && c.label === GL_API_KEY_LABEL;
}

/** The `generative-language-api-key` list over pool credentials. */
export function glApiKeysModel(pool: CredentialPool): ListModel<CredentialRecord> {
  const members = async () =>
    pool
      .list()
      .filter(isGlCredential)
      .map((record) => ({ record, value: record.secret.apiKey ?? "" }));
  const add = (value: string) =>
    pool.add({
      provider: "gemini",
      kind: "api-key",
      label: GL_API_KEY_LABEL,
      baseUrl: GL_API_BASE_URL,
      secret: { apiKey: value },
    });
  // A new value is a new upstream key: its health starts afresh.
  const setValue = (id: string, value: string) =>
    pool.update(id, { secret: { apiKey: value }, state: emptyCredentialState() });
  return {
    members,
    async replaceAll(values) {
      const current = await members();
      // Position by position, so that the list keeps the order it was given in.
      for (const [i, v] of values.entries()) {
        const m = current[i];
        if (!m) await add(v);
        else if (m.value !== v) await setValue(m.record.id, v);
      }
      for (const m of current.slice(values.length)) await pool.remove(m.record.id);
    },
    async replace(member, value) {
      if (value !== member.value) await setValue(member.record.id, value);
    },
    async remove(member) {
      await pool.remove(member.record.id);
    },
  };
}

function indexParam(raw: string): number {
  if (!/^\d+$/.test(raw)) throw invalid();
  return Number(raw);
}

function stringListRoutes<T>(
  guard: ManagementGuard,
  name: string,
  model: ListModel<T>,
  maxBodyBytes: number,
): Route[] {
  const path = `/${name}`;
  return [
    managementRoute(guard, "GET", path, async () =>
      json(200, { [name]: (await model.members()).map((m) => m.value) }),
    ),
    managementRoute(guard, "PUT", path, async (ex) => {
      await model.replaceAll(parseItems(await readManagementBody(ex, maxBodyBytes)));
      return managementOk();
    }),
    managementRoute(guard, "PATCH", path, async (ex) => {
      const body = await readManagementBody(ex, maxBodyBytes);
      if (typeof body !== "object" || body === null || Array.isArray(body)) throw invalid();
      const b = body as Record<string, unknown>;
      const members = await model.members();
      let target: (typeof members)[number] | undefined;
      let value: unknown;
      if (b.index !== undefined) {
        if (typeof b.index !== "number" || !Number.isInteger(b.index)) throw invalid();
        value = b.value;
        if (typeof value !== "string" || !value.trim()) throw invalid();
        target = members[b.index];
      } else if (b.old !== undefined) {
        value = b.new;
        if (typeof b.old !== "string" || typeof value !== "string" || !value.trim())
          throw invalid();
        target = members.find((m) => m.value === b.old);
      } else throw invalid();
      if (!target) throw notFound();
      const next = (value as string).trim();
      if (next !== target.value && members.some((m) => m.value === next))
        throw managementError(409, "item already exists");
      await model.replace(target, next);
      return managementOk();
    }),
    managementRoute(guard, "DELETE", path, async (ex: Exchange) => {
      const q = new URLSearchParams(ex.search);
      const members = await model.members();
      let target: (typeof members)[number] | undefined;
      const index = q.get("index");
      const value = q.get("value");
      if (index !== null) target = members[indexParam(index)];
      else if (value !== null) target = members.find((m) => m.value === value);
      else throw invalid();
      if (!target) throw notFound();
      await model.remove(target);
      return managementOk();
    }),
  ];
}

/** `api-keys` and `generative-language-api-key` routes. */
export function managementStringListRoutes(guard: ManagementGuard, deps: StringListDeps): Route[] {
  return [
    ...stringListRoutes(guard, "api-keys", apiKeysModel(deps.keys), deps.maxBodyBytes),
    ...stringListRoutes(guard, GL_API_KEY_LABEL, glApiKeysModel(deps.pool), deps.maxBodyBytes),
  ];
}
