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
  if (typeof o.prompt_tokens === "number" || typeof o.completion_tokens === "number") {
    return usageFields(
      o,
      o.prompt_tokens,
      o.completion_tokens,
      o.prompt_tokens_details,
      o.completion_tokens_details,
    );
  }
  if (typeof o.input_tokens === "number" || typeof o.output_tokens === "number") {
    return usageFields(
      o,
      o.input_tokens,
      o.output_tokens,
      o.input_tokens_details,
      o.output_tokens_details,
    );
  }
  return null;
}

/** A usage from one naming of OpenAI's fields (counts, their details objects, `total_tokens`). */
function usageFields(
  o: Record<string, unknown>,
  input: unknown,
  output: unknown,
  inputDetails: unknown,
  outputDetails: unknown,
): TokenUsage {
  const inputTokens = count(input);
  const outputTokens = count(output);
  const inDetails = inputDetails as Record<string, unknown> | undefined;
  const outDetails = outputDetails as Record<string, unknown> | undefined;
  return {
    inputTokens,
    outputTokens,
    reasoningTokens: count(outDetails?.reasoning_tokens),
    cachedTokens: count(inDetails?.cached_tokens),
    totalTokens: count(o.total_tokens) || inputTokens + outputTokens,
  };
}

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
