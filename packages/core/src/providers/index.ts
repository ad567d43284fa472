import type { CredentialRecord } from "../store/types.js";
import type { WireFormat } from "../translate/types.js";
import { anthropicAdapter } from "./anthropic.js";
import { codeAssistAdapter, geminiApiKeyAdapter } from "./gemini.js";
import { openaiAdapter, responsesAdapter } from "./openai.js";
import type { UpstreamAdapter } from "./types.js";

export type { UpstreamAdapter, UpstreamCall } from "./types.js";

const geminiCli = codeAssistAdapter("GeminiCLI/0.1.5 (tokenpool)");
const antigravity = codeAssistAdapter("antigravity/1.11.5 (tokenpool)");

/** Whether a base URL is OpenAI's own API (which also serves the Responses API). */
function isOpenAIApi(baseUrl: string): boolean {
  return /^https:\/\/api\.openai\.com(\/|$)/.test(baseUrl);
}

/**
 * The adapter that serves generation requests with a credential, by its provider and kind
 * (and, for OpenAI's own API, by what the client speaks: a Responses client is passed through to
 * `/responses` there, while OpenAI-compatible APIs get Chat Completions); null for providers that
 * cannot serve them (Gemini Web is a cookie session).
 */
export function adapterFor(c: CredentialRecord, clientFormat?: WireFormat): UpstreamAdapter | null {
  switch (c.provider) {
    case "openai":
      return clientFormat === "responses" && isOpenAIApi(c.baseUrl)
        ? responsesAdapter
        : openaiAdapter;
    case "qwen":
      return openaiAdapter;
    case "codex":
      return responsesAdapter;
    case "anthropic":
      return anthropicAdapter;
    case "gemini":
      return c.kind === "oauth" ? geminiCli : geminiApiKeyAdapter;
    case "antigravity":
      return antigravity;
    default:
      return null;
  }
}

/** Providers whose credentials serve chat-like generation in any of the four formats. */
export const GENERATION_PROVIDERS: readonly string[] = [
  "openai",
  "qwen",
  "anthropic",
  "gemini",
  "antigravity",
  "codex",
];

/** Providers that speak the OpenAI API itself (legacy completions, embeddings). */
export const OPENAI_API_PROVIDERS: readonly string[] = ["openai", "qwen"];
