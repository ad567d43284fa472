/**
 * The cliproxy dialect: CLIProxyAPI's management API under `/v0/management`, errors as
 * `{ "error": "..." }`. With no management key set it is disabled: 404 on every path and method,
 * whose message says how to set one. Every answer under the prefix carries CORS and version
 * headers (`cors.ts`); `management.uiFile` adds `GET /management.html` (`management-ui.ts`).
 *
 * @module
 */
import { MANAGEMENT_DISABLED_MESSAGE } from "../../keys/management-gate.js";
import type { Dialect } from "../dialect.js";
import { MANAGEMENT_PREFIX, managementError, renderManagementError } from "./common.js";
import { managementHeaders } from "./cors.js";
import { managementUiRoutes } from "./management-ui.js";
import { cliproxyRoutes } from "./routes.js";

/** The cliproxy dialect. */
export const cliproxyDialect: Dialect = {
  name: "cliproxy",
  prefixes: [MANAGEMENT_PREFIX],
  routes: (context) => [
    ...cliproxyRoutes({
      store: context.store,
      gate: context.gate,
      settings: context.settings,
      settingChanged: context.settingChanged,
      keys: context.keys,
      pool: context.pool,
      maxBodyBytes: context.options.maxBodyBytes,
      flushUsage: () => context.usage.flush(),
      usageView: { detailsPerModel: context.options.management.usageDetailsPerModel },
      secretChanged: (id) => context.oauth.forgetFailure(id),
      refresher: context.oauth,
      ...(context.webhooks ? { webhooks: context.webhooks } : {}),
      oauthLogin: {
        providers: context.options.oauth.providers,
        http: context.oauthHttp,
        logger: context.logger,
        timeoutMs: context.options.oauth.timeoutMs,
        proxyUrl: () => context.settings.get("proxy-url"),
        box: context.box,
      },
    }),
    ...managementUiRoutes(context.options.management.uiFile),
  ],
  // CORS (preflights before the guard) and X-CPA-* headers on every answer under the prefix.
  middleware: (context) => managementHeaders(context.options.management.corsOrigins),
  renderError: renderManagementError,
  // A disabled management API (no key) is 404 on every path and method.
  notFound: (error, context) =>
    renderManagementError(
      context.gate.hasKey()
        ? error.status === 405
          ? managementError(405, "method not allowed")
          : managementError(404, "not found")
        : managementError(404, MANAGEMENT_DISABLED_MESSAGE),
    ),
};
