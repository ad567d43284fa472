/**
 * Translation between OpenAI Chat Completions and Anthropic Messages: request bodies, answers
 * and event streams, in both directions. Pure and dependency-free: every function takes parsed
 * JSON and returns fresh JSON, never throws on odd input (unknown blocks and fields are skipped),
 * and the stream translators only throw when the upstream itself reported an error.
 *
 * @module
 */

import type { TokenUsage } from "../store/types.js";
import { isObj, list, nowSeconds, num, obj, str } from "./json.js";
import { chatChunk } from "./openai.js";
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

/**
 * The text of a content value that is a string or a list of `{type:"text", text}` blocks/parts
 * (the same shape in both formats); other blocks are skipped.
 */
function textOf(content: unknown, sep = "\n"): string {
  if (typeof content === "string") return content;
  const texts: string[] = [];
  for (const b of list(content)) {
    if (isObj(b) && b.type === "text" && typeof b.text === "string") texts.push(b.text);
  }
  return texts.join(sep);
}

/** Parses tool-call arguments into an object; anything unparseable or not an object is `{}`. */
function parseArgs(args: unknown): Json {
  if (isObj(args)) return args;
  if (typeof args !== "string") return {};
  try {
    const v: unknown = JSON.parse(args);
    return isObj(v) ? v : {};
  } catch {
    return {};
  }
}

/** A tool-call id Anthropic accepts (`^[a-zA-Z0-9_-]+$`), applied alike to calls and results. */
function anthropicToolId(id: string | undefined): string {
  const clean = (id ?? "").replace(/[^a-zA-Z0-9_-]/g, "_");
  return clean === "" ? "toolu_unknown" : clean;
}

// ---------------------------------------------------------------------------------------------
// Usage and stop reasons
// ---------------------------------------------------------------------------------------------

/**
 * Reads an Anthropic `usage` object into a {@link TokenUsage}: input tokens include cache reads
 * and cache writes (OpenAI semantics). Null when `u` carries no token counts.
 */
export function anthropicUsage(u: unknown): TokenUsage | null {
  if (!isObj(u)) return null;
  const input = num(u.input_tokens);
  const output = num(u.output_tokens);
  if (input === undefined && output === undefined) return null;
  const cacheRead = num(u.cache_read_input_tokens) ?? 0;
  const cacheWrite = num(u.cache_creation_input_tokens) ?? 0;
  const inputTokens = (input ?? 0) + cacheRead + cacheWrite;
  const outputTokens = output ?? 0;
  return {
    inputTokens,
    outputTokens,
    reasoningTokens: 0,
    cachedTokens: cacheRead,
    totalTokens: inputTokens + outputTokens,
  };
}

/** Writes a {@link TokenUsage} as an Anthropic `usage` object (uncached input apart from reads). */
export function openaiUsageToAnthropic(u: TokenUsage): Json {
  return {
    input_tokens: Math.max(0, u.inputTokens - u.cachedTokens),
    output_tokens: u.outputTokens,
    cache_read_input_tokens: u.cachedTokens,
    cache_creation_input_tokens: 0,
  };
}

/** Reads an OpenAI `usage` object into a {@link TokenUsage}; null when it carries no counts. */
function openaiUsage(u: unknown): TokenUsage | null {
  if (!isObj(u)) return null;
  const prompt = num(u.prompt_tokens);
  const completion = num(u.completion_tokens);
  if (prompt === undefined && completion === undefined) return null;
  const inputTokens = prompt ?? 0;
  const outputTokens = completion ?? 0;
  return {
    inputTokens,
    outputTokens,
    reasoningTokens: num(obj(u.completion_tokens_details).reasoning_tokens) ?? 0,
    cachedTokens: num(obj(u.prompt_tokens_details).cached_tokens) ?? 0,
    totalTokens: num(u.total_tokens) ?? inputTokens + outputTokens,
  };
}

/** Writes a {@link TokenUsage} as an OpenAI `usage` object. */
function toOpenAIUsage(u: TokenUsage): Json {
  const usage: Json = {
    prompt_tokens: u.inputTokens,
    completion_tokens: u.outputTokens,
    total_tokens: u.totalTokens,
    prompt_tokens_details: { cached_tokens: u.cachedTokens },
  };
  if (u.reasoningTokens > 0) {
    usage.completion_tokens_details = { reasoning_tokens: u.reasoningTokens };
  }
  return usage;
}

/** Maps an Anthropic `stop_reason` to an OpenAI `finish_reason` (null stays null). */
export function anthropicStopToOpenAI(s: unknown): string | null {
  if (typeof s !== "string") return null;
  switch (s) {
    case "max_tokens":
    case "model_context_window_exceeded":
      return "length";
    case "tool_use":
      return "tool_calls";
    case "refusal":
      return "content_filter";
    default:
      return "stop";
  }
}

/** Maps an OpenAI `finish_reason` to an Anthropic `stop_reason` (null stays null). */
export function openaiFinishToAnthropic(s: unknown): string | null {
  if (typeof s !== "string") return null;
  switch (s) {
    case "length":
      return "max_tokens";
    case "tool_calls":
    case "function_call":
      return "tool_use";
    case "content_filter":
      return "refusal";
    default:
      return "end_turn";
  }
}

// ---------------------------------------------------------------------------------------------
// Anthropic request -> OpenAI request
// ---------------------------------------------------------------------------------------------

/** An Anthropic image/document `source` as an OpenAI URL (a data URL for base64), if any. */
function sourceUrl(source: unknown): string | undefined {
  const s = obj(source);
  if (s.type === "base64" && typeof s.data === "string") {
    return `data:${str(s.media_type) ?? "application/octet-stream"};base64,${s.data}`;
  }
  if (s.type === "url") return str(s.url);
  return undefined;
}

/** An Anthropic user block (text, image, document) as an OpenAI content part, if it maps. */
function anthropicPartToOpenAI(b: Json): Json | undefined {
  if (b.type === "text" && typeof b.text === "string") return { type: "text", text: b.text };
  if (b.type === "image") {
    const url = sourceUrl(b.source);
    return url === undefined ? undefined : { type: "image_url", image_url: { url } };
  }
  if (b.type === "document") {
    const src = obj(b.source);
    if (src.type === "text" && typeof src.data === "string")
      return { type: "text", text: src.data };
    const data = src.type === "base64" ? sourceUrl(src) : undefined;
    if (data === undefined) return undefined;
    return { type: "file", file: { file_data: data, filename: str(b.title) ?? "document.pdf" } };
  }
  return undefined;
}

/** Collapses OpenAI user parts: a lone text part becomes a plain string. */
function collapseParts(parts: Json[]): string | Json[] {
  const only = parts[0];
  if (parts.length === 1 && only?.type === "text") return str(only.text) ?? "";
  return parts;
}

/**
 * An Anthropic user message as OpenAI messages: one `tool` message per `tool_result` (first),
 * then a user message with the remaining parts (plus images the tool results carried, which
 * OpenAI tool messages cannot hold).
 */
function anthropicUserToOpenAI(content: unknown): Json[] {
  if (typeof content === "string") return [{ role: "user", content }];
  const tools: Json[] = [];
  const parts: Json[] = [];
  for (const b of list(content)) {
    if (!isObj(b)) continue;
    if (b.type === "tool_result") {
      const text = textOf(b.content);
      tools.push({
        role: "tool",
        tool_call_id: str(b.tool_use_id) ?? "",
        content: b.is_error === true ? `Error: ${text}` : text,
      });
      for (const inner of list(b.content)) {
        if (isObj(inner) && inner.type === "image") {
          const part = anthropicPartToOpenAI(inner);
          if (part) parts.push(part);
        }
      }
      continue;
    }
    const part = anthropicPartToOpenAI(b);
    if (part) parts.push(part);
  }
  return parts.length > 0 ? [...tools, { role: "user", content: collapseParts(parts) }] : tools;
}

/** An Anthropic assistant message as one OpenAI assistant message (text, reasoning, tool calls). */
function anthropicAssistantToOpenAI(content: unknown): Json {
  if (typeof content === "string") return { role: "assistant", content };
  const texts: string[] = [];
  const thinking: string[] = [];
  const calls: Json[] = [];
  for (const b of list(content)) {
    if (!isObj(b)) continue;
    if (b.type === "text" && typeof b.text === "string") texts.push(b.text);
    else if (b.type === "thinking" && typeof b.thinking === "string") thinking.push(b.thinking);
    else if (b.type === "tool_use") {
      calls.push({
        id: str(b.id) ?? "",
        type: "function",
        function: { name: str(b.name) ?? "", arguments: JSON.stringify(b.input ?? {}) },
      });
    }
  }
  const msg: Json = { role: "assistant", content: texts.length > 0 ? texts.join("") : null };
  if (thinking.length > 0) msg.reasoning_content = thinking.join("");
  if (calls.length > 0) msg.tool_calls = calls;
  else if (msg.content === null) msg.content = "";
  return msg;
}

/** Anthropic client tools as OpenAI function tools; server tools (web_search, bash...) skipped. */
function anthropicToolsToOpenAI(tools: unknown): Json[] {
  const out: Json[] = [];
  for (const t of list(tools)) {
    if (!isObj(t) || typeof t.name !== "string") continue;
    if (t.type !== undefined && t.type !== "custom") continue;
    const fn: Json = { name: t.name };
    if (typeof t.description === "string") fn.description = t.description;
    fn.parameters = isObj(t.input_schema) ? t.input_schema : { type: "object", properties: {} };
    out.push({ type: "function", function: fn });
  }
  return out;
}

/** An Anthropic `tool_choice` as an OpenAI one, or undefined. */
function anthropicToolChoiceToOpenAI(tc: Json): unknown {
  switch (tc.type) {
    case "auto":
      return "auto";
    case "any":
      return "required";
    case "none":
      return "none";
    case "tool":
      return { type: "function", function: { name: str(tc.name) ?? "" } };
    default:
      return undefined;
  }
}

/** An Anthropic thinking budget as an OpenAI `reasoning_effort`. */
function budgetToEffort(budget: number): string {
  if (budget < 4096) return "low";
  if (budget < 16384) return "medium";
  return "high";
}

/** Copies sampling, tool and misc options of an Anthropic request onto an OpenAI body. */
function anthropicOptionsToOpenAI(b: Json, out: Json): void {
  if (num(b.max_tokens) !== undefined) out.max_tokens = b.max_tokens;
  if (num(b.temperature) !== undefined) out.temperature = b.temperature;
  if (num(b.top_p) !== undefined) out.top_p = b.top_p;
  const stops = list(b.stop_sequences).filter((s): s is string => typeof s === "string");
  if (stops.length > 0) out.stop = stops;
  const user = str(obj(b.metadata).user_id);
  if (user !== undefined) out.user = user;
  const tools = anthropicToolsToOpenAI(b.tools);
  if (tools.length > 0) {
    out.tools = tools;
    const tc = obj(b.tool_choice);
    const choice = anthropicToolChoiceToOpenAI(tc);
    if (choice !== undefined) out.tool_choice = choice;
    if (tc.disable_parallel_tool_use === true) out.parallel_tool_calls = false;
  }
  const thinking = obj(b.thinking);
  const budget = num(thinking.budget_tokens);
  if (thinking.type === "enabled" && budget !== undefined) {
    out.reasoning_effort = budgetToEffort(budget);
  }
}

/**
 * Translates an Anthropic `/v1/messages` request body into an OpenAI `chat.completions` body
 * for `opts.model`; a streaming request asks for the usage chunk (`stream_options`).
 */
export function anthropicToOpenAIRequest(body: Json, opts: RequestOptions): Json {
  const b = obj(body);
  const messages: Json[] = [];
  const system = textOf(b.system, "\n\n");
  if (system !== "") messages.push({ role: "system", content: system });
  for (const m of list(b.messages)) {
    if (!isObj(m)) continue;
    if (m.role === "assistant") messages.push(anthropicAssistantToOpenAI(m.content));
    else messages.push(...anthropicUserToOpenAI(m.content));
  }
  const out: Json = { model: opts.model, messages, stream: opts.stream };
  if (opts.stream) out.stream_options = { include_usage: true };
  anthropicOptionsToOpenAI(b, out);
  return out;
}

// ---------------------------------------------------------------------------------------------
// OpenAI request -> Anthropic request
// ---------------------------------------------------------------------------------------------

/** One Anthropic conversation turn while it is being built. */
interface Turn {
  role: "user" | "assistant";
  content: Json[];
}

/** A data URL split into media type and base64 payload; undefined for non-base64 URLs. */
function parseDataUrl(url: string): { mediaType: string; data: string } | undefined {
  const m = /^data:([^;,]+)((?:;[^;,]*)*);base64,(.*)$/s.exec(url);
  if (!m) return undefined;
  return { mediaType: m[1] ?? "", data: m[3] ?? "" };
}

/** An image (or PDF) URL as an Anthropic block: base64 source for data URLs, url source else. */
function urlToAnthropicBlock(url: string): Json | undefined {
  if (url.startsWith("data:")) {
    const d = parseDataUrl(url);
    if (!d) return undefined;
    const type = d.mediaType === "application/pdf" ? "document" : "image";
    return { type, source: { type: "base64", media_type: d.mediaType, data: d.data } };
  }
  if (/^https?:\/\//i.test(url)) return { type: "image", source: { type: "url", url } };
  return undefined;
}

/** An OpenAI content part (text, refusal, image_url, file) as an Anthropic block, if it maps. */
function openaiPartToAnthropic(p: Json): Json | undefined {
  if ((p.type === "text" || p.type === "input_text") && typeof p.text === "string") {
    return p.text === "" ? undefined : { type: "text", text: p.text };
  }
  if (p.type === "refusal" && typeof p.refusal === "string" && p.refusal !== "") {
    return { type: "text", text: p.refusal };
  }
  if (p.type === "image_url") {
    const url = typeof p.image_url === "string" ? p.image_url : str(obj(p.image_url).url);
    return url === undefined ? undefined : urlToAnthropicBlock(url);
  }
  if (p.type === "file") {
    const data = str(obj(p.file).file_data);
    return data === undefined ? undefined : urlToAnthropicBlock(data);
  }
  return undefined;
}

/** OpenAI message content (string or parts) as Anthropic blocks; empty text is dropped. */
function openaiContentToBlocks(content: unknown): Json[] {
  if (typeof content === "string") return content === "" ? [] : [{ type: "text", text: content }];
  const out: Json[] = [];
  for (const p of list(content)) {
    const block = isObj(p) ? openaiPartToAnthropic(p) : undefined;
    if (block) out.push(block);
  }
  return out;
}

/** The `tool_use` blocks of an OpenAI assistant message (`tool_calls` and legacy `function_call`). */
function openaiToolUses(m: Json): Json[] {
  const out: Json[] = [];
  for (const tc of list(m.tool_calls)) {
    if (!isObj(tc)) continue;
    const fn = obj(tc.function);
    const name = str(fn.name) ?? "";
    out.push({
      type: "tool_use",
      id: anthropicToolId(str(tc.id) ?? name),
      name,
      input: parseArgs(fn.arguments),
    });
  }
  if (isObj(m.function_call)) {
    const name = str(m.function_call.name) ?? "";
    const input = parseArgs(m.function_call.arguments);
    out.push({ type: "tool_use", id: anthropicToolId(name), name, input });
  }
  return out;
}

/** An OpenAI tool (or legacy function) result as an Anthropic `tool_result` block. */
function openaiToolResult(id: string | undefined, content: unknown): Json {
  const block: Json = { type: "tool_result", tool_use_id: anthropicToolId(id) };
  const text = textOf(content);
  if (text !== "") block.content = text;
  return block;
}

/** One OpenAI non-system message as an Anthropic turn (null for unknown roles). */
function openaiMessageToTurn(m: Json): Turn | null {
  switch (m.role) {
    case "user":
      return { role: "user", content: openaiContentToBlocks(m.content) };
    case "assistant":
      return {
        role: "assistant",
        content: [...openaiContentToBlocks(m.content), ...openaiToolUses(m)],
      };
    case "tool":
      return { role: "user", content: [openaiToolResult(str(m.tool_call_id), m.content)] };
    case "function":
      return { role: "user", content: [openaiToolResult(str(m.name), m.content)] };
    default:
      return null;
  }
}

/** Merges consecutive same-role turns (Anthropic requires alternation); empty turns vanish. */
function mergeTurns(turns: Turn[]): Turn[] {
  const out: Turn[] = [];
  for (const t of turns) {
    if (t.content.length === 0) continue;
    const last = out[out.length - 1];
    if (last && last.role === t.role) last.content.push(...t.content);
    else out.push({ role: t.role, content: [...t.content] });
  }
  for (const t of out) {
    if (t.role !== "user") continue;
    // tool_result blocks must come first in a user turn.
    const results = t.content.filter((b) => b.type === "tool_result");
    t.content = [...results, ...t.content.filter((b) => b.type !== "tool_result")];
  }
  return out;
}

/** Trims trailing whitespace of a final assistant (prefill) turn, which Anthropic rejects. */
function trimPrefill(turns: Turn[]): void {
  const last = turns[turns.length - 1];
  if (last?.role !== "assistant") return;
  const block = last.content[last.content.length - 1];
  if (block?.type !== "text" || typeof block.text !== "string") return;
  block.text = block.text.trimEnd();
  if (block.text === "") last.content.pop();
  if (last.content.length === 0) turns.pop();
}

/** Turns into Anthropic messages: a turn holding a single text block becomes a plain string. */
function turnsToMessages(turns: Turn[]): Json[] {
  return turns.map((t) => {
    const only = t.content[0];
    const single = t.content.length === 1 && only?.type === "text";
    return { role: t.role, content: single ? only.text : t.content };
  });
}

/** The system/developer texts of an OpenAI conversation, joined; "" when none. */
function openaiSystemText(messages: unknown[]): string {
  const texts: string[] = [];
  for (const m of messages) {
    if (!isObj(m) || (m.role !== "system" && m.role !== "developer")) continue;
    const text = textOf(m.content, "\n\n");
    if (text !== "") texts.push(text);
  }
  return texts.join("\n\n");
}

/** OpenAI function tools (and legacy `functions`) as Anthropic tools. */
function openaiToolsToAnthropic(b: Json): Json[] {
  const fns: Json[] = [];
  for (const t of list(b.tools)) {
    if (isObj(t) && t.type === "function" && isObj(t.function)) fns.push(t.function);
  }
  for (const f of list(b.functions)) if (isObj(f)) fns.push(f);
  const out: Json[] = [];
  for (const fn of fns) {
    if (typeof fn.name !== "string") continue;
    const tool: Json = { name: fn.name };
    if (typeof fn.description === "string") tool.description = fn.description;
    tool.input_schema = isObj(fn.parameters) ? fn.parameters : { type: "object", properties: {} };
    out.push(tool);
  }
  return out;
}

/** An OpenAI `tool_choice` (or legacy `function_call`) as an Anthropic one, or undefined. */
function openaiToolChoiceToAnthropic(tc: unknown, parallel: unknown): Json | undefined {
  let choice: Json | undefined;
  if (tc === "auto") choice = { type: "auto" };
  else if (tc === "required") choice = { type: "any" };
  else if (tc === "none") return { type: "none" };
  else if (isObj(tc)) {
    const name = str(obj(tc.function).name) ?? str(tc.name);
    if (name !== undefined) choice = { type: "tool", name };
  }
  if (parallel === false)
    choice = { ...(choice ?? { type: "auto" }), disable_parallel_tool_use: true };
  return choice;
}

/** The Anthropic thinking budget of an OpenAI `reasoning_effort`, or undefined for none. */
function effortToBudget(effort: unknown): number | undefined {
  switch (effort) {
    case "minimal":
      return 1024;
    case "low":
      return 2048;
    case "medium":
      return 8192;
    case "high":
      return 24576;
    default:
      return undefined;
  }
}

/** Whether the conversation ends with tool results (an unsigned tool-use turn before them). */
function endsWithToolResult(turns: Turn[]): boolean {
  const last = turns[turns.length - 1];
  return last?.role === "user" && last.content.some((b) => b.type === "tool_result");
}

/**
 * Enables extended thinking for `reasoning_effort`, unless Anthropic would refuse it: a forced
 * tool choice, or a tool loop whose assistant turn (from an OpenAI client) has no signed
 * thinking block. max_tokens is raised above the budget; temperature/top_p are dropped.
 */
function applyThinking(b: Json, out: Json, turns: Turn[]): void {
  const budget = effortToBudget(b.reasoning_effort);
  if (budget === undefined) return;
  const tc = obj(out.tool_choice).type;
  if (tc === "any" || tc === "tool" || endsWithToolResult(turns)) return;
  out.thinking = { type: "enabled", budget_tokens: budget };
  const max = num(out.max_tokens) ?? 4096;
  if (max <= budget) out.max_tokens = budget + max;
  delete out.temperature;
  delete out.top_p;
}

/** Copies sampling, tool and misc options of an OpenAI request onto an Anthropic body. */
function openaiOptionsToAnthropic(b: Json, out: Json): void {
  const temperature = num(b.temperature);
  if (temperature !== undefined) out.temperature = Math.min(1, Math.max(0, temperature));
  if (num(b.top_p) !== undefined) out.top_p = b.top_p;
  const stop = typeof b.stop === "string" ? [b.stop] : list(b.stop);
  const stops = stop.filter((s): s is string => typeof s === "string" && s.trim() !== "");
  if (stops.length > 0) out.stop_sequences = stops;
  const tools = openaiToolsToAnthropic(b);
  if (tools.length > 0) {
    out.tools = tools;
    const choice = openaiToolChoiceToAnthropic(
      b.tool_choice ?? b.function_call,
      b.parallel_tool_calls,
    );
    if (choice !== undefined) out.tool_choice = choice;
  }
  if (typeof b.user === "string") out.metadata = { user_id: b.user };
}

/**
 * Translates an OpenAI `chat.completions` request body into an Anthropic `/v1/messages` body
 * for `opts.model`. Fields Anthropic does not accept (n, logprobs, response_format, seed,
 * penalties, stream_options...) are dropped; `max_tokens` defaults to 4096 (Anthropic needs it).
 */
export function openaiToAnthropicRequest(body: Json, opts: RequestOptions): Json {
  const b = obj(body);
  const messages = list(b.messages);
  const turns: Turn[] = [];
  for (const m of messages) {
    const turn = isObj(m) ? openaiMessageToTurn(m) : null;
    if (turn) turns.push(turn);
  }
  const merged = mergeTurns(turns);
  trimPrefill(merged);
  const out: Json = { model: opts.model };
  const system = openaiSystemText(messages);
  if (system !== "") out.system = system;
  out.messages = turnsToMessages(merged);
  out.max_tokens = num(b.max_completion_tokens) ?? num(b.max_tokens) ?? 4096;
  out.stream = opts.stream;
  openaiOptionsToAnthropic(b, out);
  applyThinking(b, out, merged);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Answers (non-streaming)
// ---------------------------------------------------------------------------------------------

/** Translates an Anthropic message answer into an OpenAI `chat.completion` object. */
export function anthropicToOpenAIResponse(body: Json, opts: ResponseOptions): Json {
  const b = obj(body);
  const message = anthropicAssistantToOpenAI(list(b.content));
  if (message.tool_calls === undefined && message.content === "") message.content = null;
  const choice = {
    index: 0,
    message,
    logprobs: null,
    finish_reason: anthropicStopToOpenAI(b.stop_reason) ?? "stop",
  };
  const out: Json = {
    id: `chatcmpl-${opts.id}`,
    object: "chat.completion",
    created: nowSeconds(),
    model: opts.model,
    choices: [choice],
  };
  const usage = anthropicUsage(b.usage);
  if (usage) out.usage = toOpenAIUsage(usage);
  return out;
}

/** Translates an OpenAI `chat.completion` object into an Anthropic message answer. */
export function openaiToAnthropicResponse(body: Json, opts: ResponseOptions): Json {
  const b = obj(body);
  const choice = obj(list(b.choices)[0]);
  const msg = obj(choice.message);
  const content: Json[] = [];
  const reasoning = str(msg.reasoning_content) ?? str(msg.reasoning);
  if (reasoning) content.push({ type: "thinking", thinking: reasoning, signature: "" });
  content.push(...openaiContentToBlocks(msg.content));
  if (typeof msg.refusal === "string" && msg.refusal !== "") {
    content.push({ type: "text", text: msg.refusal });
  }
  const toolUses = openaiToolUses(msg);
  content.push(...toolUses);
  let stop = openaiFinishToAnthropic(choice.finish_reason) ?? "end_turn";
  if (stop === "end_turn" && toolUses.length > 0) stop = "tool_use";
  const usage = openaiUsage(b.usage);
  return {
    id: `msg_${opts.id}`,
    type: "message",
    role: "assistant",
    model: opts.model,
    content,
    stop_reason: stop,
    stop_sequence: null,
    usage: openaiUsageToAnthropic(usage ?? emptyUsage()),
  };
}

/** A zero {@link TokenUsage}. */
function emptyUsage(): TokenUsage {
  return { inputTokens: 0, outputTokens: 0, reasoningTokens: 0, cachedTokens: 0, totalTokens: 0 };
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/** The message of an upstream `error` event (Anthropic `{error:{message}}`, OpenAI alike). */
function errorMessage(data: Json): string {
  const err = data.error;
  if (isObj(err)) return str(err.message) ?? str(err.type) ?? "upstream error";
  return str(err) ?? "upstream error";
}

/**
 * Translates an Anthropic Messages event stream into OpenAI `chat.completion.chunk` events,
 * ending with a usage chunk and `[DONE]` at `message_stop`. An upstream `error` event makes
 * {@link push} throw an Error carrying the upstream message.
 */
export class AnthropicToOpenAIStream implements EventTranslator {
  readonly #opts: ResponseOptions;
  readonly #created = nowSeconds();
  /** Content block index → tool-call index (tool_use blocks only). */
  readonly #toolIndex = new Map<number, number>();
  #tools = 0;
  #started = false;
  #finishSent = false;
  #closed = false;
  #finished = false;
  /** The raw Anthropic usage fields seen so far, merged. */
  readonly #usage: Json = {};

  /** @param opts names the model and id of the chunks. */
  constructor(opts: ResponseOptions) {
    this.#opts = opts;
  }

  /** True once `message_stop` was seen. */
  get finished(): boolean {
    return this.#finished;
  }

  /** Feeds one Anthropic event; returns the OpenAI chunks it produces. */
  push(ev: UpstreamEvent): UpstreamEvent[] {
    const d = obj(ev.data);
    const type = str(d.type) ?? ev.event;
    switch (type) {
      case "message_start":
        this.#mergeUsage(obj(d.message).usage);
        return this.#start();
      case "content_block_start":
        return [...this.#start(), ...this.#blockStart(num(d.index) ?? 0, obj(d.content_block))];
      case "content_block_delta":
        return [...this.#start(), ...this.#blockDelta(num(d.index) ?? 0, obj(d.delta))];
      case "message_delta":
        this.#mergeUsage(d.usage);
        return [...this.#start(), ...this.#finish(obj(d.delta).stop_reason)];
      case "message_stop":
        this.#finished = true;
        return this.#close();
      case "error":
        throw new Error(errorMessage(d));
      default:
        return [];
    }
  }

  /** The closing events not produced yet (normally none: `message_stop` produced them). */
  end(): UpstreamEvent[] {
    return this.#close();
  }

  /** Input tokens from `message_start` merged with the counts of `message_delta`. */
  usage(): TokenUsage | null {
    return anthropicUsage(this.#usage);
  }

  #mergeUsage(u: unknown): void {
    if (!isObj(u)) return;
    for (const [k, v] of Object.entries(u)) if (num(v) !== undefined) this.#usage[k] = v;
  }

  #chunk(delta: Json, finish: string | null = null): UpstreamEvent {
    return chatChunk(this.#opts.id, this.#created, this.#opts.model, delta, finish);
  }

  #start(): UpstreamEvent[] {
    if (this.#started) return [];
    this.#started = true;
    return [this.#chunk({ role: "assistant", content: "" })];
  }

  #blockStart(index: number, block: Json): UpstreamEvent[] {
    if (block.type === "text" && typeof block.text === "string" && block.text !== "") {
      return [this.#chunk({ content: block.text })];
    }
    if (block.type === "thinking" && typeof block.thinking === "string" && block.thinking !== "") {
      return [this.#chunk({ reasoning_content: block.thinking })];
    }
    if (block.type !== "tool_use") return [];
    const i = this.#tools++;
    this.#toolIndex.set(index, i);
    const fn = { name: str(block.name) ?? "", arguments: "" };
    const call = { index: i, id: str(block.id) ?? "", type: "function", function: fn };
    const out = [this.#chunk({ tool_calls: [call] })];
    // Non-standard upstreams may put the whole input in the start block.
    if (isObj(block.input) && Object.keys(block.input).length > 0) {
      const args = JSON.stringify(block.input);
      out.push(this.#chunk({ tool_calls: [{ index: i, function: { arguments: args } }] }));
    }
    return out;
  }

  #blockDelta(index: number, delta: Json): UpstreamEvent[] {
    if (delta.type === "text_delta" && typeof delta.text === "string" && delta.text !== "") {
      return [this.#chunk({ content: delta.text })];
    }
    if (delta.type === "thinking_delta" && typeof delta.thinking === "string") {
      return delta.thinking === "" ? [] : [this.#chunk({ reasoning_content: delta.thinking })];
    }
    const i = this.#toolIndex.get(index);
    const json = str(delta.partial_json);
    if (delta.type !== "input_json_delta" || i === undefined || !json) return [];
    return [this.#chunk({ tool_calls: [{ index: i, function: { arguments: json } }] })];
  }

  #finish(stop: unknown): UpstreamEvent[] {
    const reason = anthropicStopToOpenAI(stop);
    if (reason === null || this.#finishSent) return [];
    this.#finishSent = true;
    return [this.#chunk({}, reason)];
  }

  #close(): UpstreamEvent[] {
    if (this.#closed) return [];
    this.#closed = true;
    const out = [...this.#start(), ...this.#finish("end_turn")];
    const usage = this.usage();
    if (usage) {
      const chunk = this.#chunk({});
      out.push({ data: { ...obj(chunk.data), choices: [], usage: toOpenAIUsage(usage) } });
    }
    out.push({ data: "[DONE]" });
    return out;
  }
}

/** The kind of the Anthropic content block currently open. */
type OpenBlock =
  | { kind: "text" | "thinking"; index: number }
  | { kind: "tool"; index: number; tool: number };

/**
 * Translates an OpenAI `chat.completion.chunk` stream into Anthropic Messages events
 * (`message_start`, content blocks, `message_delta`, `message_stop`). The closing
 * `message_delta` waits for `[DONE]` (or {@link end}), since the usage chunk follows the
 * finish_reason chunk.
 */
export class OpenAIToAnthropicStream implements EventTranslator {
  readonly #opts: ResponseOptions;
  #started = false;
  #closed = false;
  #done = false;
  #sawFinish = false;
  #sawTool = false;
  #next = 0;
  #open: OpenBlock | null = null;
  #stop: string | null = null;
  #usage: TokenUsage | null = null;

  /** @param opts names the model and id of the message. */
  constructor(opts: ResponseOptions) {
    this.#opts = opts;
  }

  /** True once a finish_reason or `[DONE]` was seen. */
  get finished(): boolean {
    return this.#done || this.#sawFinish;
  }

  /** Feeds one OpenAI chunk (or `[DONE]`); returns the Anthropic events it produces. */
  push(ev: UpstreamEvent): UpstreamEvent[] {
    if (ev.data === "[DONE]") {
      this.#done = true;
      return this.#close();
    }
    const d = obj(ev.data);
    if (d.error !== undefined && d.error !== null) throw new Error(errorMessage(d));
    const usage = openaiUsage(d.usage);
    if (usage) this.#usage = usage;
    if (this.#closed) return [];
    const out = this.#start();
    const choices = list(d.choices);
    const choice = obj(choices.find((c) => isObj(c) && (c.index ?? 0) === 0) ?? choices[0]);
    out.push(...this.#delta(obj(choice.delta)));
    if (typeof choice.finish_reason === "string") {
      out.push(...this.#closeBlock());
      this.#stop = openaiFinishToAnthropic(choice.finish_reason);
      this.#sawFinish = true;
    }
    return out;
  }

  /** The closing events (`message_delta`, `message_stop`) when `[DONE]` did not produce them. */
  end(): UpstreamEvent[] {
    return this.#close();
  }

  /** The usage of the last chunk that carried one, or null. */
  usage(): TokenUsage | null {
    return this.#usage;
  }

  #event(type: string, fields: Json): UpstreamEvent {
    return { event: type, data: { type, ...fields } };
  }

  #start(): UpstreamEvent[] {
    if (this.#started) return [];
    this.#started = true;
    const usage = this.#usage
      ? openaiUsageToAnthropic(this.#usage)
      : { input_tokens: 0, output_tokens: 0 };
    const message = {
      id: `msg_${this.#opts.id}`,
      type: "message",
      role: "assistant",
      model: this.#opts.model,
      content: [],
      stop_reason: null,
      stop_sequence: null,
      usage,
    };
    return [this.#event("message_start", { message })];
  }

  #delta(delta: Json): UpstreamEvent[] {
    const out: UpstreamEvent[] = [];
    const reasoning = str(delta.reasoning_content) ?? str(delta.reasoning);
    if (reasoning) {
      out.push(...this.#ensure("thinking", { type: "thinking", thinking: "", signature: "" }));
      out.push(this.#blockDelta({ type: "thinking_delta", thinking: reasoning }));
    }
    const text = str(delta.content);
    if (text) {
      out.push(...this.#ensure("text", { type: "text", text: "" }));
      out.push(this.#blockDelta({ type: "text_delta", text }));
    }
    list(delta.tool_calls).forEach((tc, pos) => {
      if (isObj(tc)) out.push(...this.#toolDelta(num(tc.index) ?? pos, tc));
    });
    if (isObj(delta.function_call)) {
      const fc = delta.function_call;
      out.push(...this.#toolDelta(0, { id: fc.name, function: fc }));
    }
    return out;
  }

  #toolDelta(tool: number, tc: Json): UpstreamEvent[] {
    const out: UpstreamEvent[] = [];
    const fn = obj(tc.function);
    const open = this.#open;
    if (open?.kind !== "tool" || open.tool !== tool) {
      out.push(...this.#closeBlock());
      const name = str(fn.name) ?? "";
      const id = anthropicToolId(str(tc.id) ?? `toolu_${this.#opts.id}_${tool}`);
      const block = { type: "tool_use", id, name, input: {} };
      this.#open = { kind: "tool", index: this.#next, tool };
      this.#sawTool = true;
      out.push(this.#event("content_block_start", { index: this.#next++, content_block: block }));
    }
    const args = str(fn.arguments);
    if (args) out.push(this.#blockDelta({ type: "input_json_delta", partial_json: args }));
    return out;
  }

  #ensure(kind: "text" | "thinking", block: Json): UpstreamEvent[] {
    if (this.#open?.kind === kind) return [];
    const out = this.#closeBlock();
    this.#open = { kind, index: this.#next };
    out.push(this.#event("content_block_start", { index: this.#next++, content_block: block }));
    return out;
  }

  #blockDelta(delta: Json): UpstreamEvent {
    return this.#event("content_block_delta", { index: this.#open?.index ?? 0, delta });
  }

  #closeBlock(): UpstreamEvent[] {
    if (!this.#open) return [];
    const index = this.#open.index;
    this.#open = null;
    return [this.#event("content_block_stop", { index })];
  }

  #close(): UpstreamEvent[] {
    if (this.#closed) return [];
    const out = [...this.#start(), ...this.#closeBlock()];
    this.#closed = true;
    let stop = this.#stop ?? "end_turn";
    if (stop === "end_turn" && this.#sawTool) stop = "tool_use";
    const usage: Json = { output_tokens: this.#usage?.outputTokens ?? 0 };
    if (this.#usage) {
      const a = openaiUsageToAnthropic(this.#usage);
      usage.input_tokens = a.input_tokens;
      usage.cache_read_input_tokens = a.cache_read_input_tokens;
    }
    out.push(
      this.#event("message_delta", { delta: { stop_reason: stop, stop_sequence: null }, usage }),
    );
    out.push(this.#event("message_stop", {}));
    return out;
  }
}
