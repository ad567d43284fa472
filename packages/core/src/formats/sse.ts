import type { UpstreamEvent } from "../translate/types.js";

/**
 * Splits a byte stream into complete Server-Sent Events without decoding anything but the
 * boundaries (a native `indexOf` per chunk). Events are yielded with their terminator.
 */
export class SseFramer {
  #pending: Buffer | null = null;
  /** The event terminator, chosen from the first line ending seen (upstreams do not mix them). */
  #sep: Buffer | null = null;

  /** Feeds a chunk; returns the events it completes (possibly none). */
  push(chunk: Buffer): Buffer[] {
    const buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = null;
    if (!this.#sep) {
      const nl = buf.indexOf(0x0a);
      if (nl < 0) {
        this.#pending = Buffer.from(buf);
        return [];
      }
      this.#sep = nl > 0 && buf[nl - 1] === 0x0d ? CRLF2 : LF2;
    }
    const sep = this.#sep;
    const out: Buffer[] = [];
    let start = 0;
    for (;;) {
      const at = buf.indexOf(sep, start);
      if (at < 0) break;
      out.push(buf.subarray(start, at + sep.length));
      start = at + sep.length;
    }
    if (start < buf.length) this.#pending = Buffer.from(buf.subarray(start));
    return out;
  }

  /** What is left after the stream ended (an unterminated event), or null. */
  rest(): Buffer | null {
    const r = this.#pending;
    this.#pending = null;
    return r;
  }
}

const LF2 = Buffer.from("\n\n");
const CRLF2 = Buffer.from("\r\n\r\n");

/** The JSON payload of an event's `data:` lines, or undefined when it has none or it is `[DONE]`. */
export function eventData(event: Buffer): string | undefined {
  const text = event.toString("utf8");
  let data: string | undefined;
  for (const line of text.split(/\r?\n/)) {
    if (line.startsWith("data:")) {
      const v = line.slice(line[5] === " " ? 6 : 5);
      data = data === undefined ? v : `${data}\n${v}`;
    }
  }
  return data === "[DONE]" ? undefined : data;
}

/** The text a model produced in a stream, per choice, split by how it is billed. */
export interface StreamedText {
  /** Per choice index: answer text, refusals, tool/function call names and arguments. */
  output: string[];
  /** Per choice index: reasoning text (`reasoning_content` or `reasoning` deltas). */
  reasoning: string[];
}

function collect(into: StreamedText, choices: unknown, key: "delta" | "message"): void {
  if (!Array.isArray(choices)) return;
  const add = (to: string[], i: number, text: unknown) => {
    if (typeof text === "string" && text.length > 0) to[i] = (to[i] ?? "") + text;
  };
  for (const choice of choices as ({ index?: unknown } & Record<string, unknown>)[]) {
    const d = choice?.[key] as Record<string, unknown> | undefined;
    if (!d || typeof d !== "object") continue;
    const i =
      Number.isSafeInteger(choice.index) && (choice.index as number) >= 0
        ? Math.min(choice.index as number, 127)
        : 0;
    add(into.output, i, d.content);
    add(into.output, i, d.refusal);
    add(
      into.reasoning,
      i,
      typeof d.reasoning_content === "string" ? d.reasoning_content : d.reasoning,
    );
    const calls: unknown[] = Array.isArray(d.tool_calls) ? d.tool_calls : [];
    for (const call of [...calls, { function: d.function_call }]) {
      const fn = (call as { function?: { name?: unknown; arguments?: unknown } } | null)?.function;
      if (!fn || typeof fn !== "object") continue;
      add(into.output, i, fn.name);
      add(into.output, i, fn.arguments);
    }
  }
}

function compact(t: StreamedText): StreamedText {
  return { output: t.output.filter(Boolean), reasoning: t.reasoning.filter(Boolean) };
}

/**
 * Collects the text of OpenAI-style chat completion chunks: every choice's `delta.content`,
 * `delta.refusal`, tool call (and legacy function call) names and argument fragments, and
 * reasoning deltas, concatenated per choice. Events that are not JSON chunks (`[DONE]`,
 * comments, errors) add nothing. This parses every event, so it is for the rare stream that
 * ended without a usage block.
 */
export function streamedText(events: Iterable<Buffer>): StreamedText {
  const text: StreamedText = { output: [], reasoning: [] };
  for (const ev of events) {
    const data = eventData(ev);
    if (data === undefined) continue;
    try {
      collect(text, (JSON.parse(data) as { choices?: unknown } | null)?.choices, "delta");
    } catch {
      // not JSON: nothing the client could read as text
    }
  }
  return compact(text);
}

/** {@link streamedText} for a non-streamed chat completion body (`choices[].message`). */
export function replyText(body: Buffer): StreamedText {
  const text: StreamedText = { output: [], reasoning: [] };
  try {
    collect(
      text,
      (JSON.parse(body.toString("utf8")) as { choices?: unknown } | null)?.choices,
      "message",
    );
  } catch {
    // not JSON: no text
  }
  return compact(text);
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
