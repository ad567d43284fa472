/**
 * The cliproxy dialect's routes (`/v0/management`, CLIProxyAPI's management API): every route
 * behind one guard (see `auth.ts`), errors as `{ "error": "..." }`.
 *
 * @module
 */

import { configLists } from "../../config-model/list-writer.js";
import type { OAuthRefresher } from "../../credentials/oauth.js";
import type { Route } from "../../http/router.js";
import type { WebhookService } from "../../webhooks/service.js";
import { apiCallRoutes } from "./api-call.js";
import { createManagementGuard, type ManagementGuardDeps } from "./auth.js";
import { authFileRoutes } from "./auth-files.js";
import type { ManagementGuard } from "./common.js";
import { configYamlRoutes } from "./config-yaml.js";
import { credentialRoutes } from "./credentials.js";
import { extraRoutes } from "./extras.js";
import { listRoutes } from "./lists.js";
import { logRoutes } from "./logs.js";
import { modelDefinitionRoutes } from "./model-definitions.js";
import { type OAuthLoginDeps, oauthLoginRoutes } from "./oauth-login.js";
import { type ManagementSettingsDeps, managementSettingsRoutes } from "./settings.js";
import { settingsTableRoutes } from "./settings-table.js";
import { managementStringListRoutes } from "./string-lists.js";
import { type ManagementUsageDeps, usageRoutes } from "./usage.js";
import { vertexImportRoutes } from "./vertex-import.js";
import { webhookRoutes } from "./webhooks.js";

export {
  createManagementGuard,
  isLoopback,
  MANAGEMENT_BAN_MS,
  MANAGEMENT_MAX_FAILURES,
} from "./auth.js";
export { MANAGEMENT_PREFIX } from "./common.js";
export {
  createPkce,
  OAUTH_CALLBACK_PATH,
  OAUTH_LOGIN_DEFAULTS,
  OAUTH_LOGIN_TTL_MS,
} from "./oauth-login.js";

/** Everything the management routes need. */
export type CliproxyDeps = ManagementGuardDeps &
  ManagementSettingsDeps &
  ManagementUsageDeps & {
    /** Called after an auth file replaced a credential's secret (forgets a failed refresh). */
    secretChanged?: (id: string) => void;
    /** Refreshes OAuth accounts (`POST /credentials/:id/refresh`); absent, that route is a 400. */
    refresher?: Pick<OAuthRefresher, "refresh">;
    /** Webhook subscriptions (`/webhooks`); without it those routes are absent. */
    webhooks?: WebhookService;
    /** OAuth logins (`/anthropic-auth-url` ...): the resolved `oauth.providers` and timeouts. */
    oauthLogin?: Pick<
      OAuthLoginDeps,
      "providers" | "http" | "logger" | "timeoutMs" | "ttlMs" | "box" | "proxyUrl"
    >;
  };

/** Every management route, guarded by one {@link ManagementGuard}. */
export function cliproxyRoutes(deps: CliproxyDeps): Route[] {
  const guard: ManagementGuard = createManagementGuard(deps);
  const lists = deps.configLists ?? (() => configLists({ pool: deps.pool }));
  return [
    ...usageRoutes(guard, deps),
    ...managementSettingsRoutes(guard, { ...deps, configLists: lists }),
    ...settingsTableRoutes(guard, deps),
    ...configYamlRoutes(guard, { ...deps, configLists: lists }),
    ...logRoutes(guard, {
      store: deps.store,
      settings: deps.settings,
      flushUsage: deps.flushUsage,
    }),
    ...extraRoutes(guard, { settings: deps.settings, maxBodyBytes: deps.maxBodyBytes }),
    ...(deps.oauthLogin
      ? apiCallRoutes(guard, {
          pool: deps.pool,
          http: deps.oauthLogin.http,
          maxBodyBytes: deps.maxBodyBytes,
          ...(deps.oauthLogin.proxyUrl ? { proxyUrl: deps.oauthLogin.proxyUrl } : {}),
        })
      : []),
    ...managementStringListRoutes(guard, deps),
    ...listRoutes({ guard, pool: deps.pool, maxBodyBytes: deps.maxBodyBytes }),
    ...authFileRoutes({
      guard,
      pool: deps.pool,
      store: deps.store,
      maxBodyBytes: deps.maxBodyBytes,
      ...(deps.secretChanged ? { secretChanged: deps.secretChanged } : {}),
    }),
    ...vertexImportRoutes(guard, {
      pool: deps.pool,
      ...(deps.secretChanged ? { secretChanged: deps.secretChanged } : {}),
    }),
    ...modelDefinitionRoutes(guard, { pool: deps.pool }),
    ...credentialRoutes({
      guard,
      pool: deps.pool,
      maxBodyBytes: deps.maxBodyBytes,
      ...(deps.refresher ? { refresher: deps.refresher } : {}),
      ...(deps.secretChanged ? { secretChanged: deps.secretChanged } : {}),
    }),
    ...(deps.oauthLogin
      ? oauthLoginRoutes({
          ...deps.oauthLogin,
          guard,
          store: deps.store,
          pool: deps.pool,
          enabled: () => deps.gate.hasKey(),
          maxBodyBytes: deps.maxBodyBytes,
          ...(deps.secretChanged ? { secretChanged: deps.secretChanged } : {}),
        })
      : []),
    ...(deps.webhooks
      ? webhookRoutes({ guard, webhooks: deps.webhooks, maxBodyBytes: deps.maxBodyBytes })
      : []),
  ];
}
