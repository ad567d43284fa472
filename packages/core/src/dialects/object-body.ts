import { type Exchange, readJsonObjectBody } from "../exchange.js";

/**
 * Reads a JSON object body of at most `limit` bytes for the dialects whose envelope is
 * `{ success, message }` (new-api, antigravity): a body that is not JSON, or not an object,
 * throws `fail` with what was wrong (a body over the limit is the usual 413).
 */
export async function readObjectBody(
  ex: Exchange,
  limit: number,
  fail: (detail: string) => Error,
): Promise<Record<string, unknown>> {
  const { body } = await readJsonObjectBody(ex, limit, (reason) =>
    fail(
      reason === "invalid_json"
        ? "the request body is not valid JSON"
        : "the request body must be a JSON object",
    ),
  );
  return body;
}
