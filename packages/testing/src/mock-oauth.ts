import { createHash, randomBytes } from "node:crypto";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import { listenMock, mockCloser } from "./listen.js";
import { sendJson } from "./mock/shared.js";

/** Options of {@link createMockOAuth}. */
export interface MockOAuthOptions {
  /**
   * Port to listen on; 0 picks a free one.
   * @default 0
   */
  port?: number;
  /**
   * Interface to listen on.
   * @default "127.0.0.1"
   */
  host?: string;
  /**
   * Refresh tokens the server accepts; any other gets 400 `invalid_grant`. When omitted, every
   * refresh token is accepted (add or revoke them later with {@link MockOAuthServer.addRefreshToken}
   * and {@link MockOAuthServer.revoke}).
   */
  refreshTokens?: Iterable<string>;
  /**
   * `expires_in` of issued access tokens, in seconds.
   * @default 3599
   */
  expiresIn?: number;
  /**
   * Issue a new refresh token with every refresh and invalidate the one used (as Anthropic,
   * OpenAI and Qwen do). When off, the same refresh token keeps working (Google).
   * @default false
   */
  rotateRefreshTokens?: boolean;
  /** When set, a refresh must send this `client_id`, else 401 `invalid_client`. */
  clientId?: string;
  /** When set, a refresh must send this `client_secret`, else 401 `invalid_client`. */
  clientSecret?: string;
  /**
   * Delay before every answer, in milliseconds (a fault's `delayMs` adds to it).
   * @default 0
   */
  delayMs?: number;
  /**
   * Prefix of issued access tokens.
   * @default "ya29.mock-"
   */
  accessTokenPrefix?: string;
  /**
   * Prefix of issued refresh tokens (with `rotateRefreshTokens`).
   * @default "1//mock-"
   */
  refreshTokenPrefix?: string;
  /**
   * E-mail of the account that logs in through `/authorize` or the device flow: token answers of
   * those grants carry `email` and an unsigned `id_token` with that claim.
   * @default none
   */
  email?: string;
  /**
   * `interval` (seconds) of device authorizations.
   * @default 5
   */
  deviceInterval?: number;
  /**
   * `expires_in` (seconds) of device codes and authorization codes.
   * @default 600
   */
  codeExpiresIn?: number;
}

/** A fault to inject with {@link MockOAuthServer.fail}; faults apply in the order they were queued. */
export interface MockOAuthFault {
  /** Answer with this status and an OAuth error body (or `body`) instead of tokens. */
  status?: number;
  /** Body of the `status` answer: a string is sent as is, anything else as JSON. */
  body?: unknown;
  /** Delay before answering, in milliseconds. */
  delayMs?: number;
  /**
   * How many requests this fault applies to.
   * @default 1
   */
  times?: number;
}

/** One request received by the token endpoint. */
export interface RecordedOAuthRequest {
  /** `form` (application/x-www-form-urlencoded) or `json`. */
  format: "form" | "json";
  grantType: string;
  refreshToken: string;
  clientId: string;
  clientSecret: string;
  scope: string;
  /** `code` of an authorization code grant. */
  code?: string;
  /** `code_verifier` of an authorization code or device grant. */
  codeVerifier?: string;
  /** `device_code` of a device grant. */
  deviceCode?: string;
  /** `redirect_uri` of an authorization code grant. */
  redirectUri?: string;
  /** The HTTP status the server answered with. */
  status: number;
  at: number;
}

/** A running mock OAuth token endpoint. */
export interface MockOAuthServer {
  /** The token endpoint, e.g. `http://127.0.0.1:41234/token`. */
  readonly url: string;
  /**
   * The authorization endpoint (`GET /authorize`): plays the user who consents, answering 302 to
   * `redirect_uri?code=...&state=...` (or `?error=access_denied&state=` after {@link MockOAuthServer.denyNextAuthorization}).
   */
  readonly authorizeUrl: string;
  /** The device authorization endpoint (`POST /device/code`, RFC 8628). */
  readonly deviceCodeUrl: string;
  /**
   * Issues an authorization code for a PKCE challenge (S256), as `/authorize` does; the token
   * endpoint accepts it once with the matching `code_verifier` (and `redirect_uri` when given).
   */
  issueCode(input: { codeChallenge: string; clientId?: string; redirectUri?: string }): string;
  /** The user approves the device authorization with this user code. */
  approve(userCode: string): void;
  /** The user denies it: the next poll answers `access_denied`. */
  deny(userCode: string): void;
  /** The device code expires now: the next poll answers `expired_token`. */
  expireDevice(userCode: string): void;
  /** The next `/authorize` answers `error=access_denied` instead of a code. */
  denyNextAuthorization(): void;
  readonly origin: string;
  readonly port: number;
  /**
   * Access tokens issued and not expired by {@link MockOAuthServer.expire}. Share it with a mock
   * upstream: `createMockUpstream({ authorize: (t) => oauth.validTokens.has(t) })`.
   */
  readonly validTokens: Set<string>;
  /** Access tokens issued, in order. */
  readonly issued: readonly string[];
  /** Every token request received, oldest first. */
  readonly requests: readonly RecordedOAuthRequest[];
  /** Refresh requests received for `refreshToken`, or in total when omitted (failed ones too). */
  calls(refreshToken?: string): number;
  /** Whether `token` is an issued, unexpired access token. */
  accepts(token: string): boolean;
  /** Adds a valid access token (e.g. the initial one of a credential). */
  grant(accessToken: string): void;
  /** Invalidates an access token (the upstream then answers 401). */
  expire(accessToken: string): void;
  /** Accept this refresh token from now on. */
  addRefreshToken(refreshToken: string): void;
  /** Refuse this refresh token from now on (400 `invalid_grant`). */
  revoke(refreshToken: string): void;
  /** Queue a fault for the next token request(s). */
  fail(fault: MockOAuthFault): void;
  /** Forget requests, faults and issued tokens (accepted refresh tokens stay). */
  reset(): void;
  close(): Promise<void>;
}

interface QueuedFault extends MockOAuthFault {
  remaining: number;
}

/** The path of the token endpoint. */
const TOKEN_PATH = "/token";
const AUTHORIZE_PATH = "/authorize";
const DEVICE_PATH = "/device/code";

interface IssuedCode {
  challenge: string;
  clientId?: string;
  redirectUri?: string;
  expiresAt: number;
}

interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  clientId: string;
  challenge?: string;
  state: "pending" | "approved" | "denied" | "used";
  expiresAt: number;
}

const s256 = (verifier: string) => createHash("sha256").update(verifier).digest("base64url");

/**
 * Starts a mock OAuth 2.0 token endpoint (`POST /token`) on node:http for tests: it accepts
 * `grant_type=refresh_token` as a form (RFC 6749) or as JSON (Anthropic's client), counts calls
 * per refresh token, issues access tokens with `expires_in` (and, with `rotateRefreshTokens`, a
 * new refresh token that replaces the one used), and answers errors as OAuth does:
 * `{ error, error_description }` with 400 `invalid_grant` / `unsupported_grant_type` /
 * `invalid_request`, or 401 `invalid_client`. Faults (status, delay) can be queued.
 *
 * Logins too: `GET /authorize` issues authorization codes bound to a PKCE challenge, which
 * `grant_type=authorization_code` redeems once with the right `code_verifier`; `POST
 * /device/code` starts a device authorization whose token polls
 * (`urn:ietf:params:oauth:grant-type:device_code`) answer `authorization_pending` until the
 * test calls {@link MockOAuthServer.approve} (or `deny` / `expireDevice`).
 *
 * @example
 * ```ts
 * const oauth = await createMockOAuth({ refreshTokens: ["1//refresh-a"] });
 * const upstream = await createMockUpstream({ authorize: (t) => oauth.accepts(t) });
 * // credential: { kind: "oauth", secret: { refreshToken: "1//refresh-a", extra: { tokenUrl: oauth.url } } }
 * expect(oauth.calls("1//refresh-a")).toBe(1);
 * ```
 */
export async function createMockOAuth(options: MockOAuthOptions = {}): Promise<MockOAuthServer> {
  const host = options.host ?? "127.0.0.1";
  const expiresIn = options.expiresIn ?? 3599;
  const accessPrefix = options.accessTokenPrefix ?? "ya29.mock-";
  const refreshPrefix = options.refreshTokenPrefix ?? "1//mock-";
  const accepted = options.refreshTokens ? new Set(options.refreshTokens) : null;
  const revoked = new Set<string>();
  const validTokens = new Set<string>();
  const issued: string[] = [];
  const requests: RecordedOAuthRequest[] = [];
  const counts = new Map<string, number>();
  const faults: QueuedFault[] = [];
  const timers = new Set<NodeJS.Timeout>();
  let serial = 0;
  const codes = new Map<string, IssuedCode>();
  const devices = new Map<string, DeviceAuthorization>();
  const codeExpiresIn = options.codeExpiresIn ?? 600;
  let denyNext = false;
  const randomCode = (n: number) => randomBytes(n).toString("base64url");
  const byUserCode = (userCode: string) => {
    for (const d of devices.values()) if (d.userCode === userCode) return d;
    throw new Error(`mock OAuth: no device authorization with user code ${userCode}`);
  };
  const issueCode = (input: { codeChallenge: string; clientId?: string; redirectUri?: string }) => {
    const code = `mock-code-${randomCode(12)}`;
    codes.set(code, {
      challenge: input.codeChallenge,
      ...(input.clientId !== undefined ? { clientId: input.clientId } : {}),
      ...(input.redirectUri !== undefined ? { redirectUri: input.redirectUri } : {}),
      expiresAt: Date.now() + codeExpiresIn * 1000,
    });
    return code;
  };
  /** Tokens of a login (code or device grant). */
  const loginTokens = (): Record<string, unknown> => {
    const accessToken = nextToken(accessPrefix);
    validTokens.add(accessToken);
    issued.push(accessToken);
    const refreshToken = nextToken(refreshPrefix);
    accepted?.add(refreshToken);
    const body: Record<string, unknown> = {
      access_token: accessToken,
      refresh_token: refreshToken,
      expires_in: expiresIn,
      token_type: "Bearer",
    };
    if (options.email) {
      body.email = options.email;
      const part = (v: unknown) => Buffer.from(JSON.stringify(v)).toString("base64url");
      body.id_token = `${part({ alg: "none", typ: "JWT" })}.${part({ email: options.email })}.`;
    }
    return body;
  };

  const nextToken = (prefix: string) =>
    `${prefix}${(++serial).toString(36)}-${Math.random().toString(36).slice(2, 12)}`;

  function wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        timers.delete(t);
        resolve();
      }, ms);
      timers.add(t);
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method === "GET" && path === AUTHORIZE_PATH) {
      const q = new URL(req.url ?? "/", "http://mock").searchParams;
      const redirect = q.get("redirect_uri");
      const challenge = q.get("code_challenge");
      if (!redirect || !challenge || q.get("code_challenge_method") !== "S256") {
        send(res, 400, { error: "invalid_request", error_description: "PKCE S256 required" });
        return;
      }
      const target = new URL(redirect);
      if (denyNext) {
        denyNext = false;
        target.searchParams.set("error", "access_denied");
      } else {
        const code = issueCode({
          codeChallenge: challenge,
          clientId: q.get("client_id") ?? "",
          redirectUri: redirect,
        });
        target.searchParams.set("code", code);
      }
      target.searchParams.set("state", q.get("state") ?? "");
      res.writeHead(302, { location: target.toString(), "content-length": 0 });
      res.end();
      return;
    }
    if (req.method === "POST" && path === DEVICE_PATH) {
      const fields = Object.fromEntries(new URLSearchParams((await readBody(req)).toString()));
      const d: DeviceAuthorization = {
        deviceCode: `mock-device-${randomCode(12)}`,
        userCode: randomBytes(4).toString("hex").toUpperCase(),
        clientId: fields.client_id ?? "",
        ...(fields.code_challenge ? { challenge: fields.code_challenge } : {}),
        state: "pending",
        expiresAt: Date.now() + codeExpiresIn * 1000,
      };
      devices.set(d.deviceCode, d);
      const verification = `${origin}/device`;
      send(res, 200, {
        device_code: d.deviceCode,
        user_code: d.userCode,
        verification_uri: verification,
        verification_uri_complete: `${verification}?user_code=${d.userCode}`,
        expires_in: codeExpiresIn,
        interval: options.deviceInterval ?? 5,
      });
      return;
    }
    if (req.method !== "POST" || path !== TOKEN_PATH) {
      send(res, 404, { error: "not_found", error_description: `no route ${req.method} ${path}` });
      return;
    }
    const raw = (await readBody(req)).toString("utf8");
    const json = (req.headers["content-type"] ?? "").includes("application/json");
    let fields: Record<string, string> = {};
    try {
      if (json) {
        const v = JSON.parse(raw) as Record<string, unknown>;
        for (const [k, x] of Object.entries(v)) if (typeof x === "string") fields[k] = x;
      } else fields = Object.fromEntries(new URLSearchParams(raw));
    } catch {
      fields = {};
    }
    const record: RecordedOAuthRequest = {
      format: json ? "json" : "form",
      grantType: fields.grant_type ?? "",
      refreshToken: fields.refresh_token ?? "",
      clientId: fields.client_id ?? "",
      clientSecret: fields.client_secret ?? "",
      scope: fields.scope ?? "",
      ...(fields.code !== undefined ? { code: fields.code } : {}),
      ...(fields.code_verifier !== undefined ? { codeVerifier: fields.code_verifier } : {}),
      ...(fields.device_code !== undefined ? { deviceCode: fields.device_code } : {}),
      ...(fields.redirect_uri !== undefined ? { redirectUri: fields.redirect_uri } : {}),
      status: 200,
      at: Date.now(),
    };
    requests.push(record);
    if (record.refreshToken)
      counts.set(record.refreshToken, (counts.get(record.refreshToken) ?? 0) + 1);

    const fault = faults[0];
    if (fault) {
      fault.remaining -= 1;
      if (fault.remaining <= 0) faults.shift();
    }
    const delay = (options.delayMs ?? 0) + (fault?.delayMs ?? 0);
    if (delay > 0) await wait(delay);
    const answer = (status: number, body: unknown) => {
      record.status = status;
      send(res, status, body);
    };
    if (fault?.status !== undefined) {
      answer(
        fault.status,
        fault.body ?? {
          error: fault.status >= 500 ? "server_error" : "invalid_request",
          error_description: `Mock OAuth fault: HTTP ${fault.status}`,
        },
      );
      return;
    }
    const login =
      record.grantType === "authorization_code" ||
      record.grantType === "urn:ietf:params:oauth:grant-type:device_code";
    if (
      login &&
      ((options.clientId !== undefined && record.clientId !== options.clientId) ||
        (options.clientSecret !== undefined && record.clientSecret !== options.clientSecret))
    ) {
      answer(401, {
        error: "invalid_client",
        error_description: "The OAuth client was not found.",
      });
      return;
    }
    if (record.grantType === "authorization_code") {
      const issuedCode = codes.get(record.code ?? "");
      const invalid = (description: string) =>
        answer(400, { error: "invalid_grant", error_description: description });
      if (!issuedCode || issuedCode.expiresAt <= Date.now())
        return invalid("authorization code is invalid, used or expired");
      codes.delete(record.code ?? "");
      if (!record.codeVerifier || s256(record.codeVerifier) !== issuedCode.challenge)
        return invalid("code_verifier does not match the code challenge");
      if (issuedCode.redirectUri !== undefined && record.redirectUri !== issuedCode.redirectUri)
        return invalid("redirect_uri does not match");
      if (issuedCode.clientId && issuedCode.clientId !== record.clientId)
        return invalid("client_id does not match");
      answer(200, loginTokens());
      return;
    }
    if (record.grantType === "urn:ietf:params:oauth:grant-type:device_code") {
      const d = devices.get(record.deviceCode ?? "");
      const error = (code: string) => answer(400, { error: code, error_description: code });
      if (!d || d.state === "used") return error("invalid_grant");
      if (d.expiresAt <= Date.now()) return error("expired_token");
      if (d.state === "denied") return error("access_denied");
      if (d.state === "pending") return error("authorization_pending");
      if (d.challenge && (!record.codeVerifier || s256(record.codeVerifier) !== d.challenge))
        return error("invalid_grant");
      d.state = "used";
      answer(200, loginTokens());
      return;
    }
    if (record.grantType !== "refresh_token") {
      answer(400, {
        error: "unsupported_grant_type",
        error_description: `grant_type must be refresh_token, got "${record.grantType}"`,
      });
      return;
    }
    if (!record.refreshToken) {
      answer(400, { error: "invalid_request", error_description: "refresh_token is missing" });
      return;
    }
    if (
      (options.clientId !== undefined && record.clientId !== options.clientId) ||
      (options.clientSecret !== undefined && record.clientSecret !== options.clientSecret)
    ) {
      answer(401, {
        error: "invalid_client",
        error_description: "The OAuth client was not found.",
      });
      return;
    }
    const rt = record.refreshToken;
    if (revoked.has(rt) || (accepted !== null && !accepted.has(rt))) {
      answer(400, {
        error: "invalid_grant",
        error_description: "Token has been expired or revoked.",
      });
      return;
    }
    const accessToken = nextToken(accessPrefix);
    validTokens.add(accessToken);
    issued.push(accessToken);
    const body: Record<string, unknown> = {
      access_token: accessToken,
      expires_in: expiresIn,
      token_type: "Bearer",
      scope: record.scope || "mock",
    };
    if (options.rotateRefreshTokens) {
      const next = nextToken(refreshPrefix);
      revoked.add(rt);
      accepted?.delete(rt);
      accepted?.add(next);
      body.refresh_token = next;
    }
    answer(200, body);
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((error: unknown) => {
      send(res, 500, { error: "server_error", error_description: String(error) });
    });
  });
  const { port, origin } = await listenMock(server, options.port ?? 0, host);

  return {
    url: `${origin}${TOKEN_PATH}`,
    authorizeUrl: `${origin}${AUTHORIZE_PATH}`,
    deviceCodeUrl: `${origin}${DEVICE_PATH}`,
    issueCode,
    approve: (userCode) => {
      byUserCode(userCode).state = "approved";
    },
    deny: (userCode) => {
      byUserCode(userCode).state = "denied";
    },
    expireDevice: (userCode) => {
      byUserCode(userCode).expiresAt = 0;
    },
    denyNextAuthorization: () => {
      denyNext = true;
    },
    origin,
    port,
    validTokens,
    issued,
    requests,
    calls: (refreshToken) =>
      refreshToken === undefined ? requests.length : (counts.get(refreshToken) ?? 0),
    accepts: (token) => validTokens.has(token),
    grant: (token) => {
      validTokens.add(token);
    },
    expire: (token) => {
      validTokens.delete(token);
    },
    addRefreshToken: (token) => {
      revoked.delete(token);
      accepted?.add(token);
    },
    revoke: (token) => {
      revoked.add(token);
      accepted?.delete(token);
    },
    fail: (fault) => {
      faults.push({ ...fault, remaining: fault.times ?? 1 });
    },
    reset: () => {
      requests.length = 0;
      issued.length = 0;
      faults.length = 0;
      counts.clear();
      validTokens.clear();
    },
    close: mockCloser(server, timers),
  };
}

/** A JSON reply of the token endpoint (never cached). */
function send(res: ServerResponse, status: number, body: unknown): void {
  sendJson(res, status, body, { "cache-control": "no-store" });
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on("data", (chunk: Buffer) => parts.push(chunk));
    req.on("end", () => resolve(Buffer.concat(parts)));
    req.on("error", reject);
  });
}
