import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";
import { jsonDepthExceeds, MAX_JSON_DEPTH, valueDepthExceeds } from "../src/util/json-depth.js";

let mock: MockUpstream;
let gateway: Gateway;
let server: Server;
let base: string;
let key: string;
let mgmt: string;
let adminToken: string;
let adminId: number;

beforeAll(async () => {
  mock = await createMockUpstream();
  gateway = createGateway({
    store: memoryStore(),
    secret: "hostile-json-secret-0123456789-0123456789-ab",
    logger: false,
    usage: { flushIntervalMs: 10 },
  });
  await gateway.ready;
  await gateway.credentials.add({ provider: "openai", baseUrl: mock.url, secret: { apiKey: "k" } });
  ({ key } = await gateway.keys.create({ name: "hostile", unlimitedQuota: true }));
  mgmt = await gateway.management.generateKey();
  const admin = await gateway.users.create({ username: "root", role: "admin" });
  adminToken = admin.accessToken;
  adminId = admin.record.id;
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

/** A JSON schema-like object nested `levels` deep (`{"type":"object","properties":{"a":...}}`). */
function deepSchema(levels: number): string {
  return `${'{"type":"object","properties":{"a":'.repeat(levels)}{"type":"string"}${"}}".repeat(levels)}`;
}

const DEEP = deepSchema(5000);
const user = [{ role: "user", content: "hi" }];

const openaiShape = {
  error: { type: "invalid_request_error", code: "json_too_deep", message: expect.any(String) },
};
const anthropicShape = {
  type: "error",
  error: { type: "invalid_request_error", message: expect.any(String) },
};
const geminiShape = {
  error: { code: 400, status: "INVALID_ARGUMENT", message: expect.any(String) },
};

/** Every place the issue names where a deep value used to overflow the stack, and friends. */
const CASES: { name: string; path: string; body: string; shape: unknown; auth?: () => object }[] = [
  {
    name: "Anthropic tools[].input_schema",
    path: "/v1/messages",
    body: `{"model":"gpt-4o-mini","max_tokens":5,"messages":${JSON.stringify(user)},"tools":[{"name":"f","input_schema":${DEEP}}]}`,
    shape: anthropicShape,
  },
  {
    name: "Anthropic count_tokens",
    path: "/v1/messages/count_tokens",
    body: `{"model":"gpt-4o-mini","messages":${JSON.stringify(user)},"tools":[{"name":"f","input_schema":${DEEP}}]}`,
    shape: anthropicShape,
  },
  {
    name: "Gemini functionDeclarations[].parameters",
    path: "/v1beta/models/gpt-4o-mini:generateContent",
    body: `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":${DEEP}}]}]}`,
    shape: geminiShape,
  },
  {
    name: "Gemini generationConfig.responseSchema",
    path: "/v1beta/models/gpt-4o-mini:streamGenerateContent",
    body: `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"generationConfig":{"responseSchema":${DEEP}}}`,
    shape: geminiShape,
  },
  {
    name: "Gemini countTokens",
    path: "/v1beta/models/gpt-4o-mini:countTokens",
    body: `{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":${DEEP}}]}]}`,
    shape: geminiShape,
  },
  {
    name: "Responses tools[].parameters",
    path: "/v1/responses",
    body: `{"model":"gpt-4o-mini","input":"hi","tools":[{"type":"function","name":"f","parameters":${DEEP}}]}`,
    shape: openaiShape,
  },
  {
    name: "Responses text.format.schema",
    path: "/v1/responses",
    body: `{"model":"gpt-4o-mini","input":"hi","text":{"format":{"type":"json_schema","name":"x","schema":${DEEP}}}}`,
    shape: openaiShape,
  },
  {
    name: "chat tools[].function.parameters",
    path: "/v1/chat/completions",
    body: `{"model":"gpt-4o-mini","messages":${JSON.stringify(user)},"tools":[{"type":"function","function":{"name":"f","parameters":${DEEP}}}]}`,
    shape: openaiShape,
  },
  {
    name: "management PUT /api-keys",
    path: "/v0/management/api-keys",
    body: `[${DEEP}]`,
    shape: { error: expect.stringContaining("nested") },
    auth: () => ({ authorization: `Bearer ${mgmt}` }),
  },
  {
    name: "management POST /auth-files",
    path: "/v0/management/auth-files?name=deep.json",
    body: DEEP,
    shape: { error: expect.stringContaining("nested") },
    auth: () => ({ authorization: `Bearer ${mgmt}` }),
  },
  {
    name: "new-api POST /api/token/",
    path: "/api/token/",
    body: `{"name":"t","model_limits":${DEEP}}`,
    shape: { success: false, message: expect.stringContaining("nested") },
    auth: () => ({ authorization: `Bearer ${adminToken}`, "new-api-user": String(adminId) }),
  },
  {
    name: "pool POST /v1/tokens",
    path: "/v1/tokens",
    // The pool dialect reads at most 64 KiB: 1500 levels fit.
    body: `{"refresh_token":"1//x","meta":${deepSchema(1500)}}`,
    shape: { success: false, message: expect.stringContaining("nested") },
    auth: () => ({ authorization: `Bearer ${mgmt}` }),
  },
];

async function post(path: string, body: string | Uint8Array, auth: object) {
  const res = await fetch(`${base}${path}`, {
    method: path.endsWith("api-keys") ? "PUT" : "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${key}`, ...auth },
    body,
  });
  return { status: res.status, body: await res.json() };
}

describe("hostile JSON on every surface", () => {
  for (const c of CASES) {
    it(`answers 400 in the route's own format, not 500, to 5000 levels in ${c.name}`, async () => {
      const before = { keys: (await gateway.keys.list()).total, creds: gateway.credentials.list() };
      const res = await post(c.path, c.body, c.auth?.() ?? {});
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject(c.shape as object);
      // Nothing was written.
      expect((await gateway.keys.list()).total).toBe(before.keys);
      expect(gateway.credentials.list()).toEqual(before.creds);
      expect(mock.requests.some((r) => JSON.stringify(r.body ?? "").includes("properties"))).toBe(
        false,
      );
    });
  }

  it(`serves a body exactly ${MAX_JSON_DEPTH} levels deep and refuses one more level`, async () => {
    // body{ } + messages[ ] + message{ } = 3 levels around the nested value.
    const nest = (n: number) => `${'{"a":'.repeat(n)}1${"}".repeat(n)}`;
    const at = (n: number) =>
      `{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi","x":${nest(n)}}]}`;
    const ok = await post("/v1/messages/count_tokens", at(MAX_JSON_DEPTH - 3), {});
    expect(ok.status).toBe(200);
    expect(ok.body).toEqual({ input_tokens: expect.any(Number) });
    const deep = await post("/v1/messages/count_tokens", at(MAX_JSON_DEPTH - 2), {});
    expect(deep.status).toBe(400);
    expect(deep.body).toMatchObject(anthropicShape);
  });

  it("answers invalid UTF-8 as invalid JSON in each dialect's format, without forwarding it", async () => {
    const sent = mock.requests.length;
    const bad = (prefix: string, suffix: string) =>
      Buffer.concat([Buffer.from(prefix), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from(suffix)]);
    const chat = await post(
      "/v1/chat/completions",
      bad('{"model":"gpt-4o-mini","messages":[{"role":"user","content":"', '"}]}'),
      {},
    );
    expect(chat.status).toBe(400);
    expect(chat.body).toMatchObject({
      error: { type: "invalid_request_error", code: "invalid_json" },
    });
    const messages = await post(
      "/v1/messages",
      bad('{"model":"gpt-4o-mini","max_tokens":5,"messages":[{"role":"user","content":"', '"}]}'),
      {},
    );
    expect(messages.status).toBe(400);
    expect(messages.body).toMatchObject(anthropicShape);
    const gemini = await post(
      "/v1beta/models/gpt-4o-mini:generateContent",
      bad('{"contents":[{"role":"user","parts":[{"text":"', '"}]}]}'),
      {},
    );
    expect(gemini.status).toBe(400);
    expect(gemini.body).toMatchObject(geminiShape);
    const management = await post("/v0/management/api-keys", bad('["', '"]'), {
      authorization: `Bearer ${mgmt}`,
    });
    expect(management).toEqual({ status: 400, body: { error: "invalid body" } });
    expect(mock.requests.length).toBe(sent);
  });

  it("keeps a model named __proto__ a usage key: /usage answers and Object.prototype stays clean", async () => {
    for (const name of ["__proto__", "constructor", "hasOwnProperty"]) {
      const res = await post(
        "/v1/chat/completions",
        JSON.stringify({ model: name, messages: user }),
        {},
      );
      expect(res.status).toBeLessThan(500);
    }
    await gateway.usage.flush();
    const res = await fetch(`${base}/v0/management/usage`, {
      headers: { authorization: `Bearer ${mgmt}` },
    });
    expect(res.status).toBe(200);
    const { usage } = (await res.json()) as {
      usage: { apis: Record<string, { models: Record<string, { total_requests: number }> }> };
    };
    const models = usage.apis["POST /v1/chat/completions"]!.models;
    expect(Object.getOwnPropertyDescriptor(models, "__proto__")?.value).toMatchObject({
      total_requests: 1,
    });
    expect(models.constructor).toMatchObject({ total_requests: 1 });
    expect(Object.keys(Object.prototype)).toEqual([]);
  });

  it("still serves after the hostile requests", async () => {
    const res = await post(
      "/v1/chat/completions",
      JSON.stringify({ model: "gpt-4o-mini", messages: user }),
      {},
    );
    expect(res.status).toBe(200);
  });
});

describe("jsonDepthExceeds", () => {
  it("counts brackets outside strings only, escapes honoured", () => {
    const pad = " ".repeat(200);
    expect(jsonDepthExceeds(Buffer.from(`[[[${pad}]]]`), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from(`[[[[${pad}]]]]`), 3)).toBe(true);
    expect(jsonDepthExceeds(Buffer.from(`["[[[[[[\\"[[[[${pad}"]`), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from(`["\\\\",[[[${pad}]]]]`), 3)).toBe(true);
    expect(jsonDepthExceeds(Buffer.from(`{"ü{{{{":[{}]${pad}}`), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from(`["${"[".repeat(5000)}\\"]]]]",[[[1]]]]`), 3)).toBe(true);
    expect(jsonDepthExceeds(Buffer.from(`["${"[".repeat(5000)}\\"]]]]",[[1]]]`), 3)).toBe(false);
    // An unterminated string ends the scan (JSON.parse refuses the text anyway).
    expect(jsonDepthExceeds(Buffer.from(`["${"[".repeat(5000)}`), 3)).toBe(false);
    expect(jsonDepthExceeds(Buffer.from(`${"[".repeat(5000)}"`), 128)).toBe(true);
  });

  it("walks parsed values without recursion and treats cycles as too deep", () => {
    expect(valueDepthExceeds(JSON.parse(DEEP))).toBe(true);
    expect(valueDepthExceeds({ a: [{ b: 1 }] }, 3)).toBe(false);
    expect(valueDepthExceeds({ a: [{ b: {} }] }, 3)).toBe(true);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    expect(valueDepthExceeds(cyclic)).toBe(true);
  });
});
