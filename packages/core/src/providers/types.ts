import type { CredentialRecord } from "../store/types.js";
import type { WireFormat } from "../translate/types.js";

/** Where and how one generation request goes upstream with one credential. */
export interface UpstreamCall {
  url: URL;
  /** Authentication and protocol headers (the credential's own extra headers come first). */
  headers: Record<string, string>;
}

/**
 * One upstream wire format as a provider speaks it: the URL of a generation call, the headers
 * that authenticate a credential, and, for APIs that wrap the format in an envelope (Gemini's
 * Cloud Code Assist), that it is wrapped.
 */
export interface UpstreamAdapter {
  /** The provider ids (`CredentialRecord.provider`) this adapter serves. */
  readonly format: WireFormat;
  /** The generation call for `model` (the upstream's model name). */
  call(c: CredentialRecord, model: string, stream: boolean): UpstreamCall;
  /**
   * Whether requests and answers travel in a Code Assist envelope (the wire format is then
   * `formats/code-assist.ts`'s, which wraps requests and unwraps answers).
   */
  readonly wrapped?: boolean;
}

/** Joins a base URL and a path, tolerating a trailing slash on the base and a leading one on the path. */
export function joinUrl(base: string, path: string): string {
  return `${base.replace(/\/+$/, "")}/${path.replace(/^\/+/, "")}`;
}
