import type { TokenUsage } from "../billing/price.js";
import type { Reply } from "../exchange.js";
import { errorMessageOf, streamTranslatorOf, textOfEvents } from "../formats/registry.js";
import { replyText } from "../formats/sse.js";
import type { WireFormatSpec } from "../formats/types.js";
import type { Json } from "../translate/types.js";
import type { CallPlan } from "./plan.js";
import { type RelayCommon, type RelayEnd, relayStream, relayTranslated } from "./relay.js";
import type { RequestContext } from "./types.js";

/**
 * The headers of an SSE answer. A literal per answer, not a spread of a shared object: V8 gives
 * an object made by spreading no stable shape, so every header added to it afterwards (the
 * `x-ratelimit-*` ones) and Node's walk over them took ~7 µs per answer instead of ~0.3.
 */
const sseHeaders = (requestId: string): Record<string, string> => ({
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
  "x-request-id": requestId,
});

/**
 * An upstream error answer for the client: as it is when the client speaks the upstream's
 * format, else its message in the client's error format with the same status.
 */
export function errorReply(
  client: WireFormatSpec,
  status: number,
  text: string,
  upstream: WireFormatSpec,
): Reply {
  if (upstream.name === client.name) {
    return { status, headers: { "content-type": "application/json" }, body: text };
  }
  const message =
    errorMessageOf(text) ?? (text.slice(0, 500) || `upstream answered HTTP ${status}`);
  return {
    status,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(client.errorBody(status, message)),
  };
}

/**
 * The answer stage for a non-streamed answer: relayed as it is when the formats match (usage
 * read without a full parse where the format can), else parsed, unwrapped and translated. An
 * answer without usage is billed by counting it locally.
 */
export async function jsonAnswer(
  ctx: RequestContext,
  plan: CallPlan,
  buf: Buffer,
  done: (usage: TokenUsage, responseBody: Buffer | string) => void,
): Promise<Reply> {
  const { req, client, local, requestId } = ctx;
  const { upstream } = plan;
  const headers = { "content-type": "application/json", "x-request-id": requestId };
  if (plan.passthrough && upstream.usageOfBytes) {
    const usage = upstream.usageOfBytes(buf) ?? (await local.usage(replyText(buf)));
    done(usage, buf);
    return { status: 200, headers, body: buf };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(buf.toString("utf8"));
  } catch {
    parsed = undefined;
  }
  parsed = upstream.unwrap(parsed);
  if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) {
    done(await local.usage({ output: [], reasoning: [] }), buf);
    const message = "the upstream answered with a body that is not a JSON object";
    return {
      status: 502,
      headers,
      body: JSON.stringify(client.errorBody(502, message)),
    };
  }
  const answer = parsed as Json;
  const opts = { model: req.model, id: requestId };
  const asPivot = upstream.answerToPivot(answer, opts);
  const usage =
    upstream.usage(answer) ?? (await local.usage(replyText(Buffer.from(JSON.stringify(asPivot)))));
  let body: Buffer | string;
  if (plan.passthrough) body = buf;
  // Same format in an envelope (Code Assist to a Gemini client): only unwrapped, as streams are;
  // a trip through the pivot format would drop what it cannot say (thought signatures ...).
  else if (upstream.name === client.name) body = JSON.stringify(answer);
  else body = JSON.stringify(client.answerFromPivot(asPivot, opts));
  done(usage, body);
  return { status: 200, headers, body };
}

/**
 * The relay stage: a streamed answer sent back as it arrives — byte for byte when the formats
 * match ({@link relayStream}, its format's inspector reading usage and the end), else event by
 * event translated ({@link relayTranslated}); a Gemini client without `alt=sse` gets one JSON
 * array. `onEnd` settles the request when the stream ends, cleanly or not.
 */
export function streamAnswer(
  ctx: RequestContext,
  plan: CallPlan,
  status: number,
  stream: AsyncIterable<Buffer>,
  onEnd: RelayEnd,
): Reply {
  const { req, client, requestId, includeUsage, local } = ctx;
  const { upstream } = plan;
  const jsonArray = client.jsonArray(req.stream, req.sse);
  const headers = jsonArray
    ? { "content-type": "application/json; charset=utf-8", "x-request-id": requestId }
    : sseHeaders(requestId);
  const common: RelayCommon = {
    client,
    signal: req.exchange.signal,
    mask: ctx.mask,
    onEnd,
    countUsage: async (sent: Buffer[]) => local.usage(textOfEvents(upstream, sent)),
  };
  if (plan.passthrough) {
    return {
      status,
      headers,
      body: relayStream(stream, upstream.inspector(!includeUsage), common),
    };
  }
  const translator = streamTranslatorOf(
    upstream,
    client,
    { model: req.model, id: requestId, includeUsage },
    // A Gemini SSE stream re-framed as one JSON array for a Gemini client is not translated
    // but still goes through a translator: the unwrapping one (a no-op on bare events).
    jsonArray,
  );
  return {
    status,
    headers,
    body: relayTranslated(stream, {
      ...common,
      // Only a passthrough has no translator; a plan that is not one always gets one.
      translator: translator!,
      stripUsage: client.stripsUsageChunks && !includeUsage,
      jsonArray,
    }),
  };
}
