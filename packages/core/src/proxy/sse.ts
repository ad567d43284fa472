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
