/**
 * The object lists of the management dialect: `claude-api-key`, `codex-api-key`,
 * `gemini-api-key`, `interactions-api-key`, `vertex-api-key`, `xai-api-key` and
 * `openai-compatibility` (CLIProxyAPI's provider key lists), over HTTP. What a list is, how it maps to the pool's credentials, what a
 * write keeps and how writes keep ids and order stable is the config model's
 * (`config-model/list-items.ts`, `config-model/list-writer.ts`); this file only parses requests
 * and renders replies.
 *
 * CLIProxyAPI's HEAD server semantics: PATCH `{ index | match | name, value }` merges `value`
 * over the item (only the fields sent change; `?base-url=` narrows `match`); DELETE
 * `?api-key=&base-url=` removes every item matching both (200 when none does; Gemini: 404),
 * `?api-key=` alone is a 400 when several items share the key, `?index=` out of range is a 400
 * `missing api-key or index` (`missing name or index`). Deliberate differences (no silent data
 * loss): an empty `base-url` means the provider's default endpoint (CLIProxyAPI drops or deletes
 * Codex/xAI items without one), and a value emptying a required field is a 400, not a deletion.
 *
 * A write whose store fails half-way is undone (best effort) and the reply is a 500.
 *
 * @module
 */
import {
  ALL_CONFIG_LIST_NAMES,
  type ConfigListName,
  type ConfigLists,
  isObject,
  LIST_SPECS,
} from "../../config-model/list-items.js";
import { configListEditor, type ListCredentials } from "../../config-model/list-writer.js";
import type { Exchange, Reply } from "../../exchange.js";
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import { type ManagementGuard, managementError, managementRouteKit } from "./common.js";

/** Dependencies of {@link listRoutes}. */
export interface ListRoutesDeps {
  guard: ManagementGuard;
  /** The pool (`gateway.credentials.pool`). */
  pool: ListCredentials;
  maxBodyBytes: number;
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
  | (N extends "openai-compatibility"
      ? { name: string }
      : { "api-key": string; "base-url"?: string });

// ---------------------------------------------------------------------------------------------
// Routes

function invalidBody(): Error {
  return managementError(400, "invalid body");
}

/** A non-negative integer from JSON or a query string, `undefined` when absent. */
function parseIndex(v: unknown): number | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  const n = typeof v === "string" && /^\d+$/.test(v.trim()) ? Number(v) : v;
  if (typeof n !== "number" || !Number.isSafeInteger(n) || n < 0) throw invalidBody();
  return n;
}

/**
 * The routes of the object lists: GET, PUT (raw array or `{ items }`), PATCH (`{ index, value }`
 * or `{ match | name, value }`, `?base-url=`) and DELETE (`?index=` or `?api-key=[&base-url=]` /
 * `?name=`).
 *
 * @example
 * ```ts
 * router.add(listRoutes({ guard, pool: gateway.credentials.pool, maxBodyBytes: 1 << 20 }));
 * ```
 */
export function listRoutes(deps: ListRoutesDeps): Route[] {
  const { route, body: readBody, ok } = managementRouteKit(deps.guard, deps.maxBodyBytes);
  // One list write at a time in this process (the editor serialises its writes).
  const lists = configListEditor(deps.pool);

  const routesOf = (name: ConfigListName): Route[] => [
    route("GET", `/${name}`, async () => json(200, { [name]: lists.read(name) })),

    route("PUT", `/${name}`, async (ex) => {
      const body = await readBody(ex);
      const raw = Array.isArray(body) ? body : isObject(body) ? body.items : undefined;
      if (!Array.isArray(raw)) throw invalidBody();
      await lists.replace(name, raw);
      return ok();
    }),

    route("PATCH", `/${name}`, async (ex) => {
      const body = await readBody(ex);
      if (!isObject(body)) throw invalidBody();
      const index = parseIndex(body.index);
      const key = body[LIST_SPECS[name].keyField];
      if (key !== undefined && key !== null && typeof key !== "string") throw invalidBody();
      if (index === undefined && (key === undefined || key === null)) throw invalidBody();
      if (!isObject(body.value)) throw invalidBody();
      const baseUrl = new URLSearchParams(ex.search).get("base-url") ?? undefined;
      await lists.update(name, { index, key: key ?? undefined, baseUrl }, body.value);
      return ok();
    }),

    route("DELETE", `/${name}`, async (ex: Exchange): Promise<Reply> => {
      const q = new URLSearchParams(ex.search);
      const param = LIST_SPECS[name].keyParam;
      const raw = q.get("index")?.trim() ?? "";
      // An index that is no number is as missing (CLIProxyAPI's 400 below).
      const index = /^\d+$/.test(raw) ? Number(raw) : undefined;
      const key = q.get(param)?.trim() || undefined;
      const baseUrl = param === "api-key" ? (q.get("base-url") ?? undefined) : undefined;
      if (index === undefined && key === undefined)
        throw managementError(400, `missing ${param} or index`);
      await lists.remove(name, { index, key, baseUrl });
      return ok();
    }),
  ];

  return ALL_CONFIG_LIST_NAMES.flatMap(routesOf);
}
