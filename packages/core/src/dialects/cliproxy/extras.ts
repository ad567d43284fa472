/**
 * Smaller routes of CLIProxyAPI's later management API:
 *
 * - `GET /latest-version` → `{ "latest-version": <this tokenpool's version> }`. CLIProxyAPI asks
 *   GitHub for its newest release; tokenpool makes no network call and answers its own version,
 *   so a UI comparing it with `X-CPA-VERSION` sees it up to date.
 * - `/oauth-excluded-models` (`{ <provider>: [model] }`) and `/oauth-model-alias`
 *   (`{ <channel>: [{ name, alias, fork?, force-mapping? }] }`): GET, PUT (the whole map, or
 *   `{ items: map }`), PATCH (one provider / channel; an empty list deletes it), DELETE
 *   (`?provider=` / `?channel=`), answers and errors as CLIProxyAPI's. Both are the runtime
 *   settings of the same names (so they are in `GET /config` and `config.yaml` too). They are
 *   stored and shown; the pool's per-credential `excludedModels` and model aliases are what
 *   routing applies.
 *
 * @module
 */
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { SettingsService } from "../../settings/service.js";
import type { OAuthModelAlias } from "../../settings/table.js";
import { TOKENPOOL_VERSION } from "../../version.js";
import {
  type ManagementGuard,
  managementError,
  managementOk,
  managementRouteKit,
} from "./common.js";

/** What these routes need. */
export interface ManagementExtrasDeps {
  settings: SettingsService;
  maxBodyBytes: number;
  /** The version `GET /latest-version` answers. @default this package's version */
  version?: string;
}

/** Reply of `GET /v0/management/latest-version`. */
export interface ManagementLatestVersionResponse {
  "latest-version": string;
}

/** Reply of `GET /v0/management/oauth-excluded-models`. */
export interface ManagementOAuthExcludedModelsResponse {
  "oauth-excluded-models": Record<string, string[]>;
}

/** Reply of `GET /v0/management/oauth-model-alias`. */
export interface ManagementOAuthModelAliasResponse {
  "oauth-model-alias": Record<string, OAuthModelAlias[]>;
}

const invalid = () => managementError(400, "invalid body");
const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** A provider or channel name as CLIProxyAPI keys them: trimmed, lower case. */
const keyName = (v: string) => v.trim().toLowerCase();

/** A model list: an array of strings or a comma/newline separated string; null when neither. */
function modelList(v: unknown): string[] | null {
  const items =
    typeof v === "string" ? v.split(/[,\n]/) : Array.isArray(v) ? (v as unknown[]) : null;
  if (items === null || !items.every((m) => typeof m === "string")) return null;
  return [...new Set((items as string[]).map((m) => m.trim()).filter((m) => m !== ""))];
}

/** One alias list; null when an entry is not `{ name (or id/model), alias, fork?, force-mapping? }`. */
function aliasList(v: unknown): OAuthModelAlias[] | null {
  if (v === null) return [];
  if (!Array.isArray(v)) return null;
  const out: OAuthModelAlias[] = [];
  for (const a of v) {
    if (!isMap(a)) return null;
    const name = a.name ?? a.id ?? a.model;
    if (typeof name !== "string" || typeof a.alias !== "string") return null;
    if (a.fork !== undefined && typeof a.fork !== "boolean") return null;
    const force = a["force-mapping"];
    if (force !== undefined && typeof force !== "boolean") return null;
    if (name.trim() === "" || a.alias.trim() === "") return null;
    const item: OAuthModelAlias = { name: name.trim(), alias: a.alias.trim() };
    if (a.fork === true) item.fork = true;
    if (force !== undefined) item["force-mapping"] = force;
    out.push(item);
  }
  return out;
}

/** A whole map (`{ key: list }` or `{ items: { key: list } }`), each list parsed by `parse`. */
function wholeMap<T>(body: unknown, parse: (v: unknown) => T[] | null): Record<string, T[]> {
  const map = isMap(body) && isMap(body.items) ? body.items : body;
  if (!isMap(map)) throw invalid();
  const out: Record<string, T[]> = {};
  for (const [k, v] of Object.entries(map)) {
    const list = parse(v);
    if (list === null || keyName(k) === "") throw invalid();
    if (list.length > 0) out[keyName(k)] = list;
  }
  return out;
}

/** `/latest-version`, `/oauth-excluded-models`, `/oauth-model-alias`. */
export function extraRoutes(guard: ManagementGuard, deps: ManagementExtrasDeps): Route[] {
  const { route, body: readBody } = managementRouteKit(guard, deps.maxBodyBytes);
  const version = deps.version ?? TOKENPOOL_VERSION;
  const current = <T>(name: "oauth-excluded-models" | "oauth-model-alias") =>
    structuredClone(deps.settings.get(name)) as unknown as Record<string, T[]>;
  const save = (name: "oauth-excluded-models" | "oauth-model-alias", value: object) =>
    deps.settings.set({ [name]: value });

  /** The four routes of one map setting. */
  const mapRoutes = <T>(opts: {
    name: "oauth-excluded-models" | "oauth-model-alias";
    /** Body field naming the entry (PATCH), its legacy alias, and the list field. */
    keyFields: string[];
    listField: string;
    parse(v: unknown): T[] | null;
    what: "provider" | "channel";
  }): Route[] => {
    const notFound = () => managementError(404, `${opts.what} not found`);
    return [
      route("GET", `/${opts.name}`, async () => json(200, { [opts.name]: current<T>(opts.name) })),
      route("PUT", `/${opts.name}`, async (ex) => {
        await save(opts.name, wholeMap(await readBody(ex), opts.parse));
        return managementOk();
      }),
      route("PATCH", `/${opts.name}`, async (ex) => {
        const body = await readBody(ex);
        if (!isMap(body)) throw invalid();
        const raw = opts.keyFields.map((f) => body[f]).find((v) => v !== undefined);
        if (typeof raw !== "string")
          throw managementError(400, opts.what === "channel" ? "invalid channel" : "invalid body");
        const key = keyName(raw);
        if (key === "") throw managementError(400, `invalid ${opts.what}`);
        const list = opts.parse(body[opts.listField]);
        if (list === null) throw invalid();
        const map = current<T>(opts.name);
        if (list.length === 0) {
          if (!Object.hasOwn(map, key)) throw notFound();
          delete map[key];
        } else map[key] = list;
        await save(opts.name, map);
        return managementOk();
      }),
      route("DELETE", `/${opts.name}`, async (ex) => {
        const q = new URLSearchParams(ex.search);
        const raw = opts.keyFields.map((f) => q.get(f)).find((v) => v !== null) ?? "";
        const key = keyName(raw);
        if (key === "") throw managementError(400, `missing ${opts.what}`);
        const map = current<T>(opts.name);
        if (!Object.hasOwn(map, key)) throw notFound();
        delete map[key];
        await save(opts.name, map);
        return managementOk();
      }),
    ];
  };

  return [
    route("GET", "/latest-version", async () => {
      const body: ManagementLatestVersionResponse = { "latest-version": version };
      return json(200, body);
    }),
    ...mapRoutes<string>({
      name: "oauth-excluded-models",
      keyFields: ["provider"],
      listField: "models",
      parse: (v) => (v === null || v === undefined ? [] : modelList(v)),
      what: "provider",
    }),
    ...mapRoutes<OAuthModelAlias>({
      name: "oauth-model-alias",
      keyFields: ["channel", "provider"],
      listField: "aliases",
      parse: (v) => (v === undefined ? [] : aliasList(v)),
      what: "channel",
    }),
  ];
}
