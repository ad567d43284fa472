/**
 * The anthropic dialect: Anthropic's Messages API (`/v1/messages`,
 * `/v1/messages/count_tokens`), errors as Anthropic's.
 *
 * @module
 */
import type { Dialect } from "../types.js";
import { anthropicError, anthropicRoutes } from "./routes.js";

/** The anthropic dialect. */
export const anthropicDialect: Dialect = {
  name: "anthropic",
  prefixes: ["/v1/messages*"],
  routes: (context) => anthropicRoutes(context.proxy),
  renderError: anthropicError,
  notFound: (error) => anthropicError(error),
};
