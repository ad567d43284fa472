import { GatewayError } from "../errors.js";
import type { GatewayEmitter } from "../events.js";
import type { Store } from "../store/types.js";
import { FreshReads } from "../util/fresh-reads.js";
import {
  acceptsSetting,
  DEFAULT_SETTINGS,
  RUNTIME_SETTINGS,
  readSetting,
  type SettingName,
  type SettingValue,
} from "./table.js";

/**
 * Runtime settings: read synchronously from a cache kept in step with the store (including
 * changes made by other instances, through `store.watch`), written through the store.
 */
export class SettingsService {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  readonly #defaults: Record<string, unknown>;
  #values = new Map<string, unknown>();
  /** Settings read or written one by one while a full load was under way. */
  readonly #fresh = new FreshReads();

  constructor(store: Store, events: GatewayEmitter, defaults: Record<string, unknown>) {
    this.#store = store;
    this.#events = events;
    this.#defaults = { ...DEFAULT_SETTINGS, ...defaults };
  }

  /**
   * Loads every stored setting into the cache. The store answers as of when it was asked: a
   * setting written or re-read through this service meanwhile (e.g. `set()` right after the
   * gateway was created) is newer than that answer and keeps its cached value.
   */
  async load(): Promise<void> {
    const { value: all, fresher } = await this.#fresh.full(() => this.#store.settings.all());
    const values = new Map(Object.entries(all));
    for (const name of fresher) {
      if (this.#values.has(name)) values.set(name, this.#values.get(name));
      else values.delete(name);
    }
    this.#values = values;
  }

  /** Re-reads one setting after a change notification. */
  async refresh(name: string): Promise<void> {
    const value = await this.#store.settings.get(name);
    if (value === undefined) this.#values.delete(name);
    else this.#values.set(name, value);
    this.#fresh.note(name);
    this.#events.emit("settings.changed", { name, value: value ?? this.#defaults[name] });
  }

  /**
   * The current value of a setting (stored, else the default), read as its declaration in
   * `RUNTIME_SETTINGS` says: `get("request-retry")` is a `number`.
   */
  get<N extends SettingName>(name: N): SettingValue<N> {
    return readSetting(name, this.raw(name)) as SettingValue<N>;
  }

  /**
   * The current value of any setting as stored (else its default), unread: for settings outside
   * `RUNTIME_SETTINGS` and for views that show what is stored.
   */
  raw(name: string): unknown {
    return this.#values.has(name) ? this.#values.get(name) : this.#defaults[name];
  }

  /** Every setting with defaults filled in. */
  all(): Record<string, unknown> {
    return structuredClone({ ...this.#defaults, ...Object.fromEntries(this.#values) });
  }

  /**
   * Writes settings through the store (one atomic write) and updates the cache. A value of a
   * declared runtime setting must have its type and pass its validation (`null` is written as
   * it is): otherwise nothing is written and an `INVALID_REQUEST` error names the setting.
   */
  async set(values: Record<string, unknown>): Promise<void> {
    for (const [name, value] of Object.entries(values)) {
      if (value === null || !Object.hasOwn(RUNTIME_SETTINGS, name)) continue;
      if (!acceptsSetting(name as SettingName, value)) {
        const { type } = RUNTIME_SETTINGS[name as SettingName];
        throw new GatewayError(
          "INVALID_REQUEST",
          // The value is not echoed: it may hold a secret (a proxy URL with a password).
          `Invalid value for the setting ${name}: expected ${type === "integer" ? "an integer" : `a ${type}`}${RUNTIME_SETTINGS[name as SettingName].validate ? " within its allowed values" : ""}.`,
        );
      }
    }
    await this.#store.settings.set(values);
    for (const [k, v] of Object.entries(values)) {
      this.#values.set(k, structuredClone(v));
      this.#fresh.note(k);
    }
  }

  /** Removes a stored setting, so that its default applies again. */
  async reset(name: string): Promise<void> {
    await this.#store.settings.delete(name);
    this.#values.delete(name);
    this.#fresh.note(name);
  }
}
