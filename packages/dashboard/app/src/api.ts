/**
 * The console's only way to the gateway: its public HTTP APIs, same origin, with the credential
 * the person typed in. The credential lives in this module's memory only: never in the URL,
 * localStorage, sessionStorage, cookies or a log line. A reload logs out.
 */

/** Who is logged in. */
export type Session =
  | { kind: "admin"; key: string }
  | { kind: "user"; token: string; userId: number; username: string; role: string };

let session: Session | null = null;
const listeners = new Set<() => void>();

/** The current session (null: logged out). */
export function getSession(): Session | null {
  return session;
}

/** Sets (or clears) the session and tells the app. */
export function setSession(next: Session | null): void {
  session = next;
  for (const l of listeners) l();
}

/** Calls `fn` whenever the session changes; returns the unsubscribe function. */
export function onSession(fn: () => void): () => void {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

/** Whether the session holds the management key (every page; `/v0/management` answers it). */
export function hasManagementKey(): boolean {
  return session?.kind === "admin";
}

/** Whether the session acts on every user's keys and logs (the management key or an admin user). */
export function isAdmin(): boolean {
  return session?.kind === "admin" || (session?.kind === "user" && session.role === "admin");
}

/**
 * Where the gateway's APIs are: beside the console's own mount path (`/dashboard` unless the
 * dialect was given another), so that a gateway mounted under `/gw` by a binding works too.
 */
export function apiBase(): string {
  const mount =
    document.querySelector<HTMLMetaElement>('meta[name="tokenpool-dashboard-path"]')?.content ??
    "/dashboard";
  const at = location.pathname.lastIndexOf(mount);
  return at > 0 ? location.pathname.slice(0, at) : "";
}

/** An answer of the gateway that is not a success, with the message its dialect gave. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

/** The message of a failure for a notice: the gateway's own for an {@link ApiError}. */
export function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Options of {@link api}. */
export interface ApiOptions {
  method?: string;
  /** Query parameters; undefined and "" values are left out. */
  query?: Record<string, string | number | boolean | undefined | null>;
  /** A JSON body. */
  body?: unknown;
  /** A raw body (text, FormData) sent as is. */
  raw?: BodyInit;
  /** Authenticate with this API key instead of the session (the key holder's page). */
  apiKey?: string;
  /** Authenticate as this session instead of the current one (the login check). */
  as?: Session;
  /** Answer with the text instead of parsing JSON. */
  text?: boolean;
  signal?: AbortSignal;
}

function authHeaders(opts: ApiOptions): Record<string, string> {
  if (opts.apiKey !== undefined) return { authorization: `Bearer ${opts.apiKey}` };
  const s = opts.as ?? session;
  if (!s) return {};
  if (s.kind === "admin") return { authorization: `Bearer ${s.key}` };
  return { authorization: `Bearer ${s.token}`, "new-api-user": String(s.userId) };
}

/** The message of an error answer, whatever the dialect's format. */
function messageOf(body: unknown, status: number): string {
  if (body && typeof body === "object") {
    const b = body as Record<string, unknown>;
    if (typeof b.message === "string" && b.message) return b.message;
    if (typeof b.error === "string" && b.error) return b.error;
    if (b.error && typeof b.error === "object") {
      const m = (b.error as Record<string, unknown>).message;
      if (typeof m === "string") return m;
    }
  }
  return `HTTP ${status}`;
}

/**
 * Calls one route of the gateway and returns its JSON (or text). Throws {@link ApiError} on a
 * non-2xx answer and on new-api's `{ success: false, message }`; a 401 while logged in logs out.
 */
export async function api<T = unknown>(path: string, opts: ApiOptions = {}): Promise<T> {
  const url = new URL(apiBase() + path, location.origin);
  for (const [k, v] of Object.entries(opts.query ?? {}))
    if (v !== undefined && v !== null && v !== "") url.searchParams.set(k, String(v));
  const headers: Record<string, string> = { accept: "application/json", ...authHeaders(opts) };
  let body: BodyInit | undefined = opts.raw;
  if (opts.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  const res = await fetch(url, {
    method: opts.method ?? "GET",
    headers,
    body: body ?? null,
    credentials: "omit",
    cache: "no-store",
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  const text = await res.text();
  let parsed: unknown = text;
  if (!opts.text || !res.ok) {
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = text;
    }
  }
  if (!res.ok) {
    if (res.status === 401 && session && opts.apiKey === undefined && !opts.as) setSession(null);
    throw new ApiError(res.status, messageOf(parsed, res.status));
  }
  if (parsed && typeof parsed === "object" && (parsed as { success?: unknown }).success === false)
    throw new ApiError(res.status, messageOf(parsed, res.status));
  return parsed as T;
}

/** new-api's envelope `{ success, message, data }`: the data. */
export async function apiData<T>(path: string, opts: ApiOptions = {}): Promise<T> {
  const r = await api<{ data: T }>(path, opts);
  return r.data;
}

/**
 * Downloads a file the gateway answers (a CSV export) with the session's credential in a header
 * (a link with the key in its URL would leak it), then saves it through a blob URL.
 */
export async function download(path: string, query: ApiOptions["query"], filename: string) {
  const text = await api<string>(path, { query, text: true });
  const url = URL.createObjectURL(new Blob([text], { type: "text/csv" }));
  const a = document.createElement("a");
  a.href = url;
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
