/**
 * A small closed-loop load generator for the scale and Redis benches: `concurrency` callers each
 * send one chat completion at a time through one undici Pool, each request with the key
 * `authorization(i)` returns for the request's sequence number `i`, so that load can be spread
 * over many keys (autocannon sends one fixed request).
 *
 * @module
 */
import { Pool } from "undici";

/** The chat path every bench request goes to. */
export const CHAT_PATH = "/v1/chat/completions";

/** The bench's non-streaming chat request (as `pnpm bench` sends it). */
export const CHAT_BODY = JSON.stringify({
  model: "gpt-4o-mini",
  messages: [
    { role: "system", content: "You are a helpful assistant." },
    { role: "user", content: "Say hello in one short sentence." },
  ],
  max_tokens: 64,
});

/** What one load run did. */
export interface LoadRun {
  requests: number;
  failures: number;
  /** The first failure's status and body, if any. */
  firstFailure?: string;
  seconds: number;
}

/** A load generator bound to one origin. */
export class KeyLoad {
  readonly #pool: Pool;
  #seq = 0;

  constructor(
    origin: string,
    private readonly authorization: (i: number) => string,
    connections = 64,
  ) {
    this.#pool = new Pool(origin, { connections, pipelining: 1 });
  }

  /** One request with `authorization`; resolves with its status and time in ms. */
  async one(authorization: string): Promise<{ status: number; ms: number; body: string }> {
    const t0 = performance.now();
    const res = await this.#pool.request({
      path: CHAT_PATH,
      method: "POST",
      headers: { "content-type": "application/json", authorization },
      body: CHAT_BODY,
    });
    const body = await res.body.text();
    return { status: res.statusCode, ms: performance.now() - t0, body };
  }

  /**
   * Runs `concurrency` callers until `seconds` have passed or `maxRequests` were sent (whichever
   * comes first; either may be Infinity).
   */
  async run(concurrency: number, seconds: number, maxRequests = Infinity): Promise<LoadRun> {
    const until = performance.now() + seconds * 1000;
    const out: LoadRun = { requests: 0, failures: 0, seconds: 0 };
    let sent = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (performance.now() < until && sent < maxRequests) {
          sent++;
          const r = await this.one(this.authorization(this.#seq++));
          out.requests++;
          if (r.status !== 200) {
            out.failures++;
            out.firstFailure ??= `${r.status} ${r.body.slice(0, 300)}`;
          }
        }
      }),
    );
    out.seconds = (performance.now() - t0) / 1000;
    return out;
  }

  close(): Promise<void> {
    return this.#pool.close();
  }
}
