import { GeminiToOpenAIStream } from "../translate/gemini.js";
import type { Json } from "../translate/types.js";
import { GeminiUnwrap, geminiFormat, unwrapResponse } from "./gemini.js";
import { Composed, defineFormat } from "./shared.js";
import type { WireFormatSpec } from "./types.js";

/**
 * A Gemini request for Cloud Code Assist: `{ model, project, request }` (the project is left out
 * when the account has none).
 */
export function wrapCodeAssist(body: Json, model: string, project: string | undefined): Json {
  return project === undefined ? { model, request: body } : { model, project, request: body };
}

/**
 * Gemini through Cloud Code Assist, as Gemini CLI and Antigravity OAuth accounts speak it: Gemini
 * payloads, requests wrapped in `{ model, project, request }` ({@link wrapCodeAssist}) and
 * answers (JSON and each stream event) in `{ response }`. An upstream-side format: clients speak
 * plain Gemini.
 */
export const codeAssistFormat: WireFormatSpec = defineFormat({
  ...geminiFormat,
  wrapped: true,
  unwrap: unwrapResponse,
  wrapRequest: wrapCodeAssist,
  streamToPivot: (opts) => new Composed(new GeminiUnwrap(), new GeminiToOpenAIStream(opts)),
});
