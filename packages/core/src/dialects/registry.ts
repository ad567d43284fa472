/**
 * The dialect registry: the list `createGateway` mounts, in order. Later surfaces (metrics,
 * the console, logs) are appended here.
 *
 * @module
 */
import { GatewayError } from "../errors.js";
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

/**
 * The extra dialects of `createGateway({ dialects })`, checked against the built-in ones and
 * each other: every method present, no name or prefix taken twice (a prefix decides whose 404 a
 * path gets, so two owners would make that depend on the order). Throws INVALID_OPTIONS.
 */
export function checkDialects(dialects: readonly Dialect[]): readonly Dialect[] {
  const names = new Set(BUILTIN_DIALECTS.map((d) => d.name));
  const prefixes = new Map(BUILTIN_DIALECTS.flatMap((d) => d.prefixes.map((p) => [p, d.name])));
  const invalid = (i: number, detail: string) =>
    new GatewayError("INVALID_OPTIONS", `Invalid tokenpool option \`dialects.${i}\`: ${detail}`);
  dialects.forEach((d, i) => {
    for (const m of ["routes", "renderError", "notFound"] as const) {
      if (typeof d[m] !== "function")
        throw invalid(
          i,
          `its \`${m}\` is not a function. Pass dialect objects, e.g. \`dialects: [dashboard()]\` with \`dashboard\` from @tokenpool/dashboard.`,
        );
    }
    if (names.has(d.name))
      throw invalid(
        i,
        `a dialect named "${d.name}" is already mounted. Give each dialect its own name.`,
      );
    names.add(d.name);
    for (const p of d.prefixes) {
      const owner = prefixes.get(p);
      if (owner !== undefined)
        throw invalid(
          i,
          `the prefix ${p} of "${d.name}" belongs to the dialect "${owner}". Mount it under another path.`,
        );
      prefixes.set(p, d.name);
    }
  });
  return dialects;
}
