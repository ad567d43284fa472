/**
 * The dialect registry: the list `createGateway` mounts, in order. Later surfaces (metrics,
 * the console, logs) are appended here.
 *
 * @module
 */
import type { Router } from "../http/router.js";
import { anthropicDialect } from "./anthropic/index.js";
import { antigravityDialect } from "./antigravity/index.js";
import { cliproxyDialect } from "./cliproxy/index.js";
import type { Dialect, DialectContext } from "./dialect.js";
import { geminiDialect } from "./gemini/index.js";
import { metricsDialect } from "./metrics/index.js";
import { newApiDialect } from "./new-api/index.js";
import { openaiDialect } from "./openai/index.js";
import { openrouterDialect } from "./openrouter/index.js";

/**
 * The built-in dialects, in the order their routes are added (the order decides between
 * parameterised paths that match the same request).
 */
export const BUILTIN_DIALECTS: readonly Dialect[] = [
  newApiDialect,
  antigravityDialect,
  cliproxyDialect,
  openrouterDialect,
  openaiDialect,
  anthropicDialect,
  geminiDialect,
  metricsDialect,
];

/**
 * Adds each dialect's routes to the router, in list order, and registers its prefixes for the
 * 404s and 405s (and its middleware, if any).
 *
 * @example
 * ```ts
 * mountDialects(new Router(logger).add([healthRoute]), BUILTIN_DIALECTS, context);
 * ```
 */
export function mountDialects(
  router: Router,
  dialects: readonly Dialect[],
  context: DialectContext,
): Router {
  for (const dialect of dialects) {
    router.add(dialect.routes(context));
    router.scope(
      dialect.prefixes,
      (_ex, error) => dialect.notFound(error, context),
      dialect.middleware?.(context),
    );
  }
  return router;
}
