/**
 * The `GET /config` view: CLIProxyAPI's `config.yaml` layout (without the file-only fields such
 * as `port` or `remote-management`) built from the domain (runtime settings, the `api-keys`
 * keys, the pool). The management dialect answers it; the standalone server writes the same
 * object back to its configuration file.
 *
 * @module
 */
import type { CredentialPool } from "../credentials/pool.js";
import type { KeyService } from "../keys/service.js";
import type { SettingsService } from "../settings/service.js";
import type { OAuthModelAlias, SettingName } from "../settings/table.js";
import type {
  ConfigLists,
  GeminiKeyItem,
  OpenAICompatibilityItem,
  ProviderKeyItem,
} from "./list-items.js";
import { apiKeysModel, GL_API_KEY_LABEL, glApiKeysModel } from "./string-lists.js";

/** The object lists of `GET /config` (see `configLists`): {@link ConfigLists}. */
export type ConfigObjectLists = ConfigLists;

/** A setting whose value is an object, copied (`{}` when it is not an object). */
export function objectSetting(
  settings: SettingsService,
  name: SettingName,
): Record<string, unknown> {
  const v = settings.raw(name);
  return typeof v === "object" && v !== null && !Array.isArray(v)
    ? { ...(v as Record<string, unknown>) }
    : {};
}

/** What {@link managementConfigView} reads. */
export interface ConfigViewDeps {
  settings: SettingsService;
  keys: KeyService;
  pool: CredentialPool;
  /** The object lists. @default empty lists */
  configLists?(): Promise<ConfigObjectLists>;
}

const emptyLists = async (): Promise<ConfigObjectLists> => ({
  "claude-api-key": [],
  "codex-api-key": [],
  "openai-compatibility": [],
  "gemini-api-key": [],
  "interactions-api-key": [],
  "vertex-api-key": [],
  "xai-api-key": [],
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
  "claude-api-key": ProviderKeyItem[];
  "codex-api-key": ProviderKeyItem[];
  "openai-compatibility": OpenAICompatibilityItem[];
  /** The `generative-language-api-key` credentials as objects (CLIProxyAPI's newer view). */
  "gemini-api-key": GeminiKeyItem[];
  /** Gemini Interactions API keys (`gemini-interactions` credentials; stored and shown). */
  "interactions-api-key": GeminiKeyItem[];
  "vertex-api-key": ProviderKeyItem[];
  "xai-api-key": ProviderKeyItem[];
  "allow-localhost-unauthenticated": boolean;
  /** Kept for CLIProxyAPI's UIs; tokenpool records usage regardless. */
  "usage-statistics-enabled": boolean;
  /** Whether the management API's `GET /logs` serves the request log as log lines. */
  "logging-to-file": boolean;
  /** `{ <provider>: [model, ...] }` (CLIProxyAPI's; stored, shown). */
  "oauth-excluded-models": Record<string, string[]>;
  /** `{ <channel>: [{ name, alias, fork?, force-mapping? }] }` (CLIProxyAPI's; stored, shown). */
  "oauth-model-alias": Record<string, OAuthModelAlias[]>;
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
export async function managementConfigView(deps: ConfigViewDeps): Promise<ManagementConfigView> {
  const s = deps.settings;
  const lists = await (deps.configLists ?? emptyLists)();
  const quota = objectSetting(s, "quota-exceeded");
  return {
    debug: s.get("debug"),
    "proxy-url": s.get("proxy-url"),
    "api-keys": (await apiKeysModel(deps.keys).members()).map((m) => m.value),
    "quota-exceeded": {
      "switch-project": quota["switch-project"] === true,
      "switch-preview-model": quota["switch-preview-model"] === true,
    },
    [GL_API_KEY_LABEL]: (await glApiKeysModel(deps.pool).members()).map((m) => m.value),
    "request-log": s.get("request-log"),
    "request-retry": s.get("request-retry"),
    "claude-api-key": lists["claude-api-key"],
    "codex-api-key": lists["codex-api-key"],
    "openai-compatibility": lists["openai-compatibility"],
    "gemini-api-key": lists["gemini-api-key"],
    "interactions-api-key": lists["interactions-api-key"],
    "vertex-api-key": lists["vertex-api-key"],
    "xai-api-key": lists["xai-api-key"],
    "allow-localhost-unauthenticated": s.get("allow-localhost-unauthenticated"),
    "usage-statistics-enabled": s.get("usage-statistics-enabled"),
    "logging-to-file": s.get("logging-to-file"),
    "oauth-excluded-models": structuredClone(s.get("oauth-excluded-models")) as Record<
      string,
      string[]
    >,
    "oauth-model-alias": structuredClone(s.get("oauth-model-alias")) as Record<
      string,
      OAuthModelAlias[]
    >,
  };
}
