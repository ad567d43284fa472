import type { TokenUsage } from "../billing/price.js";
import { ZERO_USAGE } from "../billing/price.js";
import type { SecretMask } from "../credentials/secret-mask.js";
import type { ClientSignal } from "../exchange.js";
import {
  type EventTranslator,
  type Json,
  sseEvent,
  streamErrorEvent,
  streamTranslator,
  type UpstreamEvent,
  usageOf,
  type WireFormat,
} from "../translate/index.js";
import { redactSecrets } from "../util/secrets.js";
import { eventData, SseFramer, type StreamedText, streamedText } from "./sse.js";

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

const USAGE_NEEDLE = Buffer.from('"usage":{');
const DONE_NEEDLE = Buffer.from("[DONE]");

/** OpenAI chunks: usage from the usage chunk (dropped when we asked for it), end at `[DONE]`. */
export class OpenAIInspector implements StreamInspector {
  usage: TokenUsage | null = null;
  get usageFinal(): boolean {
    return this.usage !== null;
  }
  finished = false;
  failed: string | null = null;
  readonly #stripUsage: boolean;
  constructor(stripUsage: boolean) {
    this.#stripUsage = stripUsage;
  }
  inspect(ev: Buffer): boolean {
    if (ev.indexOf(USAGE_NEEDLE) >= 0) {
      const data = eventData(ev);
      if (data === undefined) return false;
      try {
        const parsed = JSON.parse(data) as { usage?: unknown; choices?: unknown[]; type?: unknown };
        // Responses API streams carry usage in `response.completed`, which is also their end.
        const u = usageOf("openai", parsed);
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

const ERROR_TYPE = Buffer.from('"type":"error"');
const RESPONSE_END = Buffer.from('"type":"response.');

/**
 * Responses API events: usage and the end come with `response.completed` (or
 * `response.incomplete`); `response.failed` and `error` events are the upstream's own errors.
 */
export class ResponsesInspector implements StreamInspector {
  usage: TokenUsage | null = null;
  finished = false;
  failed: string | null = null;
  get usageFinal(): boolean {
    return this.finished;
  }
  inspect(ev: Buffer): boolean {
    if (ev.indexOf(RESPONSE_END) < 0 && ev.indexOf(ERROR_TYPE) < 0) return false;
    const data = parseData(ev) as
      | {
          type?: unknown;
          response?: { usage?: unknown; error?: { message?: unknown } };
          message?: unknown;
        }
      | undefined;
    const type = data?.type;
    if (type === "response.completed" || type === "response.incomplete") {
      this.usage = usageOf("responses", data) ?? this.usage;
      this.finished = true;
    } else if (type === "response.failed" || type === "error") {
      const m = data?.response?.error?.message ?? data?.message;
      this.failed = typeof m === "string" ? m : "upstream error event";
    }
    return false;
  }
}

const ANTHROPIC_USAGE = Buffer.from('"usage"');
const MESSAGE_STOP = Buffer.from("message_stop");

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

/** Anthropic events: input usage in `message_start`, output in `message_delta`, end at `message_stop`. */
export class AnthropicInspector implements StreamInspector {
  usage: TokenUsage | null = null;
  usageFinal = false;
  finished = false;
  failed: string | null = null;
  inspect(ev: Buffer): boolean {
    if (ev.indexOf(ANTHROPIC_USAGE) >= 0) {
      const data = parseData(ev);
      this.usage = mergeUsage(this.usage, usageOf("anthropic", data));
      if ((data as { type?: unknown } | undefined)?.type === "message_delta")
        this.usageFinal = true;
    } else if (ev.indexOf(MESSAGE_STOP) >= 0) this.finished = true;
    else if (ev.indexOf(ERROR_TYPE) >= 0) {
      const err = (parseData(ev) as { error?: { message?: unknown } } | undefined)?.error;
      this.failed = typeof err?.message === "string" ? err.message : "upstream error event";
    }
    return false;
  }
}

const USAGE_METADATA = Buffer.from('"usageMetadata"');
const FINISH_REASON = Buffer.from('"finishReason"');

/** Gemini events: the latest `usageMetadata` is the total; a `finishReason` ends the answer. */
export class GeminiInspector implements StreamInspector {
  usage: TokenUsage | null = null;
  /** Every Gemini chunk's usage counts the answer so far. */
  get usageFinal(): boolean {
    return this.usage !== null;
  }
  finished = false;
  failed: string | null = null;
  inspect(ev: Buffer): boolean {
    if (ev.indexOf(FINISH_REASON) >= 0) this.finished = true;
    if (ev.indexOf(USAGE_METADATA) >= 0) {
      this.usage = usageOf("gemini", parseData(ev)) ?? this.usage;
    }
    return false;
  }
}

function parseData(ev: Buffer): unknown {
  const data = eventData(ev);
  if (data === undefined) return undefined;
  try {
    return JSON.parse(data);
  } catch {
    return undefined;
  }
}

/** Parses one SSE event into its name and JSON data; null for comments and non-JSON data. */
export function parseEvent(ev: Buffer): UpstreamEvent | null {
  const text = ev.toString("utf8");
  let event: string | undefined;
  let data: string | undefined;
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith("data:")) {
      const v = line.slice(line[5] === " " ? 6 : 5);
      data = data === undefined ? v : `${data}\n${v}`;
    } else if (line.startsWith("event:")) event = line.slice(6).trim();
  }
  if (data === undefined) return null;
  if (data.trim() === "[DONE]") return { data: "[DONE]" };
  try {
    const parsed = JSON.parse(data) as unknown;
    return event === undefined ? { data: parsed } : { event, data: parsed };
  } catch {
    return null;
  }
}

/**
 * The text of stream events of `format` as the client received it, per choice, for counting
 * the usage of a stream that ended without a usage block. Non-OpenAI events are translated to
 * OpenAI chunks first (the rare path: it parses every event).
 */
export function textOfEvents(format: WireFormat, events: Buffer[], wrapped = false): StreamedText {
  const t = streamTranslator(format, "openai", { model: "", id: "" }, wrapped);
  if (!t) return streamedText(events);
  const chunks: Buffer[] = [];
  for (const ev of events) {
    const parsed = parseEvent(ev);
    if (!parsed) continue;
    try {
      for (const out of t.push(parsed)) chunks.push(Buffer.from(sseEvent("openai", out)));
    } catch {
      // an upstream error event: no text
    }
  }
  return streamedText(chunks);
}

/** How a streamed answer ends for usage accounting. */
export type RelayEnd = (usage: TokenUsage, error: string | null) => void;

interface RelayCommon {
  /** The client's format, for the error event. */
  clientFormat: WireFormat;
  signal: ClientSignal;
  /**
   * The secrets of the credentials the request tried: every relayed event is masked by them
   * (events are whole when relayed, so a secret is never split between two chunks).
   */
  mask: SecretMask;
  /** The usage of a stream that ended without a usage block, from the upstream events relayed. */
  countUsage: (sent: Buffer[]) => Promise<TokenUsage>;
  /** Called once when the stream ends, cleanly or not. */
  onEnd: RelayEnd;
}

/**
 * Relays an upstream SSE body chunk by chunk, in the client's format as it is. Only event
 * boundaries are looked at; an event is decoded only when it carries usage (the inspector's
 * needles). If the upstream breaks after bytes were sent, or its body ends without its end
 * signal, the client gets an explicit error event in its format and no end marker, so the
 * stream reads as truncated.
 *
 * Until a usage block arrives, the relay keeps references to the events the client has taken
 * (the framer's own buffers: no copy, no decoding), one array push per chunk. A chunk counts as
 * taken when the consumer asks for the next one, so a chunk pulled by a writer that then found
 * the client gone is not billed. Only a stream that ends without usage has them parsed and its
 * text counted ({@link RelayCommon.countUsage}); once usage arrives they are dropped.
 */
export async function* relayStream(
  src: AsyncIterable<Buffer>,
  inspector: StreamInspector,
  opts: RelayCommon,
): AsyncGenerator<Uint8Array> {
  const framer = new SseFramer();
  let sent: Buffer[][] | null = [];
  let error: string | null = null;
  let completed = false;
  try {
    for await (const chunk of src) {
      const events = framer.push(chunk);
      if (events.length === 0) continue;
      let kept: Buffer[] | null = null;
      for (let i = 0; i < events.length; i++) {
        const ev = events[i]!;
        const drop = inspector.inspect(ev);
        if (drop && !kept) kept = events.slice(0, i);
        else if (!drop && kept) kept.push(ev);
      }
      const out = kept ?? events;
      if (out.length === 0) continue;
      yield opts.mask.bytes(out.length === 1 ? out[0]! : Buffer.concat(out));
      // The consumer asked for more: it has taken `out`.
      if (inspector.usageFinal) sent = null;
      else sent?.push(out);
    }
    const rest = framer.rest();
    if (rest) {
      inspector.inspect(rest);
      yield opts.mask.bytes(rest);
    }
    if (inspector.failed)
      error = `upstream error event: ${redactSecrets(opts.mask.text(inspector.failed))}`;
    else if (!inspector.finished) {
      error = "upstream stream ended before its end signal";
      yield Buffer.from(streamErrorEvent(opts.clientFormat, 502, error));
    }
    completed = true;
  } catch (e) {
    if (!opts.signal.aborted) {
      error = `upstream stream interrupted: ${redactSecrets(opts.mask.text((e as Error).message))}`;
      yield Buffer.from(streamErrorEvent(opts.clientFormat, 502, error));
    } else error = "client closed the stream";
    completed = true;
  } finally {
    // The consumer stopped iterating (the client went away) without an error reaching us.
    if (!completed) error = "client closed the stream";
    let usage = inspector.usage;
    if (!usage || !inspector.usageFinal) {
      // No usage block covers the answer: bill the text the client took, counted locally.
      usage = await withLocalCount(usage, () => opts.countUsage(sent?.flat() ?? []));
    }
    opts.onEnd(usage, error);
  }
}

/** Options of {@link relayTranslated}. */
export interface TranslatedRelayOptions extends RelayCommon {
  translator: EventTranslator;
  /** Drop OpenAI usage chunks (`choices: []`): an OpenAI client that did not ask for them. */
  stripUsage: boolean;
  /** Gemini clients that did not ask for `alt=sse`: the answer is one JSON array, streamed. */
  jsonArray: boolean;
}

/**
 * Relays an upstream SSE body translated event by event into the client's format (each upstream
 * event is parsed; what it becomes is serialised and sent at once). Usage comes from the
 * translator. The end rules are those of {@link relayStream}.
 */
export async function* relayTranslated(
  src: AsyncIterable<Buffer>,
  opts: TranslatedRelayOptions,
): AsyncGenerator<Uint8Array> {
  const framer = new SseFramer();
  const { translator, clientFormat } = opts;
  const sent: Buffer[] = [];
  let error: string | null = null;
  let completed = false;
  let opened = false;
  const serialise = (events: UpstreamEvent[]): string => {
    let out = "";
    for (const ev of events) {
      if (opts.stripUsage && isUsageChunk(ev.data)) continue;
      if (!opts.jsonArray) out += sseEvent(clientFormat, ev);
      else if (ev.data !== "[DONE]") {
        out += `${opened ? ",\r\n" : "["}${JSON.stringify(ev.data)}`;
        opened = true;
      }
    }
    return out;
  };
  const translate = (evs: Buffer[]): string => {
    let out = "";
    for (const ev of evs) {
      const parsed = parseEvent(ev);
      if (!parsed) continue;
      out += serialise(translator.push(parsed));
    }
    return out;
  };
  const fail = (message: string): string => {
    if (!opts.jsonArray) return streamErrorEvent(clientFormat, 502, message);
    const body = JSON.stringify({ error: { code: 502, message, status: "UNAVAILABLE" } });
    return `${opened ? ",\r\n" : "["}${body}]`;
  };
  try {
    for await (const chunk of src) {
      const events = framer.push(chunk);
      if (events.length === 0) continue;
      const out = translate(events);
      // Kept until the answer is complete: a cut stream is billed for what was relayed.
      if (!translator.finished) for (const ev of events) sent.push(ev);
      if (out) yield Buffer.from(opts.mask.text(out));
    }
    const rest = framer.rest();
    const tail = rest ? translate([rest]) : "";
    if (translator.finished) {
      let closing = tail + serialise(translator.end());
      if (opts.jsonArray) closing += opened ? "]" : "[]";
      if (closing) yield Buffer.from(opts.mask.text(closing));
    } else {
      error = "upstream stream ended before its end signal";
      yield Buffer.from(opts.mask.text(tail) + fail(error));
    }
    completed = true;
  } catch (e) {
    if (!opts.signal.aborted) {
      error = `upstream stream interrupted: ${redactSecrets(opts.mask.text((e as Error).message))}`;
      yield Buffer.from(fail(error));
    } else error = "client closed the stream";
    completed = true;
  } finally {
    if (!completed) error = "client closed the stream";
    let usage = translator.usage();
    if (!usage || error !== null || !translator.finished) {
      usage = await withLocalCount(usage, () => opts.countUsage(sent));
    }
    opts.onEnd(usage, error);
  }
}

/**
 * The usage of an answer whose upstream usage is missing or partial (a cut stream): the local
 * count of what was relayed, with the upstream's prompt count when it sent one, and the larger
 * of the two output counts.
 */
async function withLocalCount(
  upstream: TokenUsage | null,
  count: () => Promise<TokenUsage>,
): Promise<TokenUsage> {
  let local: TokenUsage;
  try {
    local = await count();
  } catch {
    local = ZERO_USAGE;
  }
  if (!upstream) return local;
  const inputTokens = upstream.inputTokens || local.inputTokens;
  const outputTokens = Math.max(upstream.outputTokens, local.outputTokens);
  return {
    inputTokens,
    outputTokens,
    reasoningTokens: Math.max(upstream.reasoningTokens, local.reasoningTokens),
    cachedTokens: upstream.cachedTokens,
    totalTokens: inputTokens + outputTokens,
  };
}

function isUsageChunk(data: unknown): boolean {
  if (!data || typeof data !== "object") return false;
  const d = data as Json;
  return Array.isArray(d.choices) && d.choices.length === 0 && d.usage !== undefined;
}
