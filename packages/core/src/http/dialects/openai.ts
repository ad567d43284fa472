import type { CredentialPool } from "../../credentials/pool.js";
import { GatewayError, isGatewayError } from "../../errors.js";
import { normalizeIp } from "../../keys/ip.js";
import type { KeyService } from "../../keys/service.js";
import { type ProxyDeps, proxyChat } from "../../proxy/chat.js";
import { type Exchange, header, json, type Reply, readJsonObjectBody } from "../exchange.js";
import type { Route } from "../router.js";
import { isLoopback } from "./management/auth.js";

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

/** Name of the internal key that serves loopback clients under `allow-localhost-unauthenticated`. */
export const LOCALHOST_KEY_NAME = "localhost-unauthenticated";

/**
 * The downstream key of a proxy request. With the `allow-localhost-unauthenticated` setting on
 * (CLIProxyAPI's), a client whose direct peer is loopback and that sends no key is served under
 * an internal unlimited key, so that its usage is still recorded. `X-Forwarded-For` never counts:
 * a request relayed from elsewhere is not local.
 */
async function authorizeClient(deps: OpenAIDialectDeps, ex: Exchange) {
  const presented = bearer(ex);
  if (
    presented === undefined &&
    deps.settings.get("allow-localhost-unauthenticated") === true &&
    isLoopback(normalizeIp(ex.remoteAddress))
  ) {
    try {
      return await deps.keys.authorize(await localhostKey(deps), { ip: deps.clientIp(ex) });
    } catch (error) {
      // The internal key was deleted behind our back: make a new one once.
      if ((error as { code?: string }).code !== "INVALID_API_KEY") throw error;
      localKeys.delete(deps.keys);
      return deps.keys.authorize(await localhostKey(deps), { ip: deps.clientIp(ex) });
    }
  }
  return deps.keys.authorize(presented, { ip: deps.clientIp(ex) });
}

/** The internal localhost key's plain value, per gateway (its KeyService). */
const localKeys = new WeakMap<KeyService, Promise<string>>();

/** Finds or creates the internal localhost key and returns its plain value (cached per gateway). */
function localhostKey(deps: OpenAIDialectDeps): Promise<string> {
  let p = localKeys.get(deps.keys);
  if (!p) {
    p = (async () => {
      const found = (await deps.keys.list({ keyword: LOCALHOST_KEY_NAME, limit: 100 })).items.find(
        (k) => k.name === LOCALHOST_KEY_NAME && k.userId === null,
      );
      const plain = found ? await deps.keys.reveal(found.id) : null;
      return (
        plain ?? (await deps.keys.create({ name: LOCALHOST_KEY_NAME, unlimitedQuota: true })).key
      );
    })();
    localKeys.set(deps.keys, p);
    p.catch(() => localKeys.delete(deps.keys));
  }
  return p;
}

/** Parses a JSON object body or throws the dialect's 400. */
export function readJsonObject(
  ex: Exchange,
  limit: number,
): Promise<{ raw: Buffer; body: Record<string, unknown> }> {
  return readJsonObjectBody(ex, limit, (reason) =>
    reason === "invalid_json"
      ? new GatewayError(
          "INVALID_JSON",
          "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload.)",
        )
      : new GatewayError("INVALID_REQUEST", "The request body must be a JSON object."),
  );
}

/** The OpenAI-format proxy routes. */
export function openaiRoutes(deps: OpenAIDialectDeps): Route[] {
  return [
    {
      method: "POST",
      path: "/v1/chat/completions",
      onError: openaiError,
      async handle(ex) {
        const auth = await authorizeClient(deps, ex);
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
        const { key } = await authorizeClient(deps, ex);
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
