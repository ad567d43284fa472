import { countPromptTokens } from "../../billing/tokens.js";
import { GatewayError, isGatewayError } from "../../errors.js";
import { type Exchange, json, type Reply } from "../../exchange.js";
import { googleStatus } from "../../formats/gemini.js";
import { formatOf, translateRequestBody } from "../../formats/registry.js";
import type { Route } from "../../http/router.js";
import { authorizeClient } from "../../proxy/authorize.js";
import { proxyRequest, requireServed } from "../../proxy/index.js";
import { type ProxyDialectDeps, readProxyBody } from "../proxy-common.js";

/** Renders any error as Google's: `{ error: { code, message, status } }`. */
export function geminiError(error: unknown): Reply {
  const e = isGatewayError(error) ? error : new GatewayError("INTERNAL", "internal error");
  return json(e.status, {
    error: { code: e.status, message: e.message, status: googleStatus(e.status) },
  });
}

const INVALID_JSON = "Invalid JSON payload received.";

/** `gemini-2.5-flash:generateContent` → model and method; the model may carry a `models/` prefix. */
function splitTarget(target: string): { model: string; method: string } {
  const at = target.lastIndexOf(":");
  if (at <= 0)
    throw new GatewayError("NOT_FOUND", `Invalid URL: the method of ${target} is missing.`);
  return { model: target.slice(0, at).replace(/^models\//, ""), method: target.slice(at + 1) };
}

/**
 * The Gemini-format proxy routes (Generative Language API paths, `v1beta` and `v1`):
 * `POST /v1beta/models/{model}:generateContent`, `:streamGenerateContent` (`?alt=sse` for SSE,
 * else one streamed JSON array), `:countTokens`, and `GET /v1beta/models`.
 */
export function geminiRoutes(deps: ProxyDialectDeps): Route[] {
  const generate: Route["handle"] = async (ex, params) => {
    const { model, method } = splitTarget(params.target ?? "");
    const auth = await authorizeClient(deps, ex);
    const { raw, body } = await readProxyBody(ex, deps.maxBodyBytes, INVALID_JSON);
    if (
      method !== "generateContent" &&
      method !== "streamGenerateContent" &&
      method !== "countTokens"
    ) {
      throw new GatewayError("NOT_FOUND", `Method ${method} is not supported.`);
    }
    // `countTokens` also takes `{ generateContentRequest: { contents, ... } }`.
    const gcr = body.generateContentRequest;
    const request =
      method === "countTokens" && gcr && typeof gcr === "object" && !Array.isArray(gcr)
        ? (gcr as Record<string, unknown>)
        : body;
    if (!Array.isArray(request.contents)) {
      throw new GatewayError(
        "INVALID_REQUEST",
        "* GenerateContentRequest.contents: contents is not specified",
      );
    }
    deps.keys.checkModel(auth.key, model);
    // Usage records name the root the client called (`/v1beta` or `/v1`).
    const route = `POST ${ex.path.startsWith("/v1beta/") ? "/v1beta" : "/v1"}/models/{model}:${method}`;
    if (method === "countTokens") {
      requireServed(deps, model, auth.user?.group ?? auth.key.group, route);
      const openai = translateRequestBody(formatOf("gemini"), formatOf("openai"), request, {
        model,
        stream: false,
      });
      return json(200, { totalTokens: await countPromptTokens(model, openai) });
    }
    const stream = method === "streamGenerateContent";
    return proxyRequest(deps, {
      exchange: ex,
      route,
      auth,
      body,
      rawBody: raw,
      model,
      stream,
      format: "gemini",
      sse: new URLSearchParams(ex.search).get("alt") === "sse",
    });
  };
  const visibleModels = async (ex: Exchange) => {
    const { key, user } = await authorizeClient(deps, ex);
    return [...deps.pool.models((user?.group ?? key.group) || "default")]
      .filter(([id]) => !key.modelLimitsEnabled || key.modelLimits.includes(id))
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([id]) => ({
        name: `models/${id}`,
        version: "001",
        displayName: id,
        supportedGenerationMethods: ["generateContent", "streamGenerateContent", "countTokens"],
      }));
  };
  const listModels: Route["handle"] = async (ex) => json(200, { models: await visibleModels(ex) });
  const getModel: Route["handle"] = async (ex, params) => {
    const id = (params.target ?? "").replace(/^models\//, "");
    const found = (await visibleModels(ex)).find((m) => m.name === `models/${id}`);
    if (!found) throw new GatewayError("NOT_FOUND", `models/${id} is not found.`);
    return json(200, found);
  };
  return ["/v1beta", "/v1"].flatMap((root): Route[] => [
    { method: "POST", path: `${root}/models/:target`, onError: geminiError, handle: generate },
    ...(root === "/v1beta"
      ? [
          { method: "GET", path: `${root}/models`, onError: geminiError, handle: listModels },
          { method: "GET", path: `${root}/models/:target`, onError: geminiError, handle: getModel },
        ]
      : []),
  ]);
}
