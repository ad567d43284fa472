/**
 * The new-api dialect: new-api's token API (`/api/token/`), user administration
 * (`/api/user/`), a key's own balance and usage (`/api/usage/token`,
 * `/api/usage/token/summary`) and the request log (`/api/log/`), with its
 * `{ success, message, data }` envelope.
 *
 * @module
 */
import { type Dialect, plainDialect } from "../dialect.js";
import { logRoutes } from "./logs.js";
import { newApiError, tokenRoutes } from "./tokens.js";
import { usageRoutes } from "./usage.js";
import { userRoutes } from "./users.js";

/** The new-api dialect. */
export const newApiDialect: Dialect = plainDialect({
  name: "new-api",
  prefixes: ["/api"],
  routes(context) {
    const deps = {
      keys: context.keys,
      users: context.users,
      gate: context.gate,
      maxBodyBytes: context.options.maxBodyBytes,
    };
    return [
      ...tokenRoutes(deps),
      ...userRoutes(deps),
      ...usageRoutes({
        keys: context.keys,
        clientIp: context.proxy.clientIp,
        store: context.store,
        flushUsage: () => context.usage.flush(),
      }),
      ...logRoutes({
        keys: context.keys,
        clientIp: context.proxy.clientIp,
        users: context.users,
        gate: context.gate,
        store: context.store,
        flushUsage: () => context.usage.flush(),
      }),
    ];
  },
  renderError: newApiError,
});
