import type { Dispatcher } from "undici";
import { Pool } from "undici";
import type { ClientSignal } from "../http/exchange.js";

/** Timeouts of upstream calls (ms). */
export interface UpstreamTimeouts {
  connectTimeoutMs: number;
  headersTimeoutMs: number;
  bodyTimeoutMs: number;
}

/**
 * Keeps one undici connection pool per upstream origin, so that requests to the same upstream
 * reuse keep-alive connections. undici's `request` is used rather than `fetch`: it avoids Web
 * streams, which dominate a fetch-based gateway's CPU profile.
 */
export class UpstreamClient {
  readonly #pools = new Map<string, Pool>();
  readonly #timeouts: UpstreamTimeouts;

  constructor(timeouts: UpstreamTimeouts) {
    this.#timeouts = timeouts;
  }

  #pool(origin: string): Pool {
    let p = this.#pools.get(origin);
    if (!p) {
      p = new Pool(origin, {
        connect: { timeout: this.#timeouts.connectTimeoutMs },
        headersTimeout: this.#timeouts.headersTimeoutMs,
        bodyTimeout: this.#timeouts.bodyTimeoutMs,
        keepAliveTimeout: 30_000,
      });
      this.#pools.set(origin, p);
    }
    return p;
  }

  /** Sends a request to an absolute URL. The caller must consume or destroy the response body. */
  request(
    url: URL,
    init: {
      method: Dispatcher.HttpMethod;
      headers: Record<string, string>;
      body?: string | Buffer;
      signal?: ClientSignal;
    },
  ): Promise<Dispatcher.ResponseData> {
    return this.#pool(url.origin).request({
      path: url.pathname + url.search,
      method: init.method,
      headers: init.headers,
      body: init.body ?? null,
      signal: init.signal ?? null,
    });
  }

  /**
   * Sends a GET to an absolute URL and reads the whole answer: for small bodies only (health
   * probes, model lists). `timeoutMs` bounds the wait for the headers and for the body.
   */
  async get(
    url: URL,
    headers: Record<string, string>,
    options: { timeoutMs?: number; signal?: ClientSignal } = {},
  ): Promise<{ status: number; headers: Dispatcher.ResponseData["headers"]; body: Buffer }> {
    const res = await this.#pool(url.origin).request({
      path: url.pathname + url.search,
      method: "GET",
      headers,
      signal: options.signal ?? null,
      ...(options.timeoutMs === undefined
        ? {}
        : { headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs }),
    });
    const body = Buffer.from(await res.body.arrayBuffer());
    return { status: res.statusCode, headers: res.headers, body };
  }

  /** Closes every pool. */
  async close(): Promise<void> {
    const pools = [...this.#pools.values()];
    this.#pools.clear();
    await Promise.allSettled(pools.map((p) => p.close()));
  }
}
