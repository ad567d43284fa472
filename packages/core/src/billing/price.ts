import type { SettingsService } from "../settings/service.js";
import type { TokenUsage } from "../store/types.js";

export type { TokenUsage };

/** Quota units per US dollar (new-api's convention). */
export const QUOTA_PER_USD = 500_000;

/** An all-zero usage. */
export const ZERO_USAGE: Readonly<TokenUsage> = Object.freeze({
  inputTokens: 0,
  outputTokens: 0,
  reasoningTokens: 0,
  cachedTokens: 0,
  totalTokens: 0,
});

function ratio(table: unknown, name: string, fallback = 1): number {
  if (typeof table !== "object" || table === null) return fallback;
  const t = table as Record<string, unknown>;
  const v = t[name] ?? t["*"];
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : fallback;
}

/**
 * Prices requests in quota units from the runtime price tables:
 * cost = (input + output × completion ratio) × model ratio × group ratio, rounded up.
 */
export class Billing {
  readonly #settings: SettingsService;
  readonly #defaultCompletion: number;

  constructor(settings: SettingsService, defaultCompletionTokens: number) {
    this.#settings = settings;
    this.#defaultCompletion = defaultCompletionTokens;
  }

  /** Cost in quota units of the given usage. */
  cost(
    model: string,
    group: string,
    usage: Pick<TokenUsage, "inputTokens" | "outputTokens">,
  ): number {
    const mr = ratio(this.#settings.get("model-ratio"), model);
    const cr = ratio(this.#settings.get("completion-ratio"), model);
    const gr = ratio(this.#settings.get("group-ratio"), group || "default");
    return Math.ceil((usage.inputTokens + usage.outputTokens * cr) * mr * gr);
  }

  /** What to reserve before forwarding: the estimated prompt plus the requested (or default) completion. */
  estimate(
    model: string,
    group: string,
    promptTokens: number,
    maxTokens: number | undefined,
  ): number {
    const completion =
      maxTokens !== undefined && maxTokens >= 0 ? maxTokens : this.#defaultCompletion;
    return this.cost(model, group, { inputTokens: promptTokens, outputTokens: completion });
  }
}

/**
 * A rough local token count of an OpenAI-style chat request (about 4 characters a token, plus a
 * few tokens per message). Used only to size the reservation before the upstream answers.
 */
export function estimatePromptTokens(body: Record<string, unknown>): number {
  let chars = 0;
  let messages = 0;
  const visit = (content: unknown) => {
    if (typeof content === "string") chars += content.length;
    else if (Array.isArray(content)) {
      for (const part of content) {
        if (
          part &&
          typeof part === "object" &&
          typeof (part as { text?: unknown }).text === "string"
        ) {
          chars += (part as { text: string }).text.length;
        }
      }
    }
  };
  if (Array.isArray(body.messages)) {
    for (const m of body.messages) {
      messages++;
      if (m && typeof m === "object") visit((m as { content?: unknown }).content);
    }
  }
  if (body.prompt !== undefined) visit(body.prompt);
  return Math.ceil(chars / 4) + messages * 4;
}
