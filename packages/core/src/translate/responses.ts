/**
 * Translation between the OpenAI Responses API (`POST /v1/responses`, what Codex and newer
 * OpenAI clients speak) and OpenAI Chat Completions (the pivot format): request bodies,
 * answers and event streams, in both directions. Pure and dependency-free: every function takes
 * parsed JSON and returns fresh JSON, never throws on odd input (unknown items and fields are
 * skipped), and the stream translators only throw when the upstream itself reported an error.
 *
 * What cannot be carried: server-side state (`previous_response_id`, `item_reference`,
 * `store`, `conversation`), built-in tools (web search, file search, computer use, code
 * interpreter, MCP, custom/freeform tools, local shell) and their call items, and reasoning
 * items going to a Responses upstream (they need an id or encrypted content the chat side
 * does not have).
 *
 * @module
 */

import type { TokenUsage } from "../store/types.js";
import { isObj, list, nowSeconds, num, obj, str } from "./json.js";
import { chatChunk, chatUsage, openaiUsageOf } from "./openai.js";
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

/** The text parts of `text` types in `types` of a content value (string or parts), joined. */
function partsText(content: unknown, types: readonly string[], sep = ""): string {
  if (typeof content === "string") return content;
  const texts: string[] = [];
  for (const p of list(content)) {
    if (!isObj(p) || typeof p.type !== "string" || !types.includes(p.type)) continue;
    const text = str(p.text) ?? str(p.refusal);
    if (text !== undefined) texts.push(text);
  }
  return texts.join(sep);
}

/** Text part types of both formats (chat `text`, Responses input/output text, refusals). */
const TEXT_TYPES = ["text", "input_text", "output_text", "refusal"] as const;

/** The message of an upstream error (`{error:{message}}`, `{message}`, or a string). */
function errorMessage(data: Json): string {
  const err = data.error;
  if (isObj(err)) return str(err.message) ?? str(err.code) ?? str(err.type) ?? "upstream error";
  return str(err) ?? str(data.message) ?? "upstream error";
}

// ---------------------------------------------------------------------------------------------
// Usage and finish reasons
// ---------------------------------------------------------------------------------------------

/**
 * Reads a Responses `usage` object (`input_tokens`, `output_tokens`, details) into a
 * {@link TokenUsage}; chat usage is read too. Null when `u` carries no token counts.
 */
export function responsesUsage(u: unknown): TokenUsage | null {
  return openaiUsageOf(u);
}

/**
 * Writes a {@link TokenUsage} as a Responses `usage` object (cached and reasoning details;
 * `cache_write_tokens` is 0, as TokenUsage does not count cache writes apart).
 */
export function usageToResponses(u: TokenUsage): Json {
  return {
    input_tokens: u.inputTokens,
    input_tokens_details: { cached_tokens: u.cachedTokens, cache_write_tokens: 0 },
    output_tokens: u.outputTokens,
    output_tokens_details: { reasoning_tokens: u.reasoningTokens },
    total_tokens: u.totalTokens,
  };
}

/**
 * The chat `finish_reason` of a Responses status: an incomplete answer is `length` (output
 * budget) or `content_filter` whatever it holds, else `tool_calls` when it called functions.
 */
function finishOf(status: unknown, incomplete: unknown, hasTools: boolean): string {
  if (status === "incomplete") {
    const reason = obj(incomplete).reason;
    if (reason === "max_output_tokens") return "length";
    if (reason === "content_filter") return "content_filter";
  }
  return hasTools ? "tool_calls" : "stop";
}

/** The Responses status and `incomplete_details` of a chat `finish_reason`. */
function statusOf(finish: unknown): { status: string; incomplete_details: Json | null } {
  if (finish === "length") {
    return { status: "incomplete", incomplete_details: { reason: "max_output_tokens" } };
  }
  if (finish === "content_filter") {
    return { status: "incomplete", incomplete_details: { reason: "content_filter" } };
  }
  return { status: "completed", incomplete_details: null };
}

// ---------------------------------------------------------------------------------------------
// Responses request -> chat request
// ---------------------------------------------------------------------------------------------

/** A Responses input content part (text, image, file) as a chat content part, if it maps. */
function inputPartToChat(p: Json): Json | undefined {
  if ((p.type === "input_text" || p.type === "output_text") && typeof p.text === "string") {
    return { type: "text", text: p.text };
  }
  if (p.type === "input_image") {
    // `file_id` images cannot be named in a chat image part.
    const url = str(p.image_url) ?? str(obj(p.image_url).url);
    if (url === undefined) return undefined;
    const image: Json = { url };
    if (p.detail === "low" || p.detail === "high" || p.detail === "auto") image.detail = p.detail;
    return { type: "image_url", image_url: image };
  }
  if (p.type === "input_file") {
    // `file_url` has no chat equivalent.
    const file: Json = {};
    if (typeof p.file_id === "string") file.file_id = p.file_id;
    if (typeof p.file_data === "string") file.file_data = p.file_data;
    if (typeof p.filename === "string") file.filename = p.filename;
    return file.file_id === undefined && file.file_data === undefined
      ? undefined
      : { type: "file", file };
  }
  return undefined;
}

/** Responses user content as chat content: a lone text part becomes a plain string. */
function userContentToChat(content: unknown): string | Json[] {
  if (typeof content === "string") return content;
  const parts: Json[] = [];
  for (const p of list(content)) {
    const part = isObj(p) ? inputPartToChat(p) : undefined;
    if (part) parts.push(part);
  }
  const only = parts[0];
  if (parts.length === 1 && only?.type === "text") return str(only.text) ?? "";
  return parts;
}

/** The text of a reasoning item: its summaries, else its raw reasoning content. */
function reasoningText(item: Json): string {
  const summary = partsText(list(item.summary), ["summary_text"], "\n\n");
  return summary !== "" ? summary : partsText(list(item.content), ["reasoning_text"], "\n\n");
}

/** The output of a `function_call_output` item (a string, or parts whose texts are joined). */
function toolOutputText(output: unknown): string {
  if (typeof output === "string") return output;
  if (Array.isArray(output)) return partsText(output, TEXT_TYPES);
  return output === undefined || output === null ? "" : JSON.stringify(output);
}

/**
 * Builds chat messages from Responses input items. Assistant text, reasoning and function calls
 * that follow each other become one assistant message, as a chat model would have written them.
 */
class ChatMessages {
  readonly messages: Json[] = [];
  /** The assistant message still open to reasoning, text and tool calls. */
  #assistant: Json | null = null;

  /** Adds one Responses input item; unknown items are skipped. */
  add(item: unknown): void {
    if (typeof item === "string") {
      this.#push({ role: "user", content: item });
      return;
    }
    if (!isObj(item)) return;
    const type = item.type ?? (item.role !== undefined ? "message" : undefined);
    switch (type) {
      case "message":
        this.#message(item);
        return;
      case "function_call": {
        const call = {
          id: str(item.call_id) ?? str(item.id) ?? "",
          type: "function",
          function: { name: str(item.name) ?? "", arguments: str(item.arguments) ?? "{}" },
        };
        const a = this.#open();
        a.tool_calls = [...list(a.tool_calls), call];
        return;
      }
      case "function_call_output":
        this.#push({
          role: "tool",
          tool_call_id: str(item.call_id) ?? "",
          content: toolOutputText(item.output),
        });
        return;
      case "reasoning": {
        const text = reasoningText(item);
        if (text === "") return;
        const a = this.#assistant;
        const fresh = a && a.content === null && a.tool_calls === undefined ? a : this.#open(true);
        fresh.reasoning_content =
          typeof fresh.reasoning_content === "string"
            ? `${fresh.reasoning_content}\n\n${text}`
            : text;
        return;
      }
      default:
        return;
    }
  }

  /** The messages, without assistant messages left empty (reasoning alone). */
  done(): Json[] {
    return this.messages.filter(
      (m) => m.role !== "assistant" || m.content !== null || m.tool_calls !== undefined,
    );
  }

  #message(item: Json): void {
    switch (item.role) {
      case "assistant": {
        const text = partsText(item.content, TEXT_TYPES);
        const a = this.#assistant;
        if (a && a.content === null && a.tool_calls === undefined) a.content = text;
        else this.#open(true).content = text;
        return;
      }
      case "system":
      case "developer":
        this.#push({ role: "system", content: partsText(item.content, TEXT_TYPES, "\n\n") });
        return;
      case "user":
        this.#push({ role: "user", content: userContentToChat(item.content) });
        return;
      default:
        return;
    }
  }

  /** The open assistant message, or a new one (always new with `fresh`). */
  #open(fresh = false): Json {
    if (this.#assistant && !fresh) return this.#assistant;
    const a: Json = { role: "assistant", content: null };
    this.messages.push(a);
    this.#assistant = a;
    return a;
  }

  #push(m: Json): void {
    this.messages.push(m);
    this.#assistant = null;
  }
}

/** Responses function tools as chat function tools; built-in tools are dropped. */
function responsesToolsToChat(tools: unknown): Json[] {
  const out: Json[] = [];
  for (const t of list(tools)) {
    if (!isObj(t) || t.type !== "function" || typeof t.name !== "string") continue;
    const fn: Json = { name: t.name };
    if (typeof t.description === "string") fn.description = t.description;
    fn.parameters = isObj(t.parameters) ? t.parameters : { type: "object", properties: {} };
    if (typeof t.strict === "boolean") fn.strict = t.strict;
    out.push({ type: "function", function: fn });
  }
  return out;
}

/** A Responses `tool_choice` as a chat one, or undefined (built-in tool choices). */
function responsesToolChoiceToChat(tc: unknown): unknown {
  if (tc === "auto" || tc === "required" || tc === "none") return tc;
  if (!isObj(tc)) return undefined;
  if (tc.type === "function" && typeof tc.name === "string") {
    return { type: "function", function: { name: tc.name } };
  }
  if (tc.type === "allowed_tools" && (tc.mode === "auto" || tc.mode === "required")) {
    return tc.mode;
  }
  return undefined;
}

/** A Responses `text.format` as a chat `response_format`, or undefined for plain text. */
function textFormatToChat(format: unknown): Json | undefined {
  const f = obj(format);
  if (f.type === "json_object") return { type: "json_object" };
  if (f.type !== "json_schema") return undefined;
  const schema: Json = { name: str(f.name) ?? "response" };
  if (typeof f.description === "string") schema.description = f.description;
  if (isObj(f.schema)) schema.schema = f.schema;
  if (typeof f.strict === "boolean") schema.strict = f.strict;
  return { type: "json_schema", json_schema: schema };
}

/** Copies sampling, tool and misc options of a Responses request onto a chat body. */
function responsesOptionsToChat(b: Json, out: Json): void {
  if (num(b.max_output_tokens) !== undefined) out.max_tokens = b.max_output_tokens;
  if (num(b.temperature) !== undefined) out.temperature = b.temperature;
  if (num(b.top_p) !== undefined) out.top_p = b.top_p;
  const tools = responsesToolsToChat(b.tools);
  if (tools.length > 0) {
    out.tools = tools;
    const choice = responsesToolChoiceToChat(b.tool_choice);
    if (choice !== undefined) out.tool_choice = choice;
    if (typeof b.parallel_tool_calls === "boolean") out.parallel_tool_calls = b.parallel_tool_calls;
  }
  const effort = str(obj(b.reasoning).effort);
  if (effort !== undefined) out.reasoning_effort = effort;
  const text = obj(b.text);
  const format = textFormatToChat(text.format);
  if (format) out.response_format = format;
  if (typeof text.verbosity === "string") out.verbosity = text.verbosity;
  if (typeof b.user === "string") out.user = b.user;
  for (const k of ["safety_identifier", "prompt_cache_key", "service_tier"]) {
    if (typeof b[k] === "string") out[k] = b[k];
  }
}

/**
 * Translates a Responses request body into a chat.completions body for `opts.model`: the
 * instructions lead as a system message, input items become messages. A streaming request asks
 * for the usage chunk. Stateful fields (`previous_response_id`, `store`, `include`,
 * `truncation`, `conversation`) and built-in tools are dropped.
 */
export function responsesToChatRequest(body: Json, opts: RequestOptions): Json {
  const b = obj(body);
  const msgs = new ChatMessages();
  if (typeof b.instructions === "string" && b.instructions !== "") {
    msgs.add({ type: "message", role: "system", content: b.instructions });
  } else {
    for (const item of list(b.instructions)) msgs.add(item);
  }
  if (typeof b.input === "string") msgs.add({ type: "message", role: "user", content: b.input });
  else for (const item of list(b.input)) msgs.add(item);
  const out: Json = { model: opts.model, messages: msgs.done(), stream: opts.stream };
  if (opts.stream) out.stream_options = { include_usage: true };
  responsesOptionsToChat(b, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Chat request -> Responses request
// ---------------------------------------------------------------------------------------------

/** A chat user content part as a Responses input content part, if it maps. */
function chatPartToInput(p: Json): Json | undefined {
  if ((p.type === "text" || p.type === "input_text") && typeof p.text === "string") {
    return { type: "input_text", text: p.text };
  }
  if (p.type === "image_url") {
    const img = obj(p.image_url);
    const url = typeof p.image_url === "string" ? p.image_url : str(img.url);
    if (url === undefined) return undefined;
    const detail = str(img.detail) ?? "auto";
    return { type: "input_image", image_url: url, detail };
  }
  if (p.type === "file") {
    const f = obj(p.file);
    const part: Json = { type: "input_file" };
    if (typeof f.file_id === "string") part.file_id = f.file_id;
    if (typeof f.file_data === "string") part.file_data = f.file_data;
    if (typeof f.filename === "string") part.filename = f.filename;
    return part.file_id === undefined && part.file_data === undefined ? undefined : part;
  }
  return undefined;
}

/** Chat user content as Responses input content parts. */
function chatUserContent(content: unknown): Json[] {
  if (typeof content === "string") return [{ type: "input_text", text: content }];
  const out: Json[] = [];
  for (const p of list(content)) {
    const part = isObj(p) ? chatPartToInput(p) : undefined;
    if (part) out.push(part);
  }
  return out;
}

/** One chat message (not system) as Responses input items. */
function chatMessageToItems(m: Json): Json[] {
  switch (m.role) {
    case "user": {
      const content = chatUserContent(m.content);
      return content.length > 0 ? [{ type: "message", role: "user", content }] : [];
    }
    case "assistant": {
      const out: Json[] = [];
      const text = partsText(m.content, TEXT_TYPES) || (str(m.refusal) ?? "");
      if (text !== "") {
        out.push({ type: "message", role: "assistant", content: [{ type: "output_text", text }] });
      }
      for (const tc of list(m.tool_calls)) {
        if (!isObj(tc)) continue;
        const fn = obj(tc.function);
        const name = str(fn.name) ?? "";
        out.push({
          type: "function_call",
          call_id: str(tc.id) ?? `call_${name}`,
          name,
          arguments: str(fn.arguments) ?? JSON.stringify(fn.arguments ?? {}),
        });
      }
      if (isObj(m.function_call)) {
        const name = str(m.function_call.name) ?? "";
        const args = str(m.function_call.arguments) ?? "{}";
        out.push({ type: "function_call", call_id: `call_${name}`, name, arguments: args });
      }
      return out;
    }
    case "tool":
      return [
        {
          type: "function_call_output",
          call_id: str(m.tool_call_id) ?? "",
          output: partsText(m.content, TEXT_TYPES),
        },
      ];
    case "function":
      return [
        {
          type: "function_call_output",
          call_id: `call_${str(m.name) ?? ""}`,
          output: partsText(m.content, TEXT_TYPES),
        },
      ];
    default:
      return [];
  }
}

/**
 * Chat function tools (and legacy `functions`) as flat Responses function tools. `strict` is
 * always written: Responses defaults it to true where chat defaults it to false.
 */
function chatToolsToResponses(b: Json): Json[] {
  const fns: Json[] = [];
  for (const t of list(b.tools)) {
    if (isObj(t) && t.type === "function" && isObj(t.function)) fns.push(t.function);
  }
  for (const f of list(b.functions)) if (isObj(f)) fns.push(f);
  const out: Json[] = [];
  for (const fn of fns) {
    if (typeof fn.name !== "string") continue;
    const tool: Json = { type: "function", name: fn.name };
    if (typeof fn.description === "string") tool.description = fn.description;
    tool.parameters = isObj(fn.parameters) ? fn.parameters : { type: "object", properties: {} };
    tool.strict = fn.strict === true;
    out.push(tool);
  }
  return out;
}

/** A chat `tool_choice` (or legacy `function_call`) as a Responses one, or undefined. */
function chatToolChoiceToResponses(tc: unknown): unknown {
  if (tc === "auto" || tc === "required" || tc === "none") return tc;
  if (!isObj(tc)) return undefined;
  if (tc.type === "allowed_tools") {
    const mode = obj(tc.allowed_tools).mode;
    return mode === "auto" || mode === "required" ? mode : undefined;
  }
  const name = str(obj(tc.function).name) ?? str(tc.name);
  return name === undefined ? undefined : { type: "function", name };
}

/** A chat `response_format` as a Responses `text.format`, or undefined for plain text. */
function chatFormatToResponses(rf: unknown): Json | undefined {
  const f = obj(rf);
  if (f.type === "json_object") return { type: "json_object" };
  if (f.type !== "json_schema") return undefined;
  const js = obj(f.json_schema);
  const format: Json = { type: "json_schema", name: str(js.name) ?? "response" };
  if (typeof js.description === "string") format.description = js.description;
  format.schema = isObj(js.schema) ? js.schema : { type: "object" };
  if (typeof js.strict === "boolean") format.strict = js.strict;
  return format;
}

/** Copies sampling, tool and misc options of a chat request onto a Responses body. */
function chatOptionsToResponses(b: Json, out: Json): void {
  const max = num(b.max_completion_tokens) ?? num(b.max_tokens);
  if (max !== undefined) out.max_output_tokens = max;
  if (num(b.temperature) !== undefined) out.temperature = b.temperature;
  if (num(b.top_p) !== undefined) out.top_p = b.top_p;
  const tools = chatToolsToResponses(b);
  if (tools.length > 0) {
    out.tools = tools;
    const choice = chatToolChoiceToResponses(b.tool_choice ?? b.function_call);
    if (choice !== undefined) out.tool_choice = choice;
    if (typeof b.parallel_tool_calls === "boolean") out.parallel_tool_calls = b.parallel_tool_calls;
  }
  if (typeof b.reasoning_effort === "string") out.reasoning = { effort: b.reasoning_effort };
  const text: Json = {};
  const format = chatFormatToResponses(b.response_format);
  if (format) text.format = format;
  if (typeof b.verbosity === "string") text.verbosity = b.verbosity;
  if (Object.keys(text).length > 0) out.text = text;
  for (const k of ["user", "safety_identifier", "prompt_cache_key", "service_tier"]) {
    if (typeof b[k] === "string") out[k] = b[k];
  }
}

/**
 * Translates a chat.completions request body into a Responses body for `opts.model`:
 * system/developer messages become `instructions`, the others input items (tool calls and
 * results keep their call ids). Stateless (`store: false`). Fields Responses does not accept
 * (stop, n, seed, logprobs, penalties, stream_options...) and assistant reasoning are dropped.
 */
export function chatToResponsesRequest(body: Json, opts: RequestOptions): Json {
  const b = obj(body);
  const instructions: string[] = [];
  const input: Json[] = [];
  for (const m of list(b.messages)) {
    if (!isObj(m)) continue;
    if (m.role === "system" || m.role === "developer") {
      const text = partsText(m.content, TEXT_TYPES, "\n\n");
      if (text !== "") instructions.push(text);
    } else {
      input.push(...chatMessageToItems(m));
    }
  }
  const out: Json = { model: opts.model };
  if (instructions.length > 0) out.instructions = instructions.join("\n\n");
  out.input = input;
  out.stream = opts.stream;
  out.store = false;
  chatOptionsToResponses(b, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Answers (non-streaming)
// ---------------------------------------------------------------------------------------------

/** Translates a Responses `response` object into a chat.completion object. */
export function responsesToChatResponse(body: Json, opts: ResponseOptions): Json {
  const b = obj(body);
  const texts: string[] = [];
  const refusals: string[] = [];
  const reasoning: string[] = [];
  const calls: Json[] = [];
  for (const item of list(b.output)) {
    if (!isObj(item)) continue;
    if (item.type === "message") {
      texts.push(partsText(item.content, ["output_text"]));
      const refusal = partsText(item.content, ["refusal"]);
      if (refusal !== "") refusals.push(refusal);
    } else if (item.type === "reasoning") {
      const text = reasoningText(item);
      if (text !== "") reasoning.push(text);
    } else if (item.type === "function_call") {
      calls.push({
        id: str(item.call_id) ?? str(item.id) ?? "",
        type: "function",
        function: { name: str(item.name) ?? "", arguments: str(item.arguments) ?? "" },
      });
    }
  }
  const text = texts.join("");
  const message: Json = { role: "assistant", content: text === "" ? null : text };
  if (refusals.length > 0) message.refusal = refusals.join("");
  if (reasoning.length > 0) message.reasoning_content = reasoning.join("\n\n");
  if (calls.length > 0) message.tool_calls = calls;
  const out: Json = {
    id: `chatcmpl-${opts.id}`,
    object: "chat.completion",
    created: num(b.created_at) ?? nowSeconds(),
    model: opts.model,
    choices: [
      {
        index: 0,
        message,
        logprobs: null,
        finish_reason: finishOf(b.status, b.incomplete_details, calls.length > 0),
      },
    ],
  };
  const usage = responsesUsage(b.usage);
  if (usage) out.usage = chatUsage(usage);
  return out;
}

/** A Responses `response` object around `fields` (the fields a response always carries). */
function responseObject(opts: ResponseOptions, created: number, fields: Json): Json {
  return {
    id: `resp_${opts.id}`,
    object: "response",
    created_at: created,
    status: "completed",
    error: null,
    incomplete_details: null,
    instructions: null,
    metadata: {},
    model: opts.model,
    output: [],
    output_text: "",
    parallel_tool_calls: true,
    temperature: null,
    tool_choice: "auto",
    tools: [],
    top_p: null,
    ...fields,
  };
}

/** A Responses assistant message item holding `text` (and a refusal part when given). */
function messageItem(id: string, text: string, status: string, refusal?: string): Json {
  const content: Json[] = [];
  if (text !== "" || refusal === undefined) {
    content.push({ type: "output_text", text, annotations: [] });
  }
  if (refusal !== undefined) content.push({ type: "refusal", refusal });
  return { type: "message", id, status, role: "assistant", content };
}

/** A Responses reasoning item with one summary text. */
function reasoningItem(id: string, text: string): Json {
  return { type: "reasoning", id, summary: [{ type: "summary_text", text }] };
}

/** Translates a chat.completion object into a Responses `response` object. */
export function chatToResponsesResponse(body: Json, opts: ResponseOptions): Json {
  const b = obj(body);
  const choice = obj(list(b.choices)[0]);
  const msg = obj(choice.message);
  const { status, incomplete_details } = statusOf(choice.finish_reason);
  const output: Json[] = [];
  const reasoning = str(msg.reasoning_content) ?? str(msg.reasoning);
  if (reasoning) output.push(reasoningItem(`rs_${opts.id}`, reasoning));
  const text = partsText(msg.content, TEXT_TYPES);
  const refusal = str(msg.refusal) || undefined;
  if (text !== "" || refusal !== undefined) {
    output.push(messageItem(`msg_${opts.id}`, text, status, refusal));
  }
  let i = 0;
  const calls = [...list(msg.tool_calls)];
  if (isObj(msg.function_call)) {
    calls.push({ id: `call_${str(msg.function_call.name) ?? ""}`, function: msg.function_call });
  }
  for (const tc of calls) {
    if (!isObj(tc)) continue;
    const fn = obj(tc.function);
    output.push({
      type: "function_call",
      id: `fc_${opts.id}_${i}`,
      call_id: str(tc.id) ?? `call_${opts.id}_${i}`,
      name: str(fn.name) ?? "",
      arguments: str(fn.arguments) ?? "",
      status: "completed",
    });
    i++;
  }
  const fields: Json = { status, incomplete_details, output, output_text: text };
  const usage = responsesUsage(b.usage);
  if (usage) fields.usage = usageToResponses(usage);
  return responseObject(opts, num(b.created) ?? nowSeconds(), fields);
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/**
 * Translates a Responses event stream into chat.completion.chunk events, ending with a finish
 * chunk, a usage chunk and `[DONE]` at `response.completed` / `response.incomplete`. An upstream
 * `error` or `response.failed` event makes {@link push} throw an Error with the upstream message.
 */
export class ResponsesToChatStream implements EventTranslator {
  readonly #opts: ResponseOptions;
  #created = nowSeconds();
  /** Function-call item id, or `#` + output index → chat tool-call index and argument state. */
  readonly #tools = new Map<string, { index: number; sentArgs: boolean }>();
  #toolCount = 0;
  #started = false;
  #closed = false;
  #finished = false;
  #finish: string | null = null;
  #usage: TokenUsage | null = null;

  /** @param opts names the model and id of the chunks. */
  constructor(opts: ResponseOptions) {
    this.#opts = opts;
  }

  /** True once `response.completed` or `response.incomplete` was seen. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Feeds one Responses event; returns the chat chunks it produces. */
  push(ev: UpstreamEvent): UpstreamEvent[] {
    const d = obj(ev.data);
    const type = str(d.type) ?? ev.event;
    if (this.#closed) return [];
    switch (type) {
      case "response.created":
      case "response.in_progress": {
        const created = num(obj(d.response).created_at);
        if (created !== undefined && !this.#started) this.#created = created;
        return this.#start();
      }
      case "response.output_item.added":
        return [...this.#start(), ...this.#itemAdded(obj(d.item), num(d.output_index))];
      case "response.output_item.done":
        return [...this.#start(), ...this.#itemDone(obj(d.item), num(d.output_index))];
      case "response.output_text.delta":
        return this.#delta("content", d.delta);
      case "response.refusal.delta":
        return this.#delta("refusal", d.delta);
      case "response.reasoning_summary_text.delta":
      case "response.reasoning_text.delta":
        return this.#delta("reasoning_content", d.delta);
      case "response.reasoning_summary_part.added":
        // Separates the summaries the way the non-streaming answer joins them.
        return (num(d.summary_index) ?? 0) > 0 ? this.#delta("reasoning_content", "\n\n") : [];
      case "response.function_call_arguments.delta":
        return this.#args(d, str(d.delta));
      case "response.function_call_arguments.done":
        return this.#args(d, str(d.arguments), true);
      case "response.completed":
      case "response.incomplete": {
        const r = obj(d.response);
        const usage = responsesUsage(r.usage);
        if (usage) this.#usage = usage;
        this.#finish = finishOf(r.status ?? "completed", r.incomplete_details, this.#toolCount > 0);
        this.#finished = true;
        return this.#close();
      }
      case "response.failed": {
        const r = obj(d.response);
        throw new Error(isObj(r.error) ? errorMessage(r) : errorMessage(d));
      }
      case "error":
        throw new Error(errorMessage(d));
      default:
        return [];
    }
  }

  /** The closing chunks not produced yet (normally none: `response.completed` produced them). */
  end(): UpstreamEvent[] {
    return this.#close();
  }

  /** The usage of the final response, or null before it. */
  usage(): TokenUsage | null {
    return this.#usage;
  }

  #chunk(delta: Json, finish: string | null = null): UpstreamEvent {
    return chatChunk(this.#opts.id, this.#created, this.#opts.model, delta, finish);
  }

  #start(): UpstreamEvent[] {
    if (this.#started) return [];
    this.#started = true;
    return [this.#chunk({ role: "assistant", content: "" })];
  }

  #delta(field: string, text: unknown): UpstreamEvent[] {
    if (typeof text !== "string" || text === "") return [];
    return [...this.#start(), this.#chunk({ [field]: text })];
  }

  /** The tool state of a function-call item, by item id or output index. */
  #tool(itemId: unknown, outputIndex: number | undefined) {
    const byId = typeof itemId === "string" ? this.#tools.get(itemId) : undefined;
    return byId ?? (outputIndex === undefined ? undefined : this.#tools.get(`#${outputIndex}`));
  }

  #itemAdded(item: Json, outputIndex: number | undefined): UpstreamEvent[] {
    if (item.type !== "function_call" || this.#tool(item.id, outputIndex)) return [];
    const state = { index: this.#toolCount++, sentArgs: false };
    if (typeof item.id === "string") this.#tools.set(item.id, state);
    if (outputIndex !== undefined) this.#tools.set(`#${outputIndex}`, state);
    const fn = { name: str(item.name) ?? "", arguments: "" };
    const id = str(item.call_id) ?? str(item.id) ?? `call_${this.#opts.id}_${state.index}`;
    const out = [
      this.#chunk({ tool_calls: [{ index: state.index, id, type: "function", function: fn }] }),
    ];
    // Non-standard upstreams may put the whole arguments in the added item.
    const args = str(item.arguments);
    if (args) {
      state.sentArgs = true;
      out.push(this.#argsChunk(state.index, args));
    }
    return out;
  }

  #itemDone(item: Json, outputIndex: number | undefined): UpstreamEvent[] {
    if (item.type !== "function_call") return [];
    const out = this.#itemAdded(item, outputIndex);
    const state = this.#tool(item.id, outputIndex);
    const args = str(item.arguments);
    if (state && !state.sentArgs && args) {
      state.sentArgs = true;
      out.push(this.#argsChunk(state.index, args));
    }
    return out;
  }

  /** Argument deltas; a `done` event only sends the arguments when no delta carried them. */
  #args(d: Json, args: string | undefined, done = false): UpstreamEvent[] {
    const state = this.#tool(d.item_id, num(d.output_index));
    if (!state || !args || (done && state.sentArgs)) return [];
    state.sentArgs = true;
    return [...this.#start(), this.#argsChunk(state.index, args)];
  }

  #argsChunk(index: number, args: string): UpstreamEvent {
    return this.#chunk({ tool_calls: [{ index, function: { arguments: args } }] });
  }

  #close(): UpstreamEvent[] {
    if (this.#closed) return [];
    this.#closed = true;
    const out = this.#start();
    out.push(this.#chunk({}, this.#finish ?? (this.#toolCount > 0 ? "tool_calls" : "stop")));
    if (this.#usage) {
      const chunk = obj(this.#chunk({}).data);
      out.push({ data: { ...chunk, choices: [], usage: chatUsage(this.#usage) } });
    }
    out.push({ data: "[DONE]" });
    return out;
  }
}

/** One Responses output item being streamed. */
interface StreamItem {
  kind: "message" | "reasoning" | "function_call";
  id: string;
  outputIndex: number;
  /** Text, reasoning summary or arguments so far. */
  text: string;
  /** The chat tool-call index (function calls). */
  tool?: number;
  callId?: string;
  name?: string;
  /** Whether its closing events were sent. */
  closed: boolean;
}

/**
 * Translates a chat.completion.chunk stream into Responses events (`response.created`,
 * `response.in_progress`, output items with their parts and deltas, `response.completed` or
 * `response.incomplete`), numbered by `sequence_number`. The final event waits for `[DONE]` (or
 * {@link end}), since the usage chunk follows the finish_reason chunk.
 */
export class ChatToResponsesStream implements EventTranslator {
  readonly #opts: ResponseOptions;
  #created = nowSeconds();
  #seq = 0;
  #started = false;
  #closed = false;
  #done = false;
  #finish: string | null = null;
  #usage: TokenUsage | null = null;
  readonly #items: StreamItem[] = [];
  readonly #toolItems = new Map<number, StreamItem>();
  #open: StreamItem | null = null;

  /** @param opts names the model and id of the response. */
  constructor(opts: ResponseOptions) {
    this.#opts = opts;
  }

  /** True once a finish_reason or `[DONE]` was seen. */
  get finished(): boolean {
    return this.#done || this.#finish !== null;
  }

  /** Feeds one chat chunk (or `[DONE]`); returns the Responses events it produces. */
  push(ev: UpstreamEvent): UpstreamEvent[] {
    if (ev.data === "[DONE]") {
      this.#done = true;
      return this.#close();
    }
    const d = obj(ev.data);
    if (d.error !== undefined && d.error !== null) throw new Error(errorMessage(d));
    const usage = responsesUsage(d.usage);
    if (usage) this.#usage = usage;
    if (this.#closed) return [];
    if (!this.#started && num(d.created) !== undefined) this.#created = num(d.created) ?? 0;
    const out = this.#start();
    const choices = list(d.choices);
    const choice = obj(choices.find((c) => isObj(c) && (c.index ?? 0) === 0) ?? choices[0]);
    out.push(...this.#delta(obj(choice.delta)));
    if (typeof choice.finish_reason === "string") {
      out.push(...this.#closeItem());
      this.#finish = choice.finish_reason;
    }
    return out;
  }

  /** The final event when `[DONE]` did not produce it. */
  end(): UpstreamEvent[] {
    return this.#close();
  }

  /** The usage of the last chunk that carried one, or null. */
  usage(): TokenUsage | null {
    return this.#usage;
  }

  #event(type: string, fields: Json): UpstreamEvent {
    return { event: type, data: { type, sequence_number: this.#seq++, ...fields } };
  }

  #response(fields: Json): Json {
    return responseObject(this.#opts, this.#created, fields);
  }

  #start(): UpstreamEvent[] {
    if (this.#started) return [];
    this.#started = true;
    const response = this.#response({ status: "in_progress" });
    return [
      this.#event("response.created", { response }),
      this.#event("response.in_progress", { response }),
    ];
  }

  #delta(delta: Json): UpstreamEvent[] {
    const out: UpstreamEvent[] = [];
    const reasoning = str(delta.reasoning_content) ?? str(delta.reasoning);
    if (reasoning) {
      const item = this.#ensure("reasoning", out);
      item.text += reasoning;
      out.push(
        this.#event("response.reasoning_summary_text.delta", {
          ...this.#ref(item),
          summary_index: 0,
          delta: reasoning,
        }),
      );
    }
    const text = (str(delta.content) ?? "") + (str(delta.refusal) ?? "");
    if (text) {
      const item = this.#ensure("message", out);
      item.text += text;
      out.push(
        this.#event("response.output_text.delta", {
          ...this.#ref(item),
          content_index: 0,
          delta: text,
          logprobs: [],
        }),
      );
    }
    list(delta.tool_calls).forEach((tc, pos) => {
      if (isObj(tc)) out.push(...this.#toolDelta(num(tc.index) ?? pos, tc));
    });
    if (isObj(delta.function_call)) {
      const fc = delta.function_call;
      const id = typeof fc.name === "string" ? `call_${fc.name}` : undefined;
      out.push(...this.#toolDelta(0, { id, function: fc }));
    }
    return out;
  }

  #ref(item: StreamItem): Json {
    return { item_id: item.id, output_index: item.outputIndex };
  }

  /** The id of a new item: `prefix_<id>` for the first of its kind, then suffixed. */
  #itemId(prefix: string, kind: StreamItem["kind"]): string {
    const n = this.#items.filter((i) => i.kind === kind).length;
    return n === 0 ? `${prefix}_${this.#opts.id}` : `${prefix}_${this.#opts.id}_${n}`;
  }

  /** The open item of `kind`, opening it (and closing another) when needed. */
  #ensure(kind: "message" | "reasoning", out: UpstreamEvent[]): StreamItem {
    if (this.#open?.kind === kind) return this.#open;
    out.push(...this.#closeItem());
    const id = this.#itemId(kind === "message" ? "msg" : "rs", kind);
    const item: StreamItem = { kind, id, outputIndex: this.#items.length, text: "", closed: false };
    this.#items.push(item);
    this.#open = item;
    if (kind === "message") {
      const added = { type: "message", id, status: "in_progress", role: "assistant", content: [] };
      out.push(
        this.#event("response.output_item.added", { output_index: item.outputIndex, item: added }),
      );
      out.push(
        this.#event("response.content_part.added", {
          ...this.#ref(item),
          content_index: 0,
          part: { type: "output_text", text: "", annotations: [] },
        }),
      );
    } else {
      const added = { type: "reasoning", id, summary: [] };
      out.push(
        this.#event("response.output_item.added", { output_index: item.outputIndex, item: added }),
      );
      out.push(
        this.#event("response.reasoning_summary_part.added", {
          ...this.#ref(item),
          summary_index: 0,
          part: { type: "summary_text", text: "" },
        }),
      );
    }
    return item;
  }

  #toolDelta(tool: number, tc: Json): UpstreamEvent[] {
    const out: UpstreamEvent[] = [];
    const fn = obj(tc.function);
    let item = this.#toolItems.get(tool);
    if (!item) {
      out.push(...this.#closeItem());
      item = {
        kind: "function_call",
        id: `fc_${this.#opts.id}_${tool}`,
        outputIndex: this.#items.length,
        text: "",
        tool,
        callId: str(tc.id) || `call_${this.#opts.id}_${tool}`,
        name: str(fn.name) ?? "",
        closed: false,
      };
      this.#items.push(item);
      this.#toolItems.set(tool, item);
      this.#open = item;
      out.push(
        this.#event("response.output_item.added", {
          output_index: item.outputIndex,
          item: { ...this.#toolItem(item), status: "in_progress" },
        }),
      );
    } else if (!item.name && typeof fn.name === "string") {
      item.name = fn.name;
    }
    const args = str(fn.arguments);
    if (args) {
      item.text += args;
      // A late fragment of a call already closed only reaches the final response.
      if (!item.closed) {
        out.push(
          this.#event("response.function_call_arguments.delta", {
            ...this.#ref(item),
            delta: args,
          }),
        );
      }
    }
    return out;
  }

  /** The item of a function call (without status). */
  #toolItem(item: StreamItem): Json {
    return {
      type: "function_call",
      id: item.id,
      call_id: item.callId ?? "",
      name: item.name ?? "",
      arguments: item.text,
    };
  }

  /** The final form of an item, as `output_item.done` and the final response carry it. */
  #finalItem(item: StreamItem): Json {
    switch (item.kind) {
      case "message":
        return messageItem(item.id, item.text, "completed");
      case "reasoning":
        return reasoningItem(item.id, item.text);
      default:
        return { ...this.#toolItem(item), status: "completed" };
    }
  }

  /** The closing events of the open item. */
  #closeItem(): UpstreamEvent[] {
    const item = this.#open;
    if (!item) return [];
    this.#open = null;
    item.closed = true;
    const out: UpstreamEvent[] = [];
    const ref = this.#ref(item);
    if (item.kind === "message") {
      const part = { type: "output_text", text: item.text, annotations: [] };
      out.push(
        this.#event("response.output_text.done", {
          ...ref,
          content_index: 0,
          text: item.text,
          logprobs: [],
        }),
      );
      out.push(this.#event("response.content_part.done", { ...ref, content_index: 0, part }));
    } else if (item.kind === "reasoning") {
      const part = { type: "summary_text", text: item.text };
      out.push(
        this.#event("response.reasoning_summary_text.done", {
          ...ref,
          summary_index: 0,
          text: item.text,
        }),
      );
      out.push(
        this.#event("response.reasoning_summary_part.done", { ...ref, summary_index: 0, part }),
      );
    } else {
      out.push(
        this.#event("response.function_call_arguments.done", {
          ...ref,
          name: item.name ?? "",
          arguments: item.text,
        }),
      );
    }
    out.push(
      this.#event("response.output_item.done", {
        output_index: item.outputIndex,
        item: this.#finalItem(item),
      }),
    );
    return out;
  }

  #close(): UpstreamEvent[] {
    if (this.#closed) return [];
    const out = [...this.#start(), ...this.#closeItem()];
    this.#closed = true;
    const { status, incomplete_details } = statusOf(this.#finish);
    const output = this.#items.map((i) => this.#finalItem(i));
    const text = this.#items
      .filter((i) => i.kind === "message")
      .map((i) => i.text)
      .join("");
    const fields: Json = { status, incomplete_details, output, output_text: text };
    if (this.#usage) fields.usage = usageToResponses(this.#usage);
    const type = status === "incomplete" ? "response.incomplete" : "response.completed";
    out.push(this.#event(type, { response: this.#response(fields) }));
    return out;
  }
}
