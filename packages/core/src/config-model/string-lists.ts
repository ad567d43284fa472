/**
 * CLIProxyAPI's string lists, as views over the domain model (nothing stored twice):
 *
 * - `api-keys`: downstream keys without an owner and with unlimited quota, named
 *   `api-keys:<position>`. Only keys named so belong to the list (keys made through the token
 *   dialect never do); their plain values are read back with the key service's reveal.
 * - `generative-language-api-key`: pool credentials of provider `gemini`, kind `api-key`,
 *   labelled `generative-language-api-key`, in the pool's (creation) order: the `api-key` of
 *   each item of the object list `gemini-api-key` (one pool, two views; see `list-items.ts`).
 *   Writes go by KEY so that the fields only the object view shows (`base-url`, `proxy-url`,
 *   `headers`, `models`, `excluded-models` ...) stay with their key: a PUT keeps the credentials
 *   whose key it lists (every one of them, also several with the same key) in the order given,
 *   removes the others and adds new keys with the default endpoint (the object list's
 *   positional writer: credentials are reused by position, their fields follow their key); a
 *   PATCH `{ old, new }` changes the key of one credential in place.
 *
 * @module
 */
import type { CredentialPool } from "../credentials/pool.js";
import { GatewayError } from "../errors.js";
import type { ApiKeyView, KeyService } from "../keys/service.js";
import type { CredentialRecord } from "../store/types.js";
import { emptyCredentialState } from "../store/util.js";
import { LIST_SPECS } from "./list-items.js";
import { replaceConfigList } from "./list-writer.js";

/** Name prefix of the keys of the `api-keys` list. */
export const API_KEYS_NAME_PREFIX = "api-keys:";
/** Label of the credentials of the `generative-language-api-key` list. */
export const GL_API_KEY_LABEL = "generative-language-api-key";
/** Base URL of the Generative Language API. */
export const GL_API_BASE_URL = "https://generativelanguage.googleapis.com";

/** One string list over some domain records (`api-keys`, `generative-language-api-key`). */
export interface ListModel<T> {
  members(): Promise<{ record: T; value: string }[]>;
  /** Rewrites the whole list (values already validated and deduplicated). */
  replaceAll(values: string[]): Promise<void>;
  /** Replaces one member's value. */
  replace(member: { record: T; value: string }, value: string): Promise<void>;
  remove(member: { record: T; value: string }): Promise<void>;
}

function apiKeySeq(k: ApiKeyView): number | null {
  if (k.userId !== null || !k.name.startsWith(API_KEYS_NAME_PREFIX)) return null;
  const n = Number(k.name.slice(API_KEYS_NAME_PREFIX.length));
  return Number.isInteger(n) && n >= 0 ? n : null;
}

/** The `api-keys` list over downstream keys. */
export function apiKeysModel(keys: KeyService): ListModel<ApiKeyView> {
  const members = async () => {
    const found: { record: ApiKeyView; seq: number }[] = [];
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
    const out: { record: ApiKeyView; value: string }[] = [];
    for (const { record } of found) {
      const value = await keys.reveal(record.id);
      out.push({ record, value: value ?? record.keyHint });
    }
    return out;
  };
  /** Refuses a value that is already a key outside the list (keys are unique). */
  const assertFree = async (value: string, mine: ReadonlySet<number>) => {
    const other = await keys.findByPlain(value);
    if (other && !mine.has(other.id))
      throw new GatewayError("INVALID_REQUEST", "key already in use", { status: 409 });
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
  // A new value is a new upstream key: its health starts afresh.
  const setValue = (id: string, value: string) =>
    pool.update(id, { secret: { apiKey: value }, state: emptyCredentialState() });
  return {
    members,
    async replaceAll(values) {
      // Through the object view: each value brings the stored items with its key (all of
      // them, in order), so a key's other fields never move to another key.
      const items = LIST_SPECS["gemini-api-key"].read(pool.list()).map((i) => i.value);
      const next = values.flatMap((v) => {
        const same = items.filter((i) => i["api-key"] === v);
        return same.length > 0 ? same : [{ "api-key": v, "base-url": "" }];
      });
      await replaceConfigList(pool, "gemini-api-key", next);
    },
    async replace(member, value) {
      if (value !== member.value) await setValue(member.record.id, value);
    },
    async remove(member) {
      await pool.remove(member.record.id);
    },
  };
}
