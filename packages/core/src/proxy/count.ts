import type { TokenUsage } from "../billing/price.js";
import { countPromptTokens, tokenCounter } from "../billing/tokens.js";
import type { StreamedText } from "../formats/sse.js";
import type { WireFormatSpec } from "../formats/types.js";
import type { ProxyRequest } from "./types.js";

/** The lazily counted usage of a request, for when the upstream reports none. */
export interface LocalCount {
  /** Prompt tokens by the tokenizer; counted once, on first call. */
  promptTokens(): Promise<number>;
  /** Tokens of a model's output text (per choice), reasoning apart. */
  usage(text: StreamedText): Promise<TokenUsage>;
}

/** The local count of a request in the client's format `client`. */
export function localCount(req: ProxyRequest, client: WireFormatSpec): LocalCount {
  let prompt: Promise<number> | null = null;
  const promptTokens = () => {
    prompt ??= countPromptTokens(req.model, client.promptView(req));
    return prompt;
  };
  return {
    promptTokens,
    async usage(text) {
      const count = await tokenCounter(req.model);
      const inputTokens = await promptTokens();
      let reasoningTokens = 0;
      for (const t of text.reasoning) reasoningTokens += count(t);
      let outputTokens = reasoningTokens;
      for (const t of text.output) outputTokens += count(t);
      return {
        inputTokens,
        outputTokens,
        reasoningTokens,
        cachedTokens: 0,
        totalTokens: inputTokens + outputTokens,
      };
    },
  };
}
