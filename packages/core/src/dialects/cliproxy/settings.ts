/**
 * The management dialect's settings: `GET /config` and the scalar settings of the seed, each
 * with GET (`{ "<name>": value }`) and PUT/PATCH (`{ "value": ... }` of the right type, else
 * 400 `invalid body` and nothing changes) → `{ "status": "ok" }`; `DELETE /proxy-url` clears
 * the proxy. Values are runtime settings (`gateway.settings`), written through the store, and
 * apply to the next request. `allow-remote-management` and the management key are not settings
 * here: no route can change them.
 *
 * @module
 */

import {
  type ConfigObjectLists,
  managementConfigView,
  objectSetting,
} from "../../config-model/config-view.js";
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { SettingsService } from "../../settings/service.js";
import {
  acceptsSetting,
  acceptsSettingField,
  RUNTIME_SETTINGS,
  type SettingName,
  type SettingType,
} from "../../settings/table.js";
import { USAGE_RETENTION_SETTING } from "../../usage/retention.js";
import { type ManagementGuard, managementError, managementRouteKit } from "./common.js";
import type { StringListDeps } from "./string-lists.js";

/** What the settings routes need. */
export interface ManagementSettingsDeps extends StringListDeps {
  settings: SettingsService;
  /** Called after a setting was written (e.g. `debug` changes the log level at once). */
  settingChanged?(name: string): void;
  /** The object lists for `GET /config`. @default empty lists */
  configLists?(): Promise<ConfigObjectLists>;
}

/**
 * One scalar setting: route path, reply field, and where it lives. Its type and validation are
 * the setting's declaration in `RUNTIME_SETTINGS`.
 */
interface Scalar {
  path: string;
  /** The field of the GET reply (the seed says `gpt-5-codex` for `/force-gpt-5-codex`). */
  field: string;
  /** Setting name, and the field inside it for settings that are objects. */
  setting: SettingName;
  sub?: string;
}

/**
 * The scalar settings of the management dialect, by route (under `/v0/management/`): the field
 * of the GET reply and the value type. GET answers `{ [field]: value }`; PUT/PATCH take
 * `{ "value": value }` and answer `{ "status": "ok" }`.
 */
export interface ManagementScalarSettings {
  debug: { field: "debug"; value: boolean };
  "force-gpt-5-codex": { field: "gpt-5-codex"; value: boolean };
  /** `""` = no proxy; else `http(s)://` or `socks5(h)://`. `DELETE /proxy-url` clears it. */
  "proxy-url": { field: "proxy-url"; value: string };
  "quota-exceeded/switch-project": { field: "switch-project"; value: boolean };
  "quota-exceeded/switch-preview-model": { field: "switch-preview-model"; value: boolean };
  /** 0 to 100. */
  "request-retry": { field: "request-retry"; value: number };
  "request-log": { field: "request-log"; value: boolean };
  "allow-localhost-unauthenticated": { field: "allow-localhost-unauthenticated"; value: boolean };
  /** Days usage details are kept (tokenpool's), 0 = forever. */
  "usage-retention-days": { field: "usage-retention-days"; value: number };
  /**
   * Default rate limits per group (tokenpool's): `{ <group>: { rpm_limit, tpm_limit, rpd_limit,
   * max_concurrency, queue_timeout_ms } }`.
   */
  "group-limits": {
    field: "group-limits";
    value: Record<
      string,
      Partial<
        Record<
          "rpm_limit" | "tpm_limit" | "rpd_limit" | "max_concurrency" | "queue_timeout_ms",
          number
        >
      >
    >;
  };
  /** The IANA time zone of refill periods and credential spend caps (tokenpool's). */
  "quota-refill-time-zone": { field: "quota-refill-time-zone"; value: string };
  /** Kept for the UI: tokenpool records usage regardless (records settle quotas). */
  "usage-statistics-enabled": { field: "usage-statistics-enabled"; value: boolean };
  /** Whether `GET /logs` serves the request log as log lines. */
  "logging-to-file": { field: "logging-to-file"; value: boolean };
}

/** The route name of a scalar setting (`debug`, `proxy-url`, `quota-exceeded/switch-project` ...). */
export type ManagementSettingName = keyof ManagementScalarSettings;

/** The value type of a scalar setting. */
export type ManagementSettingValue<N extends ManagementSettingName> =
  ManagementScalarSettings[N]["value"];

/** Reply of `GET /v0/management/<setting>`. */
export type ManagementSettingResponse<N extends ManagementSettingName> = {
  [F in ManagementScalarSettings[N]["field"]]: ManagementSettingValue<N>;
};

/** Body of `PUT`/`PATCH /v0/management/<setting>`. */
export interface ManagementSettingBody<N extends ManagementSettingName> {
  value: ManagementSettingValue<N>;
}

/**
 * The scalar settings of the seed, CLIProxyAPI's later `usage-statistics-enabled` and
 * `logging-to-file`, plus tokenpool's `usage-retention-days`, `group-limits` and
 * `quota-refill-time-zone`.
 */
export const SCALAR_SETTINGS: readonly Scalar[] = [
  { path: "/debug", field: "debug", setting: "debug" },
  {
    path: "/force-gpt-5-codex",
    field: "gpt-5-codex",
    setting: "force-gpt-5-codex",
  },
  {
    path: "/proxy-url",
    field: "proxy-url",
    setting: "proxy-url",
  },
  {
    path: "/quota-exceeded/switch-project",
    field: "switch-project",
    setting: "quota-exceeded",
    sub: "switch-project",
  },
  {
    path: "/quota-exceeded/switch-preview-model",
    field: "switch-preview-model",
    setting: "quota-exceeded",
    sub: "switch-preview-model",
  },
  {
    path: "/request-retry",
    field: "request-retry",
    setting: "request-retry",
  },
  { path: "/request-log", field: "request-log", setting: "request-log" },
  {
    path: "/allow-localhost-unauthenticated",
    field: "allow-localhost-unauthenticated",
    setting: "allow-localhost-unauthenticated",
  },
  {
    path: `/${USAGE_RETENTION_SETTING}`,
    field: USAGE_RETENTION_SETTING,
    setting: USAGE_RETENTION_SETTING,
  },
  { path: "/group-limits", field: "group-limits", setting: "group-limits" },
  {
    path: "/quota-refill-time-zone",
    field: "quota-refill-time-zone",
    setting: "quota-refill-time-zone",
  },
  {
    path: "/usage-statistics-enabled",
    field: "usage-statistics-enabled",
    setting: "usage-statistics-enabled",
  },
  { path: "/logging-to-file", field: "logging-to-file", setting: "logging-to-file" },
];

function read(settings: SettingsService, s: Scalar): unknown {
  return s.sub === undefined ? settings.raw(s.setting) : objectSetting(settings, s.setting)[s.sub];
}

function accepts(s: Scalar, value: unknown): boolean {
  return s.sub === undefined
    ? acceptsSetting(s.setting, value)
    : acceptsSettingField(s.setting, s.sub, value);
}

function typeOf(s: Scalar): SettingType | undefined {
  return s.sub === undefined
    ? RUNTIME_SETTINGS[s.setting].type
    : RUNTIME_SETTINGS[s.setting].fields?.[s.sub];
}

async function write(deps: ManagementSettingsDeps, s: Scalar, value: unknown): Promise<void> {
  const next =
    s.sub === undefined ? value : { ...objectSetting(deps.settings, s.setting), [s.sub]: value };
  await deps.settings.set({ [s.setting]: next });
  deps.settingChanged?.(s.setting);
}

/** `GET /config`, the scalar settings and `DELETE /proxy-url`. */
export function managementSettingsRoutes(
  guard: ManagementGuard,
  deps: ManagementSettingsDeps,
): Route[] {
  const { route, body: readBody, ok } = managementRouteKit(guard, deps.maxBodyBytes);
  const routes: Route[] = [];
  for (const s of SCALAR_SETTINGS) {
    routes.push(route("GET", s.path, async () => json(200, { [s.field]: read(deps.settings, s) })));
    for (const method of ["PUT", "PATCH"]) {
      routes.push(
        route(method, s.path, async (ex) => {
          const body = await readBody(ex);
          const value =
            typeof body === "object" && body !== null && !Array.isArray(body)
              ? (body as Record<string, unknown>).value
              : undefined;
          if (!accepts(s, value)) throw managementError(400, "invalid body");
          await write(deps, s, typeOf(s) === "string" ? (value as string).trim() : value);
          return ok();
        }),
      );
    }
  }
  const proxy = SCALAR_SETTINGS.find((s) => s.path === "/proxy-url")!;
  routes.push(
    route("DELETE", "/proxy-url", async () => {
      await write(deps, proxy, "");
      return ok();
    }),
  );

  routes.push(route("GET", "/config", async () => json(200, await managementConfigView(deps))));
  return routes;
}
