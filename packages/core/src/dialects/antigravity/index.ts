/**
 * The antigravity dialect: antigravity2api's token API (`/v1/tokens`) over the credential
 * pool's OAuth accounts, with its `{ success, message }` envelope.
 *
 * @module
 */
import { type Dialect, plainDialect } from "../dialect.js";
import { antigravityError, antigravityRoutes } from "./routes.js";

/** The antigravity dialect. */
export const antigravityDialect: Dialect = plainDialect({
  name: "antigravity",
  prefixes: ["/v1/tokens"],
  routes: ({ pool, users, gate, oauth, store, box, options, logger }) =>
    antigravityRoutes({
      pool,
      users,
      gate,
      provider: options.antigravityDialect.provider,
      baseUrl: options.antigravityDialect.baseUrl,
      idFor: (refreshToken) => `tok_${box.hash(`pool-dialect:${refreshToken}`).slice(0, 24)}`,
      setEnabled: (id, enabled) => pool.setEnabled(id, enabled),
      secretChanged: (id) => oauth.forgetFailure(id),
      exists: async (id) => (await store.credentials.get(id)) !== null,
      reload: () => pool.load(),
      maxBodyBytes: options.maxBodyBytes,
      logger,
    }),
  renderError: antigravityError,
});
