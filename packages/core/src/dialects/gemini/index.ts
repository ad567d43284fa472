/**
 * The gemini dialect: the Generative Language API (`/v1beta/models/...`, and
 * `POST /v1/models/{model}:...`), errors as Google's. Its 404s and 405s are Google's under
 * `/v1beta/` only (under `/v1` they are OpenAI's).
 *
 * @module
 */
import { type Dialect, proxyDialect } from "../dialect.js";
import { geminiError, geminiRoutes } from "./routes.js";

/** The gemini dialect. */
export const geminiDialect: Dialect = proxyDialect(
  "gemini",
  ["/v1beta/*"],
  geminiRoutes,
  geminiError,
);
