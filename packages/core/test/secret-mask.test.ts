import { describe, expect, it } from "vitest";
import { credentialSecrets, SecretMask } from "../src/credentials/secret-mask.js";

describe("SecretMask", () => {
  const c = {
    secret: {
      apiKey: "Xk3Zq9Lm2Np8Rt5Vw7Yb1Cd4Ef6Gh0Jk",
      refreshToken: "1//0gRefresh/Token-with/slashes_0123",
      extra: { client_secret: "GOCSPX-client-secret-value", project_id: "my-gcp-project-123" },
    },
  };

  it("masks every secret value of a credential as it is and JSON-escaped, keeping the rest", () => {
    const mask = new SecretMask();
    mask.add(c);
    // As an encoder that escapes `/` writes it (PHP's json_encode does).
    const slashed = JSON.stringify({ also: c.secret.refreshToken }).replaceAll("/", "\\/");
    const text = `[${JSON.stringify({
      error: `Incorrect API key provided: ${c.secret.apiKey}; token ${c.secret.refreshToken}`,
      secret: c.secret.extra.client_secret,
      project: c.secret.extra.project_id,
    })},${slashed}]`;
    const out = mask.text(text);
    for (const s of [c.secret.apiKey, c.secret.refreshToken, c.secret.extra.client_secret])
      expect(out).not.toContain(s);
    expect(out).not.toContain("Refresh\\/Token");
    expect(out).toContain("Incorrect API key provided: Xk3Z****");
    // An id is not a secret: left alone.
    expect(out).toContain("my-gcp-project-123");
    expect(() => JSON.parse(out)).not.toThrow();
  });

  it("returns the same buffer when no secret occurs, and a masked copy when one does", () => {
    const mask = new SecretMask();
    mask.add(c);
    const clean = Buffer.from('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n');
    expect(mask.bytes(clean)).toBe(clean);
    const dirty = Buffer.from(`data: {"error":"bad key ${c.secret.apiKey}"}\n\n`);
    expect(mask.bytes(dirty).toString()).not.toContain(c.secret.apiKey);
  });

  it("ignores values too short to be keys", () => {
    expect(credentialSecrets({ secret: { apiKey: "abc" } })).toEqual([]);
    const mask = new SecretMask();
    mask.add({ secret: { apiKey: "abc" } });
    expect(mask.empty).toBe(true);
    expect(mask.text("abc abc")).toBe("abc abc");
  });
});
