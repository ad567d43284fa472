/**
 * Translation between the OpenAI Chat Completions format and the Google Gemini
 * `generateContent` format (v1beta REST, camelCase JSON; snake_case aliases accepted on input).
 * Pure and dependency-free: requests, non-streaming responses, and SSE event streams.
 */
import type { TokenUsage } from "../store/types.js";
import { list as arr, isObj, nowSeconds, num, str } from "./json.js";
import { chatChunk, chatUsage } from "./openai.js";
import type {
  EventTranslator,
  Json,
  RequestOptions,
  ResponseOptions,
  UpstreamEvent,
} from "./types.js";

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/** Reads `o[camelKey]`, falling back to its snake_case alias (`maxOutputTokens` → `max_output_tokens`). */
function g(o: unknown, camelKey: string): unknown {
  if (!isObj(o)) return undefined;
  const v = o[camelKey];
  if (v !== undefined) return v;
  return o[camelKey.replace(/[A-Z]/g, (c) => "_" + c.toLowerCase())];
}

function parseJson(s: unknown): unknown {
  if (typeof s !== "string") return undefined;
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** Parses tool call arguments into an object (`{}` when absent or unparseable). */
function parseArgs(s: unknown): Json {
  if (isObj(s)) return s;
  const v = parseJson(s);
  return isObj(v) ? v : {};
}

function stringifyArgs(v: unknown): string {
  if (v === undefined || v === null) return "{}";
  try {
    return JSON.stringify(v) ?? "{}";
  } catch {
    return "{}";
  }
}

/** Text of an OpenAI message content: a string, or an array of `{type:"text", text}` parts. */
function openaiText(content: unknown): string {
  if (typeof content === "string") return content;
  const texts: string[] = [];
  for (const p of arr(content)) {
    if (typeof p === "string") texts.push(p);
    else if (isObj(p) && typeof p.text === "string") texts.push(p.text);
  }
  return texts.join("");
}

// ---------------------------------------------------------------------------------------------
// Media helpers
// ---------------------------------------------------------------------------------------------

const MIME_BY_EXT: Record<string, string> = {
  png: "image/png",
  jpg: "image/jpeg",
  jpeg: "image/jpeg",
  gif: "image/gif",
  webp: "image/webp",
  heic: "image/heic",
  heif: "image/heif",
  bmp: "image/bmp",
  pdf: "application/pdf",
  txt: "text/plain",
  mp3: "audio/mpeg",
  wav: "audio/wav",
  ogg: "audio/ogg",
  flac: "audio/flac",
  mp4: "video/mp4",
  mov: "video/quicktime",
  webm: "video/webm",
};

function guessMime(url: string): string {
  const path = url.split(/[?#]/)[0] ?? "";
  const m = /\.([a-z0-9]+)$/i.exec(path);
  return (m && MIME_BY_EXT[(m[1] ?? "").toLowerCase()]) || "image/jpeg";
}

/** Splits a `data:` URL into mime type and base64 data, or null when it is not one. */
function parseDataUrl(url: string): { mimeType: string; data: string } | null {
  const m = /^data:([^;,]*)((?:;[^;,]*)*),(.*)$/s.exec(url);
  if (!m) return null;
  const mimeType = m[1] || "application/octet-stream";
  const params = m[2] ?? "";
  const payload = m[3] ?? "";
  if (/;base64/i.test(params)) return { mimeType, data: payload };
  try {
    return { mimeType, data: Buffer.from(decodeURIComponent(payload)).toString("base64") };
  } catch {
    return null;
  }
}

/** An OpenAI image URL (data URL or remote) → a Gemini `inlineData` / `fileData` part. */
function urlToGeminiPart(url: string, mimeHint?: string): Json {
  const d = parseDataUrl(url);
  if (d) return { inlineData: { mimeType: d.mimeType, data: d.data } };
  return { fileData: { mimeType: mimeHint ?? guessMime(url), fileUri: url } };
}

const AUDIO_FORMATS: Record<string, string> = {
  "audio/wav": "wav",
  "audio/x-wav": "wav",
  "audio/wave": "wav",
  "audio/mpeg": "mp3",
  "audio/mp3": "mp3",
};

// ---------------------------------------------------------------------------------------------
// Usage and finish reasons
// ---------------------------------------------------------------------------------------------

/** Maps a Gemini `usageMetadata` object to a TokenUsage (OpenAI semantics), or null when absent. */
export function geminiUsage(u: unknown): TokenUsage | null {
  if (!isObj(u)) return null;
  const prompt = num(g(u, "promptTokenCount"));
  const candidates = num(g(u, "candidatesTokenCount"));
  const thoughts = num(g(u, "thoughtsTokenCount"));
  const toolUse = num(g(u, "toolUsePromptTokenCount"));
  const cached = num(g(u, "cachedContentTokenCount"));
  const total = num(g(u, "totalTokenCount"));
  if (
    prompt === undefined &&
    candidates === undefined &&
    thoughts === undefined &&
    total === undefined
  ) {
    return null;
  }
  const inputTokens = (prompt ?? 0) + (toolUse ?? 0);
  const outputTokens = (candidates ?? 0) + (thoughts ?? 0);
  return {
    inputTokens,
    outputTokens,
    reasoningTokens: thoughts ?? 0,
    cachedTokens: cached ?? 0,
    totalTokens: total ?? inputTokens + outputTokens,
  };
}

/** Maps a TokenUsage to a Gemini `usageMetadata` object. */
export function openaiUsageToGemini(u: TokenUsage): Json {
  const out: Json = {
    promptTokenCount: u.inputTokens,
    candidatesTokenCount: Math.max(0, u.outputTokens - u.reasoningTokens),
    totalTokenCount: u.totalTokens,
  };
  if (u.reasoningTokens > 0) out.thoughtsTokenCount = u.reasoningTokens;
  if (u.cachedTokens > 0) out.cachedContentTokenCount = u.cachedTokens;
  return out;
}

/** An OpenAI `usage` object → a TokenUsage, or null when absent. */
function openaiUsage(u: unknown): TokenUsage | null {
  if (!isObj(u)) return null;
  const prompt = num(u.prompt_tokens);
  const completion = num(u.completion_tokens);
  const total = num(u.total_tokens);
  if (prompt === undefined && completion === undefined && total === undefined) return null;
  const inputTokens = prompt ?? 0;
  const outputTokens = completion ?? 0;
  return {
    inputTokens,
    outputTokens,
    reasoningTokens: num(g(u.completion_tokens_details, "reasoning_tokens")) ?? 0,
    cachedTokens: num(g(u.prompt_tokens_details, "cached_tokens")) ?? 0,
    totalTokens: total ?? inputTokens + outputTokens,
  };
}

const FILTER_REASONS = new Set([
  "SAFETY",
  "RECITATION",
  "BLOCKLIST",
  "PROHIBITED_CONTENT",
  "SPII",
  "IMAGE_SAFETY",
  "IMAGE_PROHIBITED_CONTENT",
  "IMAGE_RECITATION",
]);

/**
 * A Gemini `finishReason` → an OpenAI `finish_reason`: STOP → "stop" ("tool_calls" when the
 * candidate called functions), MAX_TOKENS → "length", safety-like reasons → "content_filter",
 * anything else → "stop".
 */
export function geminiFinishToOpenAI(reason: unknown, hasToolCalls: boolean): string {
  if (reason === "MAX_TOKENS") return "length";
  if (typeof reason === "string" && FILTER_REASONS.has(reason)) return "content_filter";
  return hasToolCalls ? "tool_calls" : "stop";
}

/**
 * An OpenAI `finish_reason` → a Gemini `finishReason` (stop / tool_calls → STOP, length →
 * MAX_TOKENS, content_filter → SAFETY, other strings → STOP); undefined for null / absent.
 */
export function openaiFinishToGemini(reason: unknown): string | undefined {
  if (typeof reason !== "string" || reason === "") return undefined;
  if (reason === "length") return "MAX_TOKENS";
  if (reason === "content_filter") return "SAFETY";
  return "STOP";
}

// ---------------------------------------------------------------------------------------------
// JSON Schema ⇄ Gemini Schema
// ---------------------------------------------------------------------------------------------

/** Keywords Gemini's Schema rejects ("Unknown name") and that carry no meaning once cleaned. */
const DROP_KEYS = new Set([
  "$schema",
  "$id",
  "$defs",
  "definitions",
  "$comment",
  "$anchor",
  "additionalProperties",
  "unevaluatedProperties",
  "patternProperties",
  "propertyNames",
  "dependentRequired",
  "dependentSchemas",
  "strict",
  "examples",
  "exclusiveMinimum",
  "exclusiveMaximum",
  "multipleOf",
  "contentEncoding",
  "contentMediaType",
  "readOnly",
  "writeOnly",
  "deprecated",
  "if",
  "then",
  "else",
  "not",
]);

/** Keywords whose value is one schema. */
const SCHEMA_KEYS = new Set(["items", "contains", "additionalItems"]);
/** Keywords whose value is an array of schemas. */
const SCHEMA_ARRAY_KEYS = new Set(["anyOf", "oneOf", "allOf", "prefixItems"]);

const MAX_REF_DEPTH = 8;

function resolveRef(root: unknown, ref: string): unknown {
  if (!ref.startsWith("#/")) return undefined;
  let cur: unknown = root;
  for (const seg of ref.slice(2).split("/")) {
    const key = decodeURIComponent(seg).replace(/~1/g, "/").replace(/~0/g, "~");
    if (!isObj(cur)) return undefined;
    cur = cur[key];
  }
  return cur;
}

function cleanNode(node: unknown, root: unknown, depth: number): unknown {
  if (Array.isArray(node)) return node.map((n) => cleanNode(n, root, depth));
  if (!isObj(node)) return node;

  // Inline local `$ref`s (Gemini has no references); give up on deep recursion.
  let src: Json = node;
  const ref = str(node.$ref);
  if (ref !== undefined) {
    const target = depth < MAX_REF_DEPTH ? resolveRef(root, ref) : undefined;
    const { $ref: _ignored, ...rest } = node;
    src = isObj(target) ? { ...target, ...rest } : { type: "object", ...rest };
    if (isObj(target)) return cleanNode(src, root, depth + 1);
  }

  const out: Json = {};
  for (const [key, value] of Object.entries(src)) {
    if (DROP_KEYS.has(key) || key === "$ref") continue;
    if (key === "properties" && isObj(value)) {
      const props: Json = {};
      for (const [name, sub] of Object.entries(value)) props[name] = cleanNode(sub, root, depth);
      out.properties = props;
    } else if (SCHEMA_KEYS.has(key)) {
      if (key === "items") out.items = cleanNode(value, root, depth);
      // `contains` / `additionalItems` are not Gemini keywords: dropped.
    } else if (SCHEMA_ARRAY_KEYS.has(key)) {
      if (key === "prefixItems") continue;
      const list = arr(value).map((s) => cleanNode(s, root, depth));
      // Gemini knows `anyOf` only; `oneOf` is the closest; `allOf` is kept as is.
      const target = key === "oneOf" ? "anyOf" : key;
      out[target] = [...arr(out[target]), ...list];
    } else if (key === "const") {
      out.enum = [value];
    } else if (key === "type" && Array.isArray(value)) {
      const types = value.filter((t): t is string => typeof t === "string");
      const nonNull = types.filter((t) => t !== "null");
      if (nonNull.length < types.length) out.nullable = true;
      if (nonNull[0] !== undefined) out.type = nonNull[0];
    } else {
      out[key] = value;
    }
  }

  // `anyOf: [X, {type:"null"}]` → X + nullable.
  const anyOf = out.anyOf;
  if (Array.isArray(anyOf)) {
    const rest = anyOf.filter(
      (s) => !(isObj(s) && s.type === "null" && Object.keys(s).length <= 2),
    );
    if (rest.length < anyOf.length) {
      out.nullable = true;
      if (rest.length === 1 && isObj(rest[0])) {
        delete out.anyOf;
        for (const [k, v] of Object.entries(rest[0])) if (out[k] === undefined) out[k] = v;
      } else {
        out.anyOf = rest;
      }
    }
  }
  if (out.enum !== undefined && out.type === undefined) {
    const first = arr(out.enum)[0];
    if (typeof first === "string") out.type = "string";
  }
  return out;
}

/**
 * Cleans a JSON Schema for Gemini's `Schema`: inlines local `$ref`s, drops keywords Gemini rejects
 * (`$schema`, `$id`, `$defs`, `definitions`, `additionalProperties`, `strict`, `examples`, ...),
 * turns `const` into a one-value `enum`, `oneOf` into `anyOf`, and a nullable `type` array
 * (`["string","null"]`) or `anyOf` with `{type:"null"}` into the type plus `nullable: true`.
 * Recursive; property names are never treated as keywords. Does not mutate its input.
 */
export function cleanGeminiSchema(schema: unknown): unknown {
  return cleanNode(schema, schema, 0);
}

/** A Gemini `Schema` (maybe with upper-case `type`s and `nullable`) → a JSON Schema. */
function geminiSchemaToJson(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(geminiSchemaToJson);
  if (!isObj(node)) return node;
  const out: Json = {};
  let nullable = false;
  for (const [key, value] of Object.entries(node)) {
    if (key === "properties" && isObj(value)) {
      const props: Json = {};
      for (const [name, sub] of Object.entries(value)) props[name] = geminiSchemaToJson(sub);
      out.properties = props;
    } else if (key === "items") {
      out.items = geminiSchemaToJson(value);
    } else if (key === "anyOf" || key === "oneOf" || key === "allOf") {
      out[key] = arr(value).map(geminiSchemaToJson);
    } else if (key === "type" && typeof value === "string") {
      if (value !== "TYPE_UNSPECIFIED") out.type = value.toLowerCase();
    } else if (key === "nullable") {
      nullable = value === true;
    } else if (key === "propertyOrdering") {
      // Gemini-only ordering hint.
    } else {
      out[key] = value;
    }
  }
  if (nullable && typeof out.type === "string") out.type = [out.type, "null"];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Gemini request → OpenAI request
// ---------------------------------------------------------------------------------------------

/** Single-string wrappers of a function response that become the tool message's plain text. */
const TEXT_RESPONSE_KEYS = new Set(["content", "result", "output", "text", "response"]);

function functionResponseText(response: unknown): string {
  if (typeof response === "string") return response;
  if (isObj(response)) {
    const keys = Object.keys(response);
    const only = keys[0];
    if (keys.length === 1 && only !== undefined && TEXT_RESPONSE_KEYS.has(only)) {
      const v = response[only];
      if (typeof v === "string") return v;
    }
  }
  return stringifyArgs(response ?? {});
}

function systemInstructionText(sys: unknown): string {
  if (typeof sys === "string") return sys;
  if (!isObj(sys)) return "";
  if (typeof sys.text === "string") return sys.text;
  const texts: string[] = [];
  for (const p of arr(sys.parts)) {
    if (isObj(p) && typeof p.text === "string" && p.thought !== true) texts.push(p.text);
  }
  return texts.join("\n");
}

/** A Gemini `inlineData` / `fileData` part → an OpenAI user content part, or null. */
function geminiMediaToOpenAI(part: Json): Json | null {
  const inline = g(part, "inlineData");
  if (isObj(inline)) {
    const mimeType = str(g(inline, "mimeType")) ?? "application/octet-stream";
    const data = str(inline.data) ?? "";
    const audio = AUDIO_FORMATS[mimeType];
    if (audio) return { type: "input_audio", input_audio: { data, format: audio } };
    const url = `data:${mimeType};base64,${data}`;
    if (mimeType === "application/pdf") {
      return { type: "file", file: { filename: "document.pdf", file_data: url } };
    }
    return { type: "image_url", image_url: { url } };
  }
  const file = g(part, "fileData");
  if (isObj(file)) {
    const uri = str(g(file, "fileUri"));
    if (uri) return { type: "image_url", image_url: { url: uri } };
  }
  return null;
}

interface PendingCall {
  id: string;
  name: string;
  answered: boolean;
}

function effortFromBudget(budget: number): string | undefined {
  if (budget === 0) return undefined;
  if (budget < 0) return "medium"; // -1 = dynamic thinking
  if (budget < 4096) return "low";
  if (budget < 16384) return "medium";
  return "high";
}

/**
 * A Gemini `generateContent` request body → an OpenAI Chat Completions request. The model comes
 * from the URL (`opts.model`). Function calls get their part `id` or a synthesized
 * `call_<n>_<name>`; function responses reuse the id of the matching earlier call.
 */
export function geminiToOpenAIRequest(body: Json, opts: RequestOptions): Json {
  const messages: Json[] = [];
  const sysText = systemInstructionText(g(body, "systemInstruction"));
  if (sysText) messages.push({ role: "system", content: sysText });

  const calls: PendingCall[] = [];
  let callCount = 0;

  for (const turn of arr(body.contents)) {
    if (!isObj(turn)) continue;
    const parts = arr(turn.parts).filter(isObj);
    if (turn.role === "model" || turn.role === "assistant") {
      let text = "";
      let reasoning = "";
      const toolCalls: Json[] = [];
      for (const part of parts) {
        const fc = g(part, "functionCall");
        if (isObj(fc)) {
          const name = str(fc.name) ?? "";
          const id = str(fc.id) || `call_${callCount}_${name}`;
          callCount++;
          calls.push({ id, name, answered: false });
          toolCalls.push({
            id,
            type: "function",
            function: { name, arguments: stringifyArgs(fc.args ?? {}) },
          });
        } else if (typeof part.text === "string") {
          if (part.thought === true) reasoning += part.text;
          else text += part.text;
        }
      }
      if (!text && !reasoning && toolCalls.length === 0) continue;
      const msg: Json = { role: "assistant", content: text || (toolCalls.length ? null : "") };
      if (reasoning) msg.reasoning_content = reasoning;
      if (toolCalls.length) msg.tool_calls = toolCalls;
      messages.push(msg);
      continue;
    }

    // user (or missing / "function" role)
    const content: Json[] = [];
    for (const part of parts) {
      const fr = g(part, "functionResponse");
      if (isObj(fr)) {
        const name = str(fr.name) ?? "";
        const wanted = str(fr.id);
        let call = wanted ? calls.find((c) => c.id === wanted) : undefined;
        if (!call) call = calls.find((c) => !c.answered && c.name === name);
        if (!call) call = calls.find((c) => !c.answered && !wanted);
        let id: string;
        if (call) {
          call.answered = true;
          id = call.id;
        } else {
          id = wanted || `call_${callCount}_${name}`;
          callCount++;
        }
        messages.push({
          role: "tool",
          tool_call_id: id,
          content: functionResponseText(fr.response),
        });
        continue;
      }
      if (typeof part.text === "string") {
        if (part.thought !== true) content.push({ type: "text", text: part.text });
        continue;
      }
      const media = geminiMediaToOpenAI(part);
      if (media) content.push(media);
    }
    if (content.length === 0) continue;
    const only = content[0];
    if (content.length === 1 && only?.type === "text") {
      messages.push({ role: "user", content: only.text });
    } else {
      messages.push({ role: "user", content });
    }
  }

  const out: Json = { model: opts.model, messages };
  if (opts.stream) {
    out.stream = true;
    out.stream_options = { include_usage: true };
  } else {
    out.stream = false;
  }

  // Tools
  const tools: Json[] = [];
  for (const t of arr(body.tools)) {
    for (const fd of arr(g(t, "functionDeclarations"))) {
      if (!isObj(fd) || typeof fd.name !== "string") continue;
      const fn: Json = { name: fd.name };
      if (typeof fd.description === "string") fn.description = fd.description;
      const params = g(fd, "parametersJsonSchema") ?? fd.parameters;
      fn.parameters = isObj(params)
        ? g(fd, "parametersJsonSchema") !== undefined
          ? params
          : geminiSchemaToJson(params)
        : { type: "object", properties: {} };
      tools.push({ type: "function", function: fn });
    }
  }
  if (tools.length) out.tools = tools;

  const fcc = g(g(body, "toolConfig"), "functionCallingConfig");
  const mode = str(g(fcc, "mode"))?.toUpperCase();
  if (mode === "NONE") out.tool_choice = "none";
  else if (mode === "AUTO" || mode === "VALIDATED") out.tool_choice = "auto";
  else if (mode === "ANY") {
    const allowed = arr(g(fcc, "allowedFunctionNames")).filter(
      (n): n is string => typeof n === "string",
    );
    out.tool_choice =
      allowed.length === 1 ? { type: "function", function: { name: allowed[0] } } : "required";
  }

  // Generation config
  const gc = g(body, "generationConfig");
  if (isObj(gc)) {
    const maxTokens = num(g(gc, "maxOutputTokens"));
    if (maxTokens !== undefined) out.max_tokens = maxTokens;
    const temperature = num(gc.temperature);
    if (temperature !== undefined) out.temperature = temperature;
    const topP = num(g(gc, "topP"));
    if (topP !== undefined) out.top_p = topP;
    const stop = arr(g(gc, "stopSequences")).filter((s): s is string => typeof s === "string");
    if (stop.length) out.stop = stop;
    const n = num(g(gc, "candidateCount"));
    if (n !== undefined) out.n = n;
    const presence = num(g(gc, "presencePenalty"));
    if (presence !== undefined) out.presence_penalty = presence;
    const frequency = num(g(gc, "frequencyPenalty"));
    if (frequency !== undefined) out.frequency_penalty = frequency;
    const seed = num(gc.seed);
    if (seed !== undefined) out.seed = seed;
    if (str(g(gc, "responseMimeType")) === "application/json") {
      const jsonSchema = g(gc, "responseJsonSchema");
      const schema = g(gc, "responseSchema");
      if (isObj(jsonSchema) || isObj(schema)) {
        out.response_format = {
          type: "json_schema",
          json_schema: {
            name: "response",
            schema: isObj(jsonSchema) ? jsonSchema : geminiSchemaToJson(schema),
          },
        };
      } else {
        out.response_format = { type: "json_object" };
      }
    }
    const tc = g(gc, "thinkingConfig");
    const budget = num(g(tc, "thinkingBudget"));
    const level = str(g(tc, "thinkingLevel"))?.toLowerCase();
    if (budget !== undefined) {
      const effort = effortFromBudget(budget);
      if (effort) out.reasoning_effort = effort;
    } else if (level === "minimal" || level === "low" || level === "medium" || level === "high") {
      out.reasoning_effort = level === "minimal" ? "low" : level;
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// OpenAI request → Gemini request
// ---------------------------------------------------------------------------------------------

/** Documented sentinel letting Gemini 3 accept replayed function calls that lack a signature. */
const SKIP_SIGNATURE = "skip_thought_signature_validator";

/** Whether the model predates thought signatures (Gemini 1.x / 2.x). */
function isLegacyGemini(model: string): boolean {
  return /gemini-(1|2)[.-]/i.test(model);
}

/** OpenAI user content → Gemini parts. */
function openaiContentToParts(content: unknown): Json[] {
  if (typeof content === "string") return content ? [{ text: content }] : [];
  const parts: Json[] = [];
  for (const p of arr(content)) {
    if (typeof p === "string") {
      parts.push({ text: p });
      continue;
    }
    if (!isObj(p)) continue;
    if (typeof p.text === "string" && (p.type === "text" || p.type === undefined)) {
      parts.push({ text: p.text });
    } else if (p.type === "image_url") {
      const iu = p.image_url;
      const url = typeof iu === "string" ? iu : str(g(iu, "url"));
      if (url) parts.push(urlToGeminiPart(url));
    } else if (p.type === "input_audio" && isObj(p.input_audio)) {
      const data = str(p.input_audio.data);
      const format = str(p.input_audio.format) ?? "wav";
      if (data) {
        const mimeType = format === "mp3" ? "audio/mpeg" : `audio/${format}`;
        parts.push({ inlineData: { mimeType, data } });
      }
    } else if (p.type === "file" && isObj(p.file)) {
      const fileData = str(p.file.file_data);
      if (fileData) parts.push(urlToGeminiPart(fileData, "application/pdf"));
    }
  }
  return parts;
}

function toolResponseObject(content: unknown): Json {
  const text = openaiText(content);
  const parsed = parseJson(text);
  return isObj(parsed) ? parsed : { content: text };
}

function openaiToolChoiceToGemini(choice: unknown): Json | undefined {
  if (choice === "auto") return { functionCallingConfig: { mode: "AUTO" } };
  if (choice === "none") return { functionCallingConfig: { mode: "NONE" } };
  if (choice === "required") return { functionCallingConfig: { mode: "ANY" } };
  if (isObj(choice)) {
    const name = str(g(choice.function, "name")) ?? str(choice.name);
    if (name) return { functionCallingConfig: { mode: "ANY", allowedFunctionNames: [name] } };
  }
  return undefined;
}

const THINKING_BUDGETS: Record<string, number> = {
  minimal: 1024,
  low: 1024,
  medium: 8192,
  high: 24576,
  xhigh: 24576,
};

/** An OpenAI function definition → a Gemini function declaration, or null. */
function functionDeclaration(fn: unknown): Json | null {
  if (!isObj(fn) || typeof fn.name !== "string") return null;
  const decl: Json = { name: fn.name };
  if (typeof fn.description === "string") decl.description = fn.description;
  const params = cleanGeminiSchema(fn.parameters);
  // Gemini rejects an OBJECT schema with empty `properties`: omit parameter-less schemas.
  if (isObj(params) && !(isObj(params.properties) && Object.keys(params.properties).length === 0)) {
    if (params.type !== undefined || params.properties !== undefined) decl.parameters = params;
  }
  return decl;
}

/**
 * An OpenAI Chat Completions request → a Gemini `generateContent` request body (no `model`:
 * it goes into the URL). System / developer messages become `systemInstruction`; consecutive
 * same-role turns (tool results included) are merged; tool schemas are cleaned for Gemini.
 */
export function openaiToGeminiRequest(body: Json, opts: RequestOptions): Json {
  const systemParts: Json[] = [];
  const contents: Json[] = [];
  const callNames = new Map<string, string>();
  const needsSignature = !isLegacyGemini(opts.model);

  const push = (role: "user" | "model", parts: Json[]) => {
    if (parts.length === 0) return;
    const last = contents[contents.length - 1];
    if (last && last.role === role && Array.isArray(last.parts)) last.parts.push(...parts);
    else contents.push({ role, parts });
  };

  for (const msg of arr(body.messages)) {
    if (!isObj(msg)) continue;
    const role = msg.role;
    if (role === "system" || role === "developer") {
      const text = openaiText(msg.content);
      if (text) systemParts.push({ text });
    } else if (role === "user") {
      push("user", openaiContentToParts(msg.content));
    } else if (role === "assistant") {
      const parts: Json[] = [];
      const reasoning = str(msg.reasoning_content) ?? str(msg.reasoning);
      if (reasoning) parts.push({ text: reasoning, thought: true });
      const text = openaiText(msg.content);
      if (text) parts.push({ text });
      let first = true;
      const fnCalls: unknown[] = [...arr(msg.tool_calls)];
      if (isObj(msg.function_call)) fnCalls.push({ function: msg.function_call });
      for (const tc of fnCalls) {
        if (!isObj(tc) || !isObj(tc.function)) continue;
        const name = str(tc.function.name) ?? "";
        const id = str(tc.id);
        if (id) callNames.set(id, name);
        const part: Json = { functionCall: { name, args: parseArgs(tc.function.arguments) } };
        if (first && needsSignature) part.thoughtSignature = SKIP_SIGNATURE;
        first = false;
        parts.push(part);
      }
      push("model", parts);
    } else if (role === "tool" || role === "function") {
      const id = str(msg.tool_call_id);
      const name = (id && callNames.get(id)) || str(msg.name) || "";
      push("user", [{ functionResponse: { name, response: toolResponseObject(msg.content) } }]);
    }
  }

  const out: Json = { contents };
  if (systemParts.length) out.systemInstruction = { parts: systemParts };

  const decls: Json[] = [];
  for (const t of arr(body.tools)) {
    if (!isObj(t) || (t.type !== undefined && t.type !== "function")) continue;
    const d = functionDeclaration(t.function);
    if (d) decls.push(d);
  }
  for (const f of arr(body.functions)) {
    const d = functionDeclaration(f);
    if (d) decls.push(d);
  }
  if (decls.length) {
    out.tools = [{ functionDeclarations: decls }];
    const tc = openaiToolChoiceToGemini(body.tool_choice ?? body.function_call);
    if (tc) out.toolConfig = tc;
  }

  const gc: Json = {};
  const maxTokens = num(body.max_completion_tokens) ?? num(body.max_tokens);
  if (maxTokens !== undefined) gc.maxOutputTokens = maxTokens;
  const temperature = num(body.temperature);
  if (temperature !== undefined) gc.temperature = temperature;
  const topP = num(body.top_p);
  if (topP !== undefined) gc.topP = topP;
  const stop =
    typeof body.stop === "string"
      ? [body.stop]
      : arr(body.stop).filter((s): s is string => typeof s === "string");
  if (stop.length) gc.stopSequences = stop;
  const n = num(body.n);
  if (n !== undefined) gc.candidateCount = n;
  const presence = num(body.presence_penalty);
  if (presence !== undefined) gc.presencePenalty = presence;
  const frequency = num(body.frequency_penalty);
  if (frequency !== undefined) gc.frequencyPenalty = frequency;
  const seed = num(body.seed);
  if (seed !== undefined) gc.seed = seed;
  const rf = body.response_format;
  if (isObj(rf)) {
    if (rf.type === "json_object") gc.responseMimeType = "application/json";
    else if (rf.type === "json_schema") {
      gc.responseMimeType = "application/json";
      const schema = g(rf.json_schema, "schema");
      if (isObj(schema)) gc.responseSchema = cleanGeminiSchema(schema);
    }
  }
  const effort = str(body.reasoning_effort);
  const budget = effort ? THINKING_BUDGETS[effort] : undefined;
  if (budget !== undefined) gc.thinkingConfig = { thinkingBudget: budget, includeThoughts: true };
  if (Object.keys(gc).length) out.generationConfig = gc;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Responses
// ---------------------------------------------------------------------------------------------

interface CandidateParts {
  text: string;
  reasoning: string;
  toolCalls: Json[];
}

function collectParts(content: unknown): CandidateParts {
  const res: CandidateParts = { text: "", reasoning: "", toolCalls: [] };
  for (const part of arr(g(content, "parts"))) {
    if (!isObj(part)) continue;
    const fc = g(part, "functionCall");
    if (isObj(fc)) {
      const name = str(fc.name) ?? "";
      const n = res.toolCalls.length;
      res.toolCalls.push({
        id: str(fc.id) || `call_${n}_${name}`,
        type: "function",
        function: { name, arguments: stringifyArgs(fc.args ?? {}) },
      });
    } else if (typeof part.text === "string") {
      if (part.thought === true) res.reasoning += part.text;
      else res.text += part.text;
    }
  }
  return res;
}

/** Unwraps the Cloud Code Assist envelope `{response: {...}}` when present. */
function unwrap(data: unknown): unknown {
  return isObj(data) && isObj(data.response) && data.candidates === undefined
    ? data.response
    : data;
}

/**
 * A Gemini `GenerateContentResponse` → an OpenAI `chat.completion` (one choice per candidate).
 * A prompt blocked by `promptFeedback.blockReason` yields one empty choice with "content_filter".
 */
export function geminiToOpenAIResponse(body: Json, opts: ResponseOptions): Json {
  const src = unwrap(body);
  const choices: Json[] = [];
  const candidates = arr(isObj(src) ? src.candidates : undefined);
  candidates.forEach((cand, i) => {
    if (!isObj(cand)) return;
    const { text, reasoning, toolCalls } = collectParts(cand.content);
    const message: Json = {
      role: "assistant",
      content: text || (toolCalls.length ? null : ""),
    };
    if (reasoning) message.reasoning_content = reasoning;
    if (toolCalls.length) message.tool_calls = toolCalls;
    choices.push({
      index: num(cand.index) ?? i,
      message,
      logprobs: null,
      finish_reason: geminiFinishToOpenAI(g(cand, "finishReason"), toolCalls.length > 0),
    });
  });
  if (choices.length === 0) {
    const blocked = str(g(g(src, "promptFeedback"), "blockReason"));
    choices.push({
      index: 0,
      message: { role: "assistant", content: "" },
      logprobs: null,
      finish_reason: blocked ? "content_filter" : "stop",
    });
  }
  const out: Json = {
    id: "chatcmpl-" + opts.id,
    object: "chat.completion",
    created: nowSeconds(),
    model: opts.model,
    choices,
  };
  const usage = geminiUsage(g(src, "usageMetadata"));
  if (usage) out.usage = chatUsage(usage);
  return out;
}

/** OpenAI message parts (reasoning first, then text, then tool calls) → Gemini parts. */
function openaiMessageToParts(msg: unknown): Json[] {
  const parts: Json[] = [];
  if (!isObj(msg)) return parts;
  const reasoning = str(msg.reasoning_content) ?? str(msg.reasoning);
  if (reasoning) parts.push({ text: reasoning, thought: true });
  const text = openaiText(msg.content);
  if (text) parts.push({ text });
  for (const tc of arr(msg.tool_calls)) {
    if (!isObj(tc) || !isObj(tc.function)) continue;
    parts.push({
      functionCall: { name: str(tc.function.name) ?? "", args: parseArgs(tc.function.arguments) },
    });
  }
  return parts;
}

/** An OpenAI `chat.completion` → a Gemini `GenerateContentResponse`. */
export function openaiToGeminiResponse(body: Json, opts: ResponseOptions): Json {
  const candidates: Json[] = [];
  arr(body.choices).forEach((choice, i) => {
    if (!isObj(choice)) return;
    const parts = openaiMessageToParts(choice.message);
    candidates.push({
      content: { role: "model", parts: parts.length ? parts : [{ text: "" }] },
      finishReason: openaiFinishToGemini(choice.finish_reason) ?? "STOP",
      index: num(choice.index) ?? i,
    });
  });
  const out: Json = { candidates };
  const usage = openaiUsage(body.usage);
  if (usage) out.usageMetadata = openaiUsageToGemini(usage);
  out.modelVersion = opts.model;
  out.responseId = opts.id;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

interface GeminiChoiceState {
  started: boolean;
  toolCalls: number;
  finished: boolean;
}

/**
 * Gemini stream (`streamGenerateContent?alt=sse`, or the Cloud Code Assist `{response}` envelope)
 * → OpenAI `chat.completion.chunk`s. Function calls arrive whole and are emitted as complete tool
 * call deltas. `finished` turns true at the first `finishReason`; `end()` adds the usage chunk
 * and `[DONE]`.
 */
export class GeminiToOpenAIStream implements EventTranslator {
  private readonly opts: ResponseOptions;
  private readonly created = nowSeconds();
  private readonly choices = new Map<number, GeminiChoiceState>();
  private lastUsage: TokenUsage | null = null;
  private sawFinish = false;
  private ended = false;

  /** Creates a translator for one response. */
  constructor(opts: ResponseOptions) {
    this.opts = opts;
  }

  /** True once a candidate with a `finishReason` (or a blocked prompt) was seen. */
  get finished(): boolean {
    return this.sawFinish;
  }

  private chunk(index: number, delta: Json, finishReason: string | null = null): UpstreamEvent {
    return chatChunk(this.opts.id, this.created, this.opts.model, delta, finishReason, index);
  }

  private state(index: number): GeminiChoiceState {
    let s = this.choices.get(index);
    if (!s) {
      s = { started: false, toolCalls: 0, finished: false };
      this.choices.set(index, s);
    }
    return s;
  }

  private delta(s: GeminiChoiceState, fields: Json): Json {
    if (s.started) return fields;
    s.started = true;
    return { role: "assistant", ...fields };
  }

  /** Translates one Gemini event into OpenAI chunks. */
  push(ev: UpstreamEvent): UpstreamEvent[] {
    const data = unwrap(ev.data);
    if (!isObj(data)) return [];
    const out: UpstreamEvent[] = [];
    const usage = geminiUsage(g(data, "usageMetadata"));
    if (usage) this.lastUsage = usage;

    const candidates = arr(data.candidates);
    candidates.forEach((cand, i) => {
      if (!isObj(cand)) return;
      const index = num(cand.index) ?? i;
      const s = this.state(index);
      for (const part of arr(g(cand.content, "parts"))) {
        if (!isObj(part)) continue;
        const fc = g(part, "functionCall");
        if (isObj(fc)) {
          const name = str(fc.name) ?? "";
          const n = s.toolCalls++;
          const call = {
            index: n,
            id: str(fc.id) || `call_${n}_${name}`,
            type: "function",
            function: { name, arguments: stringifyArgs(fc.args ?? {}) },
          };
          out.push(this.chunk(index, this.delta(s, { tool_calls: [call] })));
        } else if (typeof part.text === "string" && part.text !== "") {
          const key = part.thought === true ? "reasoning_content" : "content";
          out.push(this.chunk(index, this.delta(s, { [key]: part.text })));
        }
      }
      const reason = g(cand, "finishReason");
      if (typeof reason === "string" && reason !== "" && !s.finished) {
        s.finished = true;
        this.sawFinish = true;
        if (!s.started) out.push(this.chunk(index, this.delta(s, { content: "" })));
        out.push(this.chunk(index, {}, geminiFinishToOpenAI(reason, s.toolCalls > 0)));
      }
    });

    if (candidates.length === 0 && str(g(g(data, "promptFeedback"), "blockReason"))) {
      const s = this.state(0);
      if (!s.finished) {
        s.finished = true;
        this.sawFinish = true;
        if (!s.started) out.push(this.chunk(0, this.delta(s, { content: "" })));
        out.push(this.chunk(0, {}, "content_filter"));
      }
    }
    return out;
  }

  /** Closing events: the usage chunk (when usage was reported) and `[DONE]`. */
  end(): UpstreamEvent[] {
    if (this.ended) return [];
    this.ended = true;
    const out: UpstreamEvent[] = [];
    if (this.lastUsage) {
      out.push({
        data: {
          id: "chatcmpl-" + this.opts.id,
          object: "chat.completion.chunk",
          created: this.created,
          model: this.opts.model,
          choices: [],
          usage: chatUsage(this.lastUsage),
        },
      });
    }
    out.push({ data: "[DONE]" });
    return out;
  }

  /** The latest reported usage (Gemini repeats cumulative counts on every chunk). */
  usage(): TokenUsage | null {
    return this.lastUsage;
  }
}

interface ToolAccumulator {
  name: string;
  args: string;
}

interface OpenAIChoiceState {
  tools: Map<number, ToolAccumulator>;
  finishReason: string | undefined;
}

/**
 * OpenAI chunks (and `[DONE]`) → Gemini `GenerateContentResponse` events. Text and reasoning
 * deltas pass through at once; tool call fragments are accumulated and emitted as complete
 * `functionCall` parts in one final event (with `finishReason` and `usageMetadata`) on `[DONE]`
 * or at `end()`, since OpenAI reports usage after the finish chunk.
 */
export class OpenAIToGeminiStream implements EventTranslator {
  private readonly opts: ResponseOptions;
  private readonly choices = new Map<number, OpenAIChoiceState>();
  private lastUsage: TokenUsage | null = null;
  private sawEnd = false;
  private flushed = false;

  /** Creates a translator for one response. */
  constructor(opts: ResponseOptions) {
    this.opts = opts;
  }

  /** True once a `finish_reason` or `[DONE]` was seen. */
  get finished(): boolean {
    return this.sawEnd;
  }

  private state(index: number): OpenAIChoiceState {
    let s = this.choices.get(index);
    if (!s) {
      s = { tools: new Map(), finishReason: undefined };
      this.choices.set(index, s);
    }
    return s;
  }

  private event(candidates: Json[] | undefined, usage?: TokenUsage): UpstreamEvent {
    const data: Json = {};
    if (candidates) data.candidates = candidates;
    if (usage) data.usageMetadata = openaiUsageToGemini(usage);
    data.modelVersion = this.opts.model;
    data.responseId = this.opts.id;
    return { data };
  }

  /** Translates one OpenAI chunk (or `[DONE]`) into Gemini events. */
  push(ev: UpstreamEvent): UpstreamEvent[] {
    if (ev.data === "[DONE]") {
      this.sawEnd = true;
      return this.flush();
    }
    const data = ev.data;
    if (!isObj(data)) return [];
    const usage = openaiUsage(data.usage);
    if (usage) this.lastUsage = usage;

    const candidates: Json[] = [];
    arr(data.choices).forEach((choice, i) => {
      if (!isObj(choice)) return;
      const index = num(choice.index) ?? i;
      const s = this.state(index);
      const delta = isObj(choice.delta) ? choice.delta : {};
      const parts: Json[] = [];
      const reasoning = str(delta.reasoning_content) ?? str(delta.reasoning);
      if (reasoning) parts.push({ text: reasoning, thought: true });
      const text = openaiText(delta.content);
      if (text) parts.push({ text });
      const fragments: unknown[] = [...arr(delta.tool_calls)];
      if (isObj(delta.function_call)) fragments.push({ index: 0, function: delta.function_call });
      for (const frag of fragments) {
        if (!isObj(frag)) continue;
        const ti = num(frag.index) ?? 0;
        let acc = s.tools.get(ti);
        if (!acc) {
          acc = { name: "", args: "" };
          s.tools.set(ti, acc);
        }
        const fn = isObj(frag.function) ? frag.function : {};
        const name = str(fn.name);
        if (name && !acc.name) acc.name = name;
        const args = str(fn.arguments);
        if (args) acc.args += args;
      }
      if (parts.length) candidates.push({ content: { role: "model", parts }, index });
      const reason = choice.finish_reason;
      if (typeof reason === "string" && reason !== "") {
        s.finishReason = reason;
        this.sawEnd = true;
      }
    });
    return candidates.length ? [this.event(candidates)] : [];
  }

  private flush(): UpstreamEvent[] {
    if (this.flushed) return [];
    this.flushed = true;
    const candidates: Json[] = [];
    const indexes = [...this.choices.keys()].sort((a, b) => a - b);
    for (const index of indexes) {
      const s = this.choices.get(index)!;
      const parts: Json[] = [];
      for (const ti of [...s.tools.keys()].sort((a, b) => a - b)) {
        const acc = s.tools.get(ti)!;
        parts.push({ functionCall: { name: acc.name, args: parseArgs(acc.args) } });
      }
      candidates.push({
        content: { role: "model", parts: parts.length ? parts : [{ text: "" }] },
        finishReason: openaiFinishToGemini(s.finishReason) ?? "STOP",
        index,
      });
    }
    if (candidates.length === 0 && !this.lastUsage) return [];
    return [this.event(candidates.length ? candidates : undefined, this.lastUsage ?? undefined)];
  }

  /** Closing events: the held final event (function calls, finishReason, usage), if not sent. */
  end(): UpstreamEvent[] {
    return this.flush();
  }

  /** The usage the upstream reported so far, or null. */
  usage(): TokenUsage | null {
    return this.lastUsage;
  }
}
