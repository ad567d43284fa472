/**
 * The management dialect's string lists `api-keys` and `generative-language-api-key` over HTTP.
 * What the lists are (views over downstream keys and pool credentials) is the config model's
 * (`config-model/string-lists.ts`); this file only parses requests and renders replies.
 *
 * Forms (the seed's): GET → `{ "<name>": [...] }`; PUT a raw array or `{ items }`; PATCH
 * `{ old, new }` or `{ index, value }`; DELETE `?value=` or `?index=`. Unknown items → 404
 * `item not found`; malformed bodies → 400 `invalid body`.
 *
 * @module
 */

import {
  apiKeysModel,
  GL_API_KEY_LABEL,
  glApiKeysModel,
  type ListModel,
} from "../../config-model/string-lists.js";
import type { CredentialPool } from "../../credentials/pool.js";
import type { Exchange } from "../../exchange.js";
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { KeyService } from "../../keys/service.js";
import { type ManagementGuard, managementError, managementRouteKit } from "./common.js";

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
  const { route, body: readBody, ok } = managementRouteKit(guard, maxBodyBytes);
  return [
    route("GET", path, async () =>
      json(200, { [name]: (await model.members()).map((m) => m.value) }),
    ),
    route("PUT", path, async (ex) => {
      await model.replaceAll(parseItems(await readBody(ex)));
      return ok();
    }),
    route("PATCH", path, async (ex) => {
      const body = await readBody(ex);
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
      return ok();
    }),
    route("DELETE", path, async (ex: Exchange) => {
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
      return ok();
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
