/**
 * The one way tokenpool calls an OAuth device or token endpoint (refreshes and logins alike):
 * a POST of form or JSON fields through the token endpoints' {@link UpstreamClient}, bounded by
 * a timeout, the whole answer read as text.
 *
 * @module
 */
import type { UpstreamClient } from "../net/upstream.js";

/** A device or token endpoint's answer: its HTTP status and its body as text. */
export interface TokenEndpointAnswer {
  status: number;
  text: string;
}

/**
 * POSTs `fields` to `url` (as `application/x-www-form-urlencoded` or JSON, asking for JSON) and
 * reads the whole answer, through `proxyUrl` when one is given (the `proxy-url` setting, or the
 * credential's own proxy), like proxied calls. Never throws for an HTTP status; throws for a
 * network error or when `timeoutMs` passes.
 *
 * @example
 * ```ts
 * const { status, text } = await postTokenEndpoint(http, new URL(tokenUrl), fields, "form", 30_000);
 * ```
 */
export async function postTokenEndpoint(
  http: UpstreamClient,
  url: URL,
  fields: Record<string, string>,
  format: "form" | "json",
  timeoutMs: number,
  proxyUrl = "",
): Promise<TokenEndpointAnswer> {
  const json = format === "json";
  const res = await http.request(url, {
    method: "POST",
    headers: {
      "content-type": json ? "application/json" : "application/x-www-form-urlencoded",
      accept: "application/json",
    },
    body: json ? JSON.stringify(fields) : new URLSearchParams(fields).toString(),
    signal: AbortSignal.timeout(timeoutMs),
    ...(proxyUrl ? { proxyUrl } : {}),
  });
  return { status: res.statusCode, text: await res.body.text() };
}
