/**
 * The anthropic dialect: Anthropic's Messages API (`/v1/messages`,
 * `/v1/messages/count_tokens`), errors as Anthropic's (also for any path starting with
 * `/v1/messages`).
 *
 * @module
 */
import { type Dialect, proxyDialect } from "../dialect.js";
import { anthropicError, anthropicRoutes } from "./routes.js";

/** The anthropic dialect. */
export const anthropicDialect: Dialect = proxyDialect(
  "anthropic",
  ["/v1/messages*"],
  anthropicRoutes,
  anthropicError,
);
