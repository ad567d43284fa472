/**
 * Masking of an upstream's answer by the values of our own credentials' secrets.
 *
 * An upstream that refuses a key often quotes it back ("Incorrect API key provided: …"), and
 * some quote tokens in error events or headers. Guessing key shapes misses most of them (a
 * Mistral or Groq key is 32 plain alphanumerics), so every text that comes from an upstream is
 * masked by the exact secrets of the credentials a request tried, before it reaches the client,
 * the request log, an event or the credential's stored state.
 *
 * @module
 */
import type { CredentialRecord } from "../store/types.js";
import { maskSecret } from "../util/secrets.js";

/**
 * Secrets shorter than this are not searched for: a few characters match ordinary text, and
 * masking them would garble answers while protecting nothing (no real key is that short).
 */
export const MIN_MASKED_SECRET = 8;

/** `extra` fields of a credential's secret that hold secrets (the rest are ids, URLs, scopes ...). */
const SECRET_EXTRA = /secret|token|key|cookie|password|session|auth/i;

/**
 * The secret values of a credential: its API key, access, refresh and id tokens, and the
 * secret-looking `extra` fields (client secrets, cookies, session keys).
 */
export function credentialSecrets(c: Pick<CredentialRecord, "secret">): string[] {
  const s = c.secret;
  const out: string[] = [];
  for (const v of [s.apiKey, s.accessToken, s.refreshToken, s.idToken])
    if (typeof v === "string" && v.length >= MIN_MASKED_SECRET) out.push(v);
  if (s.extra)
    for (const [k, v] of Object.entries(s.extra))
      if (SECRET_EXTRA.test(k) && typeof v === "string" && v.length >= MIN_MASKED_SECRET)
        out.push(v);
  return out;
}

interface Needle {
  text: string;
  bytes: Buffer;
  masked: string;
}

/** The search forms of secret values, longest first (a secret containing another is masked whole). */
function needlesOf(values: readonly string[]): Needle[] {
  const out: Needle[] = [];
  for (const value of values) {
    const masked = maskSecret(value);
    // As it is, JSON-escaped, and with `/` escaped as some encoders write it.
    const json = JSON.stringify(value).slice(1, -1);
    const forms = new Set([value, json, value.replaceAll("/", "\\/"), json.replaceAll("/", "\\/")]);
    for (const text of forms) out.push({ text, bytes: Buffer.from(text), masked });
  }
  return out.sort((a, b) => b.text.length - a.text.length);
}

/**
 * The needles of a credential's secret object, computed once per object. Secret objects are
 * never changed in place (a refresh or an edit stores a new one), so the memo cannot go stale;
 * it is keyed weakly and holds nothing once the record is gone.
 */
const memo = new WeakMap<object, readonly Needle[]>();

function credentialNeedles(c: Pick<CredentialRecord, "secret">): readonly Needle[] {
  let n = memo.get(c.secret);
  if (!n) {
    n = needlesOf(credentialSecrets(c));
    memo.set(c.secret, n);
  }
  return n;
}

/**
 * The secrets one request has put at risk, and the masking of texts by them. Each form a secret
 * takes in an answer is searched for: as it is, and JSON-escaped (`/` as `\/`, as some encoders
 * write it). A request with no secret added (none tried yet) masks nothing and costs nothing.
 *
 * @example
 * ```ts
 * const mask = new SecretMask();
 * mask.add(credential);
 * const safe = mask.text(await res.body.text());
 * ```
 */
export class SecretMask {
  #lists: (readonly Needle[])[] = [];

  /** Adds the secrets of a credential (again after a refresh: new tokens are added too). */
  add(c: Pick<CredentialRecord, "secret">): void {
    const n = credentialNeedles(c);
    if (n.length > 0 && !this.#lists.includes(n)) this.#lists.push(n);
  }

  /** Adds one secret value (ignored when shorter than {@link MIN_MASKED_SECRET}). */
  addValue(value: string): void {
    if (value.length >= MIN_MASKED_SECRET) this.#lists.push(needlesOf([value]));
  }

  /** Whether any secret has been added. */
  get empty(): boolean {
    return this.#lists.length === 0;
  }

  /** `text` with every added secret replaced by its masked form. */
  text(text: string): string {
    let out = text;
    for (const list of this.#lists)
      for (const n of list) if (out.includes(n.text)) out = out.replaceAll(n.text, n.masked);
    return out;
  }

  /** `buf` with every added secret masked; the same buffer when none occurs (the usual case). */
  bytes(buf: Buffer): Buffer {
    for (const list of this.#lists)
      for (const n of list)
        if (buf.indexOf(n.bytes) >= 0) return Buffer.from(this.text(buf.toString("utf8")));
    return buf;
  }

  /** A reply body (bytes or text) with every added secret masked. */
  body<T extends Buffer | string>(body: T): T {
    if (this.#lists.length === 0) return body;
    return (typeof body === "string" ? this.text(body) : this.bytes(body)) as T;
  }
}
