import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  randomBytes,
  timingSafeEqual,
} from "node:crypto";

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/** A random token of `length` base62 characters after `prefix` (rejection sampling: no modulo bias). */
export function randomToken(prefix: string, length = 48): string {
  let out = prefix;
  while (out.length < prefix.length + length) {
    for (const b of randomBytes(length)) {
      if (b < 248) out += ALPHABET[b % 62];
      if (out.length === prefix.length + length) break;
    }
  }
  return out;
}

/**
 * Keyed hashing and encryption of secrets with the server secret.
 * Lookup uses an HMAC (deterministic, so it can be indexed); reveal uses AES-256-GCM.
 */
export class SecretBox {
  readonly #hmacKey: Buffer;
  readonly #encKey: Buffer;

  constructor(secret: string) {
    // Two independent keys derived from one secret, so the lookup index reveals nothing about the cipher key.
    this.#hmacKey = createHash("sha256").update(`tokenpool:hmac:${secret}`).digest();
    this.#encKey = createHash("sha256").update(`tokenpool:enc:${secret}`).digest();
  }

  /** HMAC-SHA256 of a plain secret, hex: the stored lookup value. */
  hash(plain: string): string {
    return createHmac("sha256", this.#hmacKey).update(plain).digest("hex");
  }

  /** Encrypts `plain` (AES-256-GCM) to `v1.<iv>.<tag>.<ciphertext>` in base64url. */
  encrypt(plain: string): string {
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", this.#encKey, iv);
    const body = Buffer.concat([c.update(plain, "utf8"), c.final()]);
    return `v1.${iv.toString("base64url")}.${c.getAuthTag().toString("base64url")}.${body.toString("base64url")}`;
  }

  /** Decrypts what {@link encrypt} produced; returns null when it was made with another secret or tampered. */
  decrypt(sealed: string): string | null {
    const [v, iv, tag, body] = sealed.split(".");
    if (v !== "v1" || !iv || !tag || body === undefined) return null;
    try {
      const d = createDecipheriv("aes-256-gcm", this.#encKey, Buffer.from(iv, "base64url"));
      d.setAuthTag(Buffer.from(tag, "base64url"));
      return Buffer.concat([d.update(Buffer.from(body, "base64url")), d.final()]).toString("utf8");
    } catch {
      return null;
    }
  }
}

/** Constant-time string comparison. */
export function safeEqual(a: string, b: string): boolean {
  const ab = Buffer.from(a);
  const bb = Buffer.from(b);
  if (ab.length !== bb.length) {
    timingSafeEqual(ab, ab);
    return false;
  }
  return timingSafeEqual(ab, bb);
}

/**
 * Masks a secret for display: keeps a short head and tail, e.g. `sk-Ab12****wxYZ`.
 * Short secrets are masked entirely but for their first character.
 */
export function maskSecret(secret: string): string {
  if (secret.length <= 8) return `${secret.slice(0, 1)}****`;
  const dash = secret.indexOf("-");
  const head = dash > 0 && dash < 6 ? dash + 5 : 4;
  return `${secret.slice(0, Math.min(head, secret.length - 4))}****${secret.slice(-4)}`;
}

/** Redacts anything that looks like a bearer token or API key inside free text (logs, error bodies). */
export function redactSecrets(text: string): string {
  return text
    .replace(/(bearer\s+)[A-Za-z0-9._~+/=-]{6,}/gi, "$1[redacted]")
    .replace(/\b(sk|tp|rk|pk|AIza|ya29|1\/\/)[A-Za-z0-9._-]{8,}/g, "[redacted]");
}
