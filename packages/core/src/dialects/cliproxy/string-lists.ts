/**
 * The management dialect's string lists `api-keys` and `generative-language-api-key` over HTTP.
 * What the lists are (views over downstream keys and pool credentials) is the config model's
 * (`config-model/string-lists.ts`); this file only parses requests and renders replies.
 *
 * Forms (the seed's): GET → `{ "<name>": [...] }`; PUT a raw array or `{ items }`; PATCH
 * `{ old, new }` or `{ index, value }`; DELETE `?value=` or `?index=`. Answers as CLIProxyAPI's:
 * PATCH with `index` in range replaces that item, else `{ old, new }` replaces the first item
 * equal to `old` or, when there is none, appends `new`; anything else is 400 `missing fields`.
 * DELETE `?index=` in range removes that item, else `?value=` removes every item equal to it
 * (200 also when none is); neither → 400 `missing index or value`. Malformed bodies → 400
 * `invalid body`; a value already in the list (or, for `api-keys`, another key) → 409.
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
const missingFields = () => managementError(400, "missing fields");

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
      const str = (v: unknown) => (typeof v === "string" && v.trim() ? v.trim() : undefined);
      for (const f of ["old", "new", "value"])
        if (b[f] !== undefined && b[f] !== null && typeof b[f] !== "string") throw invalid();
      if (b.index !== undefined && b.index !== null && !Number.isInteger(b.index)) throw invalid();
      let target: (typeof members)[number] | undefined;
      let next: string | undefined;
      const index = typeof b.index === "number" && Number.isInteger(b.index) ? b.index : -1;
      if (index >= 0 && index < members.length && str(b.value)) {
        target = members[index];
        next = str(b.value);
      } else if (typeof b.old === "string" && str(b.new)) {
        target = members.find((m) => m.value === (b.old as string).trim());
        next = str(b.new);
      } else throw missingFields();
      if (next === undefined) throw missingFields();
      if (next !== target?.value && members.some((m) => m.value === next))
        throw managementError(409, "item already exists");
      // `old` not in the list: CLIProxyAPI appends `new`.
      if (!target) await model.replaceAll([...new Set([...members.map((m) => m.value), next])]);
      else await model.replace(target, next);
      return ok();
    }),
    route("DELETE", path, async (ex: Exchange) => {
      const q = new URLSearchParams(ex.search);
      const members = await model.members();
      const rawIndex = q.get("index")?.trim() ?? "";
      const index = /^\d+$/.test(rawIndex) ? Number(rawIndex) : -1;
      const value = q.get("value")?.trim() ?? "";
      if (index >= 0 && index < members.length) await model.remove(members[index]!);
      else if (value !== "") {
        // Every item equal to the value; none is a no-op (200), as in CLIProxyAPI.
        for (const m of members) if (m.value.trim() === value) await model.remove(m);
      } else throw managementError(400, "missing index or value");
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
