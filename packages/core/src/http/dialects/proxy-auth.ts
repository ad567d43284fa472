import { GatewayError } from "../../errors.js";
import { type Exchange, header, readJsonObjectBody } from "../../exchange.js";
import { isLoopback, normalizeIp } from "../../keys/ip.js";
import type { AuthorizedKey, KeyService } from "../../keys/service.js";
import type { ProxyDeps } from "../../proxy/chat.js";

/** Context the proxy dialects (OpenAI, Anthropic, Gemini) need. */
export interface ProxyDialectDeps extends ProxyDeps {
  keys: KeyService;
  maxBodyBytes: number;
  clientIp(ex: Exchange): string;
}

/** The bearer token of a request (OpenAI clients send `Authorization: Bearer sk-...`). */
export function bearer(ex: Exchange): string | undefined {
  const auth = header(ex.headers, "authorization");
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, "").trim() || undefined;
  return undefined;
}

/**
 * The downstream key a client presented, the way each format's clients send it:
 * `Authorization: Bearer` (OpenAI, Anthropic OAuth-style clients), `x-api-key` (Anthropic),
 * `x-goog-api-key` or the `key` query parameter (Gemini).
 */
export function presentedKey(ex: Exchange): string | undefined {
  const b = bearer(ex);
  if (b) return b;
  const k = header(ex.headers, "x-api-key") ?? header(ex.headers, "x-goog-api-key");
  if (k?.trim()) return k.trim();
  if (ex.search.includes("key=")) {
    const q = new URLSearchParams(ex.search).get("key");
    if (q) return q;
  }
  return undefined;
}

/** Name of the internal key that serves loopback clients under `allow-localhost-unauthenticated`. */
export const LOCALHOST_KEY_NAME = "localhost-unauthenticated";

/**
 * The downstream key of a proxy request. With the `allow-localhost-unauthenticated` setting on
 * (CLIProxyAPI's), a client whose direct peer is loopback and that sends no key is served under
 * an internal unlimited key, so that its usage is still recorded. `X-Forwarded-For` never makes
 * a request local: a request relayed by a trusted proxy is local only when the client it names
 * is loopback too (a remote or unreadable chain is not).
 */
export async function authorizeClient(
  deps: ProxyDialectDeps,
  ex: Exchange,
): Promise<AuthorizedKey> {
  const presented = presentedKey(ex);
  if (
    presented === undefined &&
    deps.settings.get("allow-localhost-unauthenticated") === true &&
    isLoopback(normalizeIp(ex.remoteAddress)) &&
    isLoopback(deps.clientIp(ex))
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
function localhostKey(deps: ProxyDialectDeps): Promise<string> {
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
