import { GatewayError } from "../errors.js";
import { type Exchange, readJsonObjectBody } from "../exchange.js";
import type { AuthorizeDeps } from "../proxy/authorize.js";
import type { ProxyDeps } from "../proxy/types.js";

/** Context the proxy dialects (OpenAI, Anthropic, Gemini) need. */
export interface ProxyDialectDeps extends ProxyDeps, AuthorizeDeps {
  maxBodyBytes: number;
}

/** Parses a JSON object body or throws a 400 worded for the dialect. */
export function readProxyBody(
  ex: Exchange,
  limit: number,
  invalidJson: string,
): Promise<{ raw: Buffer; body: Record<string, unknown> }> {
  return readJsonObjectBody(ex, limit, (reason) =>
    reason === "invalid_json"
      ? new GatewayError("INVALID_JSON", invalidJson)
      : new GatewayError("INVALID_REQUEST", "The request body must be a JSON object."),
  );
}

/** Throws the dialect's 400 unless `stream` is absent or a boolean. */
export function checkStreamFlag(body: Record<string, unknown>): void {
  if (body.stream !== undefined && typeof body.stream !== "boolean") {
    throw new GatewayError("INVALID_REQUEST", "Invalid type for 'stream': expected a boolean.");
  }
}
