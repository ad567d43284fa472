import { countPromptTokens } from "../../billing/tokens.js";
import { SecretMask } from "../../credentials/secret-mask.js";
import { GatewayError, isGatewayError } from "../../errors.js";
import { type Exchange, header, json, type Reply } from "../../exchange.js";
import { anthropicErrorType, withClientBeta } from "../../formats/anthropic.js";
import { formatOf, translateRequestBody } from "../../formats/registry.js";
import type { Route } from "../../http/router.js";
import type { AuthorizedKey } from "../../keys/service.js";
import {
  ANTHROPIC_VERSION,
  anthropicAuthHeaders,
  anthropicUrl,
} from "../../providers/anthropic.js";
import { authorizeClient } from "../../proxy/authorize.js";
import { proxyRequest, requireServed } from "../../proxy/index.js";
import { redactSecrets } from "../../util/secrets.js";
import { checkStreamFlag, type ProxyDialectDeps, readProxyBody } from "../proxy-common.js";

/** Renders any error as Anthropic's: `{ type: "error", error: { type, message } }`. */
export function anthropicError(error: unknown): Reply {
  const e = isGatewayError(error) ? error : new GatewayError("INTERNAL", "internal error");
  return json(e.status, {
    type: "error",
    error: { type: anthropicErrorType(e.status), message: e.message },
  });
}

const INVALID_JSON = "There was an error parsing the body of your request: invalid JSON.";

function requireModel(body: Record<string, unknown>): string {
  const model = body.model;
  if (typeof model !== "string" || model.length === 0) {
    throw new GatewayError("MISSING_MODEL", "model: Field required");
  }
  if (!Array.isArray(body.messages)) {
    throw new GatewayError("INVALID_REQUEST", "messages: Field required");
  }
  return model;
}

/**
 * Counts a Messages request's input tokens: asked of an Anthropic API-key credential when the
 * pool has one (its count is Anthropic's own), else with the local tokenizer.
 */
async function countTokens(
  deps: ProxyDialectDeps,
  ex: Exchange,
  auth: AuthorizedKey,
  model: string,
  raw: Buffer,
  body: Record<string, unknown>,
): Promise<Reply> {
  // Only the credentials the key may use, as for generation (its owner's group wins).
  const group = (auth.user?.group ?? auth.key.group) || "default";
  const pick = deps.pool.pick(model, { providers: ["anthropic"], group });
  const c = pick?.credential;
  if (c && (c.kind === "api-key" || (c.secret.expiresAt ?? 0) > Date.now() + 60_000)) {
    try {
      const res = await deps.upstream.request(anthropicUrl(c.baseUrl, "messages/count_tokens"), {
        method: "POST",
        headers: {
          "content-type": "application/json",
          "anthropic-version": header(ex.headers, "anthropic-version") ?? ANTHROPIC_VERSION,
          ...c.headers,
          ...withClientBeta(anthropicAuthHeaders(c), header(ex.headers, "anthropic-beta")),
        },
        body:
          pick.upstreamModel === model
            ? raw
            : JSON.stringify({ ...body, model: pick.upstreamModel }),
        signal: ex.signal,
        proxyUrl: c.proxyUrl || deps.settings.get("proxy-url"),
      });
      // An upstream may quote our credential back (in an error, or anywhere): masked by value.
      const mask = new SecretMask();
      mask.add(c);
      const text = mask.text(await res.body.text());
      if (res.statusCode === 200) {
        return { status: 200, headers: { "content-type": "application/json" }, body: text };
      }
      if (
        res.statusCode < 500 &&
        res.statusCode !== 429 &&
        res.statusCode !== 401 &&
        res.statusCode !== 403
      ) {
        return {
          status: res.statusCode,
          headers: { "content-type": "application/json" },
          body: redactSecrets(text),
        };
      }
    } catch {
      // fall back to counting locally
    }
  }
  const openai = translateRequestBody(formatOf("anthropic"), formatOf("openai"), body, {
    model,
    stream: false,
  });
  return json(200, { input_tokens: await countPromptTokens(model, openai) });
}

/** The Anthropic-format proxy routes: `POST /v1/messages` and `POST /v1/messages/count_tokens`. */
export function anthropicRoutes(deps: ProxyDialectDeps): Route[] {
  // What both routes check first, in this order: the key, the body, the model.
  const accept = async (ex: Exchange) => {
    const auth = await authorizeClient(deps, ex);
    const { raw, body } = await readProxyBody(ex, deps.maxBodyBytes, INVALID_JSON);
    return { auth, raw, body, model: requireModel(body) };
  };
  return [
    {
      method: "POST",
      path: "/v1/messages",
      onError: anthropicError,
      async handle(ex) {
        const { auth, raw, body, model } = await accept(ex);
        if (typeof body.max_tokens !== "number") {
          throw new GatewayError("INVALID_REQUEST", "max_tokens: Field required");
        }
        checkStreamFlag(body);
        deps.keys.checkModel(auth.key, model);
        return proxyRequest(deps, {
          exchange: ex,
          route: "POST /v1/messages",
          auth,
          body,
          rawBody: raw,
          model,
          stream: body.stream === true,
          format: "anthropic",
        });
      },
    },
    {
      method: "POST",
      path: "/v1/messages/count_tokens",
      onError: anthropicError,
      async handle(ex) {
        const { auth, raw, body, model } = await accept(ex);
        deps.keys.checkModel(auth.key, model);
        requireServed(
          deps,
          model,
          auth.user?.group ?? auth.key.group,
          "POST /v1/messages/count_tokens",
        );
        return countTokens(deps, ex, auth, model, raw, body);
      },
    },
  ];
}
