/**
 * The Express binding: the gateway as an Express router (Express 5, and 4.21+).
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Gateway } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { Router } from "express";

// The public types below describe Express's request, `next` and middleware by the members the
// binding uses, over node:http's types: a consumer type-checks without `@types/express` (and
// whichever @types/express major it has, 4 or 5, its `app.use` accepts them, as Express's own
// Request/Response/NextFunction extend these).

/** The request as Express hands it to middleware: Node's request plus `ip` (and `body` once a parser ran). */
export type ExpressRequest = IncomingMessage & {
  /** The path and query, relative to where the router is mounted. */
  url: string;
  /** The client address Express resolved (under its `trust proxy` setting). */
  ip?: string | undefined;
  /** The parsed body, when an app-wide parser (`express.json()`) ran first. */
  body?: unknown;
};

/** Express's `next`: an error passes it on to the error handlers. */
export type ExpressNext = (err?: unknown) => void;

/** What {@link tokenpoolRouter} returns: an Express router, i.e. a middleware for `app.use(prefix, router)`. */
export type TokenpoolRouter = (req: ExpressRequest, res: ServerResponse, next: ExpressNext) => void;

/** What {@link tokenpoolErrorHandler} returns: an Express error-handling middleware (four parameters). */
export type TokenpoolErrorHandler = (
  err: unknown,
  req: ExpressRequest,
  res: ServerResponse,
  next: ExpressNext,
) => void;

/** Options of {@link tokenpoolRouter} and {@link tokenpoolErrorHandler}. */
export interface TokenpoolRouterOptions {
  /**
   * The client IP the gateway sees (key IP allowlists, management's loopback rule, bans).
   * @default (req) => req.ip — the socket's peer, or the address Express resolved from
   * `X-Forwarded-For` under its `trust proxy` setting.
   */
  clientIp?: (req: ExpressRequest) => string | undefined;
}

function nodeHandler(gateway: Pick<Gateway, "serve">, options: TokenpoolRouterOptions) {
  const clientIp = options.clientIp ?? ((req: ExpressRequest) => req.ip);
  // Under `app.use(prefix, router)` Express sets req.url relative to the mount (query kept).
  return toNodeHandler<ExpressRequest>(gateway, {
    remoteAddress: clientIp,
    url: (req) => req.url,
  });
}

/**
 * An Express router serving every gateway route (proxy and management) relative to where it
 * is mounted. It works whether or not a body parser (`express.json()`, `text()`, `raw()`,
 * `urlencoded()`) ran first, and streams replies as they come.
 *
 * @example
 * ```ts
 * import express from "express";
 * import { createGateway } from "@tokenpool/core";
 * import { tokenpoolRouter } from "@tokenpool/express";
 *
 * const app = express();
 * app.use("/llm", tokenpoolRouter(gateway)); // POST /llm/v1/chat/completions, ...
 * app.listen(3000);
 * ```
 */
export function tokenpoolRouter(
  gateway: Pick<Gateway, "serve">,
  options: TokenpoolRouterOptions = {},
): TokenpoolRouter {
  const router = Router();
  const handle = nodeHandler(gateway, options);
  router.use((req, res) => handle(req, res));
  // An Express Router is such a function; its own type names @types/express's Request.
  return router as unknown as TokenpoolRouter;
}

/** body-parser's error for a body it could not parse: the raw text rides along. */
interface ParseFailure {
  type: "entity.parse.failed";
  body: string;
}

function isParseFailure(err: unknown): err is ParseFailure {
  const e = err as Partial<ParseFailure> | null;
  return e?.type === "entity.parse.failed" && typeof e.body === "string";
}

/**
 * An error handler for the mount: a request whose body an app-wide parser (`express.json()`)
 * refused is handed to the gateway with its raw text, so the client gets the route's own error
 * format (OpenAI's for `/v1/chat/completions`) instead of Express's HTML page. Other errors go on.
 *
 * @example
 * ```ts
 * app.use(express.json());
 * app.use("/llm", tokenpoolRouter(gateway), tokenpoolErrorHandler(gateway));
 * ```
 */
export function tokenpoolErrorHandler(
  gateway: Pick<Gateway, "serve">,
  options: TokenpoolRouterOptions = {},
): TokenpoolErrorHandler {
  const handle = nodeHandler(gateway, options);
  return (err, req, res, next) => {
    if (!isParseFailure(err) || res.headersSent) {
      next(err);
      return;
    }
    // The stream is consumed; the gateway re-reads the body from req.body.
    req.body = Buffer.from(err.body);
    handle(req, res);
  };
}
