/**
 * The object lists of the management dialect: `claude-api-key`, `codex-api-key` and
 * `openai-compatibility` (CLIProxyAPI's provider key lists), over HTTP. What a list is, how it
 * maps to the pool's credentials and how writes keep ids and order stable is the config model's
 * (`config-model/list-items.ts`, `config-model/list-writer.ts`); this file only parses requests
 * and renders replies.
 *
 * A write whose store fails half-way is undone (best effort) and the reply is a 500.
 *
 * @module
 */
import { type ConfigListName, type ConfigLists, isObject } from "../../config-model/list-items.js";
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
  | (N extends "openai-compatibility" ? { name: string } : { "api-key": string });

// ---------------------------------------------------------------------------------------------
// Routes

function invalidBody(): Error {
  return managementError(400, "invalid body");
}

/** PATCH selector field and DELETE query parameter of each list, besides `index`. */
const KEY_PARAMS: Record<ConfigListName, { field: "match" | "name"; query: "api-key" | "name" }> = {
  "claude-api-key": { field: "match", query: "api-key" },
  "codex-api-key": { field: "match", query: "api-key" },
  "openai-compatibility": { field: "name", query: "name" },
};

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
      const key = body[KEY_PARAMS[name].field];
      if (key !== undefined && key !== null && typeof key !== "string") throw invalidBody();
      if (index === undefined && (key === undefined || key === null)) throw invalidBody();
      await lists.update(name, { index, key: key ?? undefined }, body.value);
      return ok();
    }),

    route("DELETE", `/${name}`, async (ex: Exchange): Promise<Reply> => {
      const q = new URLSearchParams(ex.search);
      const index = parseIndex(q.get("index") ?? undefined);
      const param = KEY_PARAMS[name].query;
      const key = q.get(param);
      if (index === undefined && key === null)
        throw managementError(400, `missing ${param} or index`);
      await lists.remove(name, { index, key: key ?? undefined });
      return ok();
    }),
  ];

  return [
    ...routesOf("claude-api-key"),
    ...routesOf("codex-api-key"),
    ...routesOf("openai-compatibility"),
  ];
}
