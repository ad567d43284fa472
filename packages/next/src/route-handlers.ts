import type { Gateway } from "@tokenpool/core";

/**
 * Where the route handlers get their gateway: the gateway itself, a promise of it, or a function
 * called on every request (typically `() => getGateway(create)`), so that nothing is created
 * while `next build` imports the route module.
 */
export type GatewaySource = Gateway | PromiseLike<Gateway> | (() => Gateway | PromiseLike<Gateway>);

/**
 * An App Router route handler. The second argument (`{ params }`) is accepted and ignored: the
 * gateway routes on the URL itself.
 */
export type NextRouteHandler = (request: Request, context?: unknown) => Promise<Response>;

/** The exports of a `route.ts` file, one per HTTP method. */
export interface NextRouteHandlers {
  GET: NextRouteHandler;
  HEAD: NextRouteHandler;
  POST: NextRouteHandler;
  PUT: NextRouteHandler;
  PATCH: NextRouteHandler;
  DELETE: NextRouteHandler;
  OPTIONS: NextRouteHandler;
}

/** Options of {@link toNextRouteHandlers}. */
export interface NextRouteHandlersOptions {
  /**
   * The URL prefix under which the route is mounted, as it appears in `request.url` (including
   * Next's own `basePath` if one is configured), e.g. `"/api"` for `app/api/[...path]/route.ts`.
   * It is removed before the gateway sees the path, so `/api/v1/chat/completions` reaches the
   * gateway as `/v1/chat/completions`. Requests outside it get a 404.
   * @default "" (the route serves the gateway's paths as they are)
   */
  basePath?: string;
  /**
   * Whether to believe the proxy headers for the client address. Next's App Router gives route
   * handlers no socket address (and `next start` fills in `x-forwarded-for` only when the client
   * did not send one), so these headers are all there is, and a client can forge them unless a
   * proxy you run overwrites or appends them.
   *
   * - `false`: the client address is what `clientIp` returns, else unknown (`""`).
   * - `true` or a number `n`: the address that the `n`-th proxy from the server appended to
   *   `x-forwarded-for` (`true` = 1, the nearest one), else `x-real-ip`.
   *
   * The address is used for key IP allowlists, the management API's loopback check and its
   * IP ban.
   * @default false
   */
  trustProxy?: boolean | number;
  /**
   * Supplies the client address when proxy headers are not trusted (or absent), e.g. from a
   * platform header your host guarantees: `(req) => req.headers.get("cf-connecting-ip")`.
   */
  clientIp?: (request: Request) => string | null | undefined;
}

const METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

function normalizeBasePath(basePath: string | undefined): string {
  if (!basePath || basePath === "/") return "";
  const withSlash = basePath.startsWith("/") ? basePath : `/${basePath}`;
  return withSlash.endsWith("/") ? withSlash.slice(0, -1) : withSlash;
}

function proxyHops(trustProxy: boolean | number | undefined): number {
  if (trustProxy === true) return 1;
  if (typeof trustProxy === "number" && Number.isInteger(trustProxy) && trustProxy > 0) {
    return trustProxy;
  }
  return 0;
}

/** The client address from trusted proxy headers: the entry appended by the `hops`-th proxy. */
function forwardedIp(headers: Headers, hops: number): string {
  const forwarded = headers.get("x-forwarded-for");
  if (forwarded) {
    const list = forwarded
      .split(",")
      .map((s) => s.trim())
      .filter((s) => s !== "");
    const ip = list[Math.max(0, list.length - hops)];
    if (ip) return ip;
  }
  return headers.get("x-real-ip")?.trim() ?? "";
}

function notFound(): Response {
  return new Response(JSON.stringify({ error: "not found" }), {
    status: 404,
    headers: { "content-type": "application/json; charset=utf-8" },
  });
}

/**
 * Route handlers that serve every tokenpool route from one App Router catch-all route. They
 * only adapt the request (base path, client address) and return `gateway.handler`'s Response
 * as is, so streamed answers (SSE) stay streamed.
 *
 * The route file must run on the Node runtime and must not be cached:
 * `export const runtime = "nodejs"` and `export const dynamic = "force-dynamic"`.
 *
 * @example
 * ```ts
 * // app/api/[...path]/route.ts
 * import { createGateway } from "@tokenpool/core";
 * import { getGateway, toNextRouteHandlers } from "@tokenpool/next";
 * import { sqliteStore } from "@tokenpool/store-sqlite";
 *
 * export const runtime = "nodejs";
 * export const dynamic = "force-dynamic";
 *
 * export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = toNextRouteHandlers(
 *   () =>
 *     getGateway(() =>
 *       createGateway({
 *         store: sqliteStore({ filename: "./data/tokenpool.db" }),
 *         secret: process.env.TOKENPOOL_SECRET,
 *       }),
 *     ),
 *   { basePath: "/api" },
 * );
 * ```
 */
export function toNextRouteHandlers(
  gateway: GatewaySource,
  options: NextRouteHandlersOptions = {},
): NextRouteHandlers {
  const basePath = normalizeBasePath(options.basePath);
  const hops = proxyHops(options.trustProxy);
  const clientIp = options.clientIp;
  const resolve: () => Gateway | PromiseLike<Gateway> =
    typeof gateway === "function" ? gateway : () => gateway;

  const handler: NextRouteHandler = async (request) => {
    let forwarded = request;
    if (basePath !== "") {
      const url = new URL(request.url);
      const path = url.pathname;
      if (path !== basePath && !path.startsWith(`${basePath}/`)) return notFound();
      url.pathname = path.slice(basePath.length) || "/";
      const hasBody = request.method !== "GET" && request.method !== "HEAD";
      // A new Request shares the original body stream (no copy) and its abort signal, so a
      // client that goes away still cancels the upstream request.
      forwarded = new Request(url, {
        method: request.method,
        headers: request.headers,
        body: hasBody ? request.body : null,
        signal: request.signal,
        ...(hasBody ? { duplex: "half" } : {}),
      } as RequestInit);
    }
    let remoteAddress = hops > 0 ? forwardedIp(request.headers, hops) : "";
    if (remoteAddress === "" && clientIp) remoteAddress = clientIp(request)?.trim() ?? "";
    const gw = await resolve();
    return gw.handler(forwarded, { remoteAddress });
  };

  return Object.fromEntries(METHODS.map((m) => [m, handler])) as unknown as NextRouteHandlers;
}
