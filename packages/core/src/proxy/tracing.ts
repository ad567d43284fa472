import {
  type Attributes,
  context,
  type Span,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
import type { TokenUsage } from "../billing/price.js";
import type { CredentialRecord } from "../store/types.js";
import type { RequestContext } from "./types.js";

/**
 * OpenTelemetry traces of the proxy engine, through `@opentelemetry/api` alone: a no-op until
 * the application registers an SDK (`trace.setGlobalTracerProvider`, or the Node SDK's `start()`).
 *
 * - One span per proxied request (kind SERVER, named `{operation} {model}`), from admission to
 *   settlement (a stream's last byte), with the GenAI semantic conventions' attributes
 *   (`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.usage.input_tokens`, ...) and
 *   tokenpool's own (`tokenpool.key.id`, `tokenpool.route`, `tokenpool.quota`, ...).
 * - One child span per upstream attempt (kind CLIENT): the credential tried, its provider
 *   (`gen_ai.provider.name`), the upstream model and host, the status it answered, and
 *   `error.type` when it failed (the request then fails over to the next attempt).
 *
 * Never recorded: prompts, answers, API keys, credential secrets, URLs with queries. Ids (of keys,
 * users, credentials) are recorded; key texts are not.
 *
 * When no SDK is registered, a request costs one no-op span object and nothing else.
 */
const tracer = trace.getTracer("@tokenpool/core");

/** GenAI `gen_ai.operation.name` of a request's client format and route. */
function operationOf(ctx: RequestContext): string {
  const { req } = ctx;
  if (req.openaiPath === "embeddings") return "embeddings";
  if (req.openaiPath === "completions") return "text_completion";
  if (req.format === "gemini") return "generate_content";
  return "chat";
}

/** GenAI `gen_ai.provider.name` of one of our providers (the spec's names where it has one). */
function providerName(provider: string): string {
  switch (provider) {
    case "gemini":
    case "gemini-web":
    case "antigravity":
      return "gcp.gemini";
    case "codex":
      return "openai";
    default:
      return provider;
  }
}

/** The host of an upstream base URL (never its path or query, which may hold a secret). */
function hostOf(baseUrl: string): string | undefined {
  try {
    return new URL(baseUrl).hostname;
  } catch {
    return undefined;
  }
}

/**
 * Starts the span of a proxied request, or returns null when no SDK records it (the common case:
 * then nothing else is done for tracing).
 */
export function startRequestSpan(ctx: RequestContext): Span | null {
  const { req } = ctx;
  const operation = operationOf(ctx);
  const span = tracer.startSpan(`${operation} ${req.model}`, { kind: SpanKind.SERVER });
  if (!span.isRecording()) return null;
  const { key, user } = req.auth;
  const attributes: Attributes = {
    "gen_ai.operation.name": operation,
    "gen_ai.request.model": req.model,
    "tokenpool.request.id": ctx.requestId,
    "tokenpool.route": req.route,
    "tokenpool.format": req.format,
    "tokenpool.stream": req.stream,
    "tokenpool.key.id": key.id,
    "tokenpool.group": ctx.group,
  };
  if (user) attributes["tokenpool.user.id"] = user.id;
  if (ctx.maxTokens !== undefined) attributes["gen_ai.request.max_tokens"] = ctx.maxTokens;
  span.setAttributes(attributes);
  return span;
}

/** Ends a request's span with its outcome (once; later calls do nothing). */
export function endRequestSpan(
  span: Span | null,
  status: number,
  usage: TokenUsage | null,
  quota: number,
  error: string | null,
): void {
  if (!span?.isRecording()) return;
  span.setAttribute("http.response.status_code", status);
  if (usage) {
    span.setAttributes({
      "gen_ai.usage.input_tokens": usage.inputTokens,
      "gen_ai.usage.output_tokens": usage.outputTokens,
      "tokenpool.usage.cached_tokens": usage.cachedTokens,
      "tokenpool.usage.reasoning_tokens": usage.reasoningTokens,
      "tokenpool.quota": quota,
    });
  }
  if (status >= 400 || error !== null) {
    span.setAttribute("error.type", String(status));
    // The message is our own (never an upstream's body): a short reason, no secrets.
    span.setStatus({ code: SpanStatusCode.ERROR, message: error ?? `status ${status}` });
  }
  span.end();
}

/** Starts the span of one upstream attempt, a child of the request's (null: not traced). */
export function startAttemptSpan(
  parent: Span | null | undefined,
  ctx: RequestContext,
  credential: CredentialRecord,
  upstreamModel: string,
  attempt: number,
): Span | null {
  if (!parent) return null;
  const operation = operationOf(ctx);
  const attributes: Attributes = {
    "gen_ai.operation.name": operation,
    "gen_ai.provider.name": providerName(credential.provider),
    "gen_ai.request.model": upstreamModel,
    "tokenpool.credential.id": credential.id,
    "tokenpool.attempt": attempt,
  };
  const host = hostOf(credential.baseUrl);
  if (host) attributes["server.address"] = host;
  return tracer.startSpan(
    `${operation} ${upstreamModel}`,
    { kind: SpanKind.CLIENT, attributes },
    trace.setSpan(context.active(), parent),
  );
}

/** Ends an attempt's span: the status the upstream answered (0: none), and why it failed. */
export function endAttemptSpan(span: Span | null, status: number, errorType: string | null): void {
  if (!span) return;
  if (status > 0) span.setAttribute("http.response.status_code", status);
  if (errorType !== null) {
    span.setAttribute("error.type", errorType);
    span.setStatus({ code: SpanStatusCode.ERROR });
  }
  span.end();
}
