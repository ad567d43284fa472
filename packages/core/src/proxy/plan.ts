import type { PickOptions } from "../credentials/pool.js";
import { GatewayError } from "../errors.js";
import { header } from "../exchange.js";
import { openaiFormat } from "../formats/openai.js";
import { translateRequestBody, upstreamFormatOf } from "../formats/registry.js";
import type { WireFormatSpec } from "../formats/types.js";
import { adapterFor, GENERATION_PROVIDERS, OPENAI_API_PROVIDERS } from "../providers/index.js";
import { openaiHeaders, openaiProvider } from "../providers/openai.js";
import type { CredentialRecord } from "../store/types.js";
import type { Json } from "../translate/types.js";
import type { ProxyDeps, ProxyRequest, RequestContext } from "./types.js";

/** How one attempt talks to its upstream. */
export interface CallPlan {
  url: URL;
  headers: Record<string, string>;
  body: Buffer | string;
  /** The upstream's wire format (Code Assist when its answers come in an envelope). */
  upstream: WireFormatSpec;
  /** Client and upstream speak the same format with no envelope: bytes are relayed as they are. */
  passthrough: boolean;
}

/** Request bodies already translated for this request, by target format and upstream model. */
export type Translations = Map<string, Json>;

/**
 * The plan stage: the call for one credential — its adapter's URL and headers, and the body in
 * its format (passed through, spliced, or translated from the client's format and cached for
 * failover). Null when the credential's provider cannot serve the request.
 */
export function planCall(
  deps: ProxyDeps,
  ctx: RequestContext,
  c: CredentialRecord,
  upstreamModel: string,
  model: string,
  translations: Translations,
): CallPlan | null {
  const { req, client, includeUsage } = ctx;
  if (req.openaiPath) {
    return {
      url: openaiProvider.url(c.baseUrl, req.openaiPath),
      headers: openaiHeaders(c, req.stream),
      body: openaiFormat.sameFormatBody(req, upstreamModel, includeUsage),
      upstream: openaiFormat,
      passthrough: true,
    };
  }
  const adapter = adapterFor(c, req.format);
  if (!adapter) return null;
  const { url, headers } = adapter.call(c, upstreamModel, req.stream);
  const upstream = upstreamFormatOf(adapter);
  const same = upstream.name === client.name;
  let body: Buffer | string;
  if (same && !upstream.wrapped) body = client.sameFormatBody(req, upstreamModel, includeUsage);
  else {
    const k = `${upstream.name}\n${upstreamModel}`;
    let translated = translations.get(k);
    if (!translated) {
      translated = translateRequestBody(client, upstream, req.body, {
        model: upstreamModel,
        stream: req.stream,
      });
      translations.set(k, translated);
    }
    body = JSON.stringify(
      upstream.wrapRequest
        ? upstream.wrapRequest(
            translated,
            upstreamModel,
            deps.pool.projectFor(c.id, model) ?? c.secret.extra?.project_id,
          )
        : translated,
    );
  }
  if (same) client.carryHeaders(req.exchange.headers, headers);
  const passthrough = same && !upstream.wrapped && !client.jsonArray(req.stream, req.sse);
  return { url, headers, body, upstream, passthrough };
}

/** The providers that can serve a request. */
export function providersFor(req: ProxyRequest): readonly string[] {
  if (req.openaiPath) return OPENAI_API_PROVIDERS;
  return GENERATION_PROVIDERS;
}

/**
 * The session key a client sent (header `x-session-id`, else the OpenAI body field `user`):
 * the pool keeps a session on the same credential while it is healthy.
 */
export function sessionKeyOf(req: ProxyRequest): string | undefined {
  const h = header(req.exchange.headers, "x-session-id");
  if (h) return h.slice(0, 200);
  const u = req.body.user ?? (req.body.metadata as Json | undefined)?.user_id;
  return typeof u === "string" && u !== "" ? u.slice(0, 200) : undefined;
}

/** The pool's pick options for one attempt. */
export function pickOptions(
  exclude: ReadonlySet<string>,
  group: string,
  sessionKey: string | undefined,
  providers: readonly string[],
): PickOptions {
  const opts: PickOptions = { exclude, group, providers };
  if (sessionKey !== undefined) opts.sessionKey = sessionKey;
  return opts;
}

/**
 * The 404 for a model that no credential serves in the caller's group — OpenAI's
 * `model_not_found` (Anthropic's `not_found_error`, Google's `NOT_FOUND`), which clients do not
 * retry; logged at info, as a client's mistake. A model served only in another group is the same
 * 404, as new-api answers it (`model_not_found`: no channel for the model in the key's group).
 */
export function modelNotFound(
  deps: Pick<ProxyDeps, "logger">,
  model: string,
  group: string,
  route: string,
): GatewayError {
  const name = model.length > 200 ? `${model.slice(0, 200)}…` : model;
  deps.logger.info("model not served", { route, model: name, group });
  return new GatewayError(
    "MODEL_NOT_FOUND",
    `The model \`${name}\` does not exist or you do not have access to it: no upstream credential serves it in the group \`${group}\`.`,
  );
}

/**
 * Throws {@link modelNotFound} unless a credential of the generation providers serves `model`
 * in `group` (in any state): for the routes that answer without calling upstream
 * (`count_tokens`, `countTokens`).
 */
export function requireServed(deps: ProxyDeps, model: string, group: string, route: string): void {
  const g = group || "default";
  if (!deps.pool.isServed(model, { group: g, providers: GENERATION_PROVIDERS }))
    throw modelNotFound(deps, model, g, route);
}
