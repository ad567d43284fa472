import { GatewayError, isGatewayError } from "../../errors.js";
import { type Exchange, header, json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import { authorizeClient } from "../../proxy/authorize.js";
import { proxyRequest } from "../../proxy/index.js";
import { checkStreamFlag, type ProxyDialectDeps, readProxyBody } from "../proxy-common.js";
import { billingRoutes } from "./billing.js";

/** OpenAI's error `type` for each of our codes. */
function errorType(e: GatewayError): string {
  if (e.status === 401) return "invalid_request_error";
  if (e.code === "RATE_LIMIT_EXCEEDED")
    return /\btokens?\b/.test(e.message) ? "tokens" : "requests";
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

/** Context the OpenAI dialect needs. */
export type OpenAIDialectDeps = ProxyDialectDeps;

const INVALID_JSON =
  "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)";

/** One OpenAI proxy route: the field that must be present besides `model`, and the upstream path. */
interface OpenAIRoute {
  path: string;
  required: string;
  check(value: unknown): boolean;
  upstream?: "completions" | "embeddings";
  /** The client's wire format. @default "openai" */
  format?: "openai" | "responses";
  /** Streams are possible on this route. */
  streams: boolean;
}

const ROUTES: OpenAIRoute[] = [
  {
    path: "/v1/chat/completions",
    required: "messages",
    check: Array.isArray,
    streams: true,
  },
  {
    path: "/v1/completions",
    required: "prompt",
    check: (v) => typeof v === "string" || Array.isArray(v),
    upstream: "completions",
    streams: true,
  },
  {
    path: "/v1/embeddings",
    required: "input",
    check: (v) => typeof v === "string" || Array.isArray(v),
    upstream: "embeddings",
    streams: false,
  },
  {
    path: "/v1/responses",
    required: "input",
    check: (v) => typeof v === "string" || Array.isArray(v),
    format: "responses",
    streams: true,
  },
];

function proxyRoute(deps: OpenAIDialectDeps, r: OpenAIRoute): Route {
  const route = `POST ${r.path}`;
  return {
    method: "POST",
    path: r.path,
    onError: openaiError,
    async handle(ex) {
      const auth = await authorizeClient(deps, ex);
      const { raw, body } = await readProxyBody(ex, deps.maxBodyBytes, INVALID_JSON);
      const model = body.model;
      if (typeof model !== "string" || model.length === 0) {
        throw new GatewayError("MISSING_MODEL", "you must provide a model parameter");
      }
      // A Responses request may continue a stored conversation instead of sending input.
      const continues = r.format === "responses" && typeof body.previous_response_id === "string";
      if (!continues && !r.check(body[r.required])) {
        throw new GatewayError("INVALID_REQUEST", `Missing required parameter: '${r.required}'.`);
      }
      checkStreamFlag(body);
      deps.keys.checkModel(auth.key, model);
      return proxyRequest(deps, {
        exchange: ex,
        route,
        auth,
        body,
        rawBody: raw,
        model,
        stream: r.streams && body.stream === true,
        format: r.format ?? "openai",
        ...(r.upstream ? { openaiPath: r.upstream } : {}),
      });
    },
  };
}

/** Whether a `GET /v1/models` comes from an Anthropic client (it sends `anthropic-version`). */
function fromAnthropicClient(ex: Exchange): boolean {
  return header(ex.headers, "anthropic-version") !== undefined;
}

/**
 * The OpenAI-format proxy routes, `GET /v1/models` in OpenAI's or Anthropic's shape, and the
 * key's own balance at `/v1/dashboard/billing/*`.
 */
export function openaiRoutes(deps: OpenAIDialectDeps): Route[] {
  return [
    ...ROUTES.map((r) => proxyRoute(deps, r)),
    ...billingRoutes(deps),
    {
      method: "GET",
      path: "/v1/models",
      onError: openaiError,
      async handle(ex) {
        const { key, user } = await authorizeClient(deps, ex);
        const ids = [...deps.pool.models((user?.group ?? key.group) || "default")]
          .filter(([id]) => !key.modelLimitsEnabled || key.modelLimits.includes(id))
          .sort(([a], [b]) => a.localeCompare(b));
        if (fromAnthropicClient(ex)) {
          const data = ids.map(([id]) => ({
            type: "model",
            id,
            display_name: id,
            created_at: new Date(0).toISOString(),
          }));
          return json(200, {
            data,
            has_more: false,
            first_id: data[0]?.id ?? null,
            last_id: data.at(-1)?.id ?? null,
          });
        }
        const created = Math.floor(Date.now() / 1000);
        const data = ids.map(([id, providers]) => ({
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
