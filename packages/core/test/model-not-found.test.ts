/**
 * A model nobody serves is a 404 in the route's format (OpenAI `model_not_found`, Anthropic
 * `not_found_error`, Google `NOT_FOUND`) that the official SDKs do not retry, logged at info; a
 * model whose credentials exist but are not usable now stays a 503 `no_credential_available` with
 * `Retry-After`. One gateway behind a real node:http server on port 0, the official `openai` and
 * `@anthropic-ai/sdk` clients and raw fetch for Gemini, against a mock upstream.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Anthropic from "@anthropic-ai/sdk";
import { createMockUpstream, DEFAULT_MOCK_REPLY, type MockUpstream } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, type Logger, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const UPSTREAM_KEY = "sk-upstream-notfound-0a1b2c3d4e5f60718293";
const UNSERVED = "nobody-serves-this-model";
const messages = [{ role: "user" as const, content: "Hi" }];

let mock: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;
let key: string;
let vipKey: string;
let limitedKey: string;
const logLines: string[] = [];
/** Requests that reached the gateway (to see that a client did not retry). */
let gatewayCalls = 0;

const countingFetch: typeof fetch = (input, init) => {
  gatewayCalls++;
  return fetch(input, init);
};

const recordingLogger: Logger = {
  debug: (m, f) => logLines.push(`debug ${m} ${JSON.stringify(f ?? {})}`),
  info: (m, f) => logLines.push(`info ${m} ${JSON.stringify(f ?? {})}`),
  warn: (m, f) => logLines.push(`warn ${m} ${JSON.stringify(f ?? {})}`),
  error: (m, f) => logLines.push(`error ${m} ${JSON.stringify(f ?? {})}`),
};

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  gateway = createGateway({
    store: memoryStore(),
    secret: "model-not-found-secret-0123456789-abcdefghij",
    logger: recordingLogger,
    usage: { flushIntervalMs: 10 },
  });
  const apiKey = { kind: "api-key" as const, secret: { apiKey: UPSTREAM_KEY } };
  const openai = { provider: "openai", baseUrl: mock.url, ...apiKey };
  await gateway.credentials.add({
    ...openai,
    models: [{ name: "gpt-4o-mini" }, { name: "upstream-name", alias: "nice-alias" }],
  });
  await gateway.credentials.add({
    provider: "anthropic",
    baseUrl: mock.origin,
    ...apiKey,
    models: [{ name: "claude-sonnet-4-5" }],
  });
  await gateway.credentials.add({
    provider: "gemini",
    baseUrl: mock.origin,
    ...apiKey,
    models: [{ name: "gemini-2.5-flash" }],
  });
  await gateway.credentials.add({ ...openai, models: [{ name: "members-only" }], groups: ["vip"] });
  await gateway.credentials.add({
    ...openai,
    models: [{ name: "disabled-model" }],
    enabled: false,
  });
  await gateway.credentials.add({ ...openai, models: [{ name: "cooling-model" }] });
  await gateway.settings.set({ "request-retry": 0, "preview-model-fallbacks": {} });
  key = (await gateway.keys.create({ name: "nf", unlimitedQuota: true })).key;
  vipKey = (await gateway.keys.create({ name: "nf-vip", unlimitedQuota: true, group: "vip" })).key;
  limitedKey = (
    await gateway.keys.create({
      name: "nf-limited",
      unlimitedQuota: true,
      modelLimitsEnabled: true,
      modelLimits: ["gpt-4o-mini"],
    })
  ).key;
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  await gateway.close();
  await mock.close();
});

beforeEach(() => {
  gatewayCalls = 0;
  logLines.length = 0;
});

/** The official OpenAI client with its default retries (2) against the gateway. */
const openaiClient = (apiKey = key) =>
  new OpenAI({ apiKey, baseURL: `${base}/v1`, fetch: countingFetch });
const anthropicClient = (apiKey = key) =>
  new Anthropic({ apiKey, baseURL: base, fetch: countingFetch });

function post(path: string, body: unknown, apiKey = key): Promise<Response> {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/** The log lines that are errors, and the info line for the unserved model. */
function logsFor(model: string): { errors: string[]; info: string[] } {
  return {
    errors: logLines.filter((l) => l.startsWith("error ") || l.startsWith("warn ")),
    info: logLines.filter((l) => l.startsWith("info model not served") && l.includes(model)),
  };
}

describe("a model nobody serves", () => {
  it("is a 404 model_not_found in OpenAI's shape, which the openai SDK does not retry", async () => {
    const err = await openaiClient()
      .chat.completions.create({ model: UNSERVED, messages })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.NotFoundError);
    const e = err as InstanceType<typeof OpenAI.NotFoundError>;
    expect(e.status).toBe(404);
    expect(e.code).toBe("model_not_found");
    expect(e.type).toBe("invalid_request_error");
    expect(gatewayCalls).toBe(1);
    const before = mock.requests.length;
    const res = await post("/v1/chat/completions", { model: UNSERVED, messages });
    expect(res.status).toBe(404);
    expect(res.headers.get("retry-after")).toBeNull();
    expect(await res.json()).toEqual({
      error: {
        message: `The model \`${UNSERVED}\` does not exist or you do not have access to it: no upstream credential serves it in the group \`default\`.`,
        type: "invalid_request_error",
        param: null,
        code: "model_not_found",
      },
    });
    expect(mock.requests.length).toBe(before);
    const logs = logsFor(UNSERVED);
    expect(logs.info.length).toBeGreaterThanOrEqual(2);
    expect(logs.errors).toEqual([]);
  });

  it("is the same 404 on /v1/responses, /v1/completions and /v1/embeddings, streaming or not", async () => {
    const client = openaiClient();
    const calls: Promise<unknown>[] = [
      client.responses.create({ model: UNSERVED, input: "Hi" }),
      client.chat.completions.create({ model: UNSERVED, messages, stream: true }),
      client.completions.create({ model: UNSERVED, prompt: "Hi" }),
      client.embeddings.create({ model: UNSERVED, input: "Hi" }),
    ];
    for (const call of calls) {
      const e = await call.catch((error: unknown) => error);
      expect(e).toBeInstanceOf(OpenAI.NotFoundError);
      expect((e as InstanceType<typeof OpenAI.APIError>).code).toBe("model_not_found");
    }
    expect(gatewayCalls).toBe(calls.length);
    expect(logsFor(UNSERVED).errors).toEqual([]);
  });

  it("is Anthropic's not_found_error on /v1/messages and count_tokens, not retried by the SDK", async () => {
    const client = anthropicClient();
    const e = await client.messages
      .create({ model: UNSERVED, max_tokens: 16, messages })
      .catch((error: unknown) => error);
    expect(e).toBeInstanceOf(Anthropic.NotFoundError);
    expect((e as InstanceType<typeof Anthropic.APIError>).error).toEqual({
      type: "error",
      error: { type: "not_found_error", message: expect.stringContaining(UNSERVED) },
    });
    expect(gatewayCalls).toBe(1);
    const counted = await client.messages
      .countTokens({ model: UNSERVED, messages })
      .catch((error: unknown) => error);
    expect(counted).toBeInstanceOf(Anthropic.NotFoundError);
    expect(gatewayCalls).toBe(2);
    // A served model is still counted.
    const ok = await client.messages.countTokens({ model: "claude-sonnet-4-5", messages });
    expect(ok.input_tokens).toBeGreaterThan(0);
    expect(logsFor(UNSERVED).errors).toEqual([]);
  });

  it("is Google's NOT_FOUND on every Gemini method and root", async () => {
    const body = { contents: [{ role: "user", parts: [{ text: "Hi" }] }] };
    for (const root of ["/v1beta", "/v1"]) {
      for (const method of ["generateContent", "streamGenerateContent", "countTokens"]) {
        const res = await fetch(`${base}${root}/models/${UNSERVED}:${method}`, {
          method: "POST",
          headers: { "x-goog-api-key": key, "content-type": "application/json" },
          body: JSON.stringify(body),
        });
        expect(res.status).toBe(404);
        expect(await res.json()).toEqual({
          error: { code: 404, message: expect.stringContaining(UNSERVED), status: "NOT_FOUND" },
        });
      }
    }
    const served = await fetch(`${base}/v1beta/models/gemini-2.5-flash:countTokens`, {
      method: "POST",
      headers: { "x-goog-api-key": key, "content-type": "application/json" },
      body: JSON.stringify(body),
    });
    expect(served.status).toBe(200);
    expect(logsFor(UNSERVED).errors).toEqual([]);
  });

  it("follows aliases: the alias is served, the upstream name behind it is not", async () => {
    const r = await openaiClient().chat.completions.create({ model: "nice-alias", messages });
    expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    const e = await openaiClient()
      .chat.completions.create({ model: "upstream-name", messages })
      .catch((error: unknown) => error);
    expect((e as InstanceType<typeof OpenAI.APIError>).status).toBe(404);
  });

  it("is served through a configured preview-model fallback", async () => {
    await gateway.settings.set({ "preview-model-fallbacks": { [UNSERVED]: "gpt-4o-mini" } });
    try {
      const r = await openaiClient().chat.completions.create({ model: UNSERVED, messages });
      expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    } finally {
      await gateway.settings.set({ "preview-model-fallbacks": {} });
    }
  });

  it("keeps the key's model limits first: a model outside them is a 403 as before", async () => {
    const e = await openaiClient(limitedKey)
      .chat.completions.create({ model: UNSERVED, messages })
      .catch((error: unknown) => error);
    expect((e as InstanceType<typeof OpenAI.APIError>).status).toBe(403);
    expect((e as InstanceType<typeof OpenAI.APIError>).code).toBe("model_not_allowed");
  });

  it("is a 404 when it is served only in another group than the key's, as new-api answers (model_not_found)", async () => {
    const e = await openaiClient()
      .chat.completions.create({ model: "members-only", messages })
      .catch((error: unknown) => error);
    expect(e).toBeInstanceOf(OpenAI.NotFoundError);
    const err = e as InstanceType<typeof OpenAI.APIError>;
    expect(err.code).toBe("model_not_found");
    // The message names the key's group, never the group that serves it.
    expect(err.message).toContain("in the group `default`");
    expect(err.message).not.toContain("`vip`");
    const ok = await openaiClient(vipKey).chat.completions.create({
      model: "members-only",
      messages,
    });
    expect(ok.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    // And a vip key cannot reach the default group's models.
    const vipErr = await openaiClient(vipKey)
      .chat.completions.create({ model: "gpt-4o-mini", messages })
      .catch((error: unknown) => error);
    expect(vipErr).toBeInstanceOf(OpenAI.NotFoundError);
  });
});

describe("a model whose credentials exist but none is usable now", () => {
  it("is a 503 no_credential_available with a small default Retry-After when they are disabled", async () => {
    const res = await post("/v1/chat/completions", { model: "disabled-model", messages });
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("5");
    const body = (await res.json()) as { error: { code: string; type: string } };
    expect(body.error).toMatchObject({
      code: "no_credential_available",
      type: "service_unavailable",
    });
    // The same in Anthropic's and Google's shapes, with the header.
    const a = await fetch(`${base}/v1/messages`, {
      method: "POST",
      headers: { "x-api-key": key, "content-type": "application/json" },
      body: JSON.stringify({ model: "disabled-model", max_tokens: 8, messages }),
    });
    expect(a.status).toBe(503);
    expect(a.headers.get("retry-after")).toBe("5");
    expect(((await a.json()) as { type: string }).type).toBe("error");
    // A known condition, not a bug: logged as a warning naming it, never as an error.
    const lines = logLines.filter(
      (l) => l.includes("no_credential_available") || l.includes("disabled-model"),
    );
    expect(lines.some((l) => l.startsWith("warn request failed"))).toBe(true);
    expect(lines.filter((l) => l.startsWith("error "))).toEqual([]);
  });

  it("is a 503 whose Retry-After is the seconds until the first credential comes back from its cooldown", async () => {
    mock.fail({ status: 429, headers: { "retry-after": "60" } });
    const first = await post("/v1/chat/completions", { model: "cooling-model", messages });
    expect(first.status).toBe(429);
    await first.text();
    const res = await post("/v1/chat/completions", { model: "cooling-model", messages });
    expect(res.status).toBe(503);
    const after = Number(res.headers.get("retry-after"));
    expect(after).toBeGreaterThanOrEqual(55);
    expect(after).toBeLessThanOrEqual(60);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe(
      "no_credential_available",
    );
  });
});
