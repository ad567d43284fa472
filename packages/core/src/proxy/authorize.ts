import { type Exchange, header } from "../exchange.js";
import { isLoopback, normalizeIp } from "../keys/ip.js";
import type { AuthorizedKey, KeyService } from "../keys/service.js";
import type { SettingsService } from "../settings/service.js";

/** What the authorize stage needs from the gateway. */
export interface AuthorizeDeps {
  keys: KeyService;
  settings: SettingsService;
  /** The client's address (the trusted proxy chain resolved). */
  clientIp(ex: Exchange): string;
  /** The internal key of loopback clients under `allow-localhost-unauthenticated`. */
  localhostKey: LocalhostKey;
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
 * The authorize stage: the downstream key of a proxy request, checked (status, expiry, IP
 * allowlist, owner). With the `allow-localhost-unauthenticated` setting on (CLIProxyAPI's), a
 * client whose direct peer is loopback and that sends no key is served under an internal
 * unlimited key, so that its usage is still recorded. `X-Forwarded-For` never makes a request
 * local: a request relayed by a trusted proxy is local only when the client it names is
 * loopback too (a remote or unreadable chain is not).
 *
 * Dialect routes call it before they read the body, so that a bad key is refused first.
 */
export async function authorizeClient(deps: AuthorizeDeps, ex: Exchange): Promise<AuthorizedKey> {
  const presented = presentedKey(ex);
  if (
    presented === undefined &&
    deps.settings.get("allow-localhost-unauthenticated") === true &&
    isLoopback(normalizeIp(ex.remoteAddress)) &&
    isLoopback(deps.clientIp(ex))
  ) {
    try {
      return await deps.keys.authorize(await deps.localhostKey.value(), { ip: deps.clientIp(ex) });
    } catch (error) {
      // The internal key was deleted behind our back: make a new one once.
      if ((error as { code?: string }).code !== "INVALID_API_KEY") throw error;
      deps.localhostKey.forget();
      return deps.keys.authorize(await deps.localhostKey.value(), { ip: deps.clientIp(ex) });
    }
  }
  return deps.keys.authorize(presented, { ip: deps.clientIp(ex) });
}

/**
 * The internal localhost key of one gateway: found or created on first use, its plain value
 * cached (one object per gateway, built by `createGateway`).
 */
export class LocalhostKey {
  readonly #keys: KeyService;
  #plain: Promise<string> | null = null;

  constructor(keys: KeyService) {
    this.#keys = keys;
  }

  /** The key's plain value: found by name, else created (unlimited quota, no owner). */
  value(): Promise<string> {
    if (!this.#plain) {
      const keys = this.#keys;
      const p = (async () => {
        const found = (await keys.list({ keyword: LOCALHOST_KEY_NAME, limit: 100 })).items.find(
          (k) => k.name === LOCALHOST_KEY_NAME && k.userId === null,
        );
        const plain = found ? await keys.reveal(found.id) : null;
        return plain ?? (await keys.create({ name: LOCALHOST_KEY_NAME, unlimitedQuota: true })).key;
      })();
      this.#plain = p;
      p.catch(() => {
        this.#plain = null;
      });
    }
    return this.#plain;
  }

  /** Forgets the cached value (the key was deleted): the next use finds or creates it again. */
  forget(): void {
    this.#plain = null;
  }
}
