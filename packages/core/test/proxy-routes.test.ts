/**
 * The proxy routes besides the 3×3 chat matrix (formats.test.ts) and the fault tests
 * (faults.test.ts): OpenAI legacy completions, embeddings and the Responses API (also with a Codex
 * credential), token counting, model lists and aliases, Cloud Code Assist upstreams (Gemini CLI
 * and Antigravity OAuth accounts), images across formats, each format's way of sending keys and
 * its error shapes, translated upstream errors, and secrets that must never cross the gateway.
 *
 * One gateway behind a real node:http server and one mock upstream speaking every format. Each
 * credential sits in its own group and each group has its own downstream key, so a key picks the
 * upstream of a test.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import Anthropic from "@anthropic-ai/sdk";
import {
  createMockUpstream,
  DEFAULT_MOCK_REPLY,
  type MockUpstream,
  mockEmbedding,
} from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, type Gateway, type Logger, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "proxy-routes-secret-0123456789-0123456789-abcdef";
const UPSTREAM_KEY = "sk-upstream-routes-9a8b7c6d5e4f3a2b1c0d";
const CODEX_KEY = "sk-codex-routes-0f1e2d3c4b5a69788796";
const ACCESS_TOKEN = "ya29.routes-access-token-a1b2c3d4e5f6a7b8c9d0";
const UPSTREAM_SECRETS = [UPSTREAM_KEY, CODEX_KEY, ACCESS_TOKEN];
const MODEL = "gpt-4o-mini";
const GEMINI_MODEL = "gemini-2.5-flash";
const WORDS = DEFAULT_MOCK_REPLY.split(" ").length;
const PNG = "iVBORw0KGgo=";
const INITIAL_QUOTA = 10_000_000;

/** The groups (one credential each) and the downstream key of each. */
type Group =
  | "openai"
  | "codex"
  | "anthropic"
  | "gemini"
  | "gemini-oauth"
  | "antigravity"
  | "alias-openai"
  | "alias-anthropic"
  | "alias-gemini"
  | "alias-gemini-oauth";

let mock: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;
const keys = {} as Record<Group, string>;
const keyIds = {} as Record<Group, number>;
const logLines: string[] = [];

/** Everything a client of this file saw: status, headers and body of every response. */
const seen: Promise<string>[] = [];

/** fetch that keeps a copy of each response (headers and body) for the secret scan. */
const trackedFetch: typeof fetch = async (input, init) => {
  const res = await fetch(input, init);
  const copy = res.clone();
  seen.push(
    copy.text().then(
      (body) => `${res.status} ${JSON.stringify([...copy.headers.entries()])}\n${body}`,
      () => "",
    ),
  );
  return res;
};

const recordingLogger: Logger = {
  debug: (m, f) => logLines.push(`debug ${m} ${JSON.stringify(f ?? {})}`),
  info: (m, f) => logLines.push(`info ${m} ${JSON.stringify(f ?? {})}`),
  warn: (m, f) => logLines.push(`warn ${m} ${JSON.stringify(f ?? {})}`),
  error: (m, f) => logLines.push(`error ${m} ${JSON.stringify(f ?? {})}`),
};

beforeAll(async () => {
  mock = await createMockUpstream({
    apiKeys: [UPSTREAM_KEY, CODEX_KEY],
    authorize: (t) => t === ACCESS_TOKEN,
  });
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: recordingLogger,
    usage: { flushIntervalMs: 10 },
  });
  const apiKey = { kind: "api-key" as const, secret: { apiKey: UPSTREAM_KEY } };
  const oauth = {
    kind: "oauth" as const,
    secret: {
      accessToken: ACCESS_TOKEN,
      refreshToken: "1//routes-refresh-token",
      expiresAt: Date.now() + 3_600_000,
    },
    projectIds: ["proj-1"],
  };
  const alias = [{ name: "upstream-name", alias: "nice-alias" }];
  const credentials: Record<Group, Parameters<Gateway["credentials"]["add"]>[0]> = {
    openai: { provider: "openai", baseUrl: mock.url, ...apiKey },
    codex: { provider: "codex", baseUrl: mock.url, kind: "api-key", secret: { apiKey: CODEX_KEY } },
    anthropic: { provider: "anthropic", baseUrl: mock.origin, ...apiKey },
    gemini: { provider: "gemini", baseUrl: mock.origin, ...apiKey },
    "gemini-oauth": { provider: "gemini", baseUrl: mock.origin, ...oauth },
    antigravity: { provider: "antigravity", baseUrl: mock.origin, ...oauth },
    "alias-openai": { provider: "openai", baseUrl: mock.url, ...apiKey, models: alias },
    "alias-anthropic": { provider: "anthropic", baseUrl: mock.origin, ...apiKey, models: alias },
    "alias-gemini": { provider: "gemini", baseUrl: mock.origin, ...apiKey, models: alias },
    "alias-gemini-oauth": { provider: "gemini", baseUrl: mock.origin, ...oauth, models: alias },
  };
  for (const [group, c] of Object.entries(credentials) as [Group, (typeof credentials)[Group]][]) {
    await gateway.credentials.add({ ...c, groups: [`g-${group}`] });
    const { key, record } = await gateway.keys.create({
      name: `routes-${group}`,
      remainQuota: INITIAL_QUOTA,
      group: `g-${group}`,
    });
    keys[group] = key;
    keyIds[group] = record.id;
  }
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
  await mock.close();
});

const openai = (group: Group) =>
  new OpenAI({ baseURL: `${base}/v1`, apiKey: keys[group], fetch: trackedFetch, maxRetries: 0 });
const anthropic = (group: Group) =>
  new Anthropic({ baseURL: base, apiKey: keys[group], fetch: trackedFetch, maxRetries: 0 });

/** A POST of a JSON (or raw string) body with a tracked fetch. */
function post(path: string, body: unknown, headers: Record<string, string>): Promise<Response> {
  return trackedFetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

const anthropicHeaders = (group: Group) => ({
  "x-api-key": keys[group],
  "anthropic-version": "2023-06-01",
});

/** A Gemini generateContent call with the key in `x-goog-api-key`. */
function gemini(
  group: Group,
  body: unknown,
  opts: { model?: string; method?: string; query?: string } = {},
): Promise<Response> {
  const method = opts.method ?? "generateContent";
  return post(`/v1beta/models/${opts.model ?? GEMINI_MODEL}:${method}${opts.query ?? ""}`, body, {
    "x-goog-api-key": keys[group],
  });
}

const geminiText = (text: string) => ({ contents: [{ role: "user", parts: [{ text }] }] });

interface GeminiAnswer {
  candidates?: { content?: { parts?: { text?: string }[] }; finishReason?: string }[];
  usageMetadata?: { promptTokenCount?: number; candidatesTokenCount?: number };
  response?: unknown;
}
const partsText = (a: GeminiAnswer) =>
  (a.candidates?.[0]?.content?.parts ?? []).map((p) => p.text ?? "").join("");

/** The `data:` payloads of an SSE body, parsed. */
function sseData(text: string): Record<string, unknown>[] {
  return text
    .split(/\r?\n\r?\n/)
    .map((ev) =>
      ev
        .split(/\r?\n/)
        .filter((l) => l.startsWith("data:"))
        .map((l) => l.slice(5).trim())
        .join("\n"),
    )
    .filter((d) => d !== "" && d !== "[DONE]")
    .map((d) => JSON.parse(d) as Record<string, unknown>);
}

const lastUpstream = () => {
  const r = mock.requests.at(-1);
  if (!r) throw new Error("the mock saw no request");
  return r;
};

/** The newest usage record of a key, after writing queued ones. */
async function lastUsage(group: Group) {
  await gateway.usage.flush();
  const items = (await gateway.usage.list({ keyId: keyIds[group], limit: 1000 })).items;
  const rec = [...items].sort((a, b) => b.id - a.id)[0];
  if (!rec) throw new Error(`no usage record for ${group}`);
  return rec;
}

describe("OpenAI routes besides chat completions (openai credential)", () => {
  it("relays a legacy completion and records its usage", async () => {
    const prompt = "Say hello to the tester";
    const r = await openai("openai").completions.create({ model: MODEL, prompt });
    expect(r.object).toBe("text_completion");
    expect(r.choices[0]?.text).toBe(DEFAULT_MOCK_REPLY);
    expect(r.usage?.completion_tokens).toBe(WORDS);
    expect(lastUpstream().path).toBe("/v1/completions");
    expect(lastUpstream().headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    const rec = await lastUsage("openai");
    expect(rec.route).toBe("POST /v1/completions");
    expect(rec.provider).toBe("openai");
    expect(rec.inputTokens).toBe(Math.ceil(prompt.length / 4));
    expect(rec.outputTokens).toBe(WORDS);
    expect(rec.stream).toBe(false);
    expect(rec.success).toBe(true);
    expect(rec.quota).toBeGreaterThan(0);
  });

  it("streams a legacy completion: usage asked upstream, recorded, not sent to the client", async () => {
    const prompt = "Stream a hello";
    const s = await openai("openai").completions.create({ model: MODEL, prompt, stream: true });
    let text = "";
    let chunks = 0;
    let usageChunks = 0;
    for await (const c of s) {
      chunks++;
      text += c.choices[0]?.text ?? "";
      if (c.usage) usageChunks++;
    }
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(chunks).toBe(WORDS + 1);
    expect(usageChunks).toBe(0);
    const up = lastUpstream();
    expect(up.path).toBe("/v1/completions");
    expect(up.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    const rec = await lastUsage("openai");
    expect(rec.route).toBe("POST /v1/completions");
    expect(rec.stream).toBe(true);
    expect(rec.inputTokens).toBe(Math.ceil(prompt.length / 4));
    expect(rec.outputTokens).toBe(WORDS);
  });

  it("relays embeddings and records their prompt tokens", async () => {
    const input = ["first text", "second"];
    const r = await openai("openai").embeddings.create({
      model: "text-embedding-3-small",
      input,
      encoding_format: "float",
    });
    expect(r.data.map((d) => d.embedding)).toEqual(input.map((t) => mockEmbedding(t)));
    expect(lastUpstream().path).toBe("/v1/embeddings");
    const rec = await lastUsage("openai");
    expect(rec.route).toBe("POST /v1/embeddings");
    expect(rec.model).toBe("text-embedding-3-small");
    expect(rec.inputTokens).toBe(Math.ceil(input.join("").length / 4));
    expect(rec.outputTokens).toBe(0);
    expect(rec.success).toBe(true);
  });

  it("relays a Responses API answer and records its usage", async () => {
    const r = await openai("openai").responses.create({
      model: MODEL,
      instructions: "Be brief.",
      input: "Hello there",
    });
    expect(r.output_text).toBe(DEFAULT_MOCK_REPLY);
    expect(r.usage?.output_tokens).toBe(WORDS);
    // An OpenAI-compatible base URL gets Chat Completions (only OpenAI's own API is known to
    // serve /responses): the Responses request is translated, instructions first.
    expect(lastUpstream().path).toBe("/v1/chat/completions");
    expect((lastUpstream().body as { messages: unknown[] }).messages[0]).toEqual({
      role: "system",
      content: "Be brief.",
    });
    const rec = await lastUsage("openai");
    expect(rec.route).toBe("POST /v1/responses");
    expect(rec.inputTokens).toBe(Math.ceil("Be brief.Hello there".length / 4));
    expect(rec.outputTokens).toBe(WORDS);
    expect(rec.stream).toBe(false);
  });

  it("streams a Responses API answer event by event", async () => {
    const s = openai("openai").responses.stream({ model: MODEL, input: "Hello there" });
    const types: string[] = [];
    let text = "";
    for await (const ev of s) {
      types.push(ev.type);
      if (ev.type === "response.output_text.delta") text += ev.delta;
    }
    const final = await s.finalResponse();
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(final.output_text).toBe(DEFAULT_MOCK_REPLY);
    expect(types[0]).toBe("response.created");
    expect(types.at(-1)).toBe("response.completed");
    expect(types.filter((t) => t === "response.output_text.delta")).toHaveLength(WORDS);
    const up = lastUpstream();
    expect(up.path).toBe("/v1/chat/completions");
    // Translated to a chat stream that asks for usage.
    expect(up.body).toMatchObject({ stream: true, stream_options: { include_usage: true } });
    const rec = await lastUsage("openai");
    expect(rec.route).toBe("POST /v1/responses");
    expect(rec.stream).toBe(true);
    expect(rec.inputTokens).toBe(Math.ceil("Hello there".length / 4));
    expect(rec.outputTokens).toBe(WORDS);
    expect(rec.success).toBe(true);
  });

  it("debits the key by what its usage records cost", async () => {
    await gateway.usage.flush();
    const records = (await gateway.usage.list({ keyId: keyIds.openai, limit: 1000 })).items;
    const billed = records.reduce((sum, r) => sum + r.quota, 0);
    const key = await gateway.keys.get(keyIds.openai);
    expect(records.length).toBeGreaterThanOrEqual(5);
    expect(billed).toBeGreaterThan(0);
    expect(key?.usedQuota).toBe(billed);
    expect(key?.remainQuota).toBe(INITIAL_QUOTA - billed);
  });

  it("serves /v1/responses with a Codex credential at {base}/responses", async () => {
    const before = mock.requests.length;
    const r = await openai("codex").responses.create({ model: "gpt-5-codex", input: "Hello" });
    expect(r.output_text).toBe(DEFAULT_MOCK_REPLY);
    const up = mock.requests.slice(before);
    expect(up).toHaveLength(1);
    expect(up[0]?.path).toBe("/v1/responses");
    expect(up[0]?.headers.authorization).toBe(`Bearer ${CODEX_KEY}`);
    expect(up[0]?.body).toMatchObject({ model: "gpt-5-codex", input: "Hello" });
    const rec = await lastUsage("codex");
    expect(rec.route).toBe("POST /v1/responses");
    expect(rec.provider).toBe("codex");
    expect(rec.outputTokens).toBe(WORDS);
  });

  it("answers 404 model_not_found when no credential serves embeddings (anthropic-only pool)", async () => {
    const before = mock.requests.length;
    const err = await openai("anthropic")
      .embeddings.create({ model: "text-embedding-3-small", input: "x" })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OpenAI.APIError);
    const e = err as InstanceType<typeof OpenAI.APIError>;
    expect(e.status).toBe(404);
    expect(e.code).toBe("model_not_found");
    expect(e.message).toContain("does not exist or you do not have access to it");
    expect(mock.requests.length).toBe(before);
    // Same for a Codex-only pool and legacy completions.
    const res = await post(
      "/v1/completions",
      { model: MODEL, prompt: "x" },
      { authorization: `Bearer ${keys.codex}` },
    );
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { code: string } };
    expect(body.error.code).toBe("model_not_found");
  });
});

describe("token counting", () => {
  const params = {
    model: "claude-sonnet-4-5",
    system: "Be brief.",
    messages: [{ role: "user" as const, content: "Count these words please" }],
  };

  it("forwards count_tokens to an anthropic credential", async () => {
    const r = await anthropic("anthropic").messages.countTokens(params);
    expect(r.input_tokens).toBe(Math.ceil(("Be brief." + "Count these words please").length / 4));
    const up = lastUpstream();
    expect(up.path).toBe("/v1/messages/count_tokens");
    expect(up.headers["x-api-key"]).toBe(UPSTREAM_KEY);
  });

  it("counts locally when the key's pool has no anthropic credential", async () => {
    const before = mock.requests.length;
    const r = await anthropic("openai").messages.countTokens(params);
    expect(Number.isInteger(r.input_tokens)).toBe(true);
    expect(r.input_tokens).toBeGreaterThan(0);
    // Anthropic credentials of other groups are not asked.
    expect(mock.requests.length).toBe(before);
  });

  it("counts Gemini tokens (:countTokens)", async () => {
    const before = mock.requests.length;
    const res = await gemini("gemini", geminiText("How many tokens is this?"), {
      method: "countTokens",
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { totalTokens: number };
    expect(Number.isInteger(body.totalTokens)).toBe(true);
    expect(body.totalTokens).toBeGreaterThan(0);
    expect(mock.requests.length).toBe(before);
    // The `{ generateContentRequest }` form counts the same.
    const wrapped = await gemini(
      "gemini",
      {
        generateContentRequest: {
          model: `models/${GEMINI_MODEL}`,
          ...geminiText("How many tokens is this?"),
        },
      },
      { method: "countTokens" },
    );
    expect(((await wrapped.json()) as { totalTokens: number }).totalTokens).toBe(body.totalTokens);
  });
});

describe("model lists and aliases", () => {
  it("lists models in OpenAI's shape for the openai client", async () => {
    const ids: string[] = [];
    for await (const m of openai("alias-openai").models.list()) {
      expect(m.object).toBe("model");
      ids.push(m.id);
    }
    expect(ids).toContain("nice-alias");
    expect(ids).not.toContain("upstream-name");
    // A key sees only what its group's credentials serve.
    const other: string[] = [];
    for await (const m of openai("openai").models.list()) other.push(m.id);
    expect(other).not.toContain("nice-alias");
  });

  it("lists models in Anthropic's shape for the Anthropic client", async () => {
    const page = await anthropic("alias-anthropic").models.list();
    const m = page.data.find((x) => x.id === "nice-alias");
    expect(m).toMatchObject({ type: "model", id: "nice-alias", display_name: "nice-alias" });
    expect(typeof m?.created_at).toBe("string");
    expect(page.data.map((x) => x.id)).not.toContain("upstream-name");
  });

  it("lists models in Google's shape for Gemini clients", async () => {
    const res = await trackedFetch(`${base}/v1beta/models?key=${keys["alias-gemini"]}`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      models: { name: string; supportedGenerationMethods: string[] }[];
    };
    const names = body.models.map((m) => m.name);
    expect(names).toContain("models/nice-alias");
    expect(names).not.toContain("models/upstream-name");
    expect(body.models[0]?.supportedGenerationMethods).toContain("generateContent");
    // One model (the Google SDK's `models.get`), and an unknown one.
    const one = await trackedFetch(`${base}/v1beta/models/nice-alias?key=${keys["alias-gemini"]}`);
    expect(await one.json()).toMatchObject({ name: "models/nice-alias" });
    const missing = await trackedFetch(`${base}/v1beta/models/nope?key=${keys["alias-gemini"]}`);
    expect(missing.status).toBe(404);
    expect(await missing.json()).toMatchObject({ error: { code: 404, status: "NOT_FOUND" } });
  });

  it("sends the upstream name to an openai upstream (OpenAI and Anthropic clients)", async () => {
    const r = await openai("alias-openai").chat.completions.create({
      model: "nice-alias",
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(lastUpstream().path).toBe("/v1/chat/completions");
    expect((lastUpstream().body as { model: string }).model).toBe("upstream-name");

    const s = await openai("alias-openai").chat.completions.create({
      model: "nice-alias",
      messages: [{ role: "user", content: "Hi" }],
      stream: true,
    });
    let text = "";
    for await (const c of s) text += c.choices[0]?.delta.content ?? "";
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(lastUpstream().body).toMatchObject({
      model: "upstream-name",
      stream_options: { include_usage: true },
    });

    const m = await anthropic("alias-openai").messages.create({
      model: "nice-alias",
      max_tokens: 50,
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(m.model).toBe("nice-alias");
    expect((lastUpstream().body as { model: string }).model).toBe("upstream-name");
  });

  it("sends the upstream name to an anthropic upstream (Anthropic and Gemini clients)", async () => {
    const m = await anthropic("alias-anthropic").messages.create({
      model: "nice-alias",
      max_tokens: 50,
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(m.content[0]).toMatchObject({ type: "text", text: DEFAULT_MOCK_REPLY });
    expect(lastUpstream().path).toBe("/v1/messages");
    expect((lastUpstream().body as { model: string }).model).toBe("upstream-name");

    const res = await gemini("alias-anthropic", geminiText("Hi"), { model: "nice-alias" });
    expect(res.status).toBe(200);
    expect(partsText((await res.json()) as GeminiAnswer)).toBe(DEFAULT_MOCK_REPLY);
    expect((lastUpstream().body as { model: string }).model).toBe("upstream-name");

    const count = await anthropic("alias-anthropic").messages.countTokens({
      model: "nice-alias",
      messages: [{ role: "user", content: "Hi there" }],
    });
    expect(count.input_tokens).toBe(2);
    expect(lastUpstream().path).toBe("/v1/messages/count_tokens");
    expect((lastUpstream().body as { model: string }).model).toBe("upstream-name");
  });

  it("sends the upstream name in a Gemini upstream's URL (Gemini and OpenAI clients)", async () => {
    const res = await gemini("alias-gemini", geminiText("Hi"), { model: "nice-alias" });
    expect(res.status).toBe(200);
    expect(partsText((await res.json()) as GeminiAnswer)).toBe(DEFAULT_MOCK_REPLY);
    expect(lastUpstream().path).toBe("/v1beta/models/upstream-name:generateContent");

    const s = await gemini("alias-gemini", geminiText("Hi"), {
      model: "nice-alias",
      method: "streamGenerateContent",
      query: "?alt=sse",
    });
    expect(s.status).toBe(200);
    expect(
      sseData(await s.text())
        .map(partsText)
        .join(""),
    ).toBe(DEFAULT_MOCK_REPLY);
    expect(lastUpstream().path).toBe("/v1beta/models/upstream-name:streamGenerateContent?alt=sse");

    const r = await openai("alias-gemini").chat.completions.create({
      model: "nice-alias",
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(r.model).toBe("nice-alias");
    expect(lastUpstream().path).toBe("/v1beta/models/upstream-name:generateContent");
  });

  it("sends the upstream name in a Code Assist body", async () => {
    const r = await openai("alias-gemini-oauth").chat.completions.create({
      model: "nice-alias",
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(lastUpstream().path).toBe("/v1internal:generateContent");
    expect(lastUpstream().body).toMatchObject({ model: "upstream-name", project: "proj-1" });
  });

  it("does not serve the upstream name itself under an alias", async () => {
    const res = await post(
      "/v1/chat/completions",
      { model: "upstream-name", messages: [{ role: "user", content: "Hi" }] },
      { authorization: `Bearer ${keys["alias-openai"]}` },
    );
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("model_not_found");
  });
});

describe.each(["gemini-oauth", "antigravity"] as const)("Code Assist upstream (%s)", (group) => {
  const expectCodeAssistCall = (path: string) => {
    const up = lastUpstream();
    expect(up.path).toBe(path);
    expect(up.headers.authorization).toBe(`Bearer ${ACCESS_TOKEN}`);
    const body = up.body as { model: string; project: string; request: { contents: unknown[] } };
    expect(body.model).toBe(GEMINI_MODEL);
    expect(body.project).toBe("proj-1");
    expect(body.request.contents).toEqual([{ role: "user", parts: [{ text: "Hello there" }] }]);
    expect(body.request).not.toHaveProperty("model");
  };

  it("serves an OpenAI client (JSON)", async () => {
    const r = await openai(group).chat.completions.create({
      model: GEMINI_MODEL,
      messages: [{ role: "user", content: "Hello there" }],
    });
    expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(r.choices[0]?.finish_reason).toBe("stop");
    expect(r.usage?.completion_tokens).toBe(WORDS);
    expectCodeAssistCall("/v1internal:generateContent");
    const rec = await lastUsage(group);
    expect(rec.provider).toBe(group === "antigravity" ? "antigravity" : "gemini");
    expect(rec.outputTokens).toBe(WORDS);
  });

  it("serves an OpenAI client (stream)", async () => {
    const s = await openai(group).chat.completions.create({
      model: GEMINI_MODEL,
      messages: [{ role: "user", content: "Hello there" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let text = "";
    let usage = -1;
    for await (const c of s) {
      text += c.choices[0]?.delta.content ?? "";
      if (c.usage) usage = c.usage.completion_tokens;
    }
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(usage).toBe(WORDS);
    expectCodeAssistCall("/v1internal:streamGenerateContent?alt=sse");
  });

  it("serves a Gemini client with unwrapped answers (JSON, SSE, JSON array)", async () => {
    const res = await gemini(group, geminiText("Hello there"));
    expect(res.status).toBe(200);
    const a = (await res.json()) as GeminiAnswer;
    expect(a).not.toHaveProperty("response");
    expect(partsText(a)).toBe(DEFAULT_MOCK_REPLY);
    expect(a.candidates?.[0]?.finishReason).toBe("STOP");
    expect(a.usageMetadata?.candidatesTokenCount).toBe(WORDS);
    expectCodeAssistCall("/v1internal:generateContent");

    const s = await gemini(group, geminiText("Hello there"), {
      method: "streamGenerateContent",
      query: "?alt=sse",
    });
    expect(s.status).toBe(200);
    const events = sseData(await s.text()) as GeminiAnswer[];
    expect(events.length).toBe(WORDS);
    for (const ev of events) expect(ev).not.toHaveProperty("response");
    expect(events.map(partsText).join("")).toBe(DEFAULT_MOCK_REPLY);
    expect(events.at(-1)?.candidates?.[0]?.finishReason).toBe("STOP");
    expectCodeAssistCall("/v1internal:streamGenerateContent?alt=sse");

    const arr = await gemini(group, geminiText("Hello there"), {
      method: "streamGenerateContent",
    });
    expect(arr.status).toBe(200);
    const list = (await arr.json()) as GeminiAnswer[];
    expect(Array.isArray(list)).toBe(true);
    expect(list.map(partsText).join("")).toBe(DEFAULT_MOCK_REPLY);
    for (const ev of list) expect(ev).not.toHaveProperty("response");
  });

  it("gives a Gemini client the upstream's answer only unwrapped (nothing lost)", async () => {
    const answer = {
      candidates: [
        {
          content: {
            role: "model",
            parts: [
              { text: "thinking...", thought: true },
              { functionCall: { name: "f", args: { a: 1 } }, thoughtSignature: "c2lnbmF0dXJl" },
            ],
          },
          finishReason: "STOP",
          index: 0,
          safetyRatings: [{ category: "HARM_CATEGORY_HARASSMENT", probability: "NEGLIGIBLE" }],
        },
      ],
      usageMetadata: { promptTokenCount: 4, candidatesTokenCount: 6, totalTokenCount: 10 },
      modelVersion: GEMINI_MODEL,
      responseId: "upstream-response-id",
    };
    mock.fail({ status: 200, path: "/v1internal", body: { response: answer } });
    const res = await gemini(group, geminiText("Hello there"));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual(answer);
    const rec = await lastUsage(group);
    expect(rec.inputTokens).toBe(4);
    expect(rec.outputTokens).toBe(6);
  });

  it("serves an Anthropic client", async () => {
    const m = await anthropic(group).messages.create({
      model: GEMINI_MODEL,
      max_tokens: 100,
      messages: [{ role: "user", content: "Hello there" }],
    });
    expect(m.content[0]).toMatchObject({ type: "text", text: DEFAULT_MOCK_REPLY });
    expect(m.stop_reason).toBe("end_turn");
    expect(m.usage.output_tokens).toBe(WORDS);
    expectCodeAssistCall("/v1internal:generateContent");
  });
});

describe.each(["gemini", "anthropic", "openai"] as const)(
  "Gemini stream without alt=sse (one JSON array) from a %s upstream",
  (group) => {
    it("answers a JSON array of GenerateContentResponses", async () => {
      const res = await gemini(group, geminiText("Hello there"), {
        method: "streamGenerateContent",
      });
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toMatch(/^application\/json/);
      const list = (await res.json()) as GeminiAnswer[];
      expect(Array.isArray(list)).toBe(true);
      expect(list.map(partsText).join("")).toBe(DEFAULT_MOCK_REPLY);
      expect(list.at(-1)?.candidates?.[0]?.finishReason).toBe("STOP");
      const rec = await lastUsage(group);
      expect(rec.stream).toBe(true);
      expect(rec.outputTokens).toBe(WORDS);
      expect(rec.success).toBe(true);
    });
  },
);

describe("images across formats", () => {
  const dataUrl = `data:image/png;base64,${PNG}`;
  const openaiImageMessage = [
    {
      role: "user" as const,
      content: [
        { type: "text" as const, text: "What is this?" },
        { type: "image_url" as const, image_url: { url: dataUrl } },
      ],
    },
  ];

  it("an OpenAI image_url data URL reaches an anthropic upstream as a base64 image block", async () => {
    const r = await openai("anthropic").chat.completions.create({
      model: "claude-sonnet-4-5",
      messages: openaiImageMessage,
    });
    expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    const body = lastUpstream().body as { messages: { content: unknown[] }[] };
    expect(body.messages[0]?.content).toContainEqual({
      type: "image",
      source: { type: "base64", media_type: "image/png", data: PNG },
    });
    expect(body.messages[0]?.content).toContainEqual({ type: "text", text: "What is this?" });
  });

  it("an OpenAI image_url data URL reaches a gemini upstream as inlineData", async () => {
    const r = await openai("gemini").chat.completions.create({
      model: GEMINI_MODEL,
      messages: openaiImageMessage,
    });
    expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    const body = lastUpstream().body as { contents: { parts: unknown[] }[] };
    expect(body.contents[0]?.parts).toContainEqual({
      inlineData: { mimeType: "image/png", data: PNG },
    });
    expect(body.contents[0]?.parts).toContainEqual({ text: "What is this?" });
  });

  it("an Anthropic base64 image reaches an openai upstream as image_url", async () => {
    const m = await anthropic("openai").messages.create({
      model: MODEL,
      max_tokens: 100,
      messages: [
        {
          role: "user",
          content: [
            { type: "image", source: { type: "base64", media_type: "image/png", data: PNG } },
            { type: "text", text: "What is this?" },
          ],
        },
      ],
    });
    expect(m.content[0]).toMatchObject({ type: "text", text: DEFAULT_MOCK_REPLY });
    const body = lastUpstream().body as { messages: { content: unknown[] }[] };
    expect(lastUpstream().path).toBe("/v1/chat/completions");
    expect(body.messages[0]?.content).toContainEqual({
      type: "image_url",
      image_url: { url: dataUrl },
    });
  });

  it("a Gemini inlineData image reaches an anthropic upstream as a base64 image block", async () => {
    const res = await gemini("anthropic", {
      contents: [
        {
          role: "user",
          parts: [{ text: "What is this?" }, { inlineData: { mimeType: "image/png", data: PNG } }],
        },
      ],
    });
    expect(res.status).toBe(200);
    const body = lastUpstream().body as { messages: { content: unknown[] }[] };
    expect(body.messages[0]?.content).toContainEqual({
      type: "image",
      source: { type: "base64", media_type: "image/png", data: PNG },
    });
  });
});

describe("keys as each client sends them, and each dialect's errors", () => {
  it("accepts ?key= (Gemini), x-api-key (Anthropic) and Bearer (OpenAI)", async () => {
    const g = await post(
      `/v1beta/models/${GEMINI_MODEL}:generateContent?key=${keys.gemini}`,
      {
        ...geminiText("Hi"),
      },
      {},
    );
    expect(g.status).toBe(200);
    expect(partsText((await g.json()) as GeminiAnswer)).toBe(DEFAULT_MOCK_REPLY);
    expect(lastUpstream().path).toBe(`/v1beta/models/${GEMINI_MODEL}:generateContent`);

    const a = await post(
      "/v1/messages",
      { model: MODEL, max_tokens: 20, messages: [{ role: "user", content: "Hi" }] },
      anthropicHeaders("anthropic"),
    );
    expect(a.status).toBe(200);
    expect(((await a.json()) as { type: string }).type).toBe("message");

    const o = await post(
      "/v1/chat/completions",
      { model: MODEL, messages: [{ role: "user", content: "Hi" }] },
      { authorization: `Bearer ${keys.openai}` },
    );
    expect(o.status).toBe(200);
    expect(((await o.json()) as { object: string }).object).toBe("chat.completion");
  });

  it("answers a wrong key with 401 in each dialect's error shape", async () => {
    const wrong = "sk-not-a-key-of-this-gateway-0000000000";
    const o = await post(
      "/v1/chat/completions",
      { model: MODEL, messages: [{ role: "user", content: "Hi" }] },
      { authorization: `Bearer ${wrong}` },
    );
    expect(o.status).toBe(401);
    const ob = (await o.json()) as { error: { message: string; type: string; code: string } };
    expect(ob.error.type).toBe("invalid_request_error");
    expect(ob.error.code).toBe("invalid_api_key");
    expect(ob.error.message).not.toContain(wrong);

    const a = await post(
      "/v1/messages",
      { model: MODEL, max_tokens: 20, messages: [{ role: "user", content: "Hi" }] },
      { "x-api-key": wrong, "anthropic-version": "2023-06-01" },
    );
    expect(a.status).toBe(401);
    expect(await a.json()).toMatchObject({
      type: "error",
      error: { type: "authentication_error" },
    });

    const g = await post(
      `/v1beta/models/${GEMINI_MODEL}:generateContent?key=${wrong}`,
      geminiText("Hi"),
      {},
    );
    expect(g.status).toBe(401);
    expect(await g.json()).toMatchObject({ error: { code: 401, status: "UNAUTHENTICATED" } });

    // The official clients surface them as authentication errors.
    const oe = await new OpenAI({ baseURL: `${base}/v1`, apiKey: wrong, maxRetries: 0 }).models
      .list()
      .catch((e: unknown) => e);
    expect(oe).toBeInstanceOf(OpenAI.AuthenticationError);
    const ae = await new Anthropic({ baseURL: base, apiKey: wrong, maxRetries: 0 }).messages
      .create({ model: MODEL, max_tokens: 5, messages: [{ role: "user", content: "Hi" }] })
      .catch((e: unknown) => e);
    expect(ae).toBeInstanceOf(Anthropic.AuthenticationError);
  });

  it("answers bad input with 400 in each dialect's shape and keeps serving", async () => {
    const bearer = { authorization: `Bearer ${keys.openai}` };
    const openaiCases: [string, unknown][] = [
      ["/v1/chat/completions", "{not json"],
      ["/v1/chat/completions", { messages: [{ role: "user", content: "Hi" }] }],
      ["/v1/chat/completions", { model: MODEL }],
      ["/v1/completions", { model: MODEL }],
      ["/v1/embeddings", { model: MODEL }],
      ["/v1/responses", { model: MODEL }],
      ["/v1/chat/completions", { model: MODEL, messages: [], stream: "yes" }],
    ];
    for (const [path, body] of openaiCases) {
      const res = await post(path, body, bearer);
      expect(res.status, `${path} ${JSON.stringify(body)}`).toBe(400);
      const b = (await res.json()) as { error: { type: string; message: string } };
      expect(b.error.type).toBe("invalid_request_error");
      expect(b.error.message.length).toBeGreaterThan(0);
    }

    const anthropicCases: [unknown, RegExp][] = [
      ["{not json", /JSON/],
      [{ max_tokens: 5, messages: [] }, /model/],
      [{ model: MODEL, max_tokens: 5 }, /messages/],
      [{ model: MODEL, messages: [{ role: "user", content: "Hi" }] }, /max_tokens/],
    ];
    for (const [body, message] of anthropicCases) {
      const res = await post("/v1/messages", body, anthropicHeaders("anthropic"));
      expect(res.status, JSON.stringify(body)).toBe(400);
      const b = (await res.json()) as { type: string; error: { type: string; message: string } };
      expect(b.type).toBe("error");
      expect(b.error.type).toBe("invalid_request_error");
      expect(b.error.message).toMatch(message);
    }
    const ct = await post(
      "/v1/messages/count_tokens",
      { model: MODEL },
      anthropicHeaders("anthropic"),
    );
    expect(ct.status).toBe(400);
    expect(((await ct.json()) as { type: string }).type).toBe("error");

    const geminiCases: unknown[] = ["{not json", { generationConfig: {} }, "[1,2]"];
    for (const body of geminiCases) {
      const res = await gemini("gemini", body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      expect(await res.json()).toMatchObject({ error: { code: 400, status: "INVALID_ARGUMENT" } });
    }
    const unknownMethod = await gemini("gemini", geminiText("Hi"), { method: "embedContent" });
    expect(unknownMethod.status).toBe(404);
    expect(await unknownMethod.json()).toMatchObject({
      error: { code: 404, status: "NOT_FOUND" },
    });

    // The server is still serving.
    const ok = await openai("openai").chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: "Hi" }],
    });
    expect(ok.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
  });
});

describe("upstream errors in another format", () => {
  it("an openai upstream's 404 reaches an Anthropic client in Anthropic's shape", async () => {
    mock.fail({
      status: 404,
      path: "/v1/chat/completions",
      body: {
        error: {
          message: "The model `gone` does not exist",
          type: "invalid_request_error",
          param: null,
          code: "model_not_found",
        },
      },
    });
    const res = await post(
      "/v1/messages",
      { model: "gone", max_tokens: 20, messages: [{ role: "user", content: "Hi" }] },
      anthropicHeaders("openai"),
    );
    expect(res.status).toBe(404);
    expect(await res.json()).toEqual({
      type: "error",
      error: { type: "not_found_error", message: "The model `gone` does not exist" },
    });

    mock.fail({ status: 404, path: "/v1/chat/completions" });
    const err = await anthropic("openai")
      .messages.create({
        model: "gone",
        max_tokens: 5,
        messages: [{ role: "user", content: "Hi" }],
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Anthropic.NotFoundError);
    expect((err as Error).message).toContain("Mock upstream fault: HTTP 404");
  });

  it("an anthropic upstream's 400 reaches a Gemini client in Google's shape", async () => {
    mock.fail({ status: 400, path: "/v1/messages" });
    const res = await gemini("anthropic", geminiText("Hi"));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: {
        code: 400,
        message: "Mock upstream fault: HTTP 400",
        status: "INVALID_ARGUMENT",
      },
    });
  });

  it("a gemini upstream's 503 (no other credential) reaches an Anthropic client in Anthropic's shape", async () => {
    mock.fail({ status: 503, path: "/v1beta/" });
    const res = await post(
      "/v1/messages",
      { model: GEMINI_MODEL, max_tokens: 20, messages: [{ role: "user", content: "Hi" }] },
      anthropicHeaders("gemini"),
    );
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({
      type: "error",
      error: { type: "overloaded_error", message: "Mock upstream fault: HTTP 503" },
    });
  });

  it("a Code Assist upstream's 400 reaches an OpenAI client in OpenAI's shape", async () => {
    mock.fail({ status: 400, path: "/v1internal" });
    const res = await post(
      "/v1/chat/completions",
      { model: GEMINI_MODEL, messages: [{ role: "user", content: "Hi" }] },
      { authorization: `Bearer ${keys["gemini-oauth"]}` },
    );
    expect(res.status).toBe(400);
    const b = (await res.json()) as { error: { message: string; type: string } };
    expect(b.error.message).toBe("Mock upstream fault: HTTP 400");
    expect(b.error.type).toBe("invalid_request_error");
    const rec = await lastUsage("gemini-oauth");
    expect(rec.status).toBe(400);
    expect(rec.success).toBe(false);
  });
});

describe("secrets", () => {
  const PASTED = "sk-pasted-by-a-user-0123456789abcdef";
  it("logs a translated request (request-log) without the client's or the upstream's key", async () => {
    await gateway.settings.set({ "request-log": true });
    try {
      const from = logLines.length;
      const r = await openai("anthropic").chat.completions.create({
        model: "claude-sonnet-4-5",
        messages: [{ role: "user", content: `Log me, not ${PASTED}` }],
      });
      expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
      const s = await anthropic("gemini")
        .messages.stream({
          model: GEMINI_MODEL,
          max_tokens: 50,
          messages: [{ role: "user", content: "Log me too" }],
        })
        .finalMessage();
      expect(s.content[0]).toMatchObject({ type: "text", text: DEFAULT_MOCK_REPLY });
      await gateway.usage.flush();
      const lines = logLines.slice(from).filter((l) => l.startsWith("info request "));
      expect(lines).toHaveLength(2);
      expect(lines[0]).toContain('"route":"POST /v1/chat/completions"');
      expect(lines[0]).toContain("Log me");
      expect(lines[0]).toContain(DEFAULT_MOCK_REPLY);
      expect(lines[1]).toContain('"route":"POST /v1/messages"');
      for (const line of lines) {
        // A secret inside a body is redacted too.
        expect(line).not.toContain(PASTED);
        for (const k of Object.values(keys)) expect(line).not.toContain(k);
        for (const k of UPSTREAM_SECRETS) expect(line).not.toContain(k);
      }
    } finally {
      await gateway.settings.set({ "request-log": false });
    }
  });

  it("never sends a client's key upstream", () => {
    expect(mock.requests.length).toBeGreaterThan(30);
    for (const r of mock.requests) {
      const wire = `${r.path}\n${JSON.stringify(r.headers)}\n${JSON.stringify(r.body)}`;
      for (const k of Object.values(keys)) expect(wire).not.toContain(k);
    }
  });

  it("never shows an upstream secret to a client (bodies and headers of this file's answers)", async () => {
    const answers = await Promise.all(seen);
    expect(answers.length).toBeGreaterThan(40);
    for (const a of answers) for (const k of UPSTREAM_SECRETS) expect(a).not.toContain(k);
    // An upstream rejecting the credential does not echo it either.
    mock.fail({
      status: 400,
      path: "/v1/chat/completions",
      body: { error: { message: `bad request for key ${UPSTREAM_KEY}`, type: "x" } },
    });
    const res = await post(
      "/v1/messages",
      { model: MODEL, max_tokens: 5, messages: [{ role: "user", content: "Hi" }] },
      anthropicHeaders("openai"),
    );
    expect(res.status).toBe(400);
    expect(await res.text()).not.toContain(UPSTREAM_KEY);
  });
});
