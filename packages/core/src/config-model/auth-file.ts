/**
 * CLIProxyAPI's auth files (`auths/*.json`): one OAuth credential per file, its name, and the
 * mapping between a file and a credential record. Used by the cliproxy dialect's `/auth-files`
 * routes and by store-file, which keeps the OAuth pool in such files.
 *
 * @module
 */
import type { AddCredentialInput } from "../credentials/pool.js";
import type { CredentialRecord, CredentialSecret } from "../store/types.js";

const NAME_RE = /^[A-Za-z0-9._-]+\.json$/;
const MAX_NAME = 128;

/** Whether `name` is an acceptable auth file name. */
export function isValidAuthFileName(name: string): boolean {
  return name.length <= MAX_NAME && NAME_RE.test(name) && !name.includes("..");
}

/** A file `type` → the pool provider and its default upstream. */
const TYPES: Record<string, { provider: string; baseUrl: string }> = {
  claude: { provider: "anthropic", baseUrl: "https://api.anthropic.com" },
  anthropic: { provider: "anthropic", baseUrl: "https://api.anthropic.com" },
  codex: { provider: "codex", baseUrl: "https://chatgpt.com/backend-api/codex" },
  gemini: { provider: "gemini", baseUrl: "https://cloudcode-pa.googleapis.com" },
  "gemini-cli": { provider: "gemini", baseUrl: "https://cloudcode-pa.googleapis.com" },
  google: { provider: "gemini", baseUrl: "https://cloudcode-pa.googleapis.com" },
  antigravity: {
    provider: "antigravity",
    baseUrl: "https://daily-cloudcode-pa.sandbox.googleapis.com",
  },
  qwen: { provider: "qwen", baseUrl: "https://portal.qwen.ai/v1" },
  "gemini-web": { provider: "gemini-web", baseUrl: "https://gemini.google.com" },
  openai: { provider: "openai", baseUrl: "https://api.openai.com/v1" },
};

/** A pool provider → the `type` written in its file. */
export function fileType(provider: string): string {
  if (provider === "anthropic") return "claude";
  if (provider === "gemini-cli") return "gemini";
  return provider;
}

/** Extra secret fields copied between file and credential: file field → `secret.extra` key. */
const EXTRA_FIELDS: Record<string, string> = {
  account_id: "accountId",
  resource_url: "resourceUrl",
  client_id: "clientId",
  client_secret: "clientSecret",
  token_uri: "tokenUrl",
  secure_1psid: "secure1psid",
  secure_1psidts: "secure1psidts",
};

/** The file name of an OAuth credential. */
export function authFileName(c: CredentialRecord): string {
  if (isValidAuthFileName(c.id)) return c.id;
  const base = c.id.replace(/[^A-Za-z0-9._-]/g, "_").replace(/\.{2,}/g, "_");
  return `${base.slice(0, MAX_NAME - 5)}.json`;
}

function iso(ms: number | undefined): string | undefined {
  return ms === undefined || !Number.isFinite(ms) ? undefined : new Date(ms).toISOString();
}

/** Renders a credential in CLIProxyAPI's token file format for its provider. */
export function renderAuthFile(c: CredentialRecord): Record<string, unknown> {
  const s = c.secret;
  const extra = s.extra ?? {};
  const type = fileType(c.provider);
  const out: Record<string, unknown> = {};
  const put = (k: string, v: unknown) => {
    if (v !== undefined && v !== "") out[k] = v;
  };
  if (type === "gemini") {
    // gemini-cli keeps an oauth2.Token under `token`.
    const token: Record<string, unknown> = {};
    if (s.accessToken) token.access_token = s.accessToken;
    if (s.refreshToken) token.refresh_token = s.refreshToken;
    token.token_type = "Bearer";
    if (s.expiresAt !== undefined) token.expiry = iso(s.expiresAt);
    if (extra.clientId) token.client_id = extra.clientId;
    if (extra.clientSecret) token.client_secret = extra.clientSecret;
    if (extra.tokenUrl) token.token_uri = extra.tokenUrl;
    out.token = token;
    put("project_id", c.projectIds.join(","));
    put("email", c.label);
  } else {
    put("id_token", s.idToken);
    put("access_token", s.accessToken);
    put("refresh_token", s.refreshToken);
    put("expired", iso(s.expiresAt));
    put("email", c.label);
    if (c.projectIds.length > 0) put("project_id", c.projectIds[0]);
    for (const [file, key] of Object.entries(EXTRA_FIELDS)) put(file, extra[key]);
  }
  put("last_refresh", iso(c.updatedAt));
  out.type = type;
  if (!c.enabled) out.disabled = true;
  return out;
}

/** A time from a file: an RFC 3339 string, or seconds / ms since the epoch. */
function parseTime(v: unknown): number | undefined {
  if (typeof v === "string" && v.trim() !== "") {
    const t = Date.parse(v);
    return Number.isNaN(t) ? undefined : t;
  }
  if (typeof v === "number" && Number.isFinite(v) && v > 0) return v < 1e12 ? v * 1000 : v;
  return undefined;
}

const str = (v: unknown): string | undefined =>
  typeof v === "string" && v.trim() !== "" ? v.trim() : undefined;

/** What an uploaded file becomes; `null` with a reason when it is not a token file we know. */
export function parseAuthFile(
  value: unknown,
): { fields: Omit<AddCredentialInput, "id">; ok: true } | { ok: false; error: string } {
  if (typeof value !== "object" || value === null || Array.isArray(value))
    return { ok: false, error: "invalid auth file" };
  const f = value as Record<string, unknown>;
  const type = str(f.type)?.toLowerCase();
  const known = type ? TYPES[type] : undefined;
  if (!known) return { ok: false, error: "unknown auth file type" };
  const token =
    typeof f.token === "object" && f.token !== null ? (f.token as Record<string, unknown>) : {};
  const secret: CredentialSecret = {};
  const accessToken = str(f.access_token) ?? str(token.access_token);
  const refreshToken = str(f.refresh_token) ?? str(token.refresh_token);
  const idToken = str(f.id_token);
  if (accessToken) secret.accessToken = accessToken;
  if (refreshToken) secret.refreshToken = refreshToken;
  if (idToken) secret.idToken = idToken;
  let expiresAt = parseTime(f.expired) ?? parseTime(f.expiry) ?? parseTime(token.expiry);
  if (expiresAt === undefined && typeof f.expires_in === "number" && f.timestamp !== undefined) {
    const at = parseTime(f.timestamp);
    if (at !== undefined) expiresAt = at + f.expires_in * 1000;
  }
  if (expiresAt !== undefined) secret.expiresAt = expiresAt;
  const extra: Record<string, string> = {};
  for (const [file, key] of Object.entries(EXTRA_FIELDS)) {
    const v = str(f[file]) ?? str(token[file]);
    if (v) extra[key] = v;
  }
  if (Object.keys(extra).length > 0) secret.extra = extra;
  const usable =
    known.provider === "gemini-web"
      ? extra.secure1psid !== undefined
      : secret.accessToken !== undefined || secret.refreshToken !== undefined;
  if (!usable) return { ok: false, error: "auth file holds no token" };
  const project = str(f.project_id);
  let baseUrl = known.baseUrl;
  if (known.provider === "qwen" && extra.resourceUrl) {
    const host = extra.resourceUrl.replace(/^https?:\/\//, "").replace(/\/+$/, "");
    if (/^[A-Za-z0-9.-]+(:\d+)?$/.test(host)) baseUrl = `https://${host}/v1`;
  }
  return {
    ok: true,
    fields: {
      provider: known.provider,
      kind: "oauth",
      label: str(f.email) ?? "",
      baseUrl,
      secret,
      projectIds: project
        ? project
            .split(",")
            .map((p) => p.trim())
            .filter(Boolean)
        : [],
      enabled: f.disabled !== true,
    },
  };
}
