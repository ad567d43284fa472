/**
 * OAuth logins of the management dialect (the seed's "登录/授权 URL" section):
 *
 * - `GET /anthropic-auth-url`, `GET /codex-auth-url`, `GET /gemini-cli-auth-url?project_id=` →
 *   `{ status: "ok", url, state }`: an authorization code flow with PKCE (S256). A random
 *   `state` is kept in the store's kv for {@link OAUTH_LOGIN_TTL_MS} with the code verifier
 *   and the provider, so that any instance sharing the store can finish the flow;
 * - `GET /v0/management/oauth/callback?code=&state=` (also `?error=`): where the browser lands
 *   (or where a UI forwards the provider's redirect: the default `redirect_uri`s are the
 *   loopback ones registered for the public clients, as CLIProxyAPI uses them). It carries no
 *   management key: the unguessable, single-use `state` of a flow in progress is what allows it;
 *   an unknown state changes nothing. The code is exchanged at the token endpoint with the code
 *   verifier and the tokens become an OAuth credential of the pool (an auth file);
 * - `GET /qwen-auth-url` → `{ status: "ok", url, state }`: a device authorization flow; `url`
 *   is the verification page with the user code, and the token endpoint is polled in the
 *   background at the interval the provider asked for until success, denial or expiry;
 * - `GET /get-auth-status?state=` → `{ status: "wait" }` | `{ status: "ok" }` |
 *   `{ status: "error", error }`. Unlike CLIProxyAPI (where an unknown state reads as `ok`),
 *   an unknown or expired state is `{ status: "error", error: "unknown or expired state" }`;
 * - `POST /gemini-web-token` `{ secure_1psid, secure_1psidts }` → `{ status: "ok", file }`: the
 *   cookies become the credential `gemini-web-<hash>.json` of provider `gemini-web`.
 *
 * Endpoints come from the gateway option `oauth.providers` (`authorizeUrl`, `redirectUri`,
 * `deviceCodeUrl`, `tokenUrl`, `clientId`, `clientSecret`) over {@link OAUTH_LOGIN_DEFAULTS}.
 * Codes, verifiers and tokens are never logged.
 *
 * @module
 */
import { createHash, randomBytes } from "node:crypto";
import type { OAuthProviderConfig } from "../../credentials/oauth.js";
import type { AddCredentialInput } from "../../credentials/pool.js";
import { type Exchange, json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { Logger } from "../../logger.js";
import type {
  CredentialPatch,
  CredentialRecord,
  CredentialSecret,
  Store,
} from "../../store/types.js";
import type { SecretBox } from "../../util/secrets.js";
import {
  MANAGEMENT_PREFIX,
  type ManagementGuard,
  managementError,
  managementOk,
  managementRoute,
  readManagementBody,
  renderManagementError,
} from "./common.js";

/** The logins of `GET /v0/management/<login>-auth-url`. */
export type ManagementLoginName = "anthropic" | "codex" | "gemini-cli" | "qwen";

/** Reply of `GET /v0/management/<login>-auth-url`: where to send the user, and the flow's state. */
export interface ManagementAuthUrlResponse {
  status: "ok";
  url: string;
  state: string;
}

/** Reply of `GET /v0/management/get-auth-status?state=`. */
export interface ManagementAuthStatusResponse {
  status: "wait" | "ok" | "error";
  /** With `status: "error"`. */
  error?: string;
}

/** Body of `POST /v0/management/gemini-web-token`. */
export interface GeminiWebTokenBody {
  secure_1psid: string;
  secure_1psidts?: string;
}

/** Reply of `POST /v0/management/gemini-web-token`: the auth file created. */
export interface GeminiWebTokenResponse {
  status: "ok";
  file: string;
}

/** How long a login may take (the `state` TTL), ms. */
export const OAUTH_LOGIN_TTL_MS = 10 * 60_000;

/** The callback path of the code flows (unauthenticated; see the module comment). */
export const OAUTH_CALLBACK_PATH = `${MANAGEMENT_PREFIX}/oauth/callback`;

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

/** Dependencies of {@link oauthLoginRoutes}. */
export interface OAuthLoginDeps {
  guard: ManagementGuard;
  store: Store;
  pool: OAuthLoginCredentials;
  /** Token endpoints, clients and login endpoint overrides (the resolved `oauth.providers`). */
  providers: Record<string, OAuthProviderConfig>;
  /** Whether the management API is enabled (the callback is 404 otherwise, like every route). */
  enabled(): boolean;
  logger?: Logger;
  /** Timeout of one call to a token or device endpoint, ms. @default 30000 */
  timeoutMs?: number;
  /** @default OAUTH_LOGIN_TTL_MS */
  ttlMs?: number;
  maxBodyBytes?: number;
  /** Called after a credential's secret changed. */
  secretChanged?: (id: string) => void;
  /**
   * Seals the code verifier kept in the kv with the server secret (a flow whose verifier no
   * longer opens, e.g. after a secret rotation, is an unknown state). Absent: kept as it is.
   */
  box?: Pick<SecretBox, "encrypt" | "decrypt">;
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

/**
 * The OAuth login routes (and the unauthenticated callback).
 *
 * @example
 * ```ts
 * router.add(oauthLoginRoutes({ guard, store, pool, providers: opts.oauth.providers, enabled }));
 * ```
 */
export function oauthLoginRoutes(deps: OAuthLoginDeps): Route[] {
  const { guard, store } = deps;
  const ttlMs = deps.ttlMs ?? OAUTH_LOGIN_TTL_MS;
  const timeoutMs = deps.timeoutMs ?? 30_000;
  const maxBody = deps.maxBodyBytes ?? 1 << 20;

  const config = (login: string) => {
    const d = OAUTH_LOGIN_DEFAULTS[login];
    if (!d) throw managementError(404, "not found");
    const p = deps.providers[d.provider];
    if (!p) throw managementError(500, `no OAuth client for ${d.provider}`);
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
  /** The end of a flow: no verifier kept, readable by `get-auth-status` for a while. */
  const finish = (state: string, rec: FlowRecord, error?: string) => {
    const { verifier: _v, ...rest } = rec;
    return writeFlow(state, {
      ...rest,
      status: error ? "error" : "ok",
      ...(error ? { error } : {}),
    });
  };

  /** POSTs to a token/device endpoint; never throws for an HTTP status. */
  const post = async (
    url: string,
    fields: Record<string, string>,
    format: "form" | "json",
  ): Promise<{ status: number; body: Record<string, unknown> }> => {
    const res = await fetch(url, {
      method: "POST",
      headers: {
        "content-type":
          format === "json" ? "application/json" : "application/x-www-form-urlencoded",
        accept: "application/json",
      },
      body: format === "json" ? JSON.stringify(fields) : new URLSearchParams(fields).toString(),
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.text();
    let body: Record<string, unknown> = {};
    try {
      const v = JSON.parse(text);
      if (typeof v === "object" && v !== null) body = v as Record<string, unknown>;
    } catch {
      // not JSON: the status decides
    }
    return { status: res.status, body };
  };

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

  const tokenError = (body: Record<string, unknown>, status: number) =>
    str(body.error_description) ?? str(body.error) ?? `token endpoint answered HTTP ${status}`;

  const startCode = async (login: string, projectId?: string): Promise<Reply> => {
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
    return managementOk({ url: url.toString(), state });
  };

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
      let res: { status: number; body: Record<string, unknown> };
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
      return finish(state, rec, tokenError(res.body, res.status));
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

  const startDevice = async (login: string): Promise<Reply> => {
    const c = config(login);
    const { verifier, challenge } = createPkce();
    let res: { status: number; body: Record<string, unknown> };
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
      return json(502, { error: "device authorization endpoint unreachable" });
    }
    const deviceCode = str(res.body.device_code);
    const userCode = str(res.body.user_code);
    const verification = str(res.body.verification_uri_complete) ?? str(res.body.verification_uri);
    if (res.status !== 200 || !deviceCode || !verification)
      return json(502, {
        error: `device authorization failed: ${tokenError(res.body, res.status)}`,
      });
    let url = verification;
    if (!res.body.verification_uri_complete && userCode) {
      const u = new URL(verification);
      u.searchParams.set("user_code", userCode);
      url = u.toString();
    }
    const state = b64url(randomBytes(24));
    const rec: FlowRecord = { login, status: "wait", verifier };
    const expiresIn = typeof res.body.expires_in === "number" ? res.body.expires_in * 1000 : ttlMs;
    const intervalMs = typeof res.body.interval === "number" ? res.body.interval * 1000 : 5000;
    await writeFlow(state, rec, Math.max(ttlMs, expiresIn));
    pollDevice(
      state,
      rec,
      deviceCode,
      Math.max(0, intervalMs),
      Date.now() + Math.min(expiresIn, ttlMs),
    );
    return managementOk({ url, state });
  };

  /** The callback: exchanges the code of a flow in progress. */
  const callback = async (ex: Exchange): Promise<Reply> => {
    if (!deps.enabled()) throw managementError(404, "not found");
    const q = new URLSearchParams(ex.search);
    const state = q.get("state") ?? "";
    const rec = state ? await readFlow(state) : null;
    if (rec?.status !== "wait" || !rec.verifier)
      throw managementError(400, "unknown or expired state");
    const c = config(rec.login);
    if (c.flow !== "code") throw managementError(400, "unknown or expired state");
    const denied = q.get("error");
    // Anthropic's page hands out `code#state`.
    const code = (q.get("code") ?? "").split("#")[0] ?? "";
    if (denied || !code) {
      await finish(state, rec, denied ? `authorization denied: ${denied}` : "missing code");
      throw managementError(400, denied ? "authorization denied" : "missing code");
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
    let res: { status: number; body: Record<string, unknown> };
    try {
      res = await post(c.tokenUrl, fields, c.bodyFormat);
    } catch {
      await finish(state, rec, "token endpoint unreachable");
      return json(502, { error: "token endpoint unreachable" });
    }
    if (res.status !== 200 || !str(res.body.access_token)) {
      const error = tokenError(res.body, res.status);
      await finish(state, rec, error);
      throw managementError(400, `Authentication failed: ${error}`);
    }
    const file = await saveTokens(rec.login, res.body, rec.projectId);
    await writeFlow(state, { login: rec.login, status: "ok", file });
    return managementOk({ file });
  };

  return [
    managementRoute(guard, "GET", "/anthropic-auth-url", () => startCode("anthropic")),
    managementRoute(guard, "GET", "/codex-auth-url", () => startCode("codex")),
    managementRoute(guard, "GET", "/gemini-cli-auth-url", (ex) => {
      const project = str(new URLSearchParams(ex.search).get("project_id"));
      return startCode("gemini-cli", project);
    }),
    managementRoute(guard, "GET", "/qwen-auth-url", () => startDevice("qwen")),
    managementRoute(guard, "GET", "/get-auth-status", async (ex) => {
      const state = new URLSearchParams(ex.search).get("state");
      if (!state) throw managementError(400, "missing state");
      const rec = await readFlow(state);
      if (!rec) return json(200, { status: "error", error: "unknown or expired state" });
      if (rec.status === "error")
        return json(200, { status: "error", error: rec.error ?? "Authentication failed" });
      return json(200, { status: rec.status });
    }),
    managementRoute(guard, "POST", "/gemini-web-token", async (ex) => {
      const body = await readManagementBody(ex, maxBody);
      const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
      const psid = str(b.secure_1psid);
      const psidts = str(b.secure_1psidts);
      if (!psid) throw managementError(400, "invalid body");
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
      return managementOk({ file });
    }),
    {
      method: "GET",
      path: OAUTH_CALLBACK_PATH,
      onError: renderManagementError,
      handle: (ex) => callback(ex),
    },
  ];
}
