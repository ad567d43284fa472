import type { CredentialRecord } from "../store/types.js";
import { anthropicAdapter } from "./anthropic.js";
import { codeAssistAdapter, geminiApiKeyAdapter } from "./gemini.js";
import { openaiAdapter } from "./openai.js";
import type { UpstreamAdapter } from "./types.js";

export type { UpstreamAdapter, UpstreamCall } from "./types.js";

const geminiCli = codeAssistAdapter("GeminiCLI/0.1.5 (tokenpool)");
const antigravity = codeAssistAdapter("antigravity/1.11.5 (tokenpool)");

/**
 * The adapter that serves generation requests with a credential, by its provider and kind;
 * null for providers that cannot serve them (Codex speaks only the Responses API, Gemini Web
 * is a cookie session).
 */
export function adapterFor(c: CredentialRecord): UpstreamAdapter | null {
  switch (c.provider) {
    case "openai":
    case "qwen":
      return openaiAdapter;
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

/** Providers whose credentials serve chat-like generation in any of the three formats. */
export const GENERATION_PROVIDERS: readonly string[] = [
  "openai",
  "qwen",
  "anthropic",
  "gemini",
  "antigravity",
];

/** Providers that speak the OpenAI API itself (legacy completions, embeddings). */
export const OPENAI_API_PROVIDERS: readonly string[] = ["openai", "qwen"];

/** Providers that serve the OpenAI Responses API (`POST {base}/responses`). */
export const RESPONSES_PROVIDERS: readonly string[] = ["openai", "codex"];
