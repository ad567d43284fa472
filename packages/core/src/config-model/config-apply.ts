/**
 * The managed part of a CLIProxyAPI-style `config.yaml` (the scalar settings and the key lists
 * of the management API's `GET /config`) and how it maps onto a gateway: validation against the
 * settings table and the list items, then writes through the same domain models as the
 * management API. The standalone server applies its configuration file with it.
 *
 * @module
 */
import type { CredentialPool } from "../credentials/pool.js";
import type { KeyService } from "../keys/service.js";
import type { SettingsService } from "../settings/service.js";
import { acceptsSetting, RUNTIME_SETTINGS, type SettingName } from "../settings/table.js";
import { ALL_CONFIG_LIST_NAMES, CONFIG_LIST_NAMES, LIST_SPECS } from "./list-items.js";
import { parseConfigList, replaceConfigList } from "./list-writer.js";
import {
  API_KEYS_NAME_PREFIX,
  apiKeysModel,
  GL_API_KEY_LABEL,
  glApiKeysModel,
} from "./string-lists.js";

/**
 * The managed fields of a `config.yaml`: the scalar settings and the key lists of the
 * management API's `GET /config`. Other fields of the file are not the config model's.
 */
export interface ConfigFileSettings {
  debug?: boolean;
  "proxy-url"?: string;
  "request-retry"?: number;
  "request-log"?: boolean;
  "allow-localhost-unauthenticated"?: boolean;
  "force-gpt-5-codex"?: boolean;
  "usage-retention-days"?: number;
  "usage-statistics-enabled"?: boolean;
  "logging-to-file"?: boolean;
  "oauth-excluded-models"?: Record<string, string[]>;
  "oauth-model-alias"?: Record<string, unknown[]>;
  "quota-exceeded"?: { "switch-project"?: boolean; "switch-preview-model"?: boolean };
  "api-keys"?: string[];
  "generative-language-api-key"?: string[];
  "claude-api-key"?: unknown[];
  "codex-api-key"?: unknown[];
  "openai-compatibility"?: unknown[];
  /** The `generative-language-api-key` credentials as objects (one pool, two views). */
  "gemini-api-key"?: unknown[];
  "interactions-api-key"?: unknown[];
  "vertex-api-key"?: unknown[];
  "xai-api-key"?: unknown[];
}

/** What {@link applyConfig} writes to: a gateway's settings, keys and pool fit. */
export interface ConfigTarget {
  settings: SettingsService;
  keys: KeyService;
  credentials: { pool: CredentialPool };
}

/**
 * File fields that are plain settings of the same name; their type and range are the settings'
 * declarations (`RUNTIME_SETTINGS`), as for the management routes.
 */
const SCALARS: readonly (keyof ConfigFileSettings & SettingName)[] = [
  "debug",
  "proxy-url",
  "request-retry",
  "request-log",
  "allow-localhost-unauthenticated",
  "force-gpt-5-codex",
  "usage-retention-days",
  "usage-statistics-enabled",
  "logging-to-file",
];
/** File fields that are object settings of the same name, replaced whole when present. */
const OBJECTS: readonly (keyof ConfigFileSettings & SettingName)[] = [
  "oauth-excluded-models",
  "oauth-model-alias",
];
const QUOTA_FIELDS = ["switch-project", "switch-preview-model"] as const;

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** A JSON text with sorted object keys: equal values, equal texts. */
function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    isObject(val)
      ? Object.fromEntries(
          Object.keys(val)
            .sort()
            .map((k) => [k, val[k]]),
        )
      : val,
  );
}

function stringList(v: unknown): string[] | null {
  if (v === null) return [];
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) return null;
  return [...new Set(v.map((s) => s.trim()).filter((s) => s !== ""))];
}

/**
 * The problems of a configuration's managed fields (settings and key lists), one message per
 * field; empty when it can be applied.
 */
export function configProblems(config: ConfigFileSettings): string[] {
  const problems: string[] = [];
  for (const name of SCALARS) {
    const v = config[name];
    if (v === undefined || v === null) continue;
    const type = RUNTIME_SETTINGS[name].type;
    if (!acceptsSetting(name, v))
      problems.push(`\`${name}\` must be ${type === "integer" ? "an integer" : `a ${type}`}`);
  }
  for (const name of OBJECTS) {
    const v = config[name];
    if (v === undefined || v === null) continue;
    if (!acceptsSetting(name, v))
      problems.push(
        `\`${name}\` must be ${name === "oauth-model-alias" ? "a mapping of lists of { name, alias }" : "a mapping of lists of strings"}`,
      );
  }
  const quota = config["quota-exceeded"];
  if (quota !== undefined && quota !== null) {
    if (!isObject(quota)) problems.push("`quota-exceeded` must be a mapping");
    else
      for (const f of QUOTA_FIELDS)
        if (quota[f] !== undefined && typeof quota[f] !== "boolean")
          problems.push(`\`quota-exceeded.${f}\` must be a boolean`);
  }
  for (const name of ["api-keys", GL_API_KEY_LABEL] as const) {
    const v = config[name];
    if (v !== undefined && stringList(v) === null)
      problems.push(`\`${name}\` must be a list of strings`);
  }
  for (const name of ALL_CONFIG_LIST_NAMES) {
    const v = config[name];
    if (v === undefined || v === null) continue;
    if (!Array.isArray(v) || parseConfigList(name, v) === null)
      problems.push(`\`${name}\` has an invalid entry (see the management API's PUT /${name})`);
  }
  return problems;
}

/**
 * Brings the configuration's settings and key lists into the gateway, through the same domain
 * models as the management API (`api-keys` = keys named `api-keys:<n>`, the provider lists =
 * pool credentials). Only fields present in the file are applied, and only where they differ
 * from the current state, so applying the same file twice writes nothing. Validates everything
 * first: throws (naming the fields) without changing anything when a field is invalid.
 * Resolves with whether anything was written.
 */
export async function applyConfig(
  gateway: ConfigTarget,
  config: ConfigFileSettings,
): Promise<boolean> {
  const problems = configProblems(config);
  if (problems.length > 0) throw new Error(`invalid configuration: ${problems.join("; ")}`);
  const gemini = geminiSource(gateway.credentials.pool, config);
  let changed = false;

  const patch: Record<string, unknown> = {};
  for (const name of SCALARS) {
    const v = config[name];
    if (v !== undefined && v !== null && gateway.settings.raw(name) !== v) patch[name] = v;
  }
  for (const name of OBJECTS) {
    const v = config[name];
    if (
      v !== undefined &&
      v !== null &&
      canonicalJson(gateway.settings.raw(name)) !== canonicalJson(v)
    )
      patch[name] = v;
  }
  const quota = config["quota-exceeded"];
  if (isObject(quota)) {
    const current = gateway.settings.get("quota-exceeded");
    const base = isObject(current) ? current : {};
    const next = { ...base };
    for (const f of QUOTA_FIELDS) if (typeof quota[f] === "boolean") next[f] = quota[f];
    if (QUOTA_FIELDS.some((f) => next[f] !== base[f])) patch["quota-exceeded"] = next;
  }
  if (Object.keys(patch).length > 0) {
    await gateway.settings.set(patch);
    changed = true;
  }

  if (config["api-keys"] !== undefined) {
    const values = stringList(config["api-keys"])!;
    const model = apiKeysModel(gateway.keys);
    const current = (await model.members()).map((m) => m.value);
    if (JSON.stringify(current) !== JSON.stringify(values)) {
      // Keys an older server imported as `config-api-key-<n>` join the list instead of clashing.
      for (const [i, v] of values.entries()) {
        const k = await gateway.keys.findByPlain(v);
        if (k && k.userId === null && k.name.startsWith("config-api-key-"))
          await gateway.keys.update(k.id, { name: `${API_KEYS_NAME_PREFIX}${i}` });
      }
      await model.replaceAll(values);
      changed = true;
    }
  }

  if (config[GL_API_KEY_LABEL] !== undefined && gemini === GL_API_KEY_LABEL) {
    const values = stringList(config[GL_API_KEY_LABEL])!;
    const model = glApiKeysModel(gateway.credentials.pool);
    const current = (await model.members()).map((m) => m.value);
    if (JSON.stringify(current) !== JSON.stringify(values)) {
      await model.replaceAll(values);
      changed = true;
    }
  }

  const objectLists = [
    ...CONFIG_LIST_NAMES,
    ...(gemini === "gemini-api-key" ? (["gemini-api-key"] as const) : []),
    "interactions-api-key",
    "vertex-api-key",
    "xai-api-key",
  ] as const;
  for (const name of objectLists) {
    const v = config[name];
    if (v === undefined) continue;
    if (await replaceConfigList(gateway.credentials.pool, name, v ?? [])) changed = true;
  }
  return changed;
}

/**
 * Which of the two views of the Gemini keys a file changes: `generative-language-api-key`
 * (strings) or `gemini-api-key` (objects). A file written from `GET /config` holds both; a hand
 * edit changes one, and the one that differs from the gateway's state is applied. Both changed,
 * and not to the same keys: an error naming them (nothing is written).
 */
function geminiSource(
  pool: CredentialPool,
  config: ConfigFileSettings,
): typeof GL_API_KEY_LABEL | "gemini-api-key" {
  const objects = config["gemini-api-key"];
  // `null` (an emptied YAML key) is not a wipe of the keys the string view still lists.
  if (objects === undefined || objects === null) return GL_API_KEY_LABEL;
  const spec = LIST_SPECS["gemini-api-key"];
  const current = spec.read(pool.list()).map((i) => i.value);
  const parsed = parseConfigList("gemini-api-key", objects) as typeof current;
  if (JSON.stringify(parsed) === JSON.stringify(current)) return GL_API_KEY_LABEL;
  const strings = config[GL_API_KEY_LABEL];
  if (strings !== undefined) {
    const gl = stringList(strings)!;
    const currentKeys = [...new Set(current.map((v) => v["api-key"]))];
    const fileKeys = [...new Set(parsed.map((v) => v["api-key"]))];
    if (
      JSON.stringify(gl) !== JSON.stringify(currentKeys) &&
      JSON.stringify(gl) !== JSON.stringify(fileKeys)
    )
      throw new Error(
        "invalid configuration: `generative-language-api-key` and `gemini-api-key` both changed, to different keys: edit one of them",
      );
  }
  return "gemini-api-key";
}
