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

import { json } from "../../../exchange.js";
import type { SettingsService } from "../../../settings/service.js";
import { USAGE_RETENTION_SETTING } from "../../../usage/retention.js";
import type { Route } from "../../router.js";
import {
  type ManagementGuard,
  managementError,
  managementOk,
  managementRoute,
  readManagementBody,
} from "./common.js";
import {
  apiKeysModel,
  GL_API_KEY_LABEL,
  glApiKeysModel,
  type StringListDeps,
} from "./string-lists.js";

/** The object lists of `GET /config` (provided by `lists.ts`). */
export interface ConfigObjectLists {
  "claude-api-key": unknown[];
  "codex-api-key": unknown[];
  "openai-compatibility": unknown[];
}

/** What the settings routes need. */
export interface ManagementSettingsDeps extends StringListDeps {
  settings: SettingsService;
  /** Called after a setting was written (e.g. `debug` changes the log level at once). */
  settingChanged?(name: string): void;
  /** The object lists for `GET /config`. @default empty lists */
  configLists?(): Promise<ConfigObjectLists>;
}

type Kind = "boolean" | "integer" | "string";

/** One scalar setting: route path, reply field, and where it lives. */
interface Scalar {
  path: string;
  /** The field of the GET reply (the seed says `gpt-5-codex` for `/force-gpt-5-codex`). */
  field: string;
  kind: Kind;
  /** Setting name, and the field inside it for settings that are objects. */
  setting: string;
  sub?: string;
  validate?(value: unknown): boolean;
}

const isProxyUrl = (v: unknown) =>
  v === "" || (typeof v === "string" && /^(https?|socks5h?):\/\/[^\s]+$/i.test(v));

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

/** The scalar settings of the seed (plus `usage-retention-days`, tokenpool's). */
export const SCALAR_SETTINGS: readonly Scalar[] = [
  { path: "/debug", field: "debug", kind: "boolean", setting: "debug" },
  {
    path: "/force-gpt-5-codex",
    field: "gpt-5-codex",
    kind: "boolean",
    setting: "force-gpt-5-codex",
  },
  {
    path: "/proxy-url",
    field: "proxy-url",
    kind: "string",
    setting: "proxy-url",
    validate: isProxyUrl,
  },
  {
    path: "/quota-exceeded/switch-project",
    field: "switch-project",
    kind: "boolean",
    setting: "quota-exceeded",
    sub: "switch-project",
  },
  {
    path: "/quota-exceeded/switch-preview-model",
    field: "switch-preview-model",
    kind: "boolean",
    setting: "quota-exceeded",
    sub: "switch-preview-model",
  },
  {
    path: "/request-retry",
    field: "request-retry",
    kind: "integer",
    setting: "request-retry",
    validate: (v) => (v as number) >= 0 && (v as number) <= 100,
  },
  { path: "/request-log", field: "request-log", kind: "boolean", setting: "request-log" },
  {
    path: "/allow-localhost-unauthenticated",
    field: "allow-localhost-unauthenticated",
    kind: "boolean",
    setting: "allow-localhost-unauthenticated",
  },
  {
    path: `/${USAGE_RETENTION_SETTING}`,
    field: USAGE_RETENTION_SETTING,
    kind: "integer",
    setting: USAGE_RETENTION_SETTING,
    validate: (v) => (v as number) >= 0,
  },
];

function objectSetting(settings: SettingsService, name: string): Record<string, unknown> {
  const v = settings.get<unknown>(name);
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? { ...(v as Record<string, unknown>) }
    : {};
}

function read(settings: SettingsService, s: Scalar): unknown {
  return s.sub === undefined ? settings.get(s.setting) : objectSetting(settings, s.setting)[s.sub];
}

function typeOk(kind: Kind, v: unknown): boolean {
  if (kind === "integer") return typeof v === "number" && Number.isInteger(v);
  return typeof v === kind;
}

async function write(deps: ManagementSettingsDeps, s: Scalar, value: unknown): Promise<void> {
  const next =
    s.sub === undefined ? value : { ...objectSetting(deps.settings, s.setting), [s.sub]: value };
  await deps.settings.set({ [s.setting]: next });
  deps.settingChanged?.(s.setting);
}

const emptyLists = async (): Promise<ConfigObjectLists> => ({
  "claude-api-key": [],
  "codex-api-key": [],
  "openai-compatibility": [],
});

/** The object `GET /config` returns (the seed's `config.yaml` layout, without the file-only fields). */
export interface ManagementConfigView {
  debug: boolean;
  "proxy-url": string;
  "api-keys": string[];
  "quota-exceeded": { "switch-project": boolean; "switch-preview-model": boolean };
  "generative-language-api-key": string[];
  "request-log": boolean;
  "request-retry": number;
  "claude-api-key": unknown[];
  "codex-api-key": unknown[];
  "openai-compatibility": unknown[];
  "allow-localhost-unauthenticated": boolean;
}

/**
 * Builds the `GET /config` view from the domain (settings, the `api-keys` keys, the pool). The
 * standalone server writes the same object back to its configuration file.
 *
 * @example
 * ```ts
 * const view = await managementConfigView({ settings, keys, pool, configLists: () => configLists({ pool }) });
 * ```
 */
export async function managementConfigView(
  deps: Pick<ManagementSettingsDeps, "settings" | "keys" | "pool" | "configLists">,
): Promise<ManagementConfigView> {
  const s = deps.settings;
  const lists = await (deps.configLists ?? emptyLists)();
  const quota = objectSetting(s, "quota-exceeded");
  return {
    debug: s.get("debug") === true,
    "proxy-url": String(s.get("proxy-url") ?? ""),
    "api-keys": (await apiKeysModel(deps.keys).members()).map((m) => m.value),
    "quota-exceeded": {
      "switch-project": quota["switch-project"] === true,
      "switch-preview-model": quota["switch-preview-model"] === true,
    },
    [GL_API_KEY_LABEL]: (await glApiKeysModel(deps.pool).members()).map((m) => m.value),
    "request-log": s.get("request-log") === true,
    "request-retry": Number(s.get("request-retry")) || 0,
    "claude-api-key": lists["claude-api-key"],
    "codex-api-key": lists["codex-api-key"],
    "openai-compatibility": lists["openai-compatibility"],
    "allow-localhost-unauthenticated": s.get("allow-localhost-unauthenticated") === true,
  };
}

/** `GET /config`, the scalar settings and `DELETE /proxy-url`. */
export function managementSettingsRoutes(
  guard: ManagementGuard,
  deps: ManagementSettingsDeps,
): Route[] {
  const routes: Route[] = [];
  for (const s of SCALAR_SETTINGS) {
    routes.push(
      managementRoute(guard, "GET", s.path, async () =>
        json(200, { [s.field]: read(deps.settings, s) }),
      ),
    );
    for (const method of ["PUT", "PATCH"]) {
      routes.push(
        managementRoute(guard, method, s.path, async (ex) => {
          const body = await readManagementBody(ex, deps.maxBodyBytes);
          const value =
            typeof body === "object" && body !== null && !Array.isArray(body)
              ? (body as Record<string, unknown>).value
              : undefined;
          if (!typeOk(s.kind, value) || (s.validate && !s.validate(value)))
            throw managementError(400, "invalid body");
          await write(deps, s, s.kind === "string" ? (value as string).trim() : value);
          return managementOk();
        }),
      );
    }
  }
  const proxy = SCALAR_SETTINGS.find((s) => s.path === "/proxy-url")!;
  routes.push(
    managementRoute(guard, "DELETE", "/proxy-url", async () => {
      await write(deps, proxy, "");
      return managementOk();
    }),
  );

  routes.push(
    managementRoute(guard, "GET", "/config", async () =>
      json(200, await managementConfigView(deps)),
    ),
  );
  return routes;
}
