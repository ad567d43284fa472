import { Transport } from "./http.js";
import { type LogsApi, logsApi } from "./logs.js";
import { type ManagementApi, managementApi } from "./management.js";
import { type PoolApi, poolApi } from "./pool.js";
import { type ProxyApi, proxyApi } from "./proxy.js";
import { type TokensApi, tokensApi } from "./tokens.js";
import { type UsersApi, usersApi } from "./users.js";

/** Options of {@link createClient}. */
export interface ClientOptions {
  /** The gateway's origin, with its mount path if any (e.g. `http://127.0.0.1:8317`). */
  baseUrl: string | URL;
  /**
   * The management key: needed for `client.management`, and used for `client.tokens`,
   * `client.users` and `client.pool` when no `accessToken` is given (as an admin).
   */
  managementKey?: string;
  /** A user's access token for `client.tokens` (its own keys), `client.users` and `client.pool` (admins). */
  accessToken?: string;
  /** The id of the `accessToken`'s user, sent as `New-Api-User`. */
  userId?: number | string;
  /** The fetch to use (a test double, a proxy agent's fetch ...). @default globalThis.fetch */
  fetch?: typeof fetch;
  /**
   * Milliseconds to wait for an answer's headers (a stream's body is not timed); `false` waits
   * forever. A timeout throws a `TokenpoolError` with code `TIMEOUT`.
   * @default 60000
   */
  timeout?: number | false;
  /**
   * How many times an idempotent call (GET, HEAD, PUT, DELETE) is retried after a network
   * error or a 408/429/500/502/503/504, with exponential backoff (and `Retry-After` for 429 and
   * 503). POST and PATCH are never retried. 0 disables retries.
   * @default 2
   */
  retry?: number;
}

/** The client {@link createClient} returns. */
export interface Client {
  /** new-api's `/api/token/` (downstream keys). */
  tokens: TokensApi;
  /** `/api/user/` (admins). */
  users: UsersApi;
  /** new-api's request log `/api/log/` (admins: every user's; `self` calls: the caller's own). */
  logs: LogsApi;
  /** CLIProxyAPI's `/v0/management/*` (the management key). */
  management: ManagementApi;
  /** antigravity2api's `/v1/tokens` (the pool's OAuth accounts). */
  pool: PoolApi;
  /** The proxy routes with a downstream key, in OpenAI, Anthropic and Gemini formats. */
  proxy(apiKey: string): ProxyApi;
}

/**
 * Creates a client for a tokenpool gateway. Request and response types are the gateway's own
 * (from `@tokenpool/core`); every failure is a `TokenpoolError`.
 *
 * @example
 * ```ts
 * import { createClient } from "@tokenpool/client";
 *
 * const client = createClient({ baseUrl: "http://127.0.0.1:8317", managementKey: process.env.TOKENPOOL_MANAGEMENT_KEY });
 * const token = await client.tokens.create({ name: "my app", remain_quota: 500_000, expired_time: -1 });
 * const reply = await client.proxy(token.key).chat({ model: "gpt-4o-mini", messages: [{ role: "user", content: "Hi" }] });
 * console.log(reply.choices[0].message.content, await client.management.usage());
 * ```
 */
export function createClient(options: ClientOptions): Client {
  if (options?.baseUrl === undefined || String(options.baseUrl).trim() === "")
    throw new TypeError(
      "createClient: `baseUrl` is missing. Pass the gateway's URL, e.g. createClient({ baseUrl: 'http://127.0.0.1:8317' }).",
    );
  let baseUrl: URL;
  try {
    baseUrl = new URL(String(options.baseUrl));
  } catch {
    throw new TypeError(
      `createClient: \`baseUrl\` is not a valid URL (${String(options.baseUrl)}). Pass an absolute URL such as 'http://127.0.0.1:8317'.`,
    );
  }
  if (options.userId !== undefined && !options.accessToken)
    throw new TypeError(
      "createClient: `userId` was given without `accessToken`. Pass the user's access token too, or leave both out to use the management key.",
    );
  const t = new Transport({
    baseUrl: baseUrl.toString(),
    managementKey: options.managementKey,
    accessToken: options.accessToken,
    userId: options.userId,
    fetch: options.fetch,
    timeout: options.timeout,
    retry: options.retry,
  });
  return {
    tokens: tokensApi(t),
    users: usersApi(t),
    logs: logsApi(t),
    management: managementApi(t),
    pool: poolApi(t),
    proxy: (apiKey) => proxyApi(t, apiKey),
  };
}
