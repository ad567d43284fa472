/**
 * The one table of runtime settings: each setting's wire name (as in the management seed's
 * configuration), type, default, validation and how the engine reads a stored value. From it
 * `SettingsService.get` is typed, the defaults are built and the management routes validate
 * writes.
 *
 * @module
 */

import {
  DEFAULT_CACHE_RATIO,
  DEFAULT_COMPLETION_RATIO,
  DEFAULT_MODEL_RATIO,
} from "../billing/defaults.js";
import { isTimeZone } from "../billing/refill.js";
import { DEFAULT_POOL_SETTINGS, POOL_SETTINGS } from "../credentials/health.js";
import { parseRoutingStrategy, type RoutingStrategy } from "../credentials/strategies.js";
import type { RateLimits } from "../store/types.js";

/** The JSON type of a setting's value, as a write must send it. */
export type SettingType = "boolean" | "integer" | "number" | "string" | "object";

/** The declaration of one runtime setting. */
export interface SettingDefinition<T> {
  /** The type a written value must have (`integer`: a whole number). */
  readonly type: SettingType;
  /** The value while none is stored; `undefined` = none (the setting is then absent from `all()`). */
  readonly default: unknown;
  /** What the setting does, for documentation and forms. */
  readonly description: string;
  /** For `object` settings written field by field (`quota-exceeded/switch-project`): each field's type. */
  readonly fields?: Readonly<Record<string, SettingType>>;
  /** A check a written value must pass besides its type (a range, a URL form). */
  readonly validate?: (value: unknown) => boolean;
  /**
   * Reads a stored value, whatever its shape (stores and config files may hold anything), as the
   * engine uses it. `SettingsService.get` returns this.
   */
  readonly read: (stored: unknown) => T;
}

const EMPTY: Readonly<Record<string, unknown>> = Object.freeze({});

const isTrue = (v: unknown): boolean => v === true;
const asNumber = (v: unknown): number => Number(v) || 0;
/** Objects as they are (the same object, so that per-table caches keep working), else `{}`. */
const asObject = (v: unknown): Readonly<Record<string, unknown>> =>
  typeof v === "object" && v !== null ? (v as Record<string, unknown>) : EMPTY;
/** A finite number ≥ 0, else undefined (the pool then uses its option). */
const asPoolNumber = (v: unknown): number | undefined =>
  typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined;
const isProxyUrl = (v: unknown): boolean =>
  v === "" || (typeof v === "string" && /^(https?|socks5h?):\/\/[^\s]+$/i.test(v));
const nonNegative = (v: unknown): boolean => (v as number) >= 0;

const define = <T>(d: SettingDefinition<T>): SettingDefinition<T> => d;

/** The snake_case field of `group-limits` (and of the token and user dialects) for each rate limit. */
export const RATE_LIMIT_FIELDS: Readonly<Record<keyof RateLimits, string>> = {
  rpm: "rpm_limit",
  tpm: "tpm_limit",
  rpd: "rpd_limit",
  maxConcurrency: "max_concurrency",
  queueTimeoutMs: "queue_timeout_ms",
};
const RATE_LIMIT_ENTRIES = Object.entries(RATE_LIMIT_FIELDS) as [keyof RateLimits, string][];

const isLimitValue = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;

function isGroupLimits(v: unknown): boolean {
  return Object.values(v as Record<string, unknown>).every(
    (g) =>
      typeof g === "object" &&
      g !== null &&
      !Array.isArray(g) &&
      Object.entries(g).every(
        ([f, n]) => RATE_LIMIT_ENTRIES.some(([, wire]) => wire === f) && isLimitValue(n),
      ),
  );
}

const groupLimitsRead = new WeakMap<object, Readonly<Record<string, RateLimits>>>();

/** `group-limits` as the engine uses it: per group, the limits set (valid, above 0). */
function readGroupLimits(v: unknown): Readonly<Record<string, RateLimits>> {
  if (typeof v !== "object" || v === null) return EMPTY as Record<string, RateLimits>;
  let out = groupLimitsRead.get(v);
  if (!out) {
    const groups: Record<string, RateLimits> = {};
    for (const [group, g] of Object.entries(v)) {
      if (typeof g !== "object" || g === null) continue;
      const limits: RateLimits = {};
      for (const [field, wire] of RATE_LIMIT_ENTRIES) {
        const n = (g as Record<string, unknown>)[wire];
        if (isLimitValue(n) && (n as number) > 0) limits[field] = n as number;
      }
      groups[group] = limits;
    }
    out = Object.freeze(groups);
    groupLimitsRead.set(v, out);
  }
  return out;
}

/** One alias of the `oauth-model-alias` setting (CLIProxyAPI's shape). */
export interface OAuthModelAlias {
  /** The upstream model. */
  name: string;
  /** The name clients use. */
  alias: string;
  /** Keep the original name visible beside the alias. */
  fork?: boolean;
  "force-mapping"?: boolean;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** `{ <name>: string[] }`. */
function isStringListMap(v: unknown): boolean {
  return Object.values(v as Record<string, unknown>).every(
    (l) => Array.isArray(l) && l.every((m) => typeof m === "string"),
  );
}

/** `{ <channel>: [{ name, alias, fork?, force-mapping? }] }`. */
function isAliasMap(v: unknown): boolean {
  return Object.values(v as Record<string, unknown>).every(
    (l) =>
      Array.isArray(l) &&
      l.every(
        (a) =>
          isPlainObject(a) &&
          typeof a.name === "string" &&
          typeof a.alias === "string" &&
          (a.fork === undefined || typeof a.fork === "boolean") &&
          (a["force-mapping"] === undefined || typeof a["force-mapping"] === "boolean"),
      ),
  );
}

/** The `remote-management` setting as the engine reads it (the management key's bcrypt hash). */
export interface RemoteManagementSetting {
  /** bcrypt hash of the management key; empty or absent = no key. */
  "secret-key"?: string;
  [field: string]: unknown;
}

/**
 * Every runtime setting, by wire name. Each takes effect on the next request after it changes.
 *
 * @example
 * ```ts
 * RUNTIME_SETTINGS["request-retry"].default; // 3
 * ```
 */
export const RUNTIME_SETTINGS = {
  [POOL_SETTINGS.strategy]: define<RoutingStrategy | null>({
    type: "string",
    default: DEFAULT_POOL_SETTINGS[POOL_SETTINGS.strategy],
    description:
      "Credential selection strategy: `round-robin`, `weighted`, `fill-first` or `least-recently-used` (`lru`).",
    validate: (v) => parseRoutingStrategy(v) !== null,
    read: parseRoutingStrategy,
  }),
  [POOL_SETTINGS.maxFailures]: define<number | undefined>({
    type: "number",
    default: DEFAULT_POOL_SETTINGS[POOL_SETTINGS.maxFailures],
    description:
      "Failures inside the window that disable a credential; 0 = never auto-disable; 1 counts as 2.",
    validate: nonNegative,
    read: asPoolNumber,
  }),
  [POOL_SETTINGS.failureWindowMs]: define<number | undefined>({
    type: "number",
    default: DEFAULT_POOL_SETTINGS[POOL_SETTINGS.failureWindowMs],
    description: "The window of `credential-max-failures`, in ms.",
    validate: nonNegative,
    read: asPoolNumber,
  }),
  debug: define<boolean>({
    type: "boolean",
    default: false,
    description: "Logs at debug level.",
    read: isTrue,
  }),
  "proxy-url": define<string>({
    type: "string",
    default: "",
    description:
      "Proxy for upstream calls of credentials without their own: `http(s)://` or `socks5(h)://`; empty = none.",
    validate: isProxyUrl,
    read: (v) => String(v ?? ""),
  }),
  "request-retry": define<number>({
    type: "integer",
    default: 3,
    description: "How many more credentials a failed request is tried with (0 to 100).",
    validate: (v) => (v as number) >= 0 && (v as number) <= 100,
    read: asNumber,
  }),
  "max-retry-interval": define<number>({
    type: "number",
    default: 30,
    description:
      "Seconds a request may wait for a `Retry-After` when every credential of its model is cooling down after a 429 (CLIProxyAPI's `max-retry-interval`); longer waits fail at once. 0 = never wait.",
    validate: nonNegative,
    read: asNumber,
  }),
  "request-log": define<boolean>({
    type: "boolean",
    default: false,
    description:
      "Writes a log line for every proxied request, and keeps its request and JSON response bodies (cut to 4 KiB, secrets redacted) in its request log record.",
    read: isTrue,
  }),
  "quota-exceeded": define<Readonly<Record<string, unknown>>>({
    type: "object",
    default: { "switch-project": true, "switch-preview-model": true },
    description:
      "What to do when a credential is out of quota: `switch-project` (move to its next project), `switch-preview-model` (use `preview-model-fallbacks`).",
    fields: { "switch-project": "boolean", "switch-preview-model": "boolean" },
    read: asObject,
  }),
  "allow-localhost-unauthenticated": define<boolean>({
    type: "boolean",
    default: false,
    description: "Lets requests from localhost use the proxy routes without a key.",
    read: isTrue,
  }),
  "force-gpt-5-codex": define<boolean>({
    type: "boolean",
    default: false,
    description: "CLIProxyAPI's `gpt-5-codex` switch.",
    read: isTrue,
  }),
  "usage-retention-days": define<number>({
    type: "integer",
    default: 30,
    description: "Days usage details are kept (roll-ups are kept forever); 0 keeps them forever.",
    validate: nonNegative,
    read: (v) => {
      const n = Number(v);
      return Number.isFinite(n) && n > 0 ? n : 0;
    },
  }),
  "usage-retention-count": define<number>({
    type: "integer",
    default: 0,
    description:
      "Most usage details (request log records) kept: the oldest beyond it are pruned hourly (roll-ups are kept forever); 0 = no bound.",
    validate: nonNegative,
    read: (v) => {
      const n = Number(v);
      return Number.isSafeInteger(n) && n > 0 ? n : 0;
    },
  }),
  "model-ratio": define<Readonly<Record<string, unknown>>>({
    type: "object",
    default: DEFAULT_MODEL_RATIO,
    description:
      "Price multiplier per model: 1 = 1 quota unit per prompt token = $2 per 1M tokens (new-api's convention). Defaults cover common OpenAI, Anthropic, Gemini and DeepSeek models; a model missing here uses its entry without a date suffix, then `*`, then 1. Setting it replaces the whole table.",
    read: asObject,
  }),
  "completion-ratio": define<Readonly<Record<string, unknown>>>({
    type: "object",
    default: DEFAULT_COMPLETION_RATIO,
    description:
      "Price of a completion token relative to a prompt token, per model (missing: `*`, then 1).",
    read: asObject,
  }),
  "cache-ratio": define<Readonly<Record<string, unknown>>>({
    type: "object",
    default: DEFAULT_CACHE_RATIO,
    description:
      "Price of a cached prompt token relative to an uncached one, per model (missing: `*`, 1).",
    read: asObject,
  }),
  "reasoning-ratio": define<Readonly<Record<string, unknown>>>({
    type: "object",
    default: {},
    description:
      "Price of a reasoning token relative to a prompt token, per model (missing: completion's).",
    read: asObject,
  }),
  "group-ratio": define<Readonly<Record<string, unknown>>>({
    type: "object",
    default: { default: 1 },
    description: "Price multiplier per key/user group (missing: `*`, then 1).",
    read: asObject,
  }),
  "preview-model-fallbacks": define<Readonly<Record<string, unknown>>>({
    type: "object",
    default: {},
    description:
      "Fallback model per model, used when `quota-exceeded/switch-preview-model` is on and every credential of a model is rate limited.",
    read: asObject,
  }),
  "group-limits": define<Readonly<Record<string, RateLimits>>>({
    type: "object",
    default: {},
    description:
      "Default rate limits per group: `{ <group>: { rpm_limit, tpm_limit, rpd_limit, max_concurrency, queue_timeout_ms } }` (non-negative integers, 0 = none). They fill the unset limits of the user of that group (of the key, for a key without an owner).",
    validate: isGroupLimits,
    read: readGroupLimits,
  }),
  "quota-refill-time-zone": define<string>({
    type: "string",
    default: "UTC",
    description:
      "The IANA time zone (e.g. `UTC`, `Asia/Shanghai`) in which refill periods and credential spend caps per day and month start at 00:00.",
    validate: isTimeZone,
    read: (v) => (isTimeZone(v) ? v : "UTC"),
  }),
  "usage-statistics-enabled": define<boolean>({
    type: "boolean",
    default: true,
    description:
      "CLIProxyAPI's switch for its in-memory usage statistics. tokenpool records every request regardless (the usage record settles its quota), so this is kept and shown for the management UI only.",
    read: (v) => v !== false,
  }),
  "logging-to-file": define<boolean>({
    type: "boolean",
    default: false,
    description:
      "Serves the request log as log lines on the management API's `GET /logs` (one line per request); off, `/logs` answers 400 `logging to file disabled`, as CLIProxyAPI does. Nothing is written to a file.",
    read: isTrue,
  }),
  "oauth-excluded-models": define<Readonly<Record<string, readonly string[]>>>({
    type: "object",
    default: {},
    description:
      "CLIProxyAPI's models excluded per OAuth provider: `{ <provider>: [model, ...] }`. Stored and shown by the management API; per-credential exclusions are each credential's `excludedModels`.",
    validate: isStringListMap,
    read: (v) => asObject(v) as Readonly<Record<string, readonly string[]>>,
  }),
  "oauth-model-alias": define<Readonly<Record<string, readonly OAuthModelAlias[]>>>({
    type: "object",
    default: {},
    description:
      "CLIProxyAPI's model aliases per OAuth channel: `{ <channel>: [{ name, alias, fork?, force-mapping? }] }`. Stored and shown by the management API.",
    validate: isAliasMap,
    read: (v) => asObject(v) as Readonly<Record<string, readonly OAuthModelAlias[]>>,
  }),
  "remote-management": define<RemoteManagementSetting>({
    type: "object",
    default: undefined,
    description:
      "The management key (`secret-key`, a bcrypt hash). Changed only through `gateway.management`, never by a settings route.",
    read: (v) => asObject(v) as RemoteManagementSetting,
  }),
} as const;

/** The name of a runtime setting declared in {@link RUNTIME_SETTINGS}. */
export type SettingName = keyof typeof RUNTIME_SETTINGS;

/** The type `SettingsService.get` returns for a setting. */
export type SettingValue<N extends SettingName> =
  (typeof RUNTIME_SETTINGS)[N] extends SettingDefinition<infer T> ? T : never;

const READERS: ReadonlyMap<string, (stored: unknown) => unknown> = new Map(
  Object.entries(RUNTIME_SETTINGS).map(([name, d]) => [name, d.read]),
);

/** Reads a stored value of `name` as the engine uses it (unknown names: the value as stored). */
export function readSetting(name: string, stored: unknown): unknown {
  const read = READERS.get(name);
  return read ? read(stored) : stored;
}

function hasType(type: SettingType, v: unknown): boolean {
  if (type === "integer") return typeof v === "number" && Number.isInteger(v);
  if (type === "number") return typeof v === "number" && Number.isFinite(v);
  if (type === "object") return typeof v === "object" && v !== null && !Array.isArray(v);
  return typeof v === type;
}

/** Whether `value` may be written to the setting `name`: its type, then its validation. */
export function acceptsSetting(name: SettingName, value: unknown): boolean {
  const d: SettingDefinition<unknown> = RUNTIME_SETTINGS[name];
  return hasType(d.type, value) && (d.validate === undefined || d.validate(value));
}

/** Whether `value` may be written to the field `field` of the object setting `name`. */
export function acceptsSettingField(name: SettingName, field: string, value: unknown): boolean {
  const d: SettingDefinition<unknown> = RUNTIME_SETTINGS[name];
  const type = d.fields && Object.hasOwn(d.fields, field) ? d.fields[field] : undefined;
  return type !== undefined && hasType(type, value);
}

/**
 * Defaults of the runtime settings, named as in the management seed's configuration (built from
 * {@link RUNTIME_SETTINGS}; settings without a default are absent).
 */
export const DEFAULT_SETTINGS: Readonly<Record<string, unknown>> = Object.freeze(
  Object.fromEntries(
    Object.entries(RUNTIME_SETTINGS)
      .filter(([, d]) => d.default !== undefined)
      .map(([name, d]) => [name, d.default]),
  ),
);
