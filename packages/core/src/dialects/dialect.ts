/**
 * What a dialect is: one HTTP surface (a set of routes under its path prefixes, with its own
 * error format) over the gateway's services. `createGateway` mounts the dialects of
 * `dialects/registry.ts` in order; a new surface is one more folder and one more entry there.
 *
 * @module
 */
import type { OAuthRefresher } from "../credentials/oauth.js";
import type { CredentialPool } from "../credentials/pool.js";
import type { GatewayError } from "../errors.js";
import type { GatewayEmitter } from "../events.js";
import type { Reply } from "../exchange.js";
import type { Route, ScopeMiddleware } from "../http/router.js";
import type { ManagementGate } from "../keys/management-gate.js";
import type { KeyService } from "../keys/service.js";
import type { Logger } from "../logger.js";
import type { GatewayMetrics } from "../metrics/metrics.js";
import type { UpstreamClient } from "../net/upstream.js";
import type { ResolvedOptions } from "../options.js";
import type { SettingsService } from "../settings/service.js";
import type { Store } from "../store/types.js";
import type { UsageWriter } from "../usage/writer.js";
import type { UserService } from "../users/service.js";
import type { SecretBox } from "../util/secrets.js";
import type { WebhookService } from "../webhooks/service.js";
import type { ProxyDialectDeps } from "./proxy-common.js";

/** The services of one gateway, as `createGateway` hands them to every dialect. */
export interface DialectContext {
  /** The gateway's resolved options. */
  options: ResolvedOptions;
  /** The store, as the gateway sees it (secrets opened). */
  store: Store;
  settings: SettingsService;
  events: GatewayEmitter;
  logger: Logger;
  keys: KeyService;
  users: UserService;
  pool: CredentialPool;
  /** Refreshes OAuth credentials. */
  oauth: OAuthRefresher;
  /** The client of token endpoints (own connections and timeouts). */
  oauthHttp: UpstreamClient;
  /** Usage records (write-behind). @internal */
  usage: UsageWriter;
  /** Seals, opens and hashes with the server secret. */
  box: SecretBox;
  /** The one gate of the management key. @internal */
  gate: ManagementGate;
  /** What the proxy routes need: the engine's dependencies, one object per gateway. @internal */
  proxy: ProxyDialectDeps;
  /** Called after a route changed a runtime setting (applies `debug`). */
  settingChanged(name: string): void;
  /** Webhook subscriptions and deliveries (`/v0/management/webhooks`). */
  webhooks?: WebhookService;
  /** The gateway's Prometheus metrics (`GET /metrics`). @internal */
  metrics?: GatewayMetrics;
}

/**
 * One dialect: a name (the same in its folder, its code and the docs), the path prefixes it
 * owns, its routes and its error format.
 *
 * @example
 * ```ts
 * const statusDialect: Dialect = {
 *   name: "status",
 *   prefixes: ["/status"],
 *   routes: () => [
 *     { method: "GET", path: "/status", onError: render, handle: async () => json(200, { up: true }) },
 *   ],
 *   renderError: render,
 *   notFound: (error) => render(error),
 * };
 * ```
 */
export interface Dialect {
  /**
   * The dialect's one name: `openai`, `anthropic`, `gemini`, `new-api`, `cliproxy`,
   * `antigravity`, `openrouter`, `metrics`.
   */
  readonly name: string;
  /**
   * The path prefixes whose 404s and 405s this dialect renders; the longest matching prefix
   * wins. `/api` takes `/api` and `/api/...`; a prefix ending in `*` takes every path starting
   * with the part before it (`/v1/messages*`; `/*` is the catch-all).
   */
  readonly prefixes: readonly string[];
  /** The dialect's routes, in order (among parameterised paths the first match wins). */
  routes(context: DialectContext): Route[];
  /** Renders any error in the dialect's format. */
  renderError(error: unknown): Reply;
  /** Renders a 404 (no route has the path) or 405 (no route has the method) under its prefixes. */
  notFound(error: GatewayError, context: DialectContext): Reply;
  /**
   * Optional: a middleware around every request under its prefixes (routed or not), built once
   * per gateway; the cliproxy dialect's CORS and version headers. Throwing here is a
   * configuration error of `createGateway()`.
   */
  middleware?(context: DialectContext): ScopeMiddleware;
}

/**
 * A dialect whose 404s and 405s are rendered like any of its errors (every built-in dialect
 * but cliproxy).
 *
 * @example
 * ```ts
 * const metricsDialect = plainDialect({ name: "metrics", prefixes: ["/metrics"], routes, renderError });
 * ```
 */
export function plainDialect(dialect: Omit<Dialect, "notFound">): Dialect {
  return { ...dialect, notFound: (error) => dialect.renderError(error) };
}

/**
 * A proxy dialect (openai, anthropic, gemini): routes over the engine's dependencies
 * ({@link DialectContext.proxy}), errors in the provider's own shape.
 */
export function proxyDialect(
  name: string,
  prefixes: readonly string[],
  routes: (deps: ProxyDialectDeps) => Route[],
  renderError: (error: unknown) => Reply,
): Dialect {
  return plainDialect({ name, prefixes, routes: (context) => routes(context.proxy), renderError });
}
