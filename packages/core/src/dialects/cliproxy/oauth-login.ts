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
 *   cookies become the credential `gemini-web-<hash>.json` of provider `gemini-web`;
 * - `POST /v0/management/oauth-callback` `{ provider, redirect_url }` (or `{ provider, code,
 *   state, error }`): CLIProxyAPI's newer UI relays the provider's redirect that the user pasted.
 *   Like the callback above it needs no management key (as in CLIProxyAPI) and completes only a
 *   code flow this gateway started and that is still waiting: the `state` is random, kept in the
 *   store's kv and single use; anything else is `{ status: "error", error }` (404 unknown or
 *   expired state, 400 bad body or unsupported provider) and changes nothing;
 * - `GET /antigravity-auth-url`, `/iflow-auth-url`, `/kimi-auth-url`, `/xai-auth-url`: tokenpool
 *   has no login flow for these; 501 `{ error }` saying how to add such an account instead.
 *
 * Endpoints come from the gateway option `oauth.providers` (`authorizeUrl`, `redirectUri`,
 * `deviceCodeUrl`, `tokenUrl`, `clientId`, `clientSecret`) over {@link OAUTH_LOGIN_DEFAULTS}.
 * The flows themselves (state, PKCE, the calls to device and token endpoints through the
 * upstream client, the credential created) are `credentials/oauth-login.ts`; this file is
 * their HTTP side. Codes, verifiers and tokens are never logged.
 *
 * @module
 */
import {
  createOAuthLogins,
  isOAuthLoginError,
  type OAuthLoginsDeps,
} from "../../credentials/oauth-login.js";
import { type Exchange, json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import { MANAGEMENT_DISABLED_MESSAGE } from "../../keys/management-gate.js";
import {
  MANAGEMENT_PREFIX,
  type ManagementGuard,
  managementError,
  managementOk,
  managementRoute,
  readManagementBody,
  renderManagementError,
} from "./common.js";

export {
  createPkce,
  OAUTH_LOGIN_DEFAULTS,
  OAUTH_LOGIN_TTL_MS,
  type OAuthLoginCredentials,
  type OAuthLoginDefaults,
} from "../../credentials/oauth-login.js";

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

/** The callback path of the code flows (unauthenticated; see the module comment). */
export const OAUTH_CALLBACK_PATH = `${MANAGEMENT_PREFIX}/oauth/callback`;

/** Where CLIProxyAPI's newer UI relays a pasted redirect (unauthenticated; see above). */
export const OAUTH_RELAY_PATH = `${MANAGEMENT_PREFIX}/oauth-callback`;

/** Logins CLIProxyAPI offers that tokenpool has no flow for: 501. */
const NO_LOGIN_FLOW = ["antigravity", "iflow", "kimi", "xai"] as const;

/** `provider` of `POST /oauth-callback` (with CLIProxyAPI's aliases) → a code-flow login. */
const RELAY_PROVIDERS: Readonly<Record<string, string>> = {
  anthropic: "anthropic",
  claude: "anthropic",
  codex: "codex",
  openai: "codex",
  "gemini-cli": "gemini-cli",
  gemini: "gemini-cli",
};

/** Body of `POST /v0/management/oauth-callback`. */
export interface OAuthCallbackRelayBody {
  provider: string;
  /** The URL the provider redirected the browser to (its `state`, `code` or `error`). */
  redirect_url?: string;
  code?: string;
  state?: string;
  error?: string;
}

/** Reply of `POST /v0/management/oauth-callback`. */
export interface OAuthCallbackRelayResponse {
  status: "ok" | "error";
  /** With `status: "error"`. */
  error?: string;
}

/** Dependencies of {@link oauthLoginRoutes}. */
export interface OAuthLoginDeps extends OAuthLoginsDeps {
  guard: ManagementGuard;
  /** Whether the management API is enabled (the callback is 404 otherwise, like every route). */
  enabled(): boolean;
  maxBodyBytes?: number;
}

const str = (v: unknown): string | undefined =>
  typeof v === "string" && v.trim() !== "" ? v.trim() : undefined;

/**
 * Runs a login step; its failures become the dialect's errors (a 502 is answered as it is: the
 * upstream endpoint failed, nothing was saved).
 */
async function step(fn: () => Promise<Reply>): Promise<Reply> {
  try {
    return await fn();
  } catch (error) {
    if (!isOAuthLoginError(error)) throw error;
    if (error.status === 502) return json(502, { error: error.message });
    throw managementError(error.status, error.message);
  }
}

/**
 * The OAuth login routes (and the unauthenticated callback).
 *
 * @example
 * ```ts
 * router.add(oauthLoginRoutes({ guard, store, pool, providers: opts.oauth.providers, http, enabled }));
 * ```
 */
export function oauthLoginRoutes(deps: OAuthLoginDeps): Route[] {
  const { guard } = deps;
  const maxBody = deps.maxBodyBytes ?? 1 << 20;
  const logins = createOAuthLogins(deps);

  const start = (flow: "code" | "device", login: string, projectId?: string) =>
    step(async () =>
      managementOk(
        flow === "code"
          ? await logins.startCode(login, projectId)
          : await logins.startDevice(login),
      ),
    );

  /** The callback: exchanges the code of a flow in progress. */
  const callback = async (ex: Exchange): Promise<Reply> => {
    if (!deps.enabled()) throw managementError(404, MANAGEMENT_DISABLED_MESSAGE);
    const q = new URLSearchParams(ex.search);
    return step(async () =>
      managementOk(
        await logins.finishCode({
          state: q.get("state") ?? "",
          code: q.get("code") ?? "",
          error: q.get("error"),
        }),
      ),
    );
  };

  /** `POST /oauth-callback`: the redirect a UI relays; CLIProxyAPI's `{ status, error }` answers. */
  const relay = async (ex: Exchange): Promise<Reply> => {
    if (!deps.enabled()) throw managementError(404, MANAGEMENT_DISABLED_MESSAGE);
    const fail = (status: number, error: string) => json(status, { status: "error", error });
    let body: unknown;
    try {
      body = await readManagementBody(ex, maxBody);
    } catch {
      return fail(400, "invalid body");
    }
    if (typeof body !== "object" || body === null || Array.isArray(body))
      return fail(400, "invalid body");
    const b = body as Record<string, unknown>;
    const provider = typeof b.provider === "string" ? b.provider.trim().toLowerCase() : "";
    const login = RELAY_PROVIDERS[provider];
    if (!login) return fail(400, "unsupported provider");
    const fields: Record<string, string> = {};
    for (const k of ["state", "code", "error"] as const)
      if (typeof b[k] === "string" && (b[k] as string).trim() !== "")
        fields[k] = (b[k] as string).trim();
    if (typeof b.redirect_url === "string" && b.redirect_url.trim() !== "") {
      let url: URL;
      try {
        url = new URL(b.redirect_url.trim());
      } catch {
        return fail(400, "invalid redirect_url");
      }
      const params = new URLSearchParams(url.hash.slice(1));
      for (const k of ["state", "code", "error"] as const) {
        const v = url.searchParams.get(k) ?? params.get(k);
        if (fields[k] === undefined && v) fields[k] = v;
      }
    }
    if (!fields.state) return fail(400, "state is required");
    if (!/^[A-Za-z0-9._-]{1,200}$/.test(fields.state)) return fail(400, "invalid state");
    if (!fields.code && !fields.error) return fail(400, "code or error is required");
    try {
      await logins.finishCode({
        state: fields.state,
        code: fields.code ?? "",
        error: fields.error ?? null,
      });
    } catch (error) {
      if (!isOAuthLoginError(error)) throw error;
      return fail(error.message === "unknown or expired state" ? 404 : error.status, error.message);
    }
    return json(200, { status: "ok" });
  };

  return [
    managementRoute(guard, "GET", "/anthropic-auth-url", () => start("code", "anthropic")),
    managementRoute(guard, "GET", "/codex-auth-url", () => start("code", "codex")),
    managementRoute(guard, "GET", "/gemini-cli-auth-url", (ex) => {
      const project = str(new URLSearchParams(ex.search).get("project_id"));
      return start("code", "gemini-cli", project);
    }),
    managementRoute(guard, "GET", "/qwen-auth-url", () => start("device", "qwen")),
    managementRoute(guard, "GET", "/get-auth-status", async (ex) => {
      const state = new URLSearchParams(ex.search).get("state");
      if (!state) throw managementError(400, "missing state");
      const status = await logins.status(state);
      return json(200, status ?? { status: "error", error: "unknown or expired state" });
    }),
    managementRoute(guard, "POST", "/gemini-web-token", async (ex) => {
      const body = await readManagementBody(ex, maxBody);
      const b = (typeof body === "object" && body !== null ? body : {}) as Record<string, unknown>;
      const psid = str(b.secure_1psid);
      const psidts = str(b.secure_1psidts);
      if (!psid) throw managementError(400, "invalid body");
      return managementOk({ file: await logins.saveGeminiWeb(psid, psidts) });
    }),
    ...NO_LOGIN_FLOW.map((login) =>
      managementRoute(guard, "GET", `/${login}-auth-url`, async () =>
        json(501, {
          error: `tokenpool has no ${login} login flow: upload the account's token file (POST /v0/management/auth-files) or add it as a credential instead`,
        }),
      ),
    ),
    {
      method: "GET",
      path: OAUTH_CALLBACK_PATH,
      onError: renderManagementError,
      handle: (ex) => callback(ex),
    },
    {
      method: "POST",
      path: OAUTH_RELAY_PATH,
      onError: renderManagementError,
      handle: (ex) => relay(ex),
    },
  ];
}
