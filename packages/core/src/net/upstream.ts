import type { Dispatcher } from "undici";
import { Pool, ProxyAgent, Socks5ProxyAgent } from "undici";
import type { ClientSignal } from "../exchange.js";

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
  /** One agent per proxy URL: HTTP(S) proxies tunnel with CONNECT, SOCKS5 through its handshake. */
  readonly #proxies = new Map<string, Dispatcher>();
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

  #proxy(proxyUrl: string): Dispatcher {
    let d = this.#proxies.get(proxyUrl);
    if (!d) {
      const timeouts = {
        headersTimeout: this.#timeouts.headersTimeoutMs,
        bodyTimeout: this.#timeouts.bodyTimeoutMs,
      };
      d = proxyUrl.startsWith("socks5:")
        ? new Socks5ProxyAgent(proxyUrl, timeouts)
        : new ProxyAgent({ uri: proxyUrl, ...timeouts });
      this.#proxies.set(proxyUrl, d);
    }
    return d;
  }

  /**
   * Sends a request to an absolute URL, through `proxyUrl` when given (`http://`, `https://` or
   * `socks5://`, credentials in the URL). The caller must consume or destroy the response body.
   */
  request(
    url: URL,
    init: {
      method: Dispatcher.HttpMethod;
      headers: Record<string, string>;
      body?: string | Buffer;
      signal?: ClientSignal;
      proxyUrl?: string;
    },
  ): Promise<Dispatcher.ResponseData> {
    const options = {
      path: url.pathname + url.search,
      method: init.method,
      headers: init.headers,
      body: init.body ?? null,
      signal: init.signal ?? null,
    };
    if (init.proxyUrl)
      return this.#proxy(init.proxyUrl).request({ ...options, origin: url.origin });
    return this.#pool(url.origin).request(options);
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

  /** Closes every pool and proxy agent. */
  async close(): Promise<void> {
    const pools: Dispatcher[] = [...this.#pools.values(), ...this.#proxies.values()];
    this.#pools.clear();
    this.#proxies.clear();
    await Promise.allSettled(pools.map((p) => p.close()));
  }
}
