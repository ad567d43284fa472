/**
 * The transport under every client method: one ky instance, authentication headers per
 * dialect, the error envelopes turned into {@link TokenpoolError}, and the retry policy.
 *
 * @module
 */
import ky, { isHTTPError, isTimeoutError, type KyInstance, type Options as KyOptions } from "ky";
import { errorFromBody, TokenpoolError } from "./error.js";

/** How a request authenticates. */
export type Auth =
  /** The management key only (`/v0/management`). */
  | "management"
  /** A user's access token + `New-Api-User` when given, else the management key. */
  | "console"
  /** A downstream key, in the header the proxy format reads. */
  | { header: string; value: string; extra?: Record<string, string> }
  | "none";

/** Options of one request. */
export interface RequestOptions {
  auth: Auth;
  query?: Record<string, string | number | boolean | undefined | null> | undefined;
  json?: unknown;
  body?: string | Uint8Array;
  headers?: Record<string, string>;
  signal?: AbortSignal | undefined;
}

/** What the transport needs from the client options. */
export interface TransportOptions {
  baseUrl: string;
  managementKey?: string | undefined;
  accessToken?: string | undefined;
  userId?: number | string | undefined;
  fetch?: typeof fetch | undefined;
  timeout?: number | false | undefined;
  retry?: number | undefined;
}

/** Parses a body as JSON when it is JSON, else returns its text (`undefined` when empty). */
export function parseBody(text: string): unknown {
  if (text === "") return undefined;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Methods ky may retry: the idempotent ones. POST and PATCH never are (a retry could act twice). */
const RETRY_METHODS = ["get", "head", "put", "delete"] as const;

/** The client's HTTP layer. */
export class Transport {
  readonly #ky: KyInstance;
  readonly #options: TransportOptions;

  constructor(options: TransportOptions) {
    this.#options = options;
    const limit = options.retry ?? 2;
    this.#ky = ky.create({
      prefixUrl: options.baseUrl,
      timeout: options.timeout ?? 60_000,
      ...(options.fetch ? { fetch: options.fetch } : {}),
      retry: {
        limit,
        methods: [...RETRY_METHODS],
        statusCodes: [408, 429, 500, 502, 503, 504],
        afterStatusCodes: [429, 503],
        backoffLimit: 5_000,
      },
    });
  }

  #authHeaders(auth: Auth): Record<string, string> {
    const o = this.#options;
    if (auth === "none") return {};
    if (typeof auth === "object") return { [auth.header]: auth.value, ...auth.extra };
    if (auth === "console" && o.accessToken) {
      return {
        authorization: `Bearer ${o.accessToken}`,
        ...(o.userId !== undefined ? { "new-api-user": String(o.userId) } : {}),
      };
    }
    return o.managementKey ? { authorization: `Bearer ${o.managementKey}` } : {};
  }

  /**
   * Sends a request and resolves with the response when its status is 2xx; throws a
   * {@link TokenpoolError} otherwise (after the retries the method allows).
   */
  async send(method: string, path: string, opts: RequestOptions): Promise<Response> {
    const searchParams = new URLSearchParams();
    for (const [k, v] of Object.entries(opts.query ?? {}))
      if (v !== undefined && v !== null) searchParams.set(k, String(v));
    try {
      return await this.#ky(path.replace(/^\/+/, ""), {
        method,
        headers: { ...this.#authHeaders(opts.auth), ...opts.headers },
        ...(searchParams.size > 0 ? { searchParams } : {}),
        ...(opts.json !== undefined ? { json: opts.json } : {}),
        // A Uint8Array is a BodyInit at run time; DOM typings only accept one over an ArrayBuffer.
        ...(opts.body !== undefined ? { body: opts.body as KyOptions["body"] } : {}),
        ...(opts.signal ? { signal: opts.signal } : {}),
      });
    } catch (error) {
      throw await toTokenpoolError(error);
    }
  }

  /** Sends a request and parses the answer (JSON, else text). */
  async request<T>(method: string, path: string, opts: RequestOptions): Promise<T> {
    const res = await this.send(method, path, opts);
    return parseBody(await res.text()) as T;
  }

  /**
   * A `/api/token/`, `/api/user/` or `/v1/tokens` request: unwraps `{ success, message, data }`
   * and throws on `success: false`, whatever the HTTP status (new-api answers some failures
   * with 200).
   */
  async envelope<T>(method: string, path: string, opts: RequestOptions): Promise<T> {
    const res = await this.send(method, path, opts);
    const body = parseBody(await res.text());
    if (
      typeof body !== "object" ||
      body === null ||
      (body as { success?: unknown }).success !== true
    )
      throw errorFromBody(res.status, body, "unexpected answer: no success envelope");
    return (body as { data?: T }).data as T;
  }
}

/** Turns whatever ky or fetch threw into a {@link TokenpoolError}. */
async function toTokenpoolError(error: unknown): Promise<unknown> {
  if (isHTTPError(error)) {
    const text = await error.response.text().catch(() => "");
    const e = errorFromBody(error.response.status, parseBody(text), error.response.statusText);
    return e;
  }
  if (isTimeoutError(error))
    return new TokenpoolError("request timed out", { status: 0, code: "TIMEOUT", cause: error });
  if (error instanceof Error && error.name === "AbortError") return error;
  if (error instanceof TypeError)
    return new TokenpoolError(`network error: ${error.message}`, {
      status: 0,
      code: "NETWORK_ERROR",
      cause: error,
    });
  return error;
}
