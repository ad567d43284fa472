import type { CredentialRecord } from "../store/types.js";
import { joinUrl, type UpstreamAdapter } from "./types.js";

/** The `anthropic-version` sent upstream when the client did not choose one. */
export const ANTHROPIC_VERSION = "2023-06-01";

/** The beta flag Anthropic requires for OAuth (Claude subscription) access tokens. */
export const ANTHROPIC_OAUTH_BETA = "oauth-2025-04-20";

const urls = new Map<string, URL>();

/** `{base}/v1/messages`, or `{base}/messages` when the base already ends in `/v1`. */
export function anthropicUrl(baseUrl: string, path = "messages"): URL {
  const k = `${baseUrl}\n${path}`;
  let u = urls.get(k);
  if (!u) {
    const base = baseUrl.replace(/\/+$/, "");
    u = new URL(joinUrl(/\/v1$/.test(base) ? base : `${base}/v1`, path));
    if (urls.size > 1000) urls.clear();
    urls.set(k, u);
  }
  return u;
}

/** Headers that authenticate a credential with Anthropic: `x-api-key`, or a bearer OAuth token. */
export function anthropicAuthHeaders(c: CredentialRecord): Record<string, string> {
  if (c.kind === "oauth") {
    return {
      authorization: `Bearer ${c.secret.accessToken ?? ""}`,
      "anthropic-beta": ANTHROPIC_OAUTH_BETA,
    };
  }
  return { "x-api-key": c.secret.apiKey ?? "" };
}

/** The Anthropic Messages API (`POST /v1/messages`). */
export const anthropicAdapter: UpstreamAdapter = {
  format: "anthropic",
  call(c, _model, stream) {
    return {
      url: anthropicUrl(c.baseUrl),
      headers: {
        "content-type": "application/json",
        accept: stream ? "text/event-stream" : "application/json",
        "anthropic-version": ANTHROPIC_VERSION,
        ...c.headers,
        ...anthropicAuthHeaders(c),
      },
    };
  },
};
