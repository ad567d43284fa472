/**
 * OAuth refresh of upstream credentials (`kind: "oauth"`): before expiry, once after an upstream
 * 401/403, and in the background for credentials approaching expiry.
 *
 * A refresh token must never be sent twice: many providers rotate it on use (the old one stops
 * working), and some revoke the whole grant when they see an old one again. So there is exactly
 * one refresh per credential at a time:
 *
 * - in a process, by single flight: concurrent callers await the same promise;
 * - across instances sharing a store, by the store's lock `refresh:<id>`: an instance that does
 *   not get it polls the store until the holder has written the new access token (or the lock
 *   expires and it may take over);
 * - and before any call to the token endpoint, under the lock, the credential is read again from
 *   the store: if another caller already replaced the token that failed (or the expiry moved
 *   out of the margin), that result is used and nothing is sent.
 *
 * @module
 */
import PQueue from "p-queue";
import type { GatewayEmitter } from "../events.js";
import type { Logger } from "../logger.js";
import type { UpstreamClient } from "../net/upstream.js";
import {
  type CredentialRecord,
  type CredentialSecret,
  REFRESH_LOCK_PREFIX,
  type Store,
} from "../store/types.js";
import { redactSecrets } from "../util/secrets.js";
import { postTokenEndpoint } from "./token-endpoint.js";

/** How one provider's token endpoint refreshes an access token (`grant_type=refresh_token`). */
export interface OAuthProviderConfig {
  /** The token endpoint. */
  tokenUrl: string;
  /** The OAuth client id sent with every refresh. */
  clientId: string;
  /** The client secret, for providers whose installed-app clients have one (Google). */
  clientSecret?: string;
  /**
   * Scopes sent as `scope` with a refresh request; empty = none sent (the grant's scopes apply).
   * @default []
   */
  scopes?: string[];
  /**
   * How the refresh request body is encoded.
   * @default "form" (application/x-www-form-urlencoded, RFC 6749)
   */
  bodyFormat?: "form" | "json";
  /**
   * The authorization endpoint of a management login (authorization code flow with PKCE);
   * see `credentials/oauth-login.ts` for the defaults.
   */
  authorizeUrl?: string;
  /** The `redirect_uri` of a management login (the one registered for the client). */
  redirectUri?: string;
  /** The device authorization endpoint of a management login (device flow, Qwen). */
  deviceCodeUrl?: string;
}

// Google's installed-application clients of the Antigravity IDE and of the open-source
// gemini-cli. Google documents that such a client secret "is obviously not treated as a
// secret"; the systems of the seeds (antigravity2api, CLIProxyAPI) embed the same values.
const ANTIGRAVITY_CLIENT = {
  clientId: "1071006060591-tmhssin2h21lcre235vtolojh4g403ep.apps.googleusercontent.com",
  clientSecret: "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",
};
const GEMINI_CLI_CLIENT = {
  clientId: "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com",
  clientSecret: "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",
};
const GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token";
const CLAUDE_CLIENT: OAuthProviderConfig = {
  tokenUrl: "https://console.anthropic.com/v1/oauth/token",
  clientId: "9d1c250a-e61b-44d9-88ed-5944d1962f5e",
  bodyFormat: "json",
};

/**
 * The token endpoints and public clients used by default, by credential provider (or by
 * `secret.extra.oauthProvider` when set). These are the clients of the tools whose accounts the
 * seeds' systems pool:
 *
 * | provider | token endpoint | client |
 * | --- | --- | --- |
 * | `antigravity` | `https://oauth2.googleapis.com/token` | the Antigravity IDE's Google client |
 * | `gemini`, `gemini-cli` | `https://oauth2.googleapis.com/token` | gemini-cli's Google client |
 * | `anthropic`, `claude` | `https://console.anthropic.com/v1/oauth/token` (JSON body) | Claude Code's client |
 * | `codex` | `https://auth.openai.com/oauth/token` (scope `openid profile email`) | Codex CLI's client |
 * | `qwen` | `https://chat.qwen.ai/api/v1/oauth2/token` | Qwen Code's client |
 *
 * Override any field per provider with the gateway option `oauth.providers`, or per credential
 * with `secret.extra.tokenUrl` / `clientId` / `clientSecret` / `scopes` (space-separated).
 */
export const DEFAULT_OAUTH_PROVIDERS: Readonly<Record<string, Readonly<OAuthProviderConfig>>> =
  Object.freeze({
    antigravity: { tokenUrl: GOOGLE_TOKEN_URL, ...ANTIGRAVITY_CLIENT },
    gemini: { tokenUrl: GOOGLE_TOKEN_URL, ...GEMINI_CLI_CLIENT },
    "gemini-cli": { tokenUrl: GOOGLE_TOKEN_URL, ...GEMINI_CLI_CLIENT },
    anthropic: CLAUDE_CLIENT,
    claude: CLAUDE_CLIENT,
    codex: {
      tokenUrl: "https://auth.openai.com/oauth/token",
      clientId: "app_EMoamEEZ73f0CkXaXp7hrann",
      scopes: ["openid", "profile", "email"],
    },
    qwen: {
      tokenUrl: "https://chat.qwen.ai/api/v1/oauth2/token",
      clientId: "f0304373b74a44d2b584a3fb70ca9e56",
    },
  });

/** OAuth refresh settings with every default filled in (see `GatewayOptions.oauth`). */
export interface OAuthSettings {
  providers: Record<string, OAuthProviderConfig>;
  refreshMarginMs: number;
  concurrency: number;
  scanIntervalMs: number;
  lockTtlMs: number;
  timeoutMs: number;
  failureBackoffMs: number;
}

/** Why a refresh was asked for. */
export type RefreshReason = "expiring" | "expired" | "unauthorized" | "manual";

/** A failed refresh. `message` never contains a token or a client secret. */
export class OAuthRefreshError extends Error {
  override readonly name = "OAuthRefreshError" as const;
  /** The token endpoint's HTTP status; 0 for a network error, a timeout or a local reason. */
  readonly status: number;
  /**
   * True when retrying cannot help until someone changes the credential: the endpoint refused
   * the grant (4xx), or there is no refresh token or no endpoint for it.
   */
  readonly permanent: boolean;

  constructor(message: string, status: number, permanent: boolean) {
    super(message);
    this.status = status;
    this.permanent = permanent;
  }
}

/** Whether `e` is an {@link OAuthRefreshError}, by name. */
export function isOAuthRefreshError(e: unknown): e is OAuthRefreshError {
  return (e as { name?: unknown } | null)?.name === "OAuthRefreshError";
}

/** How the refresher reports a failed refresh to the pool's health bookkeeping. */
export type RefreshFailureSink = (
  credential: CredentialRecord,
  model: string,
  error: OAuthRefreshError,
  /** Whether the credential is unusable now (expired, or refused by the upstream). */
  unusable: boolean,
) => void;

/** What {@link OAuthRefresher} needs. */
export interface OAuthRefresherDeps {
  store: Store;
  events: GatewayEmitter;
  logger: Logger;
  /** HTTP client for token endpoints (its own timeouts). */
  http: UpstreamClient;
  settings: OAuthSettings;
  /** Every credential currently in the pool (for the background scan). */
  credentials(): readonly CredentialRecord[];
  /** Writes a new secret through the pool (store + in-memory view); returns the stored record. */
  saveSecret(id: string, secret: CredentialSecret): Promise<CredentialRecord | null>;
  /** Health report of a failed refresh (lastError, error count, auto-disable). */
  onFailure: RefreshFailureSink;
  /**
   * The global `proxy-url` setting, read at each refresh; a credential's own `proxyUrl` wins, as
   * on the proxy path. @default no proxy
   */
  proxyUrl?: () => string;
}

/** Options of one refresh. */
export interface RefreshOptions {
  reason: RefreshReason;
  /** The model of the request that needed it, for the health report. @default "*" */
  model?: string;
  /**
   * The access token the upstream refused. A refresh is skipped when the stored token already
   * differs from it (someone refreshed meanwhile).
   */
  failedToken?: string;
}

const MAX_MESSAGE = 300;
/** Lifetime assumed when a token endpoint omits `expires_in` (Google's is 3599 s). */
const DEFAULT_EXPIRES_IN_S = 3600;

/** Replaces each of `secrets` in `text`, then anything else that looks like a token. */
export function scrub(text: string, secrets: readonly (string | undefined)[]): string {
  let out = text;
  for (const s of secrets) if (s && s.length >= 4) out = out.split(s).join("[redacted]");
  return redactSecrets(out)
    .replace(/\bGOCSPX-[A-Za-z0-9_-]{6,}/g, "[redacted]")
    .replace(/\beyJ[A-Za-z0-9_-]{8,}(\.[A-Za-z0-9_-]*){0,2}/g, "[redacted]");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Refreshes OAuth credentials: single flight per credential in a process, the store's lock
 * across instances, results persisted through the store, failures reported (events, the
 * credential's state) with every secret redacted. Background refreshes of credentials
 * approaching expiry run through a p-queue with bounded concurrency.
 */
export class OAuthRefresher {
  readonly #deps: OAuthRefresherDeps;
  readonly #settings: OAuthSettings;
  readonly #inflight = new Map<string, Promise<CredentialRecord>>();
  /** Recent failures by credential: not retried before `until` while the refresh token is the same. */
  readonly #failed = new Map<
    string,
    { refreshToken: string; until: number; error: OAuthRefreshError }
  >();
  readonly #queue: PQueue;
  readonly #queued = new Set<string>();
  #timer: NodeJS.Timeout | null = null;
  #closed = false;

  constructor(deps: OAuthRefresherDeps) {
    this.#deps = deps;
    this.#settings = deps.settings;
    this.#queue = new PQueue({ concurrency: deps.settings.concurrency });
  }

  /** The refresh margin in ms: tokens expiring sooner than this are refreshed before use. */
  get marginMs(): number {
    return this.#settings.refreshMarginMs;
  }

  /** Whether `c` is an OAuth credential whose access token expires within the margin. */
  due(c: CredentialRecord, now = Date.now()): boolean {
    const at = c.secret.expiresAt;
    return c.kind === "oauth" && at !== undefined && at - now <= this.#settings.refreshMarginMs;
  }

  /**
   * The credential with an access token fit to send: `c` itself unless it expires within the
   * margin, else refreshed (awaiting a refresh already in flight). A token still valid is used
   * when its early refresh fails; an expired one throws {@link OAuthRefreshError}.
   */
  async ensureFresh(c: CredentialRecord, model = "*"): Promise<CredentialRecord> {
    if (c.kind !== "oauth") return c;
    const now = Date.now();
    if (!this.due(c, now)) return c;
    const expired = (c.secret.expiresAt ?? 0) <= now;
    try {
      return await this.refresh(c, { reason: expired ? "expired" : "expiring", model });
    } catch (error) {
      if (!expired && c.secret.accessToken) return c;
      throw error;
    }
  }

  /**
   * Refreshes `c` (see the module comment for the guarantees). Resolves with the stored record
   * carrying the new access token; rejects with {@link OAuthRefreshError}.
   */
  async refresh(c: CredentialRecord, opts: RefreshOptions): Promise<CredentialRecord> {
    if (opts.reason === "manual") this.#failed.delete(c.id);
    // A manual refresh replaces the token known now, unless someone replaced it meanwhile.
    const asked =
      opts.reason === "manual" && opts.failedToken === undefined
        ? { ...opts, failedToken: c.secret.accessToken ?? "" }
        : opts;
    const joined = this.#inflight.has(c.id);
    const rec = await this.#join(c, asked);
    // Joined another caller's flight, which found a token still valid by its expiry, but that
    // token is the one that just failed here: refresh again, once. (A flight of our own never
    // returns the failed token unless the endpoint itself handed it out again.)
    if (joined && asked.failedToken && rec.secret.accessToken === asked.failedToken) {
      return this.#join(rec, asked);
    }
    return rec;
  }

  #join(c: CredentialRecord, opts: RefreshOptions): Promise<CredentialRecord> {
    let flight = this.#inflight.get(c.id);
    if (!flight) {
      flight = this.#run(c, opts).finally(() => this.#inflight.delete(c.id));
      this.#inflight.set(c.id, flight);
    }
    return flight;
  }

  /** Whether the stored record no longer needs the refresh that was asked for. */
  #satisfied(rec: CredentialRecord, opts: RefreshOptions, now: number): boolean {
    const token = rec.secret.accessToken;
    if (!token) return false;
    if (opts.failedToken !== undefined) {
      const at = rec.secret.expiresAt;
      return token !== opts.failedToken && (at === undefined || at > now);
    }
    return !this.due(rec, now);
  }

  /** A recent failure of this credential with the same refresh token, if any. */
  #recentFailure(c: CredentialRecord, now: number): OAuthRefreshError | null {
    const recent = this.#failed.get(c.id);
    if (!recent || recent.until <= now || recent.refreshToken !== (c.secret.refreshToken ?? ""))
      return null;
    return recent.error;
  }

  async #run(c: CredentialRecord, opts: RefreshOptions): Promise<CredentialRecord> {
    const { store } = this.#deps;
    const model = opts.model ?? "*";
    const s = this.#settings;
    const lockName = `${REFRESH_LOCK_PREFIX}${c.id}`;
    // A holder may take up to the endpoint timeout; past the lock TTL another may take over.
    const deadline = Date.now() + s.lockTtlMs + s.timeoutMs;
    const poll = Math.max(10, Math.min(100, Math.floor(s.lockTtlMs / 20)));
    let lastSeen = c;
    const recent = this.#recentFailure(c, Date.now());
    if (recent) throw recent;

    for (;;) {
      const owner = await store.acquireLock(lockName, s.lockTtlMs);
      if (owner !== null) {
        try {
          // Under the lock: the previous holder may have finished just now.
          const rec = await store.credentials.get(c.id);
          if (!rec) {
            throw new OAuthRefreshError("the credential no longer exists", 0, true);
          }
          if (this.#satisfied(rec, opts, Date.now())) return rec;
          return await this.#refreshLocked(rec, opts, model);
        } finally {
          await store.releaseLock(lockName, owner).catch(() => false);
        }
      }
      // Another instance is refreshing: wait for its result in the store.
      await sleep(poll);
      const rec = await store.credentials.get(c.id);
      if (!rec) throw new OAuthRefreshError("the credential no longer exists", 0, true);
      lastSeen = rec;
      if (this.#satisfied(rec, opts, Date.now())) return rec;
      if (Date.now() > deadline || this.#closed) {
        const error = new OAuthRefreshError(
          "timed out waiting for another instance to refresh the credential",
          0,
          false,
        );
        this.#report(lastSeen, model, error, opts);
        throw error;
      }
    }
  }

  /** Calls the token endpoint for `rec` (the lock is held) and stores the result. */
  async #refreshLocked(
    rec: CredentialRecord,
    opts: RefreshOptions,
    model: string,
  ): Promise<CredentialRecord> {
    const { events, logger } = this.#deps;
    const refreshToken = rec.secret.refreshToken;
    const recent = this.#recentFailure(rec, Date.now());
    if (recent) throw recent;
    let result: TokenResult;
    try {
      if (!refreshToken) {
        throw new OAuthRefreshError("the credential has no refresh token", 0, true);
      }
      result = await this.#callTokenEndpoint(rec, refreshToken);
    } catch (e) {
      const error = isOAuthRefreshError(e)
        ? e
        : new OAuthRefreshError(
            `token endpoint unreachable: ${scrub((e as Error).message, this.#secretsOf(rec))}`,
            0,
            false,
          );
      this.#failed.set(rec.id, {
        refreshToken: refreshToken ?? "",
        until: Date.now() + this.#settings.failureBackoffMs,
        error,
      });
      this.#report(rec, model, error, opts);
      throw error;
    }
    this.#failed.delete(rec.id);

    const expiresIn = result.expiresIn ?? DEFAULT_EXPIRES_IN_S;
    const secret: CredentialSecret = {
      ...rec.secret,
      accessToken: result.accessToken,
      expiresAt: Date.now() + expiresIn * 1000,
      refreshToken: result.refreshToken ?? refreshToken,
      extra: { ...rec.secret.extra, expiresIn: String(expiresIn) },
    };
    if (result.idToken) secret.idToken = result.idToken;
    const saved = await this.#deps.saveSecret(rec.id, secret);
    if (!saved) throw new OAuthRefreshError("the credential no longer exists", 0, true);
    const rotated = result.refreshToken !== undefined && result.refreshToken !== refreshToken;
    events.emit("credential.refreshed", {
      credentialId: rec.id,
      provider: rec.provider,
      reason: opts.reason,
      expiresAt: secret.expiresAt!,
      rotated,
    });
    logger.info("refreshed an OAuth credential", {
      credentialId: rec.id,
      provider: rec.provider,
      reason: opts.reason,
      rotated,
    });
    return saved;
  }

  #secretsOf(rec: CredentialRecord): (string | undefined)[] {
    const cfg = this.#config(rec);
    return [rec.secret.accessToken, rec.secret.refreshToken, rec.secret.idToken, cfg?.clientSecret];
  }

  /** Event, log line and pool report of a failed refresh. */
  #report(rec: CredentialRecord, model: string, error: OAuthRefreshError, opts: RefreshOptions) {
    const { events, logger } = this.#deps;
    const unusable =
      opts.reason === "unauthorized" ||
      opts.reason === "expired" ||
      (rec.secret.expiresAt ?? 0) <= Date.now();
    events.emit("credential.refresh_failed", {
      credentialId: rec.id,
      provider: rec.provider,
      reason: opts.reason,
      status: error.status,
      message: error.message,
    });
    logger.warn("could not refresh an OAuth credential", {
      credentialId: rec.id,
      provider: rec.provider,
      reason: opts.reason,
      status: error.status,
      error: error.message,
    });
    try {
      this.#deps.onFailure(rec, model, error, unusable);
    } catch (e) {
      logger.warn("could not record a refresh failure", { credentialId: rec.id, error: String(e) });
    }
  }

  /** The token endpoint settings of a credential (provider defaults, then its own overrides). */
  #config(rec: CredentialRecord): OAuthProviderConfig | null {
    const extra = rec.secret.extra ?? {};
    const base = this.#settings.providers[extra.oauthProvider ?? rec.provider];
    const tokenUrl = extra.tokenUrl ?? base?.tokenUrl;
    const clientId = extra.clientId ?? base?.clientId;
    if (!tokenUrl || clientId === undefined) return null;
    const clientSecret = extra.clientSecret ?? base?.clientSecret;
    const scopes = extra.scopes !== undefined ? extra.scopes.split(/\s+/) : base?.scopes;
    return {
      tokenUrl,
      clientId,
      ...(clientSecret ? { clientSecret } : {}),
      scopes: (scopes ?? []).filter(Boolean),
      bodyFormat: (extra.bodyFormat as "form" | "json" | undefined) ?? base?.bodyFormat ?? "form",
    };
  }

  async #callTokenEndpoint(rec: CredentialRecord, refreshToken: string): Promise<TokenResult> {
    const cfg = this.#config(rec);
    if (!cfg) {
      throw new OAuthRefreshError(
        `no OAuth token endpoint is configured for provider "${rec.provider}" (set oauth.providers["${rec.provider}"] or secret.extra.tokenUrl)`,
        0,
        true,
      );
    }
    let url: URL;
    try {
      url = new URL(cfg.tokenUrl);
    } catch {
      throw new OAuthRefreshError("the OAuth token endpoint is not a valid URL", 0, true);
    }
    const fields: Record<string, string> = {
      grant_type: "refresh_token",
      refresh_token: refreshToken,
      client_id: cfg.clientId,
    };
    if (cfg.clientSecret) fields.client_secret = cfg.clientSecret;
    if (cfg.scopes && cfg.scopes.length > 0) fields.scope = cfg.scopes.join(" ");
    const secrets = this.#secretsOf(rec);

    const res = await postTokenEndpoint(
      this.#deps.http,
      url,
      fields,
      cfg.bodyFormat === "json" ? "json" : "form",
      this.#settings.timeoutMs,
      rec.proxyUrl || this.#deps.proxyUrl?.() || "",
    );
    const text = res.text;
    let parsed: Record<string, unknown> | null = null;
    try {
      const v = JSON.parse(text) as unknown;
      if (v && typeof v === "object" && !Array.isArray(v)) parsed = v as Record<string, unknown>;
    } catch {
      // not JSON
    }
    if (res.status >= 400) {
      const err = parsed?.error;
      const desc = parsed?.error_description ?? parsed?.message;
      const detail =
        typeof err === "string"
          ? `${err}${typeof desc === "string" ? `: ${desc}` : ""}`
          : typeof (err as { message?: unknown } | undefined)?.message === "string"
            ? (err as { message: string }).message
            : text;
      const message = scrub(`token endpoint answered HTTP ${res.status}: ${detail}`, secrets);
      // 4xx: the grant or the client was refused (retrying sends the same request); except
      // 408/429, which like 5xx are worth another try later.
      const permanent = res.status < 500 && res.status !== 408 && res.status !== 429;
      throw new OAuthRefreshError(message.slice(0, MAX_MESSAGE), res.status, permanent);
    }
    const accessToken = parsed?.access_token;
    if (typeof accessToken !== "string" || accessToken === "") {
      throw new OAuthRefreshError(
        `token endpoint answered HTTP ${res.status} without an access_token`,
        res.status,
        false,
      );
    }
    const e = parsed?.expires_in;
    const expiresIn =
      typeof e === "number" && Number.isFinite(e) && e > 0
        ? e
        : typeof e === "string" && Number(e) > 0
          ? Number(e)
          : undefined;
    const rt = parsed?.refresh_token;
    const idt = parsed?.id_token;
    return {
      accessToken,
      expiresIn,
      refreshToken: typeof rt === "string" && rt !== "" ? rt : undefined,
      idToken: typeof idt === "string" && idt !== "" ? idt : undefined,
    };
  }

  /**
   * Queues a background refresh for every enabled OAuth credential expiring within the margin
   * (at most `concurrency` at a time); resolves when the refreshes queued by this call settle.
   * Returns how many were queued.
   */
  async scan(): Promise<number> {
    if (this.#closed) return 0;
    const now = Date.now();
    const jobs: Promise<unknown>[] = [];
    for (const c of this.#deps.credentials()) {
      if (!c.enabled || !c.secret.refreshToken || !this.due(c, now)) continue;
      if (this.#queued.has(c.id) || this.#inflight.has(c.id)) continue;
      if (this.#recentFailure(c, now)) continue;
      this.#queued.add(c.id);
      const reason: RefreshReason = (c.secret.expiresAt ?? 0) <= now ? "expired" : "expiring";
      jobs.push(
        this.#queue
          .add(async () => (this.#closed ? undefined : this.refresh(c, { reason })))
          .catch(() => {})
          .finally(() => this.#queued.delete(c.id)),
      );
    }
    await Promise.all(jobs);
    return jobs.length;
  }

  /** Starts the periodic background scan (no-op when `scanIntervalMs` is 0). */
  start(): void {
    if (this.#timer || this.#settings.scanIntervalMs <= 0 || this.#closed) return;
    const tick = () => {
      this.scan().catch((e: unknown) =>
        this.#deps.logger.warn("background OAuth refresh scan failed", { error: String(e) }),
      );
    };
    this.#timer = setInterval(tick, this.#settings.scanIntervalMs);
    this.#timer.unref();
    tick();
  }

  /** Forgets a recent failure (after the credential's secret was edited). */
  forgetFailure(id: string): void {
    this.#failed.delete(id);
  }

  /** Stops the scan, drops queued refreshes and waits for those in flight. */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#queue.clear();
    await Promise.allSettled([...this.#inflight.values()]);
    await this.#queue.onIdle();
  }
}

interface TokenResult {
  accessToken: string;
  expiresIn: number | undefined;
  refreshToken: string | undefined;
  idToken: string | undefined;
}
