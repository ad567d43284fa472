import {
  DEFAULT_CACHE_RATIO,
  DEFAULT_COMPLETION_RATIO,
  DEFAULT_MODEL_RATIO,
} from "../billing/defaults.js";
import { DEFAULT_POOL_SETTINGS } from "../credentials/health.js";
import type { GatewayEmitter } from "../events.js";
import type { Store } from "../store/types.js";

/**
 * Defaults of the runtime settings, named as in the management seed's configuration.
 * Each takes effect on the next request after it changes.
 */
export const DEFAULT_SETTINGS: Readonly<Record<string, unknown>> = Object.freeze({
  ...DEFAULT_POOL_SETTINGS,
  debug: false,
  "proxy-url": "",
  "request-retry": 3,
  /**
   * Seconds a request may wait for a `Retry-After` when every credential of its model is cooling
   * down after a 429 (CLIProxyAPI's `max-retry-interval`); longer waits fail at once. 0 = never wait.
   */
  "max-retry-interval": 30,
  "request-log": false,
  "quota-exceeded": { "switch-project": true, "switch-preview-model": true },
  "allow-localhost-unauthenticated": false,
  "force-gpt-5-codex": false,
  /** Days usage details are kept (roll-ups are kept forever); 0 keeps them forever. */
  "usage-retention-days": 30,
  /**
   * Price multiplier per model: 1 = 1 quota unit per prompt token = $2 per 1M tokens (new-api's
   * convention). Defaults cover common OpenAI, Anthropic, Gemini and DeepSeek models; a model
   * missing here uses its entry without a date suffix, then `*`, then 1. Setting it replaces
   * the whole table.
   */
  "model-ratio": DEFAULT_MODEL_RATIO,
  /** Price of a completion token relative to a prompt token, per model (missing: `*`, then 1). */
  "completion-ratio": DEFAULT_COMPLETION_RATIO,
  /** Price of a cached prompt token relative to an uncached one, per model (missing: `*`, 1). */
  "cache-ratio": DEFAULT_CACHE_RATIO,
  /** Price of a reasoning token relative to a prompt token, per model (missing: completion's). */
  "reasoning-ratio": {},
  /** Price multiplier per key/user group (missing: `*`, then 1). */
  "group-ratio": { default: 1 },
  /** Fallback model per model, used when `quota-exceeded/switch-preview-model` is on and every credential of a model is rate limited. */
  "preview-model-fallbacks": {},
});

/**
 * Runtime settings: read synchronously from a cache kept in step with the store (including
 * changes made by other instances, through `store.watch`), written through the store.
 */
export class SettingsService {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  readonly #defaults: Record<string, unknown>;
  #values = new Map<string, unknown>();

  constructor(store: Store, events: GatewayEmitter, defaults: Record<string, unknown>) {
    this.#store = store;
    this.#events = events;
    this.#defaults = { ...DEFAULT_SETTINGS, ...defaults };
  }

  /** Loads every stored setting into the cache. */
  async load(): Promise<void> {
    const all = await this.#store.settings.all();
    this.#values = new Map(Object.entries(all));
  }

  /** Re-reads one setting after a change notification. */
  async refresh(name: string): Promise<void> {
    const value = await this.#store.settings.get(name);
    if (value === undefined) this.#values.delete(name);
    else this.#values.set(name, value);
    this.#events.emit("settings.changed", { name, value: value ?? this.#defaults[name] });
  }

  /** The current value of a setting: stored, else the default. */
  get<T = unknown>(name: string): T {
    return (this.#values.has(name) ? this.#values.get(name) : this.#defaults[name]) as T;
  }

  /** Every setting with defaults filled in. */
  all(): Record<string, unknown> {
    return structuredClone({ ...this.#defaults, ...Object.fromEntries(this.#values) });
  }

  /** Writes settings through the store (one atomic write) and updates the cache. */
  async set(values: Record<string, unknown>): Promise<void> {
    await this.#store.settings.set(values);
    for (const [k, v] of Object.entries(values)) this.#values.set(k, structuredClone(v));
  }

  /** Removes a stored setting, so that its default applies again. */
  async reset(name: string): Promise<void> {
    await this.#store.settings.delete(name);
    this.#values.delete(name);
  }
}
