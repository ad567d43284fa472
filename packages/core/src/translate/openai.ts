import type { TokenUsage } from "../store/types.js";

function count(v: unknown): number {
  return typeof v === "number" && Number.isFinite(v) && v >= 0 ? Math.floor(v) : 0;
}

/**
 * Maps an OpenAI `usage` object to {@link TokenUsage}: Chat Completions and legacy Completions
 * (`prompt_tokens`, `completion_tokens`, details), Embeddings (`prompt_tokens` only) and the
 * Responses API (`input_tokens`, `output_tokens`, details). Null when it is not one.
 */
export function openaiUsageOf(u: unknown): TokenUsage | null {
  if (!u || typeof u !== "object") return null;
  const o = u as Record<string, unknown>;
  const names =
    typeof o.prompt_tokens === "number" || typeof o.completion_tokens === "number"
      ? CHAT_USAGE
      : typeof o.input_tokens === "number" || typeof o.output_tokens === "number"
        ? RESPONSES_USAGE
        : null;
  if (names === null) return null;
  const inputTokens = count(o[names.input]);
  const outputTokens = count(o[names.output]);
  const inDetails = o[names.inputDetails] as Record<string, unknown> | undefined;
  const outDetails = o[names.outputDetails] as Record<string, unknown> | undefined;
  return {
    inputTokens,
    outputTokens,
    reasoningTokens: count(outDetails?.reasoning_tokens),
    cachedTokens: count(inDetails?.cached_tokens),
    totalTokens: count(o.total_tokens) || inputTokens + outputTokens,
  };
}

/** The field names of one of OpenAI's two usage shapes. */
interface UsageNames {
  input: string;
  output: string;
  inputDetails: string;
  outputDetails: string;
}

/** Chat Completions, legacy Completions and Embeddings. */
const CHAT_USAGE: UsageNames = {
  input: "prompt_tokens",
  output: "completion_tokens",
  inputDetails: "prompt_tokens_details",
  outputDetails: "completion_tokens_details",
};

/** The Responses API. */
const RESPONSES_USAGE: UsageNames = {
  input: "input_tokens",
  output: "output_tokens",
  inputDetails: "input_tokens_details",
  outputDetails: "output_tokens_details",
};

/** {@link TokenUsage} as a Chat Completions `usage` object, with both detail objects. */
export function chatUsage(u: TokenUsage): Record<string, unknown> {
  return {
    prompt_tokens: u.inputTokens,
    completion_tokens: u.outputTokens,
    total_tokens: u.totalTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens },
    completion_tokens_details: { reasoning_tokens: u.reasoningTokens },
  };
}

/** One Chat Completions stream chunk of choice `index` (the shape every translator emits). */
export function chatChunk(
  id: string,
  created: number,
  model: string,
  delta: Record<string, unknown>,
  finish: string | null = null,
  index = 0,
): { data: Record<string, unknown> } {
  return {
    data: {
      id: `chatcmpl-${id}`,
      object: "chat.completion.chunk",
      created,
      model,
      choices: [{ index, delta, logprobs: null, finish_reason: finish }],
    },
  };
}
