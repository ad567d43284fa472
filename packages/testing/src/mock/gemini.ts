/**
 * The Google routes of the mock upstream: the Generative Language API (`/v1beta/models/...`) and
 * the Cloud Code Assist API that Gemini CLI / Antigravity OAuth accounts call (`/v1internal:...`),
 * with Google's auth and error shapes.
 *
 * @module
 */
import {
  answerJson,
  bearerToken,
  headerValue,
  isObject,
  type JsonObject,
  type MockCall,
  type MockEnv,
  sendJson,
  tokensOfChars,
  writeSse,
} from "./shared.js";
import { geminiToolTurn, type MockAnswer, mockAnswer } from "./tools.js";

export const GEMINI_PREFIX = "/v1beta/";
export const CODE_ASSIST_PREFIX = "/v1internal";
const MODELS_PREFIX = "/v1beta/models";

/** Gemini models `GET /v1beta/models` always lists (after the `gemini*` ids of the `models` option). */
export const DEFAULT_MOCK_GEMINI_MODELS: readonly string[] = ["gemini-2.5-flash", "gemini-2.5-pro"];

/** The project `loadCodeAssist` / `onboardUser` report. */
export const MOCK_CODE_ASSIST_PROJECT = "mock-project";

/** The body of a Google API error response. */
export interface GoogleErrorBody {
  error: { code: number; message: string; status: string };
}

/** Whether a path belongs to the Google routes (errors there use Google's shape). */
export function isGooglePath(pathname: string): boolean {
  return pathname.startsWith(GEMINI_PREFIX) || pathname.startsWith(CODE_ASSIST_PREFIX);
}

/** The Google error body for `status` (`status` string from the HTTP status, as Google maps them). */
export function googleErrorBody(code: number, message: string): GoogleErrorBody {
  const statuses: Record<number, string> = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
  };
  const status = statuses[code] ?? (code >= 500 ? "INTERNAL" : "FAILED_PRECONDITION");
  return { error: { code, message, status } };
}

function fail(call: MockCall, code: number, message: string): void {
  sendJson(call.res, code, googleErrorBody(code, message), call.extraHeaders);
}

/**
 * The prompt token count of a `GenerateContentRequest`: ceil(characters of the system instruction's
 * and the contents' text parts, plus `JSON.stringify` of each `functionResponse.response`, / 4).
 */
export function countGeminiPromptTokens(request: JsonObject): number {
  let chars = 0;
  const countParts = (content: unknown) => {
    const parts = isObject(content) ? content.parts : undefined;
    if (!Array.isArray(parts)) return;
    for (const part of parts) {
      if (!isObject(part)) continue;
      if (typeof part.text === "string") chars += part.text.length;
      else if (isObject(part.functionResponse)) {
        chars += JSON.stringify(part.functionResponse.response ?? null).length;
      }
    }
  };
  countParts(request.systemInstruction ?? request.system_instruction);
  if (Array.isArray(request.contents)) for (const content of request.contents) countParts(content);
  return tokensOfChars(chars);
}

function displayName(id: string): string {
  return id
    .split("-")
    .map((w) => (w ? w[0]!.toUpperCase() + w.slice(1) : w))
    .join(" ");
}

function geminiModel(id: string): JsonObject {
  return {
    name: `models/${id}`,
    version: "001",
    displayName: displayName(id),
    supportedGenerationMethods: ["generateContent", "countTokens"],
  };
}

function checkKey(env: MockEnv, call: MockCall, bearerOnly: boolean): boolean {
  if (!env.authRequired) return true;
  const token = bearerOnly
    ? bearerToken(call.req.headers.authorization)
    : (headerValue(call.req, "x-goog-api-key") ??
      call.query.get("key") ??
      bearerToken(call.req.headers.authorization));
  if (token === undefined) {
    fail(
      call,
      401,
      bearerOnly
        ? "Request is missing required authentication credential. Expected OAuth 2 access token."
        : "Method doesn't allow unregistered callers (callers without established identity). " +
            "Please use API Key or other form of API consumer identity to call this API.",
    );
    return false;
  }
  if (!env.accepts(token)) {
    fail(
      call,
      401,
      bearerOnly
        ? "Request had invalid authentication credentials. Expected OAuth 2 access token."
        : "API key not valid. Please pass a valid API key.",
    );
    return false;
  }
  return true;
}

/** Handles every path under `/v1beta/`. */
export async function handleGemini(env: MockEnv, call: MockCall): Promise<void> {
  const { pathname, method } = call;
  if (!pathname.startsWith(MODELS_PREFIX)) {
    fail(call, 404, `The requested URL ${pathname} was not found on this server.`);
    return;
  }
  if (!checkKey(env, call, false)) return;
  const ids = [
    ...new Set([
      ...env.models.filter((id) => id.startsWith("gemini")),
      ...DEFAULT_MOCK_GEMINI_MODELS,
    ]),
  ];
  if (pathname === MODELS_PREFIX && method === "GET") {
    answerJson(call, { models: ids.map(geminiModel) });
    return;
  }
  const rest = pathname.startsWith(`${MODELS_PREFIX}/`)
    ? pathname.slice(MODELS_PREFIX.length + 1)
    : "";
  const colon = rest.lastIndexOf(":");
  if (rest !== "" && colon < 0 && method === "GET") {
    const id = decodeURIComponent(rest);
    if (ids.includes(id)) answerJson(call, geminiModel(id));
    else fail(call, 404, `models/${id} is not found for API version v1beta.`);
    return;
  }
  const action = colon < 0 ? "" : rest.slice(colon + 1);
  const model = colon < 0 ? "" : decodeURIComponent(rest.slice(0, colon));
  const known = ["generateContent", "streamGenerateContent", "countTokens"];
  if (method !== "POST" || model === "" || !known.includes(action)) {
    fail(call, 404, `The requested URL ${pathname} was not found on this server.`);
    return;
  }
  const body = call.body;
  if (call.malformed || !isObject(body)) {
    fail(call, 400, "Invalid JSON payload received.");
    return;
  }
  if (action === "countTokens") {
    const request = isObject(body.generateContentRequest) ? body.generateContentRequest : body;
    answerJson(call, { totalTokens: countGeminiPromptTokens(request) });
    return;
  }
  if (!Array.isArray(body.contents) || body.contents.length === 0) {
    fail(call, 400, "* GenerateContentRequest.contents: contents is not specified\n");
    return;
  }
  const stream = action === "streamGenerateContent";
  await generate(env, call, body, model, stream, (r) => r);
}

/** Handles every path under `/v1internal` (Cloud Code Assist). */
export async function handleCodeAssist(env: MockEnv, call: MockCall): Promise<void> {
  const { pathname } = call;
  const action = pathname.startsWith(`${CODE_ASSIST_PREFIX}:`)
    ? pathname.slice(CODE_ASSIST_PREFIX.length + 1)
    : "";
  const known = [
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "loadCodeAssist",
    "onboardUser",
  ];
  if (call.method !== "POST" || !known.includes(action)) {
    fail(call, 404, `The requested URL ${pathname} was not found on this server.`);
    return;
  }
  if (!checkKey(env, call, true)) return;
  const body = call.body;
  if (call.malformed || !isObject(body)) {
    fail(call, 400, "Invalid JSON payload received.");
    return;
  }
  if (action === "loadCodeAssist") {
    const tier = {
      id: "standard-tier",
      name: "Gemini Code Assist",
      userDefinedCloudaicompanionProject: true,
    };
    answerJson(call, {
      currentTier: tier,
      allowedTiers: [{ ...tier, isDefault: true }],
      cloudaicompanionProject: MOCK_CODE_ASSIST_PROJECT,
    });
    return;
  }
  if (action === "onboardUser") {
    answerJson(call, {
      done: true,
      response: {
        cloudaicompanionProject: { id: MOCK_CODE_ASSIST_PROJECT, name: MOCK_CODE_ASSIST_PROJECT },
      },
    });
    return;
  }
  const request = body.request;
  if (action === "countTokens") {
    answerJson(call, { totalTokens: isObject(request) ? countGeminiPromptTokens(request) : 0 });
    return;
  }
  if (typeof body.model !== "string" || body.model === "") {
    fail(call, 400, "Invalid value at 'model': a model is required.");
    return;
  }
  if (!isObject(request) || !Array.isArray(request.contents) || request.contents.length === 0) {
    fail(call, 400, "* GenerateContentRequest.contents: contents is not specified\n");
    return;
  }
  const stream = action === "streamGenerateContent";
  await generate(env, call, request, body.model, stream, (response) => ({ response }));
}

/** Answers a (stream)GenerateContent request; `wrap` turns each response into the wire object. */
async function generate(
  env: MockEnv,
  call: MockCall,
  request: JsonObject,
  model: string,
  stream: boolean,
  wrap: (response: JsonObject) => unknown,
): Promise<void> {
  const answer: MockAnswer = mockAnswer(env, geminiToolTurn(request));
  const promptTokens = countGeminiPromptTokens(request);
  const responseId = `mockresp${env.nextId()}`;
  const response = (parts: unknown[], finish: boolean, completion: number): JsonObject => ({
    candidates: [
      {
        content: { role: "model", parts },
        ...(finish ? { finishReason: "STOP" } : {}),
        index: 0,
      },
    ],
    usageMetadata: {
      promptTokenCount: promptTokens,
      candidatesTokenCount: completion,
      totalTokenCount: promptTokens + completion,
    },
    modelVersion: model,
    responseId,
  });
  // One response per word; each carries the usage so far, the last one the finish reason too.
  const responses =
    answer.kind === "tool"
      ? [
          response(
            [{ functionCall: { name: answer.name, args: answer.args } }],
            true,
            answer.tokens,
          ),
        ]
      : answer.chunks.map((text, i) => response([{ text }], i === answer.chunks.length - 1, i + 1));

  if (!stream) {
    const whole =
      answer.kind === "tool"
        ? responses[0]!
        : response([{ text: answer.text }], true, answer.tokens);
    answerJson(call, wrap(whole));
    return;
  }
  if (call.query.get("alt") !== "sse") {
    answerJson(call, responses.map(wrap));
    return;
  }
  const events = responses.map((r) => `data: ${JSON.stringify(wrap(r))}\r\n\r\n`);
  await writeSse(env, call, events, (i) => i > 0);
}
