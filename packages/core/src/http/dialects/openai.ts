import type { CredentialPool } from "../../credentials/pool.js";
import { GatewayError, isGatewayError } from "../../errors.js";
import type { KeyService } from "../../keys/service.js";
import { type ProxyDeps, proxyChat } from "../../proxy/chat.js";
import { type Exchange, header, json, type Reply } from "../exchange.js";
import type { Route } from "../router.js";

/** OpenAI's error `type` for each of our codes. */
function errorType(e: GatewayError): string {
  if (e.status === 401) return "invalid_request_error";
  if (e.status === 429) return "insufficient_quota";
  if (e.status === 403) return "permission_error";
  if (e.status >= 500)
    return e.code === "NO_CREDENTIAL_AVAILABLE" ? "service_unavailable" : "api_error";
  return "invalid_request_error";
}

/** Renders any error as OpenAI's error object: `{ error: { message, type, param, code } }`. */
export function openaiError(error: unknown): Reply {
  const e = isGatewayError(error) ? error : new GatewayError("INTERNAL", "internal error");
  return json(e.status, {
    error: { message: e.message, type: errorType(e), param: null, code: e.code.toLowerCase() },
  });
}

/** The bearer token of a request (OpenAI clients send `Authorization: Bearer sk-...`). */
export function bearer(ex: Exchange): string | undefined {
  const auth = header(ex.headers, "authorization");
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, "").trim() || undefined;
  return undefined;
}

/** Context the OpenAI dialect needs. */
export interface OpenAIDialectDeps extends ProxyDeps {
  keys: KeyService;
  pool: CredentialPool;
  maxBodyBytes: number;
  clientIp(ex: Exchange): string;
}

/** Parses a JSON object body or throws the dialect's 400. */
export async function readJsonObject(
  ex: Exchange,
  limit: number,
): Promise<{ raw: Buffer; body: Record<string, unknown> }> {
  const raw = await ex.body(limit);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString("utf8"));
  } catch {
    throw new GatewayError(
      "INVALID_JSON",
      "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
    );
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new GatewayError("INVALID_REQUEST", "The request body must be a JSON object.");
  }
  return { raw, body: body as Record<string, unknown> };
}

/** The OpenAI-format proxy routes. */
export function openaiRoutes(deps: OpenAIDialectDeps): Route[] {
  return [
    {
      method: "POST",
      path: "/v1/chat/completions",
      onError: openaiError,
      async handle(ex) {
        const auth = await deps.keys.authorize(bearer(ex), { ip: deps.clientIp(ex) });
        const { raw, body } = await readJsonObject(ex, deps.maxBodyBytes);
        const model = body.model;
        if (typeof model !== "string" || model.length === 0) {
          throw new GatewayError("MISSING_MODEL", "you must provide a model parameter");
        }
        if (!Array.isArray(body.messages)) {
          throw new GatewayError("INVALID_REQUEST", "Missing required parameter: 'messages'.");
        }
        if (body.stream !== undefined && typeof body.stream !== "boolean") {
          throw new GatewayError(
            "INVALID_REQUEST",
            "Invalid type for 'stream': expected a boolean.",
          );
        }
        deps.keys.checkModel(auth.key, model);
        return proxyChat(deps, {
          exchange: ex,
          route: "POST /v1/chat/completions",
          auth,
          body,
          rawBody: raw,
          model,
          stream: body.stream === true,
        });
      },
    },
    {
      method: "GET",
      path: "/v1/models",
      onError: openaiError,
      async handle(ex) {
        const { key } = await deps.keys.authorize(bearer(ex), { ip: deps.clientIp(ex) });
        const created = Math.floor(Date.now() / 1000);
        const data = [...deps.pool.models()]
          .filter(([id]) => !key.modelLimitsEnabled || key.modelLimits.includes(id))
          .sort(([a], [b]) => a.localeCompare(b))
          .map(([id, providers]) => ({
            id,
            object: "model",
            created,
            owned_by: [...providers][0] ?? "tokenpool",
          }));
        return json(200, { object: "list", data });
      },
    },
  ];
}
