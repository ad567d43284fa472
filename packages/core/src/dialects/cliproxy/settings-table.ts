/**
 * The whole settings table over the management API (tokenpool's, for forms that render every
 * runtime setting from its declaration):
 *
 * | route | answer |
 * | --- | --- |
 * | `GET /settings` | `{ settings: [{ name, type, description, default, value, fields?, masked, writable }] }`, sorted by name |
 * | `PUT /settings/:name` `{ "value": ... }` | `{ status: "ok", setting }` (the entry as `GET` shows it) |
 * | `DELETE /settings/:name` | `{ status: "ok", setting }`: the stored value is removed, the default applies |
 *
 * Every setting of `RUNTIME_SETTINGS` is listed. A value is validated by the setting's declaration
 * (`acceptsSetting`): a wrong type or value is a 400 naming the setting and what it expects, an
 * unknown name a 404, and nothing is written. An object setting declared field by field
 * (`quota-exceeded`) is merged: the fields a PUT does not name keep their stored values.
 *
 * Secrets: `proxy-url` may carry a password (`http://user:pass@host`), shown masked; a PUT that
 * sends back the masked form keeps the stored URL. `remote-management` (the management key's
 * hash) is shown masked and no route writes it (400), as in `settings.ts`.
 *
 * @module
 */
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { SettingsService } from "../../settings/service.js";
import {
  acceptsSetting,
  acceptsSettingField,
  RUNTIME_SETTINGS,
  type SettingDefinition,
  type SettingName,
  type SettingType,
} from "../../settings/table.js";
import { type ManagementGuard, type ManagementOkResponse, managementRouteKit } from "./common.js";

/** What the settings table routes need. */
export interface SettingsTableDeps {
  settings: SettingsService;
  /** Called after a setting was written (e.g. `debug` changes the log level at once). */
  settingChanged?(name: string): void;
  maxBodyBytes: number;
}

/** One row of `GET /v0/management/settings`. */
export interface ManagementSettingEntry {
  /** The setting's wire name (`request-retry`, `quota-exceeded` ...). */
  name: string;
  /** The JSON type a written value must have. */
  type: SettingType;
  description: string;
  /** The value while none is stored; null when the setting has none. */
  default: unknown;
  /** The current value (stored, else the default; null when neither), masked when `masked`. */
  value: unknown;
  /** For object settings written field by field: each field's type. */
  fields?: Readonly<Record<string, SettingType>>;
  /** Whether `value` (and `default`) may hold a secret and are shown masked. */
  masked: boolean;
  /** Whether `PUT /settings/:name` may change it (`remote-management` may not). */
  writable: boolean;
}

/** Reply of `GET /v0/management/settings`. */
export interface ManagementSettingsTableResponse {
  settings: ManagementSettingEntry[];
}

/** Body of `PUT /v0/management/settings/:name`. */
export interface ManagementSettingPutBody {
  value: unknown;
}

/** Reply of `PUT` and `DELETE /v0/management/settings/:name`. */
export type ManagementSettingPutResponse = ManagementOkResponse<{
  setting: ManagementSettingEntry;
}>;

/** Settings whose value can hold a secret, with how to mask it. */
const MASKED: Readonly<Partial<Record<SettingName, (v: unknown) => unknown>>> = {
  "proxy-url": (v) => (typeof v === "string" ? maskUrlPassword(v) : v),
  "remote-management": (v) =>
    typeof v === "object" && v !== null
      ? Object.fromEntries(
          Object.entries(v).map(([k, x]) => [k, typeof x === "string" && x !== "" ? "****" : x]),
        )
      : v,
};

/** Settings no route writes (the management key changes only through `gateway.management`). */
const READ_ONLY: ReadonlySet<string> = new Set(["remote-management"]);

/** A URL with its password (if any) replaced by `****`; anything unparsable unchanged. */
function maskUrlPassword(v: string): string {
  const m = /^([a-z][a-z0-9+.-]*:\/\/)([^/@\s]*)@/i.exec(v);
  if (!m) return v;
  const userinfo = m[2]!;
  const colon = userinfo.indexOf(":");
  const masked = colon < 0 ? "****" : `${userinfo.slice(0, colon)}:****`;
  return `${m[1]}${masked}@${v.slice(m[0].length)}`;
}

function expected(d: SettingDefinition<unknown>): string {
  const type =
    d.type === "integer" ? "an integer" : d.type === "object" ? "an object" : `a ${d.type}`;
  return `${type}${d.validate ? " within its allowed values" : ""}`;
}

/** The rows of `GET /settings`, sorted by name. */
export function settingsTable(settings: SettingsService): ManagementSettingEntry[] {
  return (Object.keys(RUNTIME_SETTINGS) as SettingName[])
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((name) => settingEntry(settings, name));
}

/** One row of the settings table. */
function settingEntry(settings: SettingsService, name: SettingName): ManagementSettingEntry {
  const d: SettingDefinition<unknown> = RUNTIME_SETTINGS[name];
  const mask = MASKED[name];
  const show = (v: unknown) => (v === undefined ? null : mask ? mask(v) : structuredClone(v));
  const entry: ManagementSettingEntry = {
    name,
    type: d.type,
    description: d.description,
    default: show(d.default),
    value: show(settings.raw(name)),
    masked: mask !== undefined,
    writable: !READ_ONLY.has(name),
  };
  if (d.fields) entry.fields = { ...d.fields };
  return entry;
}

/**
 * `GET /settings`, `PUT /settings/:name` and `DELETE /settings/:name`.
 *
 * @example
 * ```ts
 * router.add(settingsTableRoutes(guard, { settings: gateway.settings, maxBodyBytes: 1 << 20 }));
 * ```
 */
export function settingsTableRoutes(guard: ManagementGuard, deps: SettingsTableDeps): Route[] {
  const kit = managementRouteKit(guard, deps.maxBodyBytes);
  const { settings } = deps;

  const known = (params: Record<string, string>): SettingName => {
    const name = params.name ?? "";
    if (!Object.hasOwn(RUNTIME_SETTINGS, name))
      throw kit.error(404, `unknown setting: ${name.slice(0, 100)}`);
    if (READ_ONLY.has(name))
      throw kit.error(
        400,
        `the setting ${name} cannot be changed here: set the management key through gateway.management`,
      );
    return name as SettingName;
  };

  /** The value to store, validated; throws a 400 naming the setting. */
  const nextValue = (name: SettingName, value: unknown): unknown => {
    const d: SettingDefinition<unknown> = RUNTIME_SETTINGS[name];
    const invalid = () =>
      kit.error(400, `invalid value for the setting ${name}: expected ${expected(d)}`);
    if (value === undefined) throw kit.error(400, 'invalid body: expected { "value": ... }');
    let next = value;
    if (d.fields) {
      // Declared field by field: a form that knows fewer fields keeps the stored others.
      if (typeof value !== "object" || value === null || Array.isArray(value)) throw invalid();
      for (const [field, v] of Object.entries(value)) {
        if (!Object.hasOwn(d.fields, field))
          throw kit.error(
            400,
            `invalid value for the setting ${name}: unknown field ${field.slice(0, 100)} (known: ${Object.keys(d.fields).join(", ")})`,
          );
        if (!acceptsSettingField(name, field, v))
          throw kit.error(
            400,
            `invalid value for the setting ${name}: ${field} must be a ${d.fields[field]}`,
          );
      }
      const stored = settings.raw(name);
      next = {
        ...(typeof stored === "object" && stored !== null ? stored : {}),
        ...(value as Record<string, unknown>),
      };
    }
    if (d.type === "string" && typeof next === "string") next = next.trim();
    if (!acceptsSetting(name, next)) throw invalid();
    const mask = MASKED[name];
    // The masked form sent back (a form that saves what it showed) keeps the stored secret.
    const stored = settings.raw(name);
    if (mask && next !== stored && mask(stored) === next) return stored;
    return next;
  };

  return [
    kit.route("GET", "/settings", async () => {
      const body: ManagementSettingsTableResponse = { settings: settingsTable(settings) };
      return json(200, body);
    }),
    kit.route("PUT", "/settings/:name", async (ex, params) => {
      const name = known(params);
      const body = await kit.body(ex);
      if (typeof body !== "object" || body === null || Array.isArray(body))
        throw kit.error(400, 'invalid body: expected { "value": ... }');
      const value = nextValue(name, (body as Record<string, unknown>).value);
      await settings.set({ [name]: value });
      deps.settingChanged?.(name);
      const reply: ManagementSettingPutResponse = {
        status: "ok",
        setting: settingEntry(settings, name),
      };
      return json(200, reply);
    }),
    kit.route("DELETE", "/settings/:name", async (_ex, params) => {
      const name = known(params);
      await settings.reset(name);
      deps.settingChanged?.(name);
      const reply: ManagementSettingPutResponse = {
        status: "ok",
        setting: settingEntry(settings, name),
      };
      return json(200, reply);
    }),
  ];
}
