import {
  countMockPromptTokens,
  createMockUpstream,
  type MockUpstream,
  splitMockReply,
} from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, KeyStatus, memoryStore } from "../src/index.js";

const SECRET = "test-secret-0123456789-0123456789-abcdef";
const UPSTREAM_KEY = "upstream-key-1";

let mock: MockUpstream;
let gateway: Gateway;
let key: string;
let keyId: number;

async function chat(body: unknown, auth: string | null = key, init: { raw?: string } = {}) {
  return gateway.handler(
    new Request("http://gw.test/v1/chat/completions", {
      method: "POST",
      headers: {
        "content-type": "application/json",
        ...(auth === null ? {} : { authorization: `Bearer ${auth}` }),
      },
      body: init.raw ?? JSON.stringify(body),
    }),
    { remoteAddress: "127.0.0.1" },
  );
}

const hello = { model: "gpt-4o-mini", messages: [{ role: "user", content: "Hello there, mock!" }] };
const reply = splitMockReply("Hello from the mock upstream, this is a test reply.");
const promptTokens = countMockPromptTokens(hello.messages);

beforeEach(async () => {
  mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    usage: { flushIntervalMs: 10 },
    // Unit prices (every ratio 1), so that quota units equal tokens in these tests.
    settings: { "model-ratio": {}, "completion-ratio": {}, "cache-ratio": {} },
  });
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    secret: { apiKey: UPSTREAM_KEY },
    models: [{ name: "gpt-4o-mini" }, { name: "gpt-4o", alias: "smart" }],
  });
  const created = await gateway.keys.create({ name: "test", remainQuota: 100_000 });
  key = created.key;
  keyId = created.record.id;
});

afterEach(async () => {
  await gateway.close();
  await mock.close();
});

describe("POST /v1/chat/completions", () => {
  it("forwards a non-streaming request, settles quota to the upstream's usage and records it", async () => {
    const res = await chat(hello);
    expect(res.status).toBe(200);
    const body = (await res.json()) as {
      choices: { message: { content: string } }[];
      usage: { total_tokens: number };
    };
    expect(body.choices[0]!.message.content).toBe(reply.join(""));
    expect(body.usage.total_tokens).toBe(promptTokens + reply.length);

    // The upstream saw the credential's key, never the client's.
    const seen = mock.requests.at(-1)!;
    expect(seen.headers.authorization).toBe(`Bearer ${UPSTREAM_KEY}`);
    expect(JSON.stringify(seen.headers)).not.toContain(key);

    await gateway.close();
    const k = await gateway.store.keys.get(keyId);
    expect(k!.remainQuota).toBe(100_000 - (promptTokens + reply.length));
    expect(k!.usedQuota).toBe(promptTokens + reply.length);
    const usage = await gateway.store.usage.list({ keyId });
    expect(usage.total).toBe(1);
    expect(usage.items[0]).toMatchObject({
      route: "POST /v1/chat/completions",
      model: "gpt-4o-mini",
      success: true,
      inputTokens: promptTokens,
      outputTokens: reply.length,
      quota: promptTokens + reply.length,
    });
  });

  it("streams chunk by chunk, strips the usage chunk it asked for, and bills from it", async () => {
    const res = await chat({ ...hello, stream: true });
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toContain("text/event-stream");
    const text = await res.text();
    const events = text.split("\n\n").filter(Boolean);
    expect(events.at(-1)).toBe("data: [DONE]");
    expect(text).not.toContain('"usage":{');
    // It asked the upstream for usage on the client's behalf.
    expect((mock.requests.at(-1)!.body as { stream_options: unknown }).stream_options).toEqual({
      include_usage: true,
    });
    const content = events
      .slice(0, -1)
      .map((e) => JSON.parse(e.slice(6)) as { choices: { delta: { content?: string } }[] })
      .map((e) => e.choices[0]?.delta.content ?? "")
      .join("");
    expect(content).toBe(reply.join(""));

    await gateway.close();
    const k = await gateway.store.keys.get(keyId);
    expect(k!.usedQuota).toBe(promptTokens + reply.length);
  });

  it("passes the usage chunk through when the client asked for it", async () => {
    const res = await chat({ ...hello, stream: true, stream_options: { include_usage: true } });
    const text = await res.text();
    expect(text).toContain(`"total_tokens":${promptTokens + reply.length}`);
  });

  it("maps a model alias to the upstream model name", async () => {
    const res = await chat({ ...hello, model: "smart" });
    expect(res.status).toBe(200);
    expect((mock.requests.at(-1)!.body as { model: string }).model).toBe("gpt-4o");
  });

  it("ends a stream broken by the upstream with an explicit error event, not [DONE], and bills what was sent", async () => {
    mock.fail({ resetAfterChunks: 3 });
    const res = await chat({ ...hello, stream: true });
    expect(res.status).toBe(200);
    const text = await res.text();
    expect(text).toContain("stream_interrupted");
    expect(text).not.toContain("[DONE]");
    await gateway.close();
    const rec = (await gateway.store.usage.list({ keyId })).items[0]!;
    expect(rec.success).toBe(false);
    expect(rec.outputTokens).toBe(3);
    expect(rec.quota).toBeGreaterThan(0);
  });

  it("rejects bad input with OpenAI error objects and keeps serving", async () => {
    const cases: [Promise<Response>, number, string][] = [
      [chat(hello, null), 401, "missing_api_key"],
      [chat(hello, "sk-unknown-key-000000000000"), 401, "invalid_api_key"],
      [chat(null, key, { raw: "{not json" }), 400, "invalid_json"],
      [chat({ messages: [] }), 400, "missing_model"],
      [chat({ model: "gpt-4o-mini" }), 400, "invalid_request"],
      [chat(["an array"]), 400, "invalid_request"],
      [chat({ ...hello, model: "unknown-model" }), 404, "model_not_found"],
    ];
    for (const [p, status, code] of cases) {
      const res = await p;
      expect(res.status).toBe(status);
      const body = (await res.json()) as { error: { message: string; type: string; code: string } };
      expect(body.error.code).toBe(code);
      expect(body.error.message.length).toBeGreaterThan(0);
      expect(typeof body.error.type).toBe("string");
    }
    await gateway.keys.update(keyId, { status: KeyStatus.Disabled });
    const disabled = await chat(hello);
    expect(disabled.status).toBe(401);
    expect(((await disabled.json()) as { error: { code: string } }).error.code).toBe(
      "key_disabled",
    );
    await gateway.keys.update(keyId, { status: KeyStatus.Enabled });
    expect((await chat(hello)).status).toBe(200);
    // Nothing was billed for the rejected requests, and the unknown model's reservation was returned.
    await gateway.close();
    const k = await gateway.store.keys.get(keyId);
    expect(k!.remainQuota).toBe(100_000 - (promptTokens + reply.length));
  });

  it("sees key changes made directly in the store (another instance's path) despite its cache", async () => {
    expect((await chat(hello)).status).toBe(200);
    await gateway.store.keys.update(keyId, { status: KeyStatus.Disabled });
    await new Promise((r) => setTimeout(r, 0));
    expect((await chat(hello)).status).toBe(401);
    await gateway.store.keys.update(keyId, {
      status: KeyStatus.Enabled,
      modelLimitsEnabled: true,
      modelLimits: ["gpt-4o"],
    });
    await new Promise((r) => setTimeout(r, 0));
    const limited = await chat(hello);
    expect(limited.status).toBe(403);
    expect(((await limited.json()) as { error: { code: string } }).error.code).toBe(
      "model_not_allowed",
    );
  });

  it("refuses a request the key's quota cannot cover with 429 and forwards nothing", async () => {
    const small = await gateway.keys.create({ name: "small", remainQuota: 10 });
    const before = mock.requests.length;
    const res = await chat(hello, small.key);
    expect(res.status).toBe(429);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe("quota_exhausted");
    expect(mock.requests.length).toBe(before);
  });

  it("answers 404 in OpenAI's shape for unknown routes and 405 for a wrong method", async () => {
    const nf = await gateway.handler(new Request("http://gw.test/v1/nope"));
    expect(nf.status).toBe(404);
    expect(((await nf.json()) as { error: { code: string } }).error.code).toBe("not_found");
    const na = await gateway.handler(new Request("http://gw.test/v1/chat/completions"));
    expect(na.status).toBe(405);
  });

  it("rejects a body over maxBodyBytes with 413", async () => {
    const g = createGateway({
      store: memoryStore(),
      secret: SECRET,
      logger: false,
      maxBodyBytes: 1024,
    });
    const { key: k } = await g.keys.create({ name: "x", remainQuota: 1000 });
    const res = await g.handler(
      new Request("http://gw.test/v1/chat/completions", {
        method: "POST",
        headers: { authorization: `Bearer ${k}`, "content-type": "application/json" },
        body: JSON.stringify({ ...hello, pad: "x".repeat(5000) }),
      }),
    );
    expect(res.status).toBe(413);
    await g.close();
  });
});

describe("credential rotation", () => {
  it("picks credentials round-robin and fails over to the next on a 5xx", async () => {
    const second = await createMockUpstream({ apiKeys: ["upstream-key-2"] });
    try {
      await gateway.credentials.add({
        provider: "openai",
        baseUrl: second.url,
        secret: { apiKey: "upstream-key-2" },
      });
      for (let i = 0; i < 4; i++) expect((await chat(hello)).status).toBe(200);
      expect(mock.requests.length).toBe(2);
      expect(second.requests.length).toBe(2);

      // Rotation is back at the first credential: it fails, the second one serves the request.
      mock.fail({ status: 500 });
      const res = await chat(hello);
      expect(res.status).toBe(200);
      expect(mock.requests.length).toBe(3);
      expect(second.requests.length).toBe(3);
      // With every credential failing, the client gets the last upstream error.
      mock.fail({ status: 503, times: 5 });
      second.fail({ status: 503, times: 5 });
      expect((await chat(hello)).status).toBe(503);
    } finally {
      await second.close();
    }
  });

  it("cools a credential down after a 429 and uses the other meanwhile", async () => {
    const second = await createMockUpstream();
    try {
      await gateway.credentials.add({
        provider: "openai",
        baseUrl: second.url,
        secret: { apiKey: "x" },
      });
      mock.fail({ status: 429, headers: { "retry-after": "60" }, times: 1 });
      second.fail({ status: 429, headers: { "retry-after": "60" }, times: 1 });
      // The first request meets both 429s (in rotation order) and ends with the upstream's 429.
      const first = await chat(hello);
      expect(first.status).toBe(429);
      const cooled = gateway.credentials
        .list()
        .filter((c) => (c.state.cooldowns["gpt-4o-mini"] ?? 0) > Date.now());
      expect(cooled.length).toBe(2);
      const res = await chat(hello);
      expect(res.status).toBe(503);
    } finally {
      await second.close();
    }
  });
});

describe("GET /v1/models", () => {
  it("lists the models the pool serves, with aliases", async () => {
    const res = await gateway.handler(
      new Request("http://gw.test/v1/models", { headers: { authorization: `Bearer ${key}` } }),
    );
    expect(res.status).toBe(200);
    const body = (await res.json()) as { object: string; data: { id: string; object: string }[] };
    expect(body.object).toBe("list");
    expect(body.data.map((m) => m.id)).toEqual(["gpt-4o-mini", "smart"]);
  });

  it("requires a key", async () => {
    const res = await gateway.handler(new Request("http://gw.test/v1/models"));
    expect(res.status).toBe(401);
  });
});
