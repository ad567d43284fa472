/**
 * OAuth logins of upstream accounts (the management dialect's "登录/授权 URL" routes are their
 * HTTP side): an authorization code flow with PKCE (S256) and a device authorization flow, the
 * token-endpoint exchanges they make, and the OAuth credential a successful login becomes.
 *
 * - Code flow: {@link OAuthLogins.startCode} keeps a random `state` in the store's kv for
 *   {@link OAUTH_LOGIN_TTL_MS} with the code verifier and the login, so that any instance
 *   sharing the store can finish the flow; {@link OAuthLogins.finishCode} exchanges the code of
 *   a flow in progress (single use) and saves the tokens as a credential (an auth file).
 * - Device flow: {@link OAuthLogins.startDevice} asks for a device code, then polls the token
 *   endpoint in the background at the interval the provider asked for until success, denial
 *   or expiry.
 *
 * Every call to a device or token endpoint goes through the gateway's {@link UpstreamClient}
 * for token endpoints, the one OAuth refreshes use (same connections, timeouts and error
 * redaction). Codes, verifiers and tokens are never logged.
 *
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import type { Logger } from "../logger.js";
import type { UpstreamClient } from "../net/upstream.js";
import type { CredentialPatch, CredentialRecord, CredentialSecret, Store } from "../store/types.js";
import type { SecretBox } from "../util/secrets.js";
import { type OAuthProviderConfig, scrub } from "./oauth.js";
import type { AddCredentialInput } from "./pool.js";
import { postTokenEndpoint } from "./token-endpoint.js";

/** How long a login may take (the `state` TTL), ms. */
export const OAUTH_LOGIN_TTL_MS = 10 * 60_000;

const KV_PREFIX = "oauth-login:";

/** One login of the seed: its flow, credential provider and default endpoints. */
export interface OAuthLoginDefaults {
  flow: "code" | "device";
  /** Key of `oauth.providers` (token endpoint, client) and provider of the created credential. */
  provider: string;
  /** Prefix of the auth file name, as CLIProxyAPI names its token files. */
  filePrefix: string;
  /** Upstream of the created credential. */
  baseUrl: string;
  authorizeUrl?: string;
  redirectUri?: string;
  deviceCodeUrl?: string;
  /** Scopes of the login (they differ from the refresh scopes). */
  scopes: string[];
  /** Extra authorize parameters. */
  params?: Record<string, string>;
}

/** The logins of the seed, by route name, with CLIProxyAPI's endpoints and redirect URIs. */
export const OAUTH_LOGIN_DEFAULTS: Readonly<Record<string, Readonly<OAuthLoginDefaults>>> =
  Object.freeze({
    anthropic: {
      flow: "code",
      provider: "anthropic",
      filePrefix: "claude",
      baseUrl: "https://api.anthropic.com",
      authorizeUrl: "https://claude.ai/oauth/authorize",
      redirectUri: "http://localhost:54545/callback",
      scopes: ["org:create_api_key", "user:profile", "user:inference"],
      params: { code: "true" },
    },
    codex: {
      flow: "code",
      provider: "codex",
      filePrefix: "codex",
      baseUrl: "https://chatgpt.com/backend-api/codex",
      authorizeUrl: "https://auth.openai.com/oauth/authorize",
      redirectUri: "http://localhost:1455/auth/callback",
      scopes: ["openid", "email", "profile", "offline_access"],
      params: {
        prompt: "login",
        id_token_add_organizations: "true",
        codex_cli_simplified_flow: "true",
      },
    },
    "gemini-cli": {
      flow: "code",
      provider: "gemini",
      filePrefix: "gemini",
      baseUrl: "https://cloudcode-pa.googleapis.com",
      authorizeUrl: "https://accounts.google.com/o/oauth2/auth",
      redirectUri: "http://localhost:8085/oauth2callback",
      scopes: [
        "https://www.googleapis.com/auth/cloud-platform",
        "https://www.googleapis.com/auth/userinfo.email",
        "https://www.googleapis.com/auth/userinfo.profile",
      ],
      params: { access_type: "offline", prompt: "consent" },
    },
    qwen: {
      flow: "device",
      provider: "qwen",
      filePrefix: "qwen",
      baseUrl: "https://portal.qwen.ai/v1",
      deviceCodeUrl: "https://chat.qwen.ai/api/v1/oauth2/device/code",
      scopes: ["openid", "profile", "email", "model.completion"],
    },
  });

/** The pool operations a login needs. */
export interface OAuthLoginCredentials {
  get(id: string): CredentialRecord | null;
  add(input: AddCredentialInput): Promise<CredentialRecord>;
  update(id: string, patch: CredentialPatch): Promise<CredentialRecord | null>;
}

/** Dependencies of {@link createOAuthLogins}. */
export interface OAuthLoginsDeps {
  store: Store;
  pool: OAuthLoginCredentials;
  /** Token endpoints, clients and login endpoint overrides (the resolved `oauth.providers`). */
  providers: Record<string, OAuthProviderConfig>;
  /** HTTP client for device and token endpoints (the one OAuth refreshes use). */
  http: UpstreamClient;
  logger?: Logger;
  /** Timeout of one call to a token or device endpoint, ms. @default 30000 */
  timeoutMs?: number;
  /** The global `proxy-url` setting, read at each call, as on the proxy path. @default no proxy */
  proxyUrl?: () => string;
  /** @default OAUTH_LOGIN_TTL_MS */
  ttlMs?: number;
  /** Called after a credential's secret changed. */
  secretChanged?: (id: string) => void;
  /**
   * Seals the code verifier kept in the kv with the server secret (a flow whose verifier no
   * longer opens, e.g. after a secret rotation, is an unknown state). Absent: kept as it is.
   */
  box?: Pick<SecretBox, "encrypt" | "decrypt">;
}

/**
 * A login that cannot go on: `status` is the HTTP status the management dialect answers with
 * (400 bad state or refused grant, 404 unknown login, 500 no OAuth client, 502 endpoint
 * unreachable or failing), `message` its error text (never a code, verifier or token).
 */
export class OAuthLoginError extends Error {
  override readonly name = "OAuthLoginError" as const;
  /** The HTTP status of the failure. */
  readonly status: number;

  constructor(status: number, message: string) {
    super(message);
    this.status = status;
  }
}

/** Whether `e` is an {@link OAuthLoginError}, by name. */
export function isOAuthLoginError(e: unknown): e is OAuthLoginError {
  return (e as { name?: unknown } | null)?.name === "OAuthLoginError";
}

/** The state of a login, as `get-auth-status` shows it. */
export interface OAuthLoginStatus {
  status: "wait" | "ok" | "error";
  /** With `status: "error"`. */
  error?: string;
}

/** What the provider's redirect brought to the callback. */
export interface OAuthCallbackParams {
  state: string;
  /** The authorization code (Anthropic's page hands out `code#state`). */
  code: string;
  /** The provider's `error` (e.g. `access_denied`), when the user refused. */
  error: string | null;
}

/** The OAuth logins of one gateway. */
export interface OAuthLogins {
  /** Starts a code flow: the authorize URL to send the user to, and the flow's state. */
  startCode(login: string, projectId?: string): Promise<{ url: string; state: string }>;
  /** Starts a device flow: the verification page (with the user code) and the flow's state. */
  startDevice(login: string): Promise<{ url: string; state: string }>;
  /** Exchanges the code of a code flow in progress; resolves with the auth file created. */
  finishCode(params: OAuthCallbackParams): Promise<{ file: string }>;
  /** The state of a flow; `null` when it is unknown or expired. */
  status(state: string): Promise<OAuthLoginStatus | null>;
  /** Makes Gemini web cookies the credential `gemini-web-<hash>.json`; resolves with its name. */
  saveGeminiWeb(psid: string, psidts?: string): Promise<string>;
}

/** What the kv keeps per `state`. Holds the code verifier: never log it. */
interface FlowRecord {
  login: string;
  status: "wait" | "ok" | "error";
  error?: string;
  verifier?: string;
  projectId?: string;
  file?: string;
}

const b64url = (b: Buffer) => b.toString("base64url");

/** A PKCE pair (RFC 7636, S256). */
export function createPkce(): { verifier: string; challenge: string } {
  const verifier = b64url(randomBytes(32));
  return { verifier, challenge: b64url(createHash("sha256").update(verifier).digest()) };
}

function jwtClaims(token: unknown): Record<string, unknown> {
  if (typeof token !== "string") return {};
  const part = token.split(".")[1];
  if (!part) return {};
  try {
    const v = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return typeof v === "object" && v !== null ? (v as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

const str = (v: unknown): string | undefined =>
  typeof v === "string" && v.trim() !== "" ? v.trim() : undefined;

/** The e-mail of a token response: `email`, Anthropic's `account.email_address`, or the id token's. */
function emailOf(body: Record<string, unknown>): string | undefined {
  const account = body.account as Record<string, unknown> | undefined;
  return (
    str(body.email) ??
    str(account?.email_address) ??
    str(jwtClaims(body.id_token).email) ??
    undefined
  );
}

/** An auth file name from parts: characters outside `[A-Za-z0-9._-]` become `_`. */
function fileName(...parts: string[]): string {
  const base = parts
    .filter(Boolean)
    .join("-")
    .replace(/[^A-Za-z0-9._-]/g, "_")
    .replace(/\.{2,}/g, "_");
  return `${base.slice(0, 120)}.json`;
}

/** A device or token endpoint's answer: its status and its JSON object (`{}` when not JSON). */
interface EndpointAnswer {
  status: number;
  body: Record<string, unknown>;
}

/**
 * POSTs `fields` to a device or token endpoint (see {@link postTokenEndpoint}); never throws
 * for an HTTP status (it throws for a bad URL, a network error or the timeout).
 */
async function postEndpoint(
  http: UpstreamClient,
  url: string,
  fields: Record<string, string>,
  format: "form" | "json",
  timeoutMs: number,
  proxyUrl: string,
): Promise<EndpointAnswer> {
  const res = await postTokenEndpoint(http, new URL(url), fields, format, timeoutMs, proxyUrl);
  let body: Record<string, unknown> = {};
  try {
    const v = JSON.parse(res.text);
    if (typeof v === "object" && v !== null) body = v as Record<string, unknown>;
  } catch {
    // not JSON: the status decides
  }
  return { status: res.status, body };
}

/**
 * The OAuth logins over a store (flow state in its kv) and a pool (the credentials they create).
 *
 * @example
 * ```ts
 * const logins = createOAuthLogins({ store, pool, providers: opts.oauth.providers, http });
 * const { url, state } = await logins.startCode("anthropic");
 * ```
 */
export function createOAuthLogins(deps: OAuthLoginsDeps): OAuthLogins {
  const { store } = deps;
  const ttlMs = deps.ttlMs ?? OAUTH_LOGIN_TTL_MS;
  const timeoutMs = deps.timeoutMs ?? 30_000;

  const config = (login: string) => {
    const d = OAUTH_LOGIN_DEFAULTS[login];
    if (!d) throw new OAuthLoginError(404, "not found");
    const p = deps.providers[d.provider];
    if (!p) throw new OAuthLoginError(500, `no OAuth client for ${d.provider}`);
    return {
      ...d,
      tokenUrl: p.tokenUrl,
      clientId: p.clientId,
      clientSecret: p.clientSecret,
      bodyFormat: p.bodyFormat ?? "form",
      authorizeUrl: p.authorizeUrl ?? d.authorizeUrl ?? "",
      redirectUri: p.redirectUri ?? d.redirectUri ?? "",
      deviceCodeUrl: p.deviceCodeUrl ?? d.deviceCodeUrl ?? "",
    };
  };

  const box = deps.box;
  const readFlow = async (state: string): Promise<FlowRecord | null> => {
    const raw = await store.kv.get(KV_PREFIX + state);
    if (raw === null) return null;
    const rec = JSON.parse(raw) as FlowRecord;
    if (box && rec.verifier !== undefined) {
      const verifier = box.decrypt(rec.verifier);
      if (verifier === null) return null;
      rec.verifier = verifier;
    }
    return rec;
  };
  const writeFlow = (state: string, rec: FlowRecord, ms = ttlMs) =>
    store.kv.set(
      KV_PREFIX + state,
      JSON.stringify(
        box && rec.verifier !== undefined ? { ...rec, verifier: box.encrypt(rec.verifier) } : rec,
      ),
      ms,
    );
  /** The end of a flow: no verifier kept, readable by `status` for a while. */
  const finish = (state: string, rec: FlowRecord, error?: string) => {
    const { verifier: _v, ...rest } = rec;
    return writeFlow(state, {
      ...rest,
      status: error ? "error" : "ok",
      ...(error ? { error } : {}),
    });
  };

  const post = (url: string, fields: Record<string, string>, format: "form" | "json") =>
    postEndpoint(deps.http, url, fields, format, timeoutMs, deps.proxyUrl?.() ?? "");

  /** Creates (or replaces) the credential of a token response; returns its file name. */
  const saveTokens = async (
    login: string,
    body: Record<string, unknown>,
    projectId?: string,
  ): Promise<string> => {
    const c = config(login);
    const email = emailOf(body);
    const secret: CredentialSecret = {};
    const accessToken = str(body.access_token);
    const refreshToken = str(body.refresh_token);
    const idToken = str(body.id_token);
    if (accessToken) secret.accessToken = accessToken;
    if (refreshToken) secret.refreshToken = refreshToken;
    if (idToken) secret.idToken = idToken;
    if (typeof body.expires_in === "number" && Number.isFinite(body.expires_in))
      secret.expiresAt = Date.now() + body.expires_in * 1000;
    const extra: Record<string, string> = {};
    const accountId = str(
      (jwtClaims(idToken)["https://api.openai.com/auth"] as Record<string, unknown> | undefined)
        ?.chatgpt_account_id,
    );
    if (accountId) extra.accountId = accountId;
    const resourceUrl = str(body.resource_url);
    let baseUrl = c.baseUrl;
    if (resourceUrl) {
      extra.resourceUrl = resourceUrl;
      const host = resourceUrl.replace(/^https?:\/\//, "").replace(/\/+$/, "");
      if (/^[A-Za-z0-9.-]+(:\d+)?$/.test(host)) baseUrl = `https://${host}/v1`;
    }
    if (Object.keys(extra).length > 0) secret.extra = extra;
    const tag = email ?? b64url(randomBytes(6));
    const name =
      login === "gemini-cli" ? fileName(tag, projectId ?? "") : fileName(c.filePrefix, tag);
    const fields = {
      provider: c.provider,
      kind: "oauth" as const,
      label: email ?? "",
      secret,
      projectIds: projectId ? [projectId] : [],
      enabled: true,
    };
    const existing = deps.pool.get(name);
    if (existing) {
      await deps.pool.update(name, fields);
      deps.secretChanged?.(name);
    } else await deps.pool.add({ id: name, baseUrl, ...fields });
    return name;
  };

  /** The endpoint's error text, without the secrets of the request (as refresh errors are). */
  const tokenError = (
    body: Record<string, unknown>,
    status: number,
    secrets: readonly (string | undefined)[],
  ) =>
    scrub(
      str(body.error_description) ?? str(body.error) ?? `token endpoint answered HTTP ${status}`,
      secrets,
    );

  const pollDevice = (
    state: string,
    rec: FlowRecord,
    deviceCode: string,
    intervalMs: number,
    deadline: number,
  ) => {
    const c = config(rec.login);
    let interval = intervalMs;
    const tick = async (): Promise<void> => {
      // Another instance or a TTL may have ended the flow; a closed store throws and ends it too.
      if ((await readFlow(state))?.status !== "wait") return;
      if (Date.now() >= deadline) return finish(state, rec, "device code expired");
      const fields: Record<string, string> = {
        grant_type: "urn:ietf:params:oauth:grant-type:device_code",
        client_id: c.clientId,
        device_code: deviceCode,
      };
      if (rec.verifier) fields.code_verifier = rec.verifier;
      let res: EndpointAnswer;
      try {
        res = await post(c.tokenUrl, fields, "form");
      } catch {
        return schedule(); // network trouble: try again at the next interval
      }
      if (res.status === 200 && str(res.body.access_token)) {
        const file = await saveTokens(rec.login, res.body);
        return writeFlow(state, { login: rec.login, status: "ok", file });
      }
      const code = str(res.body.error);
      if (code === "authorization_pending") return schedule();
      if (code === "slow_down") {
        interval += 5000;
        return schedule();
      }
      if (code === "access_denied") return finish(state, rec, "access denied");
      if (code === "expired_token") return finish(state, rec, "device code expired");
      return finish(
        state,
        rec,
        tokenError(res.body, res.status, [deviceCode, rec.verifier, c.clientSecret]),
      );
    };
    const schedule = (): void => {
      const t = setTimeout(() => {
        tick().catch((error: unknown) => {
          deps.logger?.warn("OAuth device login failed", {
            login: rec.login,
            error: error instanceof Error ? error.name : "error",
          });
          finish(state, rec, "Authentication failed").catch(() => {});
        });
      }, interval);
      t.unref?.();
    };
    schedule();
  };

  return {
    async startCode(login, projectId) {
      const c = config(login);
      const state = b64url(randomBytes(24));
      const { verifier, challenge } = createPkce();
      await writeFlow(state, {
        login,
        status: "wait",
        verifier,
        ...(projectId ? { projectId } : {}),
      });
      const url = new URL(c.authorizeUrl);
      const q = url.searchParams;
      for (const [k, v] of Object.entries(c.params ?? {})) q.set(k, v);
      q.set("client_id", c.clientId);
      q.set("response_type", "code");
      q.set("redirect_uri", c.redirectUri);
      q.set("scope", c.scopes.join(" "));
      q.set("code_challenge", challenge);
      q.set("code_challenge_method", "S256");
      q.set("state", state);
      return { url: url.toString(), state };
    },

    async startDevice(login) {
      const c = config(login);
      const { verifier, challenge } = createPkce();
      let res: EndpointAnswer;
      try {
        res = await post(
          c.deviceCodeUrl,
          {
            client_id: c.clientId,
            scope: c.scopes.join(" "),
            code_challenge: challenge,
            code_challenge_method: "S256",
          },
          "form",
        );
      } catch {
        throw new OAuthLoginError(502, "device authorization endpoint unreachable");
      }
      const deviceCode = str(res.body.device_code);
      const userCode = str(res.body.user_code);
      const verification =
        str(res.body.verification_uri_complete) ?? str(res.body.verification_uri);
      if (res.status !== 200 || !deviceCode || !verification)
        throw new OAuthLoginError(
          502,
          `device authorization failed: ${tokenError(res.body, res.status, [verifier, c.clientSecret])}`,
        );
      let url = verification;
      if (!res.body.verification_uri_complete && userCode) {
        const u = new URL(verification);
        u.searchParams.set("user_code", userCode);
        url = u.toString();
      }
      const state = b64url(randomBytes(24));
      const rec: FlowRecord = { login, status: "wait", verifier };
      const expiresIn =
        typeof res.body.expires_in === "number" ? res.body.expires_in * 1000 : ttlMs;
      const intervalMs = typeof res.body.interval === "number" ? res.body.interval * 1000 : 5000;
      await writeFlow(state, rec, Math.max(ttlMs, expiresIn));
      pollDevice(
        state,
        rec,
        deviceCode,
        Math.max(0, intervalMs),
        Date.now() + Math.min(expiresIn, ttlMs),
      );
      return { url, state };
    },

    async finishCode({ state, code: raw, error: denied }) {
      const rec = state ? await readFlow(state) : null;
      if (rec?.status !== "wait" || !rec.verifier)
        throw new OAuthLoginError(400, "unknown or expired state");
      const c = config(rec.login);
      if (c.flow !== "code") throw new OAuthLoginError(400, "unknown or expired state");
      // Anthropic's page hands out `code#state`.
      const code = raw.split("#")[0] ?? "";
      if (denied || !code) {
        await finish(state, rec, denied ? `authorization denied: ${denied}` : "missing code");
        throw new OAuthLoginError(400, denied ? "authorization denied" : "missing code");
      }
      // Single use: a second callback with the same state finds no verifier.
      await writeFlow(state, { login: rec.login, status: "wait" });
      const fields: Record<string, string> = {
        grant_type: "authorization_code",
        code,
        client_id: c.clientId,
        redirect_uri: c.redirectUri,
        code_verifier: rec.verifier,
      };
      if (c.bodyFormat === "json") fields.state = state;
      if (c.clientSecret) fields.client_secret = c.clientSecret;
      let res: EndpointAnswer;
      try {
        res = await post(c.tokenUrl, fields, c.bodyFormat);
      } catch {
        await finish(state, rec, "token endpoint unreachable");
        throw new OAuthLoginError(502, "token endpoint unreachable");
      }
      if (res.status !== 200 || !str(res.body.access_token)) {
        const error = tokenError(res.body, res.status, [code, rec.verifier, c.clientSecret]);
        await finish(state, rec, error);
        throw new OAuthLoginError(400, `Authentication failed: ${error}`);
      }
      const file = await saveTokens(rec.login, res.body, rec.projectId);
      await writeFlow(state, { login: rec.login, status: "ok", file });
      return { file };
    },

    async status(state) {
      const rec = await readFlow(state);
      if (!rec) return null;
      if (rec.status === "error")
        return { status: "error", error: rec.error ?? "Authentication failed" };
      return { status: rec.status };
    },

    async saveGeminiWeb(psid, psidts) {
      const hash = createHash("sha256").update(psid).digest("hex").slice(0, 16);
      const file = `gemini-web-${hash}.json`;
      const secret: CredentialSecret = {
        extra: { secure1psid: psid, ...(psidts ? { secure1psidts: psidts } : {}) },
      };
      if (deps.pool.get(file)) {
        await deps.pool.update(file, { secret, enabled: true });
        deps.secretChanged?.(file);
      } else
        await deps.pool.add({
          id: file,
          provider: "gemini-web",
          kind: "oauth",
          label: "",
          baseUrl: "https://gemini.google.com",
          secret,
        });
      return file;
    },
  };
}
