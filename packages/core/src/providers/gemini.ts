import type { CredentialRecord } from "../store/types.js";
import { joinUrl, type UpstreamAdapter } from "./types.js";

const urls = new Map<string, URL>();

function cachedUrl(k: string, make: () => string): URL {
  let u = urls.get(k);
  if (!u) {
    u = new URL(make());
    if (urls.size > 1000) urls.clear();
    urls.set(k, u);
  }
  return u;
}

/**
 * A Generative Language API method URL: `{base}/v1beta/models/{model}:{method}` (the base may
 * already end in `/v1beta` or `/v1`); streams ask for `alt=sse`.
 */
export function geminiUrl(baseUrl: string, model: string, method: string, stream: boolean): URL {
  return cachedUrl(`${baseUrl}\n${model}\n${method}\n${stream}`, () => {
    const base = baseUrl.replace(/\/+$/, "");
    const root = /\/v1(beta\d*)?$/.test(base) ? base : `${base}/v1beta`;
    return `${joinUrl(root, `models/${encodeURIComponent(model)}:${method}`)}${stream ? "?alt=sse" : ""}`;
  });
}

/** A Cloud Code Assist URL: `{base}/v1internal:{method}`. */
export function codeAssistUrl(baseUrl: string, method: string, stream: boolean): URL {
  return cachedUrl(`${baseUrl}\n${method}\n${stream}\nca`, () => {
    const base = baseUrl.replace(/\/+$/, "").replace(/\/v1internal$/, "");
    return `${base}/v1internal:${method}${stream ? "?alt=sse" : ""}`;
  });
}

/** The Generative Language API with an API key (`x-goog-api-key`; the key never goes in the URL). */
export const geminiApiKeyAdapter: UpstreamAdapter = {
  format: "gemini",
  call(c, model, stream) {
    return {
      url: geminiUrl(
        c.baseUrl,
        model,
        stream ? "streamGenerateContent" : "generateContent",
        stream,
      ),
      headers: {
        "content-type": "application/json",
        accept: stream ? "text/event-stream" : "application/json",
        ...c.headers,
        "x-goog-api-key": c.secret.apiKey ?? "",
      },
    };
  },
};

/**
 * Gemini through Cloud Code Assist, as Gemini CLI and Antigravity OAuth accounts use it:
 * `POST {base}/v1internal:generateContent` with `{ model, project, request }`, answers wrapped in
 * `{ response }` (the envelope is the Code Assist wire format's: `formats/code-assist.ts`).
 */
export function codeAssistAdapter(userAgent: string): UpstreamAdapter {
  return {
    format: "gemini",
    wrapped: true,
    call(c: CredentialRecord, _model: string, stream: boolean) {
      return {
        url: codeAssistUrl(c.baseUrl, stream ? "streamGenerateContent" : "generateContent", stream),
        headers: {
          "content-type": "application/json",
          accept: stream ? "text/event-stream" : "application/json",
          "user-agent": userAgent,
          ...c.headers,
          authorization: `Bearer ${c.secret.accessToken ?? ""}`,
        },
      };
    },
  };
}
