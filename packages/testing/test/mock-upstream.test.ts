import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { request as httpRequest } from "node:http";
import { fileURLToPath } from "node:url";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  countMockPromptTokens,
  createMockUpstream,
  DEFAULT_MOCK_REPLY,
  type MockUpstream,
  splitMockReply,
} from "../src/mock-upstream.js";

const KEY = "sk-mock-test-key-1234";
const MESSAGES = [
  { role: "system", content: "You are terse." }, // 14 characters
  { role: "user", content: [{ type: "text", text: "Say hello." }] }, // 10 characters
];
const PROMPT_TOKENS = Math.ceil(24 / 4);
const WORDS = splitMockReply(DEFAULT_MOCK_REPLY);

let mock: MockUpstream;

beforeAll(async () => {
  mock = await createMockUpstream({ apiKeys: [KEY] });
});
afterEach(() => mock.reset());
afterAll(() => mock.close());

function chat(body: unknown, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${mock.url}/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${KEY}`, ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** The parsed JSON body of a response, loosely typed for assertions. */
function json(res: Response): Promise<any> {
  return res.json();
}

/** Read an SSE body event by event; `error` is set when the stream broke. */
async function readEvents(res: Response): Promise<{ events: string[]; error: unknown }> {
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  const events: string[] = [];
  let buffered = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffered += decoder.decode(value, { stream: true });
      let end = buffered.indexOf("\n\n");
      while (end >= 0) {
        const event = buffered.slice(0, end);
        expect(event.startsWith("data: ")).toBe(true);
        events.push(event.slice(6));
        buffered = buffered.slice(end + 2);
        end = buffered.indexOf("\n\n");
      }
    }
  } catch (error) {
    return { events, error };
  }
  expect(buffered).toBe("");
  return { events, error: undefined };
}

describe("mock upstream: chat completions", () => {
  it("answers a chat.completion with the model echoed and the documented usage", async () => {
    const res = await chat({ model: "gpt-4o-mini", messages: MESSAGES });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("application/json");
    const body = await json(res);
    expect(body).toMatchObject({
      object: "chat.completion",
      model: "gpt-4o-mini",
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: DEFAULT_MOCK_REPLY },
          finish_reason: "stop",
        },
      ],
      usage: {
        prompt_tokens: PROMPT_TOKENS,
        completion_tokens: WORDS.length,
        total_tokens: PROMPT_TOKENS + WORDS.length,
      },
    });
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(typeof body.created).toBe("number");
  });

  it("streams one chunk per word, a finish chunk and [DONE] without a usage chunk", async () => {
    const res = await chat({ model: "gpt-4o", messages: MESSAGES, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/event-stream/);
    const { events, error } = await readEvents(res);
    expect(error).toBeUndefined();
    expect(events).toHaveLength(WORDS.length + 2);
    expect(events.at(-1)).toBe("[DONE]");
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    for (const chunk of chunks) {
      expect(chunk).toMatchObject({ object: "chat.completion.chunk", model: "gpt-4o" });
      expect(chunk.usage).toBeUndefined();
    }
    expect(chunks[0].choices[0].delta).toEqual({ role: "assistant", content: WORDS[0] });
    const text = chunks.map((c) => c.choices[0].delta.content ?? "").join("");
    expect(text).toBe(DEFAULT_MOCK_REPLY);
    expect(chunks.at(-1).choices[0]).toMatchObject({ delta: {}, finish_reason: "stop" });
    expect(new Set(chunks.map((c) => c.id)).size).toBe(1);
  });

  it("adds a usage chunk with empty choices when stream_options.include_usage is true", async () => {
    const res = await chat({
      model: "gpt-4o-mini",
      messages: MESSAGES,
      stream: true,
      stream_options: { include_usage: true },
    });
    const { events, error } = await readEvents(res);
    expect(error).toBeUndefined();
    expect(events).toHaveLength(WORDS.length + 3);
    expect(events.at(-1)).toBe("[DONE]");
    const usageChunk = JSON.parse(events.at(-2)!);
    expect(usageChunk.choices).toEqual([]);
    expect(usageChunk.usage).toEqual({
      prompt_tokens: PROMPT_TOKENS,
      completion_tokens: WORDS.length,
      total_tokens: PROMPT_TOKENS + WORDS.length,
    });
    expect(JSON.parse(events.at(-3)!).choices[0].finish_reason).toBe("stop");
  });

  it("uses the reply option and counts one completion token per word", async () => {
    const custom = await createMockUpstream({ reply: "One two  three " });
    try {
      expect(splitMockReply("One two  three ")).toEqual(["One", " two", "  three "]);
      const res = await fetch(`${custom.url}/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "m", messages: [{ role: "user", content: "abcde" }] }),
      });
      const body = await json(res);
      expect(body.choices[0].message.content).toBe("One two  three ");
      expect(body.usage).toEqual({ prompt_tokens: 2, completion_tokens: 3, total_tokens: 5 });
    } finally {
      await custom.close();
    }
  });

  it("spaces chunks by chunkDelayMs, overridable with x-mock-chunk-delay-ms", async () => {
    const started = performance.now();
    const res = await chat(
      { model: "gpt-4o-mini", messages: MESSAGES, stream: true },
      { "x-mock-chunk-delay-ms": "20" },
    );
    const { events } = await readEvents(res);
    expect(events).toHaveLength(WORDS.length + 2);
    // One delay between each two word chunks and one before the finish chunk.
    expect(performance.now() - started).toBeGreaterThanOrEqual(20 * WORDS.length - 5);
  });

  it("answers malformed JSON with a 400 OpenAI error", async () => {
    const res = await chat("{not json");
    expect(res.status).toBe(400);
    const body = await json(res);
    expect(body.error).toMatchObject({ type: "invalid_request_error", param: null });
    expect(body.error.message).toMatch(/parse the JSON body/);
  });

  it("answers unknown routes with a 404 OpenAI error", async () => {
    const res = await fetch(`${mock.url}/nope`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(res.status).toBe(404);
    expect((await json(res)).error.message).toBe("Invalid URL (GET /v1/nope)");
  });
});

describe("mock upstream: models and auth", () => {
  it("lists the default models", async () => {
    const res = await fetch(`${mock.url}/models`, { headers: { authorization: `Bearer ${KEY}` } });
    expect(res.status).toBe(200);
    const body = await json(res);
    expect(body.object).toBe("list");
    expect(body.data.map((m: { id: string }) => m.id)).toEqual(
      expect.arrayContaining(["gpt-4o-mini", "gpt-4o"]),
    );
    expect(body.data[0]).toEqual({
      id: "gpt-4o-mini",
      object: "model",
      created: expect.any(Number),
      owned_by: "mock",
    });
  });

  it("lists the models option", async () => {
    const custom = await createMockUpstream({ models: ["a", "b"] });
    try {
      const body = await json(await fetch(`${custom.url}/models`));
      expect(body.data.map((m: { id: string }) => m.id)).toEqual(["a", "b"]);
    } finally {
      await custom.close();
    }
  });

  it("rejects a missing or unknown key with 401 invalid_api_key", async () => {
    const attempts: Record<string, string>[] = [
      {},
      { authorization: "Bearer sk-wrong-key-0000" },
      { authorization: KEY },
    ];
    for (const headers of attempts) {
      const res = await fetch(`${mock.url}/chat/completions`, {
        method: "POST",
        headers,
        body: JSON.stringify({ model: "gpt-4o-mini", messages: MESSAGES }),
      });
      expect(res.status).toBe(401);
      const body = await json(res);
      expect(body).toEqual({
        error: {
          message: expect.any(String),
          type: "invalid_request_error",
          param: null,
          code: "invalid_api_key",
        },
      });
      expect(body.error.message).not.toContain("sk-wrong-key-0000");
    }
  });

  it("accepts every configured key", async () => {
    const multi = await createMockUpstream({ apiKeys: ["k-one", "k-two"] });
    try {
      for (const key of ["k-one", "k-two"]) {
        const res = await fetch(`${multi.url}/models`, {
          headers: { authorization: `Bearer ${key}` },
        });
        expect(res.status).toBe(200);
      }
    } finally {
      await multi.close();
    }
  });
});

describe("mock upstream: faults", () => {
  it("answers the next request with a queued status, error body and retry-after header", async () => {
    mock.fail({ status: 429, headers: { "retry-after": "7" } });
    const failed = await chat({ model: "gpt-4o-mini", messages: MESSAGES });
    expect(failed.status).toBe(429);
    expect(failed.headers.get("retry-after")).toBe("7");
    const body = await json(failed);
    expect(body.error).toMatchObject({ type: expect.any(String), param: null });
    expect(typeof body.error.message).toBe("string");

    const next = await chat({ model: "gpt-4o-mini", messages: MESSAGES });
    expect(next.status).toBe(200);
    await next.arrayBuffer();
  });

  it("applies a fault `times` times, in queue order, with a custom body", async () => {
    mock.fail({ status: 503, body: { error: { message: "overloaded" } }, times: 2 });
    mock.fail({ status: 500 });
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) {
      const res = await chat({ model: "gpt-4o-mini", messages: MESSAGES });
      statuses.push(res.status);
      if (res.status === 503) expect(await json(res)).toEqual({ error: { message: "overloaded" } });
      else await res.arrayBuffer();
    }
    expect(statuses).toEqual([503, 503, 500, 200]);
  });

  it("scopes a fault to a path prefix", async () => {
    mock.fail({ status: 500, path: "/v1/chat/completions" });
    const models = await fetch(`${mock.url}/models`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(models.status).toBe(200);
    await models.arrayBuffer();
    const res = await chat({ model: "gpt-4o-mini", messages: MESSAGES });
    expect(res.status).toBe(500);
    await res.arrayBuffer();
  });

  it("delays the start of the response by delayMs", async () => {
    mock.fail({ delayMs: 150 });
    const started = performance.now();
    const res = await chat({ model: "gpt-4o-mini", messages: MESSAGES });
    expect(performance.now() - started).toBeGreaterThanOrEqual(145);
    expect(res.status).toBe(200);
    await json(res);
  });

  it("resets the connection mid-stream after n chunks; the client sees an error", async () => {
    mock.fail({ resetAfterChunks: 3 });
    const res = await chat({ model: "gpt-4o-mini", messages: MESSAGES, stream: true });
    expect(res.status).toBe(200);
    const { events, error } = await readEvents(res);
    expect(events).toHaveLength(3);
    expect(JSON.parse(events[0]!).choices[0].delta.content).toBe(WORDS[0]);
    expect(error).toBeInstanceOf(Error);
  });

  it("resets a streaming request with delays after n chunks", async () => {
    mock.fail({ resetAfterChunks: 2 });
    const res = await chat(
      { model: "gpt-4o-mini", messages: MESSAGES, stream: true },
      { "x-mock-chunk-delay-ms": "10" },
    );
    const { events, error } = await readEvents(res);
    expect(events).toHaveLength(2);
    expect(error).toBeInstanceOf(Error);
  });

  it("resets a non-streaming request before answering (ECONNRESET on node:http)", async () => {
    mock.fail({ resetAfterChunks: 0 });
    await expect(chat({ model: "gpt-4o-mini", messages: MESSAGES })).rejects.toThrow();

    mock.fail({ resetAfterChunks: 0 });
    const error = await new Promise<NodeJS.ErrnoException>((resolve, reject) => {
      const req = httpRequest(`${mock.url}/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" },
        agent: false,
      });
      req.on("response", () => reject(new Error("unexpected response")));
      req.on("error", resolve);
      req.end(JSON.stringify({ model: "gpt-4o-mini", messages: MESSAGES }));
    });
    expect(error.code).toBe("ECONNRESET");
  });

  it("reset() forgets queued faults and recorded requests", async () => {
    mock.fail({ status: 500, times: 5 });
    const first = await chat({ model: "gpt-4o-mini", messages: MESSAGES });
    expect(first.status).toBe(500);
    await first.arrayBuffer();
    expect(mock.requests).toHaveLength(1);
    mock.reset();
    expect(mock.requests).toHaveLength(0);
    const res = await chat({ model: "gpt-4o-mini", messages: MESSAGES });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
  });
});

describe("mock upstream: recording and lifecycle", () => {
  it("records method, path, lower-case headers, parsed body and time", async () => {
    const before = Date.now();
    const res = await chat({ model: "gpt-4o-mini", messages: MESSAGES }, { "X-Trace-Id": "abc" });
    await res.arrayBuffer();
    await chat("{oops").then((r) => r.arrayBuffer());
    expect(mock.requests).toHaveLength(2);
    const [ok, bad] = mock.requests;
    expect(ok).toMatchObject({
      method: "POST",
      path: "/v1/chat/completions",
      body: { model: "gpt-4o-mini", messages: MESSAGES },
    });
    expect(ok!.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(ok!.headers["x-trace-id"]).toBe("abc");
    expect(ok!.at).toBeGreaterThanOrEqual(before);
    expect(bad!.body).toBeNull();
  });

  it("keeps only the last maxRecordedRequests requests", async () => {
    const small = await createMockUpstream({ maxRecordedRequests: 3 });
    try {
      for (let i = 0; i < 5; i++) await (await fetch(`${small.url}/models?i=${i}`)).arrayBuffer();
      expect(small.requests.map((r) => r.path)).toEqual([
        "/v1/models?i=2",
        "/v1/models?i=3",
        "/v1/models?i=4",
      ]);
    } finally {
      await small.close();
    }
  });

  it("exposes url, origin and port, and close() ends a stream in progress", async () => {
    const other = await createMockUpstream({ chunkDelayMs: 1000 });
    expect(other.url).toBe(`http://127.0.0.1:${other.port}/v1`);
    expect(other.origin).toBe(`http://127.0.0.1:${other.port}`);
    const res = await fetch(`${other.url}/chat/completions`, {
      method: "POST",
      body: JSON.stringify({ model: "m", stream: true }),
    });
    const reading = readEvents(res);
    const started = performance.now();
    await other.close();
    const { events, error } = await reading;
    expect(events).toHaveLength(1);
    expect(error).toBeInstanceOf(Error);
    expect(performance.now() - started).toBeLessThan(900);
    await expect(fetch(`${other.url}/models`)).rejects.toThrow();
  });

  it("counts prompt tokens as ceil(characters of all message contents / 4)", () => {
    expect(countMockPromptTokens(MESSAGES)).toBe(PROMPT_TOKENS);
    expect(countMockPromptTokens([{ content: "a" }, { content: null }, {}])).toBe(1);
    expect(countMockPromptTokens(undefined)).toBe(0);
  });
});

describe("mock upstream CLI", () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    child?.kill("SIGKILL");
  });

  it("prints {url, port} when listening, serves requests and exits on SIGTERM", async () => {
    const root = fileURLToPath(new URL("../../..", import.meta.url));
    const cli = fileURLToPath(new URL("../src/mock-upstream-cli.ts", import.meta.url));
    child = spawn(
      process.execPath,
      ["--conditions=source", "--import", "tsx", cli, "--api-key", "cli-key", "--port", "0"],
      { cwd: root, stdio: ["ignore", "pipe", "inherit"] },
    );
    const [line] = (await once(child.stdout!, "data")) as [Buffer];
    const info = JSON.parse(line.toString().trim()) as { url: string; port: number };
    expect(info.url).toBe(`http://127.0.0.1:${info.port}/v1`);
    const res = await fetch(`${info.url}/models`, { headers: { authorization: "Bearer cli-key" } });
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    const [code] = await exited;
    expect(code).toBe(0);
  });
});
