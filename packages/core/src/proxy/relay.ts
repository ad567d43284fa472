import type { TokenUsage } from "../billing/price.js";
import { ZERO_USAGE } from "../billing/price.js";
import type { SecretMask } from "../credentials/secret-mask.js";
import type { ClientSignal } from "../exchange.js";
import { parseEvent, SseFramer } from "../formats/sse.js";
import type { StreamInspector, WireFormatSpec } from "../formats/types.js";
import type { EventTranslator, Json, UpstreamEvent } from "../translate/types.js";
import { redactSecrets } from "../util/secrets.js";

/** How a streamed answer ends for usage accounting. */
export type RelayEnd = (usage: TokenUsage, error: string | null) => void;

/** What both relays need: the client's format, its signal, the secret mask, usage counting and the end. */
export interface RelayCommon {
  /** The client's format, for the error event. */
  client: WireFormatSpec;
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
      yield Buffer.from(opts.client.streamErrorEvent(502, error));
    }
    completed = true;
  } catch (e) {
    if (!opts.signal.aborted) {
      error = `upstream stream interrupted: ${redactSecrets(opts.mask.text((e as Error).message))}`;
      yield Buffer.from(opts.client.streamErrorEvent(502, error));
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
  const { translator, client } = opts;
  const sent: Buffer[] = [];
  let error: string | null = null;
  let completed = false;
  let opened = false;
  const serialise = (events: UpstreamEvent[]): string => {
    let out = "";
    for (const ev of events) {
      if (opts.stripUsage && isUsageChunk(ev.data)) continue;
      if (!opts.jsonArray) out += client.sseEvent(ev);
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
    if (!opts.jsonArray) return client.streamErrorEvent(502, message);
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
