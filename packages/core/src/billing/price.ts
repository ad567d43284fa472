import type { TokenUsage } from "../store/types.js";

export type { TokenUsage };

/** Quota units per US dollar (new-api's convention): model ratio 1 = 1 unit per prompt token. */
export const QUOTA_PER_USD = 500_000;

/** An all-zero usage. */
export const ZERO_USAGE: Readonly<TokenUsage> = Object.freeze({
  inputTokens: 0,
  outputTokens: 0,
  reasoningTokens: 0,
  cachedTokens: 0,
  totalTokens: 0,
});

/** The ratios that price one model for one group, as read from the settings. */
export interface Prices {
  /** `model-ratio`: quota units per prompt token (1 = $2 per 1M tokens). */
  model: number;
  /** `completion-ratio`: price of a completion token relative to a prompt token. */
  completion: number;
  /** `cache-ratio`: price of a cached prompt token relative to an uncached one. */
  cache: number;
  /** `reasoning-ratio`: a reasoning token relative to a prompt token (else `completion`). */
  reasoning: number;
  /** `group-ratio`: multiplier of the key's (or its owner's) group. */
  group: number;
}

/** The settings that hold the price tables. */
export type PriceTableName =
  | "model-ratio"
  | "completion-ratio"
  | "cache-ratio"
  | "reasoning-ratio"
  | "group-ratio";

/**
 * Where {@link Billing} reads the price tables: the gateway's `settings` fit as they are. A small
 * reader rather than the settings service, so that billing sits below settings in the layers.
 */
export interface PriceTableReader {
  /** The current value of one price table (an object of ratios; anything else prices at 1). */
  get(name: PriceTableName): unknown;
}

/** Date, `-latest`, `-preview` and `-exp` suffixes, stripped one at a time to find a base entry. */
const SUFFIX = /-(?:\d{4}-\d{2}-\d{2}|\d{8}|\d{2}-\d{2}|\d{4}|latest|preview|exp)$/;

/** Resolved lookups per table object (a changed setting is a new object: this never goes stale). */
const resolved = new WeakMap<object, Map<string, number | undefined>>();

function valid(v: unknown): v is number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0;
}

function own(t: Record<string, unknown>, k: string): unknown {
  return Object.hasOwn(t, k) ? t[k] : undefined;
}

/** A model's entry: exact name, then without version suffixes, then `*`; else undefined. */
function modelEntry(table: unknown, model: string): number | undefined {
  if (typeof table !== "object" || table === null) return undefined;
  const t = table as Record<string, unknown>;
  const exact = own(t, model);
  if (valid(exact)) return exact;
  let memo = resolved.get(t);
  if (!memo) {
    memo = new Map();
    resolved.set(t, memo);
  } else if (memo.has(model)) return memo.get(model);
  let found: number | undefined;
  for (let name = model, i = 0; i < 3 && found === undefined; i++) {
    const base = name.replace(SUFFIX, "");
    if (base === name) break;
    name = base;
    const v = own(t, name);
    if (valid(v)) found = v;
  }
  if (found === undefined) {
    const star = own(t, "*");
    if (valid(star)) found = star;
  }
  if (memo.size > 1000) memo.clear();
  memo.set(model, found);
  return found;
}

function groupEntry(table: unknown, group: string): number {
  if (typeof table !== "object" || table === null) return 1;
  const t = table as Record<string, unknown>;
  const v = own(t, group);
  if (valid(v)) return v;
  const star = own(t, "*");
  return valid(star) ? star : 1;
}

/** Rounds up to whole quota units, ignoring floating-point dust (0.075 × 200 is 15, not 16). */
function units(x: number): number {
  return Math.ceil(Math.round(x * 1e6) / 1e6);
}

/**
 * Prices requests in quota units (500000 units = 1 USD) from the runtime price tables in the
 * settings: `model-ratio`, `completion-ratio`, `cache-ratio`, `reasoning-ratio` (per model) and
 * `group-ratio` (per group). Tables are read on every call, so a changed setting applies to the
 * next request. A model missing from a table uses its entry without a date suffix, then the
 * table's `*` entry, then 1 (the reasoning ratio falls back to the completion ratio).
 *
 * cost = ⌈(prompt − cached + cached × cache ratio + (completion − reasoning) × completion ratio
 *         + reasoning × reasoning ratio) × model ratio × group ratio⌉
 *
 * Cached tokens are part of the prompt tokens and reasoning tokens part of the completion
 * tokens, as OpenAI reports them: neither is counted twice.
 *
 * @example
 * ```ts
 * const billing = new Billing(gateway.settings, 1024);
 * // (1000 + 500 × 4) × 1.25 = 3750 units
 * billing.cost("gpt-4o", "default", { inputTokens: 1000, outputTokens: 500 });
 * ```
 */
export class Billing {
  readonly #settings: PriceTableReader;
  readonly #defaultCompletion: number;

  /**
   * @param settings where the price tables live
   * @param defaultCompletionTokens completion tokens reserved for a request without `max_tokens`
   */
  constructor(settings: PriceTableReader, defaultCompletionTokens: number) {
    this.#settings = settings;
    this.#defaultCompletion = defaultCompletionTokens;
  }

  /** The ratios that apply to `model` for `group` right now. */
  prices(model: string, group: string): Prices {
    const s = this.#settings;
    const completion = modelEntry(s.get("completion-ratio"), model) ?? 1;
    return {
      model: modelEntry(s.get("model-ratio"), model) ?? 1,
      completion,
      cache: modelEntry(s.get("cache-ratio"), model) ?? 1,
      reasoning: modelEntry(s.get("reasoning-ratio"), model) ?? completion,
      group: groupEntry(s.get("group-ratio"), group || "default"),
    };
  }

  /** Cost in quota units of the given usage (missing counts are 0). */
  cost(
    model: string,
    group: string,
    usage: Pick<TokenUsage, "inputTokens" | "outputTokens"> & Partial<TokenUsage>,
  ): number {
    const p = this.prices(model, group);
    const input = Math.max(0, usage.inputTokens);
    const output = Math.max(0, usage.outputTokens);
    const cached = Math.min(input, Math.max(0, usage.cachedTokens ?? 0));
    const reasoning = Math.min(output, Math.max(0, usage.reasoningTokens ?? 0));
    const weighted =
      input -
      cached +
      cached * p.cache +
      (output - reasoning) * p.completion +
      reasoning * p.reasoning;
    return units(weighted * p.model * p.group);
  }

  /** The completion tokens a request is expected to use at most: `maxTokens` when valid, else the configured default. */
  completionAllowance(maxTokens?: number): number {
    return maxTokens !== undefined && Number.isSafeInteger(maxTokens) && maxTokens >= 0
      ? maxTokens
      : this.#defaultCompletion;
  }

  /**
   * What to reserve before forwarding: `promptTokens` plus the requested completion
   * (`maxTokens`, else the configured default), none of it cached, and the completion priced at
   * the dearer of the completion and reasoning ratios (a reply may be all reasoning).
   */
  estimate(model: string, group: string, promptTokens: number, maxTokens?: number): number {
    const p = this.prices(model, group);
    const completion = this.completionAllowance(maxTokens);
    const weighted = promptTokens + completion * Math.max(p.completion, p.reasoning);
    return units(weighted * p.model * p.group);
  }
}
