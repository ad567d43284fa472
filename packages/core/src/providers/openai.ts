import type { CredentialRecord } from "../store/types.js";
import { openaiUsageOf } from "../translate/openai.js";
import type { UpstreamAdapter } from "./types.js";

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
 * Finds the `"usage": {...}` object in a JSON body without parsing the whole body: the last
 * `"usage"` key, then a brace scan that respects strings. Falls back to a full parse.
 */
export function findUsageObject(body: Buffer): unknown {
  const at = body.lastIndexOf('"usage"');
  if (at >= 0) {
    const start = body.indexOf("{", at);
    const colon = body.indexOf(":", at);
    if (
      start > 0 &&
      colon > 0 &&
      colon < start &&
      body
        .subarray(colon + 1, start)
        .toString()
        .trim() === ""
    ) {
      let depth = 0;
      let inString = false;
      for (let i = start; i < body.length; i++) {
        const ch = body[i];
        if (inString) {
          if (ch === 0x5c) i++;
          else if (ch === 0x22) inString = false;
        } else if (ch === 0x22) inString = true;
        else if (ch === 0x7b) depth++;
        else if (ch === 0x7d && --depth === 0) {
          try {
            return JSON.parse(body.subarray(start, i + 1).toString("utf8"));
          } catch {
            break;
          }
        }
      }
    }
  }
  try {
    return (JSON.parse(body.toString("utf8")) as { usage?: unknown }).usage;
  } catch {
    return undefined;
  }
}

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
