/**
 * OpenTelemetry traces of the proxy engine with a real SDK registered (an in-memory exporter):
 * one SERVER span per request with the GenAI semantic conventions' attributes, one CLIENT child
 * span per upstream attempt (a failed-over request has two), refused requests ended with their
 * status, streams ended at their last byte, and no prompt, answer or key text in any attribute.
 * A real gateway on the memory store behind a node:http server on port 0, the official `openai`
 * client, a mock upstream.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const UPSTREAM_KEYS = [
  "sk-upstream-trace-one-0a1b2c3d4e5f6071",
  "sk-upstream-trace-two-8293a4b5c6d7e8f9",
];
const PROMPT = "Tell me about the zebra-prompt-7f3a9c, please";
const REPLY = "zebra-answer-5e1d2b stripes everywhere";

const exporter = new InMemorySpanExporter();
const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
let mock: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;
let key: string;
let keyId: number;
/** A request served before any SDK was registered: its answer, and the spans it left. */
let beforeSdk: { content: string | null | undefined; spans: number };

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: UPSTREAM_KEYS, reply: REPLY });
  gateway = createGateway({
    store: memoryStore(),
    secret: "tracing-test-secret-0123456789-abcdefghij",
    logger: "silent",
    usage: { flushIntervalMs: 10 },
  });
  for (const apiKey of UPSTREAM_KEYS) {
    await gateway.credentials.add({
      provider: "openai",
      kind: "api-key",
      baseUrl: mock.url,
      secret: { apiKey },
      models: [{ name: "gpt-4o-mini" }],
    });
  }
  const created = await gateway.keys.create({ name: "traced", unlimitedQuota: true });
  key = created.key;
  keyId = created.record.id;
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const answer = await client().chat.completions.create({
    model: "gpt-4o-mini",
    messages: [{ role: "user", content: PROMPT }],
  });
  await new Promise((r) => setTimeout(r, 20));
  beforeSdk = {
    content: answer.choices[0]?.message.content,
    spans: exporter.getFinishedSpans().length,
  };
  // From here on an SDK records (the tracer the engine holds picks it up: no restart needed).
  trace.setGlobalTracerProvider(provider);
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await gateway.close();
  await mock.close();
  trace.disable();
  await provider.shutdown();
});

beforeEach(() => {
  exporter.reset();
  mock.reset();
});

const client = () => new OpenAI({ apiKey: key, baseURL: `${base}/v1`, maxRetries: 0 });

/** The finished spans: the request's (SERVER) and its attempts (CLIENT, in order). */
async function spans(): Promise<{ request: ReadableSpan; attempts: ReadableSpan[] }> {
  // A stream's span ends when it settles, just after the client read the last byte.
  for (let i = 0; i < 50 && !exporter.getFinishedSpans().some(isRequest); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  const all = exporter.getFinishedSpans();
  const request = all.filter(isRequest);
  expect(request).toHaveLength(1);
  const attempts = all
    .filter((s) => s.kind === SpanKind.CLIENT)
    .sort(
      (a, b) =>
        Number(a.attributes["tokenpool.attempt"]) - Number(b.attributes["tokenpool.attempt"]),
    );
  for (const a of attempts) {
    expect(a.parentSpanContext?.spanId).toBe(request[0]!.spanContext().spanId);
    expect(a.spanContext().traceId).toBe(request[0]!.spanContext().traceId);
  }
  return { request: request[0]!, attempts };
}

const isRequest = (s: ReadableSpan) => s.kind === SpanKind.SERVER;

/** Every attribute value and status message of the spans, as one text. */
function recorded(all: ReadableSpan[]): string {
  return JSON.stringify(all.map((s) => [s.name, s.attributes, s.status, s.events]));
}

describe("traces", () => {
  it("a JSON request: one request span with GenAI attributes and one attempt span", async () => {
    const answer = await client().chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: PROMPT }],
      max_tokens: 50,
    });
    expect(answer.choices[0]?.message.content).toContain("zebra-answer");
    const { request, attempts } = await spans();
    expect(request.name).toBe("chat gpt-4o-mini");
    expect(request.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.request.model": "gpt-4o-mini",
      "gen_ai.request.max_tokens": 50,
      "gen_ai.usage.input_tokens": answer.usage?.prompt_tokens,
      "gen_ai.usage.output_tokens": answer.usage?.completion_tokens,
      "http.response.status_code": 200,
      "tokenpool.key.id": keyId,
      "tokenpool.route": "POST /v1/chat/completions",
      "tokenpool.stream": false,
    });
    expect(request.status.code).toBe(SpanStatusCode.UNSET);
    expect(attempts).toHaveLength(1);
    expect(attempts[0]!.attributes).toMatchObject({
      "gen_ai.provider.name": "openai",
      "gen_ai.request.model": "gpt-4o-mini",
      "server.address": "127.0.0.1",
      "http.response.status_code": 200,
      "tokenpool.attempt": 1,
    });
    expect(String(attempts[0]!.attributes["tokenpool.credential.id"])).not.toBe("");
    expect(attempts[0]!.attributes["error.type"]).toBeUndefined();
  });

  it("a stream: the request span ends after the last byte, with the stream's usage", async () => {
    const stream = await client().chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: PROMPT }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage: OpenAI.CompletionUsage | null | undefined;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text).toContain("zebra-answer");
    const { request, attempts } = await spans();
    expect(request.attributes).toMatchObject({
      "tokenpool.stream": true,
      "http.response.status_code": 200,
      "gen_ai.usage.output_tokens": usage?.completion_tokens,
    });
    expect(attempts).toHaveLength(1);
    // The attempt ends at the first byte; the request when the stream was settled.
    const end = (s: ReadableSpan) => s.endTime[0] * 1e9 + s.endTime[1];
    expect(end(request)).toBeGreaterThanOrEqual(end(attempts[0]!));
  });

  it("a failed-over request: two attempt spans, the first with its error", async () => {
    mock.fail({ status: 500 });
    await client().chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: PROMPT }],
    });
    const { request, attempts } = await spans();
    expect(attempts).toHaveLength(2);
    expect(attempts[0]!.attributes).toMatchObject({
      "http.response.status_code": 500,
      "error.type": "500",
    });
    expect(attempts[0]!.status.code).toBe(SpanStatusCode.ERROR);
    expect(attempts[1]!.attributes).toMatchObject({ "http.response.status_code": 200 });
    expect(attempts[1]!.attributes["tokenpool.credential.id"]).not.toBe(
      attempts[0]!.attributes["tokenpool.credential.id"],
    );
    expect(request.attributes["http.response.status_code"]).toBe(200);
    expect(request.status.code).toBe(SpanStatusCode.UNSET);
  });

  it("a rate-limited request: the request span ends as refused, with no attempt", async () => {
    const limited = await gateway.keys.create({ name: "limited", unlimitedQuota: true });
    await gateway.keys.update(limited.record.id, { limits: { rpm: 1 } });
    const c = new OpenAI({ apiKey: limited.key, baseURL: `${base}/v1`, maxRetries: 0 });
    const ask = () =>
      c.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: PROMPT }],
      });
    await ask();
    exporter.reset();
    await expect(ask()).rejects.toBeInstanceOf(OpenAI.RateLimitError);
    const { request, attempts } = await spans();
    expect(attempts).toHaveLength(0);
    expect(request.attributes).toMatchObject({
      "http.response.status_code": 429,
      "error.type": "429",
      "tokenpool.key.id": limited.record.id,
    });
    expect(request.status).toMatchObject({
      code: SpanStatusCode.ERROR,
      message: "RATE_LIMIT_EXCEEDED",
    });
  });

  it("an upstream error answered to the client ends both spans as errors", async () => {
    // Every credential answers 400: a client error is passed through, not failed over.
    mock.fail({ status: 400 });
    await expect(
      client().chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: PROMPT }],
      }),
    ).rejects.toBeInstanceOf(OpenAI.BadRequestError);
    const { request, attempts } = await spans();
    expect(attempts).toHaveLength(1);
    expect(attempts[0]!.attributes["error.type"]).toBe("400");
    expect(request.attributes).toMatchObject({
      "http.response.status_code": 400,
      "error.type": "400",
    });
    expect(request.status.code).toBe(SpanStatusCode.ERROR);
  });

  it("records no prompt, answer or key text in any span", async () => {
    mock.fail({ status: 500 });
    await client().chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: PROMPT }],
    });
    const stream = await client().chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: PROMPT }],
      stream: true,
    });
    for await (const _ of stream) {
      // read to the end
    }
    await spans().catch(() => undefined);
    for (let i = 0; i < 50 && exporter.getFinishedSpans().filter(isRequest).length < 2; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const all = exporter.getFinishedSpans();
    expect(all.filter(isRequest)).toHaveLength(2);
    const text = recorded(all);
    for (const secret of [key, ...UPSTREAM_KEYS, "zebra-prompt", "zebra-answer", "stripes"]) {
      expect(text).not.toContain(secret);
    }
  });
});

describe("without an SDK", () => {
  it("records nothing and proxies as usual", () => {
    expect(beforeSdk.content).toContain("zebra-answer");
    expect(beforeSdk.spans).toBe(0);
  });
});
