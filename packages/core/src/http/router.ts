import { GatewayError } from "../errors.js";
import { type Exchange, json, type Reply } from "../exchange.js";
import type { Logger } from "../logger.js";

/**
 * One route: a method, a path (exact, or with `:param` segments, or ending in a `*param` segment
 * that takes the rest of the path, slashes included) and a handler.
 */
export interface Route {
  method: string;
  path: string;
  handle(ex: Exchange, params: Record<string, string>): Promise<Reply>;
  /** Renders errors in the dialect of this route. */
  onError(error: unknown): Reply;
}

interface Compiled {
  route: Route;
  re: RegExp | null;
  names: string[];
}

/** Renders an error for paths no route matches, by the dialect of the path prefix. */
export type FallbackError = (ex: Exchange, error: GatewayError) => Reply;

/**
 * Wraps every exchange under a scope's prefixes, routed or not: it may answer by itself (a CORS
 * preflight) or call `next` (routing, the route, or the 404/405) and add to its reply. It must
 * not throw; if it does, the answer is a bare 500 `{ "error": "internal error" }`.
 */
export type ScopeMiddleware = (ex: Exchange, next: () => Promise<Reply>) => Promise<Reply>;

/** A registered path prefix and the renderer of the 404s and 405s under it. */
interface Scope {
  /** The literal part of the prefix (without a trailing `*`). */
  literal: string;
  /** Whether the prefix ended in `*` (any continuation matches, not only `/...`). */
  open: boolean;
  render: FallbackError;
  /** Runs around every exchange whose longest matching scope this is. */
  middleware?: ScopeMiddleware | undefined;
}

/**
 * Whether a path is under a scope: `/api` takes `/api` and `/api/...` (not `/apis`); a prefix
 * that ended in `*` takes every path that starts with the part before it (`/v1/messages*`, `/*`).
 */
function under(scope: Scope, path: string): boolean {
  const { literal } = scope;
  if (scope.open) return path.startsWith(literal);
  return path === literal || (path.startsWith(literal) && path.charCodeAt(literal.length) === 47);
}

/**
 * The router: `(Exchange) => Promise<Reply>`. Exact paths are one map lookup; parameterised
 * paths are tried in order (the first that matches wins). Errors are rendered by the matched
 * route's dialect; a path no route matches gets its 404 or 405 from the dialect with the
 * longest matching prefix (see {@link Router.scope}), else from the fallback.
 */
export class Router {
  readonly #exact = new Map<string, Route>();
  readonly #patterns: Compiled[] = [];
  readonly #paths = new Set<string>();
  readonly #scopes: Scope[] = [];
  /** The scopes that have a middleware (few: checked on every request). */
  readonly #wrapped: Scope[] = [];
  readonly #logger: Logger;
  readonly #fallback: FallbackError | undefined;

  constructor(logger: Logger, fallback?: FallbackError) {
    this.#logger = logger;
    this.#fallback = fallback;
  }

  /**
   * Registers path prefixes whose unmatched paths (404) and methods (405) `render` answers.
   * `/api` takes `/api` and `/api/...` (not `/apis`); a prefix ending in `*` takes every path
   * that starts with the part before it (`/v1/messages*`, `/*`). The longest matching prefix
   * wins; between equal ones, the first registered. A `middleware` runs around every exchange
   * of the paths this scope wins (see {@link ScopeMiddleware}), before routing.
   */
  scope(prefixes: readonly string[], render: FallbackError, middleware?: ScopeMiddleware): this {
    for (const prefix of prefixes) {
      const open = prefix.endsWith("*");
      const scope: Scope = { literal: open ? prefix.slice(0, -1) : prefix, open, render };
      if (middleware) {
        scope.middleware = middleware;
        this.#wrapped.push(scope);
      }
      this.#scopes.push(scope);
    }
    return this;
  }

  /** The longest matching scope of a path (between equal ones, the first registered). */
  #scopeOf(path: string): Scope | undefined {
    let best: Scope | undefined;
    for (const s of this.#scopes) {
      if (best && s.literal.length <= best.literal.length) continue;
      if (under(s, path)) best = s;
    }
    return best;
  }

  /** The renderer of a path's 404s and 405s: the longest matching scope, else the fallback. */
  #renderer(path: string): FallbackError {
    return this.#scopeOf(path)?.render ?? this.#fallback ?? notFoundReply;
  }

  /** The middleware of a path: that of its longest matching scope, if it has one. */
  #middlewareOf(path: string): Scope | undefined {
    // Most requests match no wrapped prefix: one `under` per wrapped scope, no full scan.
    if (!this.#wrapped.some((s) => under(s, path))) return undefined;
    const scope = this.#scopeOf(path);
    return scope?.middleware ? scope : undefined;
  }

  add(routes: Route[]): this {
    for (const route of routes) {
      if (!route.path.includes(":") && !route.path.includes("*")) {
        this.#exact.set(`${route.method} ${route.path}`, route);
        this.#paths.add(route.path);
        continue;
      }
      const names: string[] = [];
      const re = new RegExp(
        `^${route.path
          .split("/")
          .map((seg) => {
            if (seg.startsWith("*")) {
              names.push(seg.slice(1));
              return "(.+)";
            }
            if (!seg.startsWith(":")) return seg.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
            names.push(seg.slice(1));
            return "([^/]+)";
          })
          .join("/")}$`,
      );
      this.#patterns.push({ route, re, names });
    }
    return this;
  }

  /** Serves one exchange; never throws. */
  async handle(ex: Exchange): Promise<Reply> {
    const wrapped = this.#wrapped.length > 0 ? this.#middlewareOf(ex.path) : undefined;
    if (!wrapped) return this.#route(ex);
    try {
      return await wrapped.middleware!(ex, () => this.#route(ex));
    } catch (error) {
      this.#logger.error("request failed", {
        route: `middleware ${ex.path}`,
        error: String(error),
      });
      return json(500, { error: "internal error" });
    }
  }

  /** Routes one exchange: the route's reply, its error in the route's dialect, or a 404/405. */
  async #route(ex: Exchange): Promise<Reply> {
    let route = this.#exact.get(`${ex.method} ${ex.path}`);
    let params: Record<string, string> = {};
    let pathKnown = route !== undefined || this.#paths.has(ex.path);
    if (!route) {
      for (const c of this.#patterns) {
        const m = c.re!.exec(ex.path);
        if (!m) continue;
        pathKnown = true;
        if (c.route.method !== ex.method) continue;
        route = c.route;
        params = Object.fromEntries(c.names.map((n, i) => [n, decodeParam(m[i + 1]!)]));
        break;
      }
    }
    if (!route) {
      const err = pathKnown
        ? new GatewayError(
            "METHOD_NOT_ALLOWED",
            `Method ${ex.method} is not allowed on ${ex.path}.`,
          )
        : new GatewayError("NOT_FOUND", `Invalid URL (${ex.method} ${ex.path})`);
      return this.#renderer(ex.path)(ex, err);
    }
    try {
      return await route.handle(ex, params);
    } catch (error) {
      // A bug or an unexpected failure is an error; a known condition answered with a 5xx
      // (no usable credential, an upstream down) is a warning; a 4xx is the client's.
      const fields = { route: `${route.method} ${route.path}`, error: String(error) };
      if (!(error as { code?: string }).code) this.#logger.error("request failed", fields);
      else if ((error as GatewayError).status >= 500) this.#logger.warn("request failed", fields);
      const reply = route.onError(error);
      const extra = (error as Partial<GatewayError>).headers;
      return extra ? { ...reply, headers: { ...reply.headers, ...extra } } : reply;
    }
  }
}

/** A path parameter, percent-decoded; a malformed escape is left as is (the route rejects it). */
function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** The answer of a router with neither a matching scope nor a fallback. */
const notFoundReply: FallbackError = (_ex, err) => json(err.status, { error: err.message });

/** A tiny health route. */
export const healthRoute: Route = {
  method: "GET",
  path: "/healthz",
  onError: () => json(500, { status: "error" }),
  handle: async () => json(200, { status: "ok" }),
};
