/**
 * Splits a byte stream into complete Server-Sent Events without decoding anything but the
 * boundaries (a native `indexOf` per chunk). Events are yielded with their terminator.
 */
export class SseFramer {
  #pending: Buffer | null = null;

  /** Feeds a chunk; returns the events it completes (possibly none). */
  push(chunk: Buffer): Buffer[] {
    let buf = this.#pending ? Buffer.concat([this.#pending, chunk]) : chunk;
    this.#pending = null;
    const out: Buffer[] = [];
    for (;;) {
      const end = eventEnd(buf);
      if (end < 0) break;
      out.push(buf.subarray(0, end));
      buf = buf.subarray(end);
    }
    if (buf.length > 0) this.#pending = Buffer.from(buf);
    return out;
  }

  /** What is left after the stream ended (an unterminated event), or null. */
  rest(): Buffer | null {
    const r = this.#pending;
    this.#pending = null;
    return r;
  }
}

/** The index just past the first event terminator (`\n\n` or `\r\n\r\n`), or -1. */
function eventEnd(buf: Buffer): number {
  const lf = buf.indexOf("\n\n");
  const crlf = buf.indexOf("\r\n\r\n");
  if (lf < 0 && crlf < 0) return -1;
  if (crlf >= 0 && (lf < 0 || crlf < lf)) return crlf + 4;
  return lf + 2;
}

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
