import type { TokenUsage } from "../store/types.js";
import {
  GeminiToOpenAIStream,
  geminiToOpenAIRequest,
  geminiToOpenAIResponse,
  geminiUsage,
  OpenAIToGeminiStream,
  openaiToGeminiRequest,
  openaiToGeminiResponse,
} from "../translate/gemini.js";
import type { EventTranslator, Json, UpstreamEvent } from "../translate/types.js";
import { defineFormat, LatestUsageInspector, nonNegative, parseData } from "./shared.js";
import type { WireFormatSpec } from "./types.js";

/** Google's canonical status name for an HTTP status. */
export function googleStatus(status: number): string {
  const table: Record<number, string> = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
  };
  return table[status] ?? (status >= 500 ? "UNAVAILABLE" : "FAILED_PRECONDITION");
}

/** `{ response: X }` (Cloud Code Assist) → X; anything else as it is. */
export function unwrapResponse(data: unknown): unknown {
  if (data && typeof data === "object" && !Array.isArray(data)) {
    const r = (data as Json).response;
    if (r && typeof r === "object" && !("candidates" in data)) return r;
  }
  return data;
}

/** Passes Gemini events through, unwrapping a Code Assist envelope and tracking usage and the end. */
export class GeminiUnwrap implements EventTranslator {
  #usage: TokenUsage | null = null;
  finished = false;
  push(ev: UpstreamEvent): UpstreamEvent[] {
    const data = unwrapResponse(ev.data);
    const u = geminiUsage((data as Json | null)?.usageMetadata);
    if (u) this.#usage = u;
    const cands = (data as Json | null)?.candidates;
    if (Array.isArray(cands) && cands.some((c) => (c as Json | null)?.finishReason)) {
      this.finished = true;
    }
    return [{ data }];
  }
  end(): UpstreamEvent[] {
    return [];
  }
  usage(): TokenUsage | null {
    return this.#usage;
  }
}

/** The usage of a Gemini answer or stream event (`usageMetadata`). */
function usageOf(body: unknown): TokenUsage | null {
  if (!body || typeof body !== "object") return null;
  return geminiUsage((body as Json).usageMetadata);
}

const USAGE_METADATA = Buffer.from('"usageMetadata"');
const FINISH_REASON = Buffer.from('"finishReason"');

/** Gemini events: the latest `usageMetadata` is the total; a `finishReason` ends the answer. */
export class GeminiInspector extends LatestUsageInspector {
  inspect(ev: Buffer): boolean {
    if (ev.indexOf(FINISH_REASON) >= 0) this.finished = true;
    if (ev.indexOf(USAGE_METADATA) >= 0) {
      this.usage = usageOf(parseData(ev)) ?? this.usage;
    }
    return false;
  }
}

function errorBody(status: number, message: string): Json {
  return { error: { code: status, message, status: googleStatus(status) } };
}

/**
 * Gemini's Generative Language API (`generateContent` / `streamGenerateContent?alt=sse`, a
 * `GenerateContentResponse` per event; without `alt=sse` a stream is one JSON array).
 */
export const geminiFormat: WireFormatSpec = defineFormat({
  name: "gemini",
  requestToPivot: geminiToOpenAIRequest,
  requestFromPivot: openaiToGeminiRequest,
  answerToPivot: geminiToOpenAIResponse,
  answerFromPivot: openaiToGeminiResponse,
  streamToPivot: (opts) => new GeminiToOpenAIStream(opts),
  streamFromPivot: (opts) => new OpenAIToGeminiStream(opts),
  sameFormatStream: () => new GeminiUnwrap(),
  usage: usageOf,
  errorBody,
  streamErrorEvent: (status, message) =>
    `data: ${JSON.stringify(errorBody(status, message))}\r\n\r\n`,
  sseEvent: (ev) => `data: ${JSON.stringify(ev.data)}\r\n\r\n`,
  maxTokens: (body) => nonNegative((body.generationConfig as Json | undefined)?.maxOutputTokens),
  inspector: () => new GeminiInspector(),
  // The model is in the URL, not in the body: the client's bytes go as they are.
  sameFormatBody: (req) => req.rawBody,
  jsonArray: (stream, sse) => stream && sse === false,
});
