import type { HeaderBag } from "../exchange.js";
import type { TokenUsage } from "../store/types.js";
import type {
  EventTranslator,
  Json,
  RequestOptions,
  ResponseOptions,
  UpstreamEvent,
  WireFormat,
} from "../translate/types.js";

/**
 * Looks at the events of a stream relayed byte for byte (client and upstream speak the same
 * format): reads usage from the few events that carry it and notices the upstream's end signal.
 * Only events that contain a needle are decoded.
 */
export interface StreamInspector {
  /** Looks at one complete event; true = do not relay it. */
  inspect(ev: Buffer): boolean;
  /** The usage reported so far. */
  readonly usage: TokenUsage | null;
  /** The usage covers the whole answer (OpenAI's usage chunk, Anthropic's `message_delta`). */
  readonly usageFinal: boolean;
  /** The upstream's end-of-stream signal was seen. */
  readonly finished: boolean;
  /** The upstream sent an error event of its own (relayed); its message. */
  readonly failed: string | null;
}

/** What a format reads of a client request to build the body sent to an upstream of its own format. */
export interface ClientBody {
  /** The parsed body. */
  body: Json;
  /** The body's bytes as the client sent them. */
  rawBody: Buffer;
  /** The model the client asked for. */
  model: string;
  /** Whether the client asked for a stream. */
  stream: boolean;
  /**
   * OpenAI routes other than chat completions (the upstream path): passed through to upstreams
   * that speak the OpenAI API itself, never translated.
   */
  openaiPath?: "completions" | "embeddings" | undefined;
}

/**
 * Everything one wire format means, in one object: translation to and from the pivot format
 * (OpenAI Chat Completions; the translators of `translate/` do the work), usage extraction,
 * error bodies and stream error events, its SSE framing, the max-tokens field, the inspector of
 * its streams relayed as they are, and how a client body of this format is sent to an upstream
 * of the same format (byte splices rather than re-serialisation where it can).
 *
 * The proxy engine asks the registry (`formatOf(name)`) instead of switching on format names.
 */
export interface WireFormatSpec {
  /** The format of the payload (a Code Assist envelope carries `gemini`). */
  readonly name: WireFormat;
  /** Answers (JSON and each stream event) arrive wrapped in `{ response: … }` (Code Assist). */
  readonly wrapped: boolean;
  /**
   * Streamed answers for clients of this format drop OpenAI usage chunks (`choices: []`) the
   * client did not ask for (`stream_options.include_usage`).
   */
  readonly stripsUsageChunks: boolean;

  /** A request body of this format as a pivot (OpenAI chat) body. */
  requestToPivot(body: Json, opts: RequestOptions): Json;
  /** A pivot request body in this format. */
  requestFromPivot(body: Json, opts: RequestOptions): Json;
  /** A JSON answer of this format (unwrapped) as a pivot answer. */
  answerToPivot(body: Json, opts: ResponseOptions): Json;
  /** A pivot JSON answer in this format. */
  answerFromPivot(body: Json, opts: ResponseOptions): Json;
  /** A translator of this format's stream events into pivot chunks; null for the pivot itself. */
  streamToPivot(opts: ResponseOptions): EventTranslator | null;
  /** A translator of pivot chunks into this format's events; null for the pivot itself. */
  streamFromPivot(opts: ResponseOptions): EventTranslator | null;
  /**
   * The translator of a stream relayed in its own format but re-framed or unwrapped (Gemini
   * events out of a Code Assist envelope, or into one JSON array): it tracks usage and the end.
   */
  sameFormatStream?(): EventTranslator;
  /** `{ response: X }` (Code Assist) → X; anything else as it is. */
  unwrap(data: unknown): unknown;
  /**
   * Wraps a request body for an upstream that expects an envelope (Code Assist:
   * `{ model, project, request }`). Absent: the body is sent as it is.
   */
  wrapRequest?(body: Json, model: string, project: string | undefined): Json;

  /** The usage of an answer (a JSON body or one stream event) of this format; null if none. */
  usage(body: unknown): TokenUsage | null;
  /**
   * The usage of a JSON answer read from its bytes without a full parse, for formats that can
   * (OpenAI); absent: parse the answer.
   */
  usageOfBytes?(body: Buffer): TokenUsage | null;
  /** An error body in this format (OpenAI's `code` is given, else derived from the status). */
  errorBody(status: number, message: string, code?: string): Json;
  /**
   * The event that tells a streaming client the answer broke off, in this format. It is the last
   * event: no end marker follows, so the stream reads as truncated.
   */
  streamErrorEvent(status: number, message: string): string;
  /** One event as SSE text in this format. */
  sseEvent(ev: UpstreamEvent): string;
  /** The most output tokens a request body of this format allows, in its own field. */
  maxTokens(body: Json): number | undefined;
  /** The inspector of a stream of this format relayed as it is (`stripUsage`: OpenAI's usage chunk). */
  inspector(stripUsage: boolean): StreamInspector;

  /**
   * The body sent to an upstream of this same format, unwrapped: the client's bytes when nothing
   * must change, else spliced or re-serialised with the upstream's model.
   */
  sameFormatBody(req: ClientBody, upstreamModel: string, includeUsage: boolean): Buffer | string;
  /** Copies what the client chose in its headers (API version, betas) onto an upstream call of this format. */
  carryHeaders(client: HeaderBag, upstream: Record<string, string>): void;
  /** Whether a stream is answered as one JSON array rather than SSE (Gemini without `alt=sse`). */
  jsonArray(stream: boolean, sse: boolean | undefined): boolean;
  /** A request of this format as a pivot body, for counting its prompt with the tokenizer. */
  promptView(req: ClientBody): Json;
}
