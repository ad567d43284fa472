import { describe, expect, it } from "vitest";
import { mergeBeta, withClientBeta } from "../src/formats/anthropic.js";
import { codeAssistFormat } from "../src/formats/code-assist.js";
import { formatOf, streamTranslatorOf, upstreamFormatOf } from "../src/formats/registry.js";
import type { WireFormat } from "../src/translate/types.js";

const NAMES: WireFormat[] = ["openai", "responses", "anthropic", "gemini"];

describe("the wire-format registry", () => {
  it("has one format object per client format, named as asked", () => {
    for (const name of NAMES) expect(formatOf(name).name).toBe(name);
  });

  it("reads each format's max-tokens field", () => {
    expect(formatOf("openai").maxTokens({ max_completion_tokens: 7, max_tokens: 9 })).toBe(7);
    expect(formatOf("anthropic").maxTokens({ max_tokens: 9 })).toBe(9);
    expect(formatOf("responses").maxTokens({ max_output_tokens: 5 })).toBe(5);
    expect(formatOf("gemini").maxTokens({ generationConfig: { maxOutputTokens: 3 } })).toBe(3);
    expect(formatOf("openai").maxTokens({ max_tokens: -1 })).toBeUndefined();
  });

  it("chooses Code Assist for an adapter whose answers come in an envelope", () => {
    expect(upstreamFormatOf({ format: "gemini", wrapped: true })).toBe(codeAssistFormat);
    expect(upstreamFormatOf({ format: "gemini" })).toBe(formatOf("gemini"));
    expect(codeAssistFormat.unwrap({ response: { candidates: [] } })).toEqual({ candidates: [] });
    expect(codeAssistFormat.wrapRequest?.({ contents: [] }, "m", undefined)).toEqual({
      model: "m",
      request: { contents: [] },
    });
  });

  it("relays a same-format stream untranslated unless it is wrapped or re-framed", () => {
    const opts = { model: "m", id: "r" };
    expect(streamTranslatorOf(formatOf("openai"), formatOf("openai"), opts)).toBeNull();
    expect(streamTranslatorOf(formatOf("gemini"), formatOf("gemini"), opts)).toBeNull();
    expect(streamTranslatorOf(formatOf("gemini"), formatOf("gemini"), opts, true)).not.toBeNull();
    expect(streamTranslatorOf(codeAssistFormat, formatOf("gemini"), opts)).not.toBeNull();
    expect(streamTranslatorOf(formatOf("anthropic"), formatOf("openai"), opts)).not.toBeNull();
  });

  it("merges the client's anthropic-beta flags after the credential's own", () => {
    expect(mergeBeta(undefined, "b")).toBe("b");
    expect(mergeBeta("a", "b")).toBe("a,b");
    const own = { "anthropic-beta": "a" };
    expect(withClientBeta(own, undefined)).toBe(own);
    expect(withClientBeta(own, "b")).toEqual({ "anthropic-beta": "a,b" });
  });
});
