/**
 * An incremental Server-Sent Events parser (the WHATWG event stream format).
 *
 * @module
 */

/** One event of a stream. */
export interface SseEvent {
  /** The `event:` field; undefined for the default `message` event. */
  event: string | undefined;
  /** The `data:` lines, joined with `\n`. */
  data: string;
}

/**
 * Parses a byte stream as Server-Sent Events, yielding each event as soon as its blank line
 * arrives (never buffering the whole answer). Lines may end in `\n`, `\r\n` or `\r`; comments
 * (`:` lines) are skipped. Leaving the loop early cancels the stream.
 */
export async function* parseSse(stream: ReadableStream<Uint8Array>): AsyncGenerator<SseEvent> {
  const reader = stream.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let event: string | undefined;
  let data: string[] = [];
  let done = false;

  /** Handles one line; returns an event when the line ends one. */
  const line = (text: string): SseEvent | undefined => {
    if (text === "") {
      if (data.length === 0) {
        event = undefined;
        return undefined;
      }
      const out = { event, data: data.join("\n") };
      event = undefined;
      data = [];
      return out;
    }
    if (text.startsWith(":")) return undefined;
    const colon = text.indexOf(":");
    const field = colon < 0 ? text : text.slice(0, colon);
    let value = colon < 0 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
    else if (field === "event") event = value;
    return undefined;
  };

  try {
    while (true) {
      const chunk = await reader.read();
      if (chunk.done) {
        done = true;
        buffer += decoder.decode();
        // The stream may end without a final blank line: the last event still counts.
        const events: SseEvent[] = [];
        for (const l of buffer.split(/\r\n|\r|\n/)) {
          const ev = line(l);
          if (ev) events.push(ev);
        }
        const last = line("");
        if (last) events.push(last);
        yield* events;
        return;
      }
      buffer += decoder.decode(chunk.value, { stream: true });
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const c = buffer[i];
        if (c !== "\n" && c !== "\r") continue;
        // A `\r` at the end of the buffer may be the first half of `\r\n`: wait for more.
        if (c === "\r" && i === buffer.length - 1) break;
        const ev = line(buffer.slice(start, i));
        if (c === "\r" && buffer[i + 1] === "\n") i++;
        start = i + 1;
        if (ev) yield ev;
      }
      buffer = buffer.slice(start);
    }
  } finally {
    if (!done) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}
