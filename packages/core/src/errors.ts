/**
 * The one error class of tokenpool. Check with {@link isGatewayError}, never `instanceof`
 * (bundlers and duplicated packages break `instanceof` across package boundaries).
 */

/** Every error code, mapped to its HTTP status. The single source of truth for statuses. */
export const ERROR_STATUS = {
  // request shape
  INVALID_REQUEST: 400,
  INVALID_JSON: 400,
  /** A JSON body nested deeper than `MAX_JSON_DEPTH` levels. */
  JSON_TOO_DEEP: 400,
  MISSING_MODEL: 400,
  BODY_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  NOT_FOUND: 404,
  /** No credential of the pool serves the model in the caller's group (OpenAI's `model_not_found`). */
  MODEL_NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  // downstream key authorisation
  MISSING_API_KEY: 401,
  INVALID_API_KEY: 401,
  KEY_DISABLED: 401,
  KEY_EXPIRED: 401,
  KEY_EXHAUSTED: 429,
  QUOTA_EXHAUSTED: 429,
  USER_QUOTA_EXHAUSTED: 429,
  /**
   * A rate limit (rpm, tpm, rpd) or concurrency cap of the key, its owner or its group, or of
   * every credential that could serve the request, is reached (OpenAI's `rate_limit_exceeded`).
   */
  RATE_LIMIT_EXCEEDED: 429,
  USER_DISABLED: 403,
  /** The key names an owner that no longer exists. */
  KEY_OWNER_MISSING: 403,
  MODEL_NOT_ALLOWED: 403,
  IP_NOT_ALLOWED: 403,
  // management
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  /** A key id that does not exist or that the caller may not see (the two are indistinguishable). */
  KEY_NOT_FOUND: 404,
  USER_NOT_FOUND: 404,
  // upstream
  NO_CREDENTIAL_AVAILABLE: 503,
  UPSTREAM_ERROR: 502,
  UPSTREAM_TIMEOUT: 504,
  // configuration and internals
  INVALID_OPTIONS: 500,
  STORE_ERROR: 500,
  INTERNAL: 500,
} as const;

/** An error code of tokenpool (UPPER_SNAKE). */
export type ErrorCode = keyof typeof ERROR_STATUS;

/** An error with a code and the HTTP status that code maps to. */
export class GatewayError extends Error {
  override readonly name = "GatewayError" as const;
  readonly code: ErrorCode;
  readonly status: number;
  /** Headers the error's reply carries, whatever dialect renders it (e.g. `retry-after`). */
  readonly headers: Readonly<Record<string, string>> | undefined;

  constructor(
    code: ErrorCode,
    message: string,
    options?: { cause?: unknown; status?: number; headers?: Record<string, string> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = options?.status ?? ERROR_STATUS[code];
    this.headers = options?.headers;
  }
}

/** Whether `e` is a {@link GatewayError}, by name and code rather than `instanceof`. */
export function isGatewayError(e: unknown): e is GatewayError {
  return (
    typeof e === "object" &&
    e !== null &&
    (e as { name?: unknown }).name === "GatewayError" &&
    typeof (e as { code?: unknown }).code === "string" &&
    (e as { code: string }).code in ERROR_STATUS
  );
}
