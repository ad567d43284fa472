/**
 * Default price tables, in new-api's conventions: a model ratio of 1 is $0.002 per 1K prompt
 * tokens ($2 per 1M), so `model ratio = USD per 1M input tokens / 2`; the completion ratio is
 * the output price over the input price, and the cache ratio the cached-input price over the
 * input price. List prices as published by OpenAI, Anthropic, Google and DeepSeek (standard
 * tier, short-context rates).
 *
 * Lookups try the exact model name first, then the name without a date or `-latest`/`-preview`
 * suffix (`gpt-4o-mini-2024-07-18` → `gpt-4o-mini`, `claude-sonnet-4-20250514` →
 * `claude-sonnet-4`), then the `*` entry, then 1. Models whose dated versions are priced
 * differently have their own entries (`gpt-4o-2024-05-13`, `gpt-4-1106-preview`).
 *
 * @module
 */

type Row = readonly [model: number, completion: number, cache?: number];

/** One row per model: [model ratio, completion ratio, cache ratio (absent = 1)]. */
const ROWS: Readonly<Record<string, Row>> = {
  // OpenAI
  "gpt-4o-mini": [0.075, 4, 0.5], // $0.15 / $0.60, cached $0.075
  "gpt-4o": [1.25, 4, 0.5], // $2.50 / $10, cached $1.25
  "gpt-4o-2024-05-13": [2.5, 3], // $5 / $15
  "chatgpt-4o-latest": [2.5, 3], // $5 / $15
  "gpt-4.1": [1, 4, 0.25], // $2 / $8, cached $0.50
  "gpt-4.1-mini": [0.2, 4, 0.25], // $0.40 / $1.60, cached $0.10
  "gpt-4.1-nano": [0.05, 4, 0.25], // $0.10 / $0.40, cached $0.025
  "gpt-4.5-preview": [37.5, 2, 0.5], // $75 / $150
  "gpt-4-turbo": [5, 3], // $10 / $30
  "gpt-4-turbo-preview": [5, 3],
  "gpt-4-1106-preview": [5, 3],
  "gpt-4-0125-preview": [5, 3],
  "gpt-4-vision-preview": [5, 3],
  "gpt-4": [15, 2], // $30 / $60
  "gpt-4-32k": [30, 2], // $60 / $120
  "gpt-3.5-turbo": [0.25, 3], // $0.50 / $1.50
  o1: [7.5, 4, 0.5], // $15 / $60, cached $7.50
  "o1-mini": [0.55, 4, 0.5], // $1.10 / $4.40
  "o1-pro": [75, 4], // $150 / $600
  o3: [1, 4, 0.25], // $2 / $8, cached $0.50
  "o3-mini": [0.55, 4, 0.5], // $1.10 / $4.40, cached $0.55
  "o3-pro": [10, 4], // $20 / $80
  "o4-mini": [0.55, 4, 0.25], // $1.10 / $4.40, cached $0.275
  "gpt-5": [0.625, 8, 0.1], // $1.25 / $10, cached $0.125
  "gpt-5-chat-latest": [0.625, 8, 0.1],
  "gpt-5-mini": [0.125, 8, 0.1], // $0.25 / $2, cached $0.025
  "gpt-5-nano": [0.025, 8, 0.1], // $0.05 / $0.40, cached $0.005
  // Anthropic (cache ratio = cache reads)
  "claude-3-haiku": [0.125, 5, 0.12], // $0.25 / $1.25, cache read $0.03
  "claude-3-5-haiku": [0.4, 5, 0.1], // $0.80 / $4
  "claude-haiku-4-5": [0.5, 5, 0.1], // $1 / $5
  "claude-3-5-sonnet": [1.5, 5, 0.1], // $3 / $15, cache read $0.30
  "claude-3-7-sonnet": [1.5, 5, 0.1],
  "claude-sonnet-4": [1.5, 5, 0.1],
  "claude-sonnet-4-5": [1.5, 5, 0.1],
  "claude-3-opus": [7.5, 5, 0.1], // $15 / $75
  "claude-opus-4": [7.5, 5, 0.1],
  "claude-opus-4-1": [7.5, 5, 0.1],
  "claude-opus-4-5": [2.5, 5, 0.1], // $5 / $25
  // Google
  "gemini-1.5-flash": [0.0375, 4, 0.25], // $0.075 / $0.30
  "gemini-1.5-pro": [0.625, 4, 0.25], // $1.25 / $5
  "gemini-2.0-flash": [0.05, 4, 0.25], // $0.10 / $0.40, cached $0.025
  "gemini-2.0-flash-lite": [0.0375, 4], // $0.075 / $0.30
  "gemini-2.5-flash": [0.15, 2.5 / 0.3, 0.1], // $0.30 / $2.50, cached $0.03
  "gemini-2.5-flash-lite": [0.05, 4, 0.1], // $0.10 / $0.40, cached $0.01
  "gemini-2.5-pro": [0.625, 8, 0.1], // $1.25 / $10, cached $0.125
  // DeepSeek
  "deepseek-chat": [0.14, 1.5, 0.1], // $0.28 / $0.42, cache hit $0.028
  "deepseek-reasoner": [0.14, 1.5, 0.1],
};

function column(i: 0 | 1 | 2): Readonly<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [name, row] of Object.entries(ROWS)) {
    const v = row[i];
    if (v !== undefined) out[name] = v;
  }
  return Object.freeze(out);
}

/** Default `model-ratio` setting: price multiplier per model (1 = $2 per 1M prompt tokens). */
export const DEFAULT_MODEL_RATIO = column(0);
/** Default `completion-ratio` setting: output price / input price, per model. */
export const DEFAULT_COMPLETION_RATIO = column(1);
/** Default `cache-ratio` setting: cached-input price / input price, per model (absent = 1). */
export const DEFAULT_CACHE_RATIO = column(2);
