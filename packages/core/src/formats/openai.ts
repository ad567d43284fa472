import type { TokenUsage } from "../store/types.js";
import { openaiUsageOf } from "../translate/openai.js";
import type { Json } from "../translate/types.js";
import { defineFormat, LatestUsageInspector, nonNegative, openaiErrorBody } from "./shared.js";
import { eventData } from "./sse.js";
import type { ClientBody, WireFormatSpec } from "./types.js";

const USAGE_NEEDLE = Buffer.from('"usage":{');
const DONE_NEEDLE = Buffer.from("[DONE]");

/** The usage of an OpenAI answer or chunk (and of a Responses API answer or `response.*` event). */
export function openaiBodyUsage(body: unknown): TokenUsage | null {
  if (!body || typeof body !== "object") return null;
  const b = body as Json;
  return openaiUsageOf(b.usage ?? (b.response as Json | undefined)?.usage);
}

/** OpenAI chunks: usage from the usage chunk (dropped when we asked for it), end at `[DONE]`. */
export class OpenAIInspector extends LatestUsageInspector {
  readonly #stripUsage: boolean;
  constructor(stripUsage: boolean) {
    super();
    this.#stripUsage = stripUsage;
  }
  inspect(ev: Buffer): boolean {
    if (ev.indexOf(USAGE_NEEDLE) >= 0) {
      const data = eventData(ev);
      if (data === undefined) return false;
      try {
        const parsed = JSON.parse(data) as { usage?: unknown; choices?: unknown[]; type?: unknown };
        // Responses API streams carry usage in `response.completed`, which is also their end.
        const u = openaiBodyUsage(parsed);
        if (u) {
          this.usage = u;
          if (parsed.type === "response.completed") this.finished = true;
        }
        return this.#stripUsage && Array.isArray(parsed.choices) && parsed.choices.length === 0;
      } catch {
        return false;
      }
    }
    if (ev.length <= 16 && ev.indexOf(DONE_NEEDLE) >= 0) this.finished = true;
    return false;
  }
}

/**
 * Finds the `"usage": {...}` object in a JSON body without parsing the whole body: the last
 * `"usage"` key, then a brace scan that respects strings. Falls back to a full parse.
 */
export function findUsageObject(body: Buffer): unknown {
  const at = body.lastIndexOf('"usage"');
  if (at >= 0) {
    const start = body.indexOf("{", at);
    const colon = body.indexOf(":", at);
    if (
      start > 0 &&
      colon > 0 &&
      colon < start &&
      body
        .subarray(colon + 1, start)
        .toString()
        .trim() === ""
    ) {
      let depth = 0;
      let inString = false;
      for (let i = start; i < body.length; i++) {
        const ch = body[i];
        if (inString) {
          if (ch === 0x5c) i++;
          else if (ch === 0x22) inString = false;
        } else if (ch === 0x22) inString = true;
        else if (ch === 0x7b) depth++;
        else if (ch === 0x7d && --depth === 0) {
          try {
            return JSON.parse(body.subarray(start, i + 1).toString("utf8"));
          } catch {
            break;
          }
        }
      }
    }
  }
  try {
    return (JSON.parse(body.toString("utf8")) as { usage?: unknown }).usage;
  } catch {
    return undefined;
  }
}

/** Spliced in after a body's opening brace when a streaming client did not ask for usage itself. */
const INCLUDE_USAGE = Buffer.from('{"stream_options":{"include_usage":true},');

/**
 * The body of an OpenAI client sent to an OpenAI-API upstream. The client's bytes go as they
 * are when nothing must change; asking for usage in a stream (chat and legacy completions: the
 * Responses API always reports it) is a byte splice (no re-serialisation) when the client sent
 * no `stream_options`; anything else is re-serialised.
 */
export function openaiBody(
  req: ClientBody,
  upstreamModel: string,
  includeUsage: boolean,
): Buffer | string {
  const askUsage = req.stream && !includeUsage && req.openaiPath !== "embeddings";
  if (upstreamModel === req.model && !askUsage) return req.rawBody;
  if (upstreamModel === req.model && req.body.stream_options === undefined) {
    const open = req.rawBody.indexOf(0x7b);
    if (open >= 0) return Buffer.concat([INCLUDE_USAGE, req.rawBody.subarray(open + 1)]);
  }
  return JSON.stringify({
    ...req.body,
    model: upstreamModel,
    ...(askUsage
      ? { stream_options: { ...(req.body.stream_options as object), include_usage: true } }
      : {}),
  });
}

/** OpenAI Chat Completions (also legacy Completions and Embeddings): the pivot format. */
export const openaiFormat: WireFormatSpec = defineFormat({
  name: "openai",
  stripsUsageChunks: true,
  requestToPivot: (body, opts) => ({ ...body, model: opts.model }),
  requestFromPivot: (body) => body,
  answerToPivot: (body) => body,
  answerFromPivot: (body) => body,
  streamToPivot: () => null,
  streamFromPivot: () => null,
  usage: openaiBodyUsage,
  usageOfBytes: (body) => openaiUsageOf(findUsageObject(body)),
  errorBody: openaiErrorBody,
  streamErrorEvent: (_status, message) =>
    `data: ${JSON.stringify({ error: { message, type: "upstream_error", param: null, code: "stream_interrupted" } })}\n\n`,
  sseEvent: (ev) =>
    ev.data === "[DONE]" ? "data: [DONE]\n\n" : `data: ${JSON.stringify(ev.data)}\n\n`,
  maxTokens: (body) => nonNegative(body.max_completion_tokens ?? body.max_tokens),
  inspector: (stripUsage) => new OpenAIInspector(stripUsage),
  sameFormatBody: openaiBody,
  promptView(req) {
    if (req.openaiPath === "completions" || req.openaiPath === "embeddings") {
      const p = req.openaiPath === "completions" ? req.body.prompt : req.body.input;
      const text = Array.isArray(p) ? p.filter((x) => typeof x === "string").join("\n") : p;
      return {
        model: req.model,
        messages: [{ role: "user", content: typeof text === "string" ? text : "" }],
      };
    }
    return req.body;
  },
});
