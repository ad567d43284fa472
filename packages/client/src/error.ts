/**
 * The one error the client throws.
 *
 * @module
 */

/** What a {@link TokenpoolError} is made of. */
export interface TokenpoolErrorInit {
  /** HTTP status; 0 when no answer arrived (timeout, network failure). */
  status: number;
  /** A machine-readable code when the server sent one (or `TIMEOUT` / `NETWORK_ERROR`). */
  code?: string | undefined;
  /** The answer's body: parsed JSON when it was JSON, else its text. */
  body?: unknown;
  cause?: unknown;
}

/**
 * A failed call: an error status, a `success: false` envelope (new-api answers some failures
 * with HTTP 200), an `error` event in a stream, a timeout or a network failure.
 *
 * `message` is the server's own message, whichever envelope carried it:
 * `{ success: false, message }` (token, user and pool routes), `{ error: "..." }` (management
 * routes), `{ error: { message } }` (OpenAI and Gemini) or `{ type: "error", error: { message } }`
 * (Anthropic). Check with {@link isTokenpoolError} rather than `instanceof`, which fails when a
 * bundler duplicates or renames the class.
 *
 * @example
 * ```ts
 * try {
 *   await client.tokens.get(42);
 * } catch (e) {
 *   if (isTokenpoolError(e) && e.status === 404) console.log(e.message); // "Token does not exist"
 *   else throw e;
 * }
 * ```
 */
export class TokenpoolError extends Error {
  override readonly name = "TokenpoolError" as const;
  /** HTTP status; 0 when no answer arrived. */
  readonly status: number;
  /** The server's code (OpenAI `code`, Gemini `status`, Anthropic `type`), when there is one. */
  readonly code: string | undefined;
  /** The raw body: parsed JSON when it was JSON, else its text. */
  readonly body: unknown;

  constructor(message: string, init: TokenpoolErrorInit) {
    super(message, init.cause === undefined ? undefined : { cause: init.cause });
    this.status = init.status;
    this.code = init.code;
    this.body = init.body;
  }
}

/** Whether `error` is a {@link TokenpoolError} (by name, so it works across bundles). */
export function isTokenpoolError(error: unknown): error is TokenpoolError {
  return error instanceof Error && error.name === "TokenpoolError";
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * The message and code of an error body in any of the gateway's envelopes, or `undefined`
 * when `body` is not one.
 */
export function describeErrorBody(body: unknown): { message: string; code?: string } | undefined {
  if (!isObject(body)) return undefined;
  if (body.success === false && typeof body.message === "string") return { message: body.message };
  if (typeof body.error === "string") return { message: body.error };
  if (isObject(body.error) && typeof body.error.message === "string") {
    const e = body.error as Record<string, unknown> & { message: string };
    // OpenAI: `code` (a string or null); Gemini: `status` (`code` is the HTTP status); Anthropic: `type`.
    const code =
      typeof e.code === "string"
        ? e.code
        : typeof e.status === "string"
          ? e.status
          : typeof e.type === "string"
            ? e.type
            : undefined;
    return code === undefined ? { message: e.message } : { message: e.message, code };
  }
  return undefined;
}

/** A {@link TokenpoolError} for an answer with this status and (parsed) body. */
export function errorFromBody(status: number, body: unknown, fallback?: string): TokenpoolError {
  const d = describeErrorBody(body);
  const message =
    d?.message ||
    (typeof body === "string" && body.trim() ? body.trim().slice(0, 500) : undefined) ||
    fallback ||
    `request failed with status ${status}`;
  return new TokenpoolError(message, { status, code: d?.code, body });
}
