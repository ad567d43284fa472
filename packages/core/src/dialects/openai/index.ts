/**
 * The openai dialect: OpenAI's API (`/v1/chat/completions`, `/v1/completions`,
 * `/v1/embeddings`, `/v1/responses`, `/v1/models`) and one-api's `/v1/dashboard/billing/*`,
 * errors as OpenAI's error object. It also renders the 404s and 405s of every path no other
 * dialect claims (`/*`).
 *
 * @module
 */
import { type Dialect, proxyDialect } from "../dialect.js";
import { openaiError, openaiRoutes } from "./routes.js";

/** The openai dialect. */
export const openaiDialect: Dialect = proxyDialect("openai", ["/*"], openaiRoutes, openaiError);
