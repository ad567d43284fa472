import type { TokenUsage } from "../store/types.js";
import {
  ChatToResponsesStream,
  chatToResponsesRequest,
  chatToResponsesResponse,
  ResponsesToChatStream,
  responsesToChatRequest,
  responsesToChatResponse,
} from "../translate/responses.js";
import { openaiBodyUsage } from "./openai.js";
import {
  defineFormat,
  namedSseEvent,
  nonNegative,
  openaiErrorBody,
  parseData,
  withModel,
} from "./shared.js";
import type { StreamInspector, WireFormatSpec } from "./types.js";

const ERROR_TYPE = Buffer.from('"type":"error"');
const RESPONSE_END = Buffer.from('"type":"response.');

/**
 * Responses API events: usage and the end come with `response.completed` (or
 * `response.incomplete`); `response.failed` and `error` events are the upstream's own errors.
 */
export class ResponsesInspector implements StreamInspector {
  usage: TokenUsage | null = null;
  finished = false;
  failed: string | null = null;
  get usageFinal(): boolean {
    return this.finished;
  }
  inspect(ev: Buffer): boolean {
    if (ev.indexOf(RESPONSE_END) < 0 && ev.indexOf(ERROR_TYPE) < 0) return false;
    const data = parseData(ev) as
      | {
          type?: unknown;
          response?: { usage?: unknown; error?: { message?: unknown } };
          message?: unknown;
        }
      | undefined;
    const type = data?.type;
    if (type === "response.completed" || type === "response.incomplete") {
      this.usage = openaiBodyUsage(data) ?? this.usage;
      this.finished = true;
    } else if (type === "response.failed" || type === "error") {
      const m = data?.response?.error?.message ?? data?.message;
      this.failed = typeof m === "string" ? m : "upstream error event";
    }
    return false;
  }
}

/** OpenAI's Responses API (`POST /v1/responses`), what Codex speaks. */
export const responsesFormat: WireFormatSpec = defineFormat({
  name: "responses",
  requestToPivot: responsesToChatRequest,
  requestFromPivot: chatToResponsesRequest,
  answerToPivot: responsesToChatResponse,
  answerFromPivot: chatToResponsesResponse,
  streamToPivot: (opts) => new ResponsesToChatStream(opts),
  streamFromPivot: (opts) => new ChatToResponsesStream(opts),
  usage: openaiBodyUsage,
  errorBody: openaiErrorBody,
  streamErrorEvent(_status, message) {
    const ev = {
      type: "error",
      code: "stream_interrupted",
      message,
      param: null,
      sequence_number: 0,
    };
    return `event: error\ndata: ${JSON.stringify(ev)}\n\n`;
  },
  sseEvent: namedSseEvent,
  maxTokens: (body) => nonNegative(body.max_output_tokens),
  inspector: () => new ResponsesInspector(),
  sameFormatBody: withModel,
});
