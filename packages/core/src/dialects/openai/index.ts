/**
 * The openai dialect: OpenAI's API (`/v1/chat/completions`, `/v1/completions`,
 * `/v1/embeddings`, `/v1/responses`, `/v1/models`), errors as OpenAI's error object. It also
 * renders the 404s and 405s of every path no other dialect claims.
 *
 * @module
 */
import type { Dialect } from "../types.js";
import { openaiError, openaiRoutes } from "./routes.js";

/** The openai dialect. */
export const openaiDialect: Dialect = {
  name: "openai",
  prefixes: ["/*"],
  routes: (context) => openaiRoutes(context.proxy),
  renderError: openaiError,
  notFound: (error) => openaiError(error),
};
