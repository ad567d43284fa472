import type { TokenUsage } from "../store/types.js";
import type { EventTranslator, Json, UpstreamEvent } from "../translate/types.js";
import { eventData } from "./sse.js";
import type { StreamInspector, WireFormatSpec } from "./types.js";

/** The parsed JSON data of one SSE event; undefined when it has none or it is not JSON. */
export function parseData(ev: Buffer): unknown {
  const data = eventData(ev);
  if (data === undefined) return undefined;
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}

/** Merges two partial usages: a non-zero count of the later one wins. */
export function mergeUsage(a: TokenUsage | null, b: TokenUsage | null): TokenUsage | null {
  if (!a) return b;
  if (!b) return a;
  const inputTokens = b.inputTokens || a.inputTokens;
  const outputTokens = b.outputTokens || a.outputTokens;
  return {
    inputTokens,
    outputTokens,
    reasoningTokens: b.reasoningTokens || a.reasoningTokens,
    cachedTokens: b.cachedTokens || a.cachedTokens,
    totalTokens: inputTokens + outputTokens,
  };
}

/** An OpenAI-shaped error body (OpenAI's `code` is given, else null; the type from the status). */
export function openaiErrorBody(status: number, message: string, code?: string): Json {
  let type = "invalid_request_error";
  if (status === 429) type = "rate_limit_error";
  else if (status === 401) type = "authentication_error";
  else if (status === 403) type = "permission_error";
  else if (status >= 500) type = "api_error";
  return { error: { message, type, param: null, code: code ?? null } };
}

/** One event as named SSE (`event:` + `data:`), as Anthropic and the Responses API send them. */
export function namedSseEvent(ev: UpstreamEvent): string {
  const type = ev.event ?? ((ev.data as Json | null)?.type as string | undefined) ?? "message";
  return `event: ${type}\ndata: ${JSON.stringify(ev.data)}\n\n`;
}

/** The most output tokens of an OpenAI-style body (`max_completion_tokens`, else `max_tokens`). */
export function nonNegative(m: unknown): number | undefined {
  return typeof m === "number" && m >= 0 ? m : undefined;
}

/**
 * The body of a client sent to an upstream of its own format that names the model in the body:
 * the client's bytes when the model is the same, else re-serialised with the upstream's model.
 */
export function withModel(
  req: { body: Json; rawBody: Buffer; model: string },
  upstreamModel: string,
): Buffer | string {
  return upstreamModel === req.model
    ? req.rawBody
    : JSON.stringify({ ...req.body, model: upstreamModel });
}

/** Two translators in a row (A → pivot → B); usage and the end are the first one's. */
export class Composed implements EventTranslator {
  readonly #a: EventTranslator;
  readonly #b: EventTranslator;
  constructor(a: EventTranslator, b: EventTranslator) {
    this.#a = a;
    this.#b = b;
  }
  get finished(): boolean {
    return this.#a.finished;
  }
  push(ev: UpstreamEvent): UpstreamEvent[] {
    const mid = this.#a.push(ev);
    if (mid.length === 0) return mid;
    const out: UpstreamEvent[] = [];
    for (const m of mid) for (const e of this.#b.push(m)) out.push(e);
    return out;
  }
  end(): UpstreamEvent[] {
    const out: UpstreamEvent[] = [];
    for (const m of this.#a.end()) for (const e of this.#b.push(m)) out.push(e);
    for (const e of this.#b.end()) out.push(e);
    return out;
  }
  usage(): TokenUsage | null {
    return this.#a.usage();
  }
}

/** The identity of formats without an envelope. */
function asIs(data: unknown): unknown {
  return data;
}

/** Formats that carry no client header upstream. */
function carryNothing(): void {}

/** Formats whose streams are always SSE. */
function neverJsonArray(): boolean {
  return false;
}

/** The members of a format that most formats leave at their default. */
type Defaulted =
  | "wrapped"
  | "stripsUsageChunks"
  | "unwrap"
  | "carryHeaders"
  | "jsonArray"
  | "promptView"
  | "sameFormatStream"
  | "wrapRequest"
  | "usageOfBytes";

/** What a format declares: {@link WireFormatSpec} with the usual members optional. */
export type FormatParts = Omit<WireFormatSpec, Defaulted> &
  Partial<Pick<WireFormatSpec, Defaulted>>;

/**
 * A format object from its parts, with the defaults of a format that has no envelope, carries no
 * client header, always streams SSE and counts its prompt through its pivot translation. Every
 * format object gets the same members in the same order, so the engine's calls on them stay
 * monomorphic.
 */
export function defineFormat(parts: FormatParts): WireFormatSpec {
  const toPivot = parts.requestToPivot;
  return {
    name: parts.name,
    wrapped: parts.wrapped ?? false,
    stripsUsageChunks: parts.stripsUsageChunks ?? false,
    requestToPivot: toPivot,
    requestFromPivot: parts.requestFromPivot,
    answerToPivot: parts.answerToPivot,
    answerFromPivot: parts.answerFromPivot,
    streamToPivot: parts.streamToPivot,
    streamFromPivot: parts.streamFromPivot,
    sameFormatStream: parts.sameFormatStream,
    unwrap: parts.unwrap ?? asIs,
    wrapRequest: parts.wrapRequest,
    usage: parts.usage,
    usageOfBytes: parts.usageOfBytes,
    errorBody: parts.errorBody,
    streamErrorEvent: parts.streamErrorEvent,
    sseEvent: parts.sseEvent,
    maxTokens: parts.maxTokens,
    inspector: parts.inspector,
    sameFormatBody: parts.sameFormatBody,
    carryHeaders: parts.carryHeaders ?? carryNothing,
    jsonArray: parts.jsonArray ?? neverJsonArray,
    promptView:
      parts.promptView ?? ((req) => toPivot(req.body, { model: req.model, stream: false })),
  };
}

/**
 * The state of an inspector whose latest usage counts the whole answer so far (OpenAI's usage
 * chunk, Gemini's `usageMetadata`); subclasses look at the events.
 */
export abstract class LatestUsageInspector implements StreamInspector {
  usage: TokenUsage | null = null;
  finished = false;
  failed: string | null = null;
  get usageFinal(): boolean {
    return this.usage !== null;
  }
  abstract inspect(ev: Buffer): boolean;
}
