import type {
  EventTranslator,
  Json,
  RequestOptions,
  ResponseOptions,
  WireFormat,
} from "../translate/types.js";
import { anthropicFormat } from "./anthropic.js";
import { codeAssistFormat } from "./code-assist.js";
import { geminiFormat } from "./gemini.js";
import { openaiFormat } from "./openai.js";
import { responsesFormat } from "./responses.js";
import { Composed } from "./shared.js";
import { parseEvent, type StreamedText, streamedText } from "./sse.js";
import type { WireFormatSpec } from "./types.js";

/** The wire formats clients speak, by name. */
const FORMATS: Readonly<Record<WireFormat, WireFormatSpec>> = {
  openai: openaiFormat,
  responses: responsesFormat,
  anthropic: anthropicFormat,
  gemini: geminiFormat,
};

/**
 * The format object of a wire format's name.
 *
 * @example
 * ```ts
 * const usage = formatOf("anthropic").usage(JSON.parse(body));
 * ```
 */
export function formatOf(name: WireFormat): WireFormatSpec {
  return FORMATS[name];
}

/**
 * The format an upstream adapter speaks: its payload format, or Code Assist when its answers
 * arrive in an envelope.
 */
export function upstreamFormatOf(adapter: {
  readonly format: WireFormat;
  readonly wrapped?: boolean | undefined;
}): WireFormatSpec {
  return adapter.wrapped === true ? codeAssistFormat : FORMATS[adapter.format];
}

/**
 * A client's request body in another format, through the pivot (OpenAI chat): Anthropic ⇄ Gemini
 * is Anthropic → OpenAI → Gemini. One pair of converters per non-pivot format instead of one per
 * ordered pair, at the price of what the pivot cannot say (e.g. Anthropic's signed thinking
 * blocks do not survive a trip through another format).
 */
export function translateRequestBody(
  from: WireFormatSpec,
  to: WireFormatSpec,
  body: Json,
  opts: RequestOptions,
): Json {
  if (from.name === to.name) return body;
  return to.requestFromPivot(from.requestToPivot(body, opts), opts);
}

/**
 * A translator of upstream stream events of `from` into the client's format `to`. Null when the
 * events can be relayed as they are (same format, no envelope, no re-framing); `reframe` = the
 * events are re-framed (a Gemini stream sent as one JSON array) and so go through the format's
 * own pass-through translator.
 */
export function streamTranslatorOf(
  from: WireFormatSpec,
  to: WireFormatSpec,
  opts: ResponseOptions,
  reframe = false,
): EventTranslator | null {
  if (from.name === to.name) {
    return from.wrapped || reframe ? (from.sameFormatStream?.() ?? null) : null;
  }
  const toPivot = from.streamToPivot(opts);
  const fromPivot = to.streamFromPivot(opts);
  if (!toPivot) return fromPivot;
  if (!fromPivot) return toPivot;
  return new Composed(toPivot, fromPivot);
}

/**
 * The text of stream events of `format` as the client received them, per choice, for counting
 * the usage of a stream that ended without a usage block. Events of other formats are
 * translated to pivot chunks first (the rare path: it parses every event).
 */
export function textOfEvents(format: WireFormatSpec, events: Buffer[]): StreamedText {
  const t = format.streamToPivot({ model: "", id: "" });
  if (!t) return streamedText(events);
  const chunks: Buffer[] = [];
  for (const ev of events) {
    const parsed = parseEvent(ev);
    if (!parsed) continue;
    try {
      for (const out of t.push(parsed)) chunks.push(Buffer.from(openaiFormat.sseEvent(out)));
    } catch {
      // an upstream error event: no text
    }
  }
  return streamedText(chunks);
}

/** The error message of an upstream error body of any format (OpenAI, Anthropic, Google). */
export function errorMessageOf(body: string): string | null {
  try {
    const parsed = JSON.parse(body) as unknown;
    const first = Array.isArray(parsed) ? parsed[0] : parsed;
    const err = (first as Json | null)?.error;
    if (typeof err === "string") return err;
    const m = (err as Json | null)?.message ?? (first as Json | null)?.message;
    return typeof m === "string" ? m : null;
  } catch {
    return null;
  }
}
