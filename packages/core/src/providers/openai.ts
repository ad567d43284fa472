import type { CredentialRecord } from "../store/types.js";
import { openaiUsageOf } from "../translate/openai.js";
import type { UpstreamAdapter } from "./types.js";

export { findUsageObject } from "../formats/openai.js";

const urlCache = new Map<string, URL>();

/** The OpenAI wire format: URLs, auth headers and usage. */
export const openaiProvider = {
  id: "openai",

  /** `{baseUrl}/{path}`, tolerating a trailing slash on the base; parsed once per pair. */
  url(baseUrl: string, path: string): URL {
    const k = `${baseUrl}\n${path}`;
    let u = urlCache.get(k);
    if (!u) {
      u = new URL(`${baseUrl.replace(/\/+$/, "")}/${path.replace(/^\/+/, "")}`);
      if (urlCache.size > 1000) urlCache.clear();
      urlCache.set(k, u);
    }
    return u;
  },

  /** Headers that authenticate a credential upstream. */
  authHeaders(c: CredentialRecord): Record<string, string> {
    const token = c.secret.apiKey ?? c.secret.accessToken ?? "";
    return { authorization: `Bearer ${token}` };
  },

  /** Maps an OpenAI `usage` object to {@link TokenUsage}; null when it is not one. */
  usage: openaiUsageOf,
};

/**
 * The headers of an OpenAI-API call with a credential: JSON in, JSON or SSE out, the
 * credential's own headers, its bearer token (and a Codex OAuth account's `chatgpt-account-id`).
 */
export function openaiHeaders(c: CredentialRecord, stream: boolean): Record<string, string> {
  return {
    "content-type": "application/json",
    accept: stream ? "text/event-stream" : "application/json",
    ...c.headers,
    ...codexHeaders(c),
    ...openaiProvider.authHeaders(c),
  };
}

/** The `chatgpt-account-id` a Codex OAuth account sends (from its token's account id). */
function codexHeaders(c: CredentialRecord): Record<string, string> | undefined {
  if (c.provider !== "codex" || c.kind !== "oauth") return undefined;
  const account = c.secret.extra?.account_id ?? c.secret.extra?.accountId;
  return account ? { "chatgpt-account-id": account } : undefined;
}

/** OpenAI Chat Completions (`POST {base}/chat/completions`), also spoken by Qwen and compatible APIs. */
export const openaiAdapter: UpstreamAdapter = {
  format: "openai",
  call: (c, _model, stream) => ({
    url: openaiProvider.url(c.baseUrl, "chat/completions"),
    headers: openaiHeaders(c, stream),
  }),
};

/**
 * The OpenAI Responses API (`POST {base}/responses`): Codex accounts (API key or ChatGPT OAuth),
 * and OpenAI's own API when a Responses client calls it.
 */
export const responsesAdapter: UpstreamAdapter = {
  format: "responses",
  call: (c, _model, stream) => ({
    url: openaiProvider.url(c.baseUrl, "responses"),
    headers: openaiHeaders(c, stream),
  }),
};
