/**
 * Shared setup of the CLIProxyAPI management-center contract replay (`cpa-ui-*.test.ts`): a real
 * gateway behind node:http on port 0, a mock upstream and a mock OAuth server (nothing leaves the
 * machine), some traffic, and "UI sessions" that send exactly the headers each UI version sends
 * (reference: notes/cpa-ui-contract.md §1.2) and check what every UI relies on in every answer.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  createMockOAuth,
  createMockUpstream,
  type MockOAuthServer,
  type MockUpstream,
} from "@tokenpool/testing";
import { expect } from "vitest";
import { type CredentialRecord, createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

export const MGMT = "cpa-ui-contract-management-key-0123456789";
export const UPSTREAM_KEY = "sk-upstream-contract-0123456789abcdef";
export const PANEL = "https://panel.example.com";
export const VERSION: string = JSON.parse(
  readFileSync(new URL("../package.json", import.meta.url), "utf8"),
).version;
export const UI_HTML = "<!doctype html><title>CLI Proxy API Management Center</title>";

/** A running gateway with its mocks, a downstream key and an upstream credential. */
export interface ContractServer {
  root: string;
  base: string;
  gateway: Gateway;
  mock: MockUpstream;
  oauth: MockOAuthServer;
  /** A downstream key (unlimited) that sends traffic. */
  key: string;
  /** The `openai` API-key credential (openai-compatibility `mock`) on the mock upstream. */
  cred: CredentialRecord;
  /** `n` chat completions through the gateway; `failing` of them answered 500 by the upstream. */
  traffic(n: number, failing?: number): Promise<void>;
  close(): Promise<void>;
}

/** Starts the server; the OAuth logins use the mock OAuth server, their redirect lands here. */
export async function startContractServer(
  opts: { uiFile?: boolean } = {},
): Promise<ContractServer> {
  const mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  const oauth = await createMockOAuth({ email: "user@example.com", deviceInterval: 0.02 });
  const dir = await mkdtemp(join(tmpdir(), "tokenpool-cpa-ui-"));
  const uiFile = join(dir, "management.html");
  await writeFile(uiFile, UI_HTML);
  // The server listens first: the login redirect URIs name its port.
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, res) => res.end();
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const root = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const base = `${root}/v0/management`;
  const callback = `${base}/oauth/callback`;
  const code = { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.url, redirectUri: callback };
  const gateway = createGateway({
    store: memoryStore(),
    secret: "cpa-ui-contract-secret-0123456789-0123456789",
    logger: false,
    usage: { flushIntervalMs: 10 },
    management: opts.uiFile ? { uiFile } : {},
    oauth: {
      scanIntervalMs: 0,
      providers: {
        anthropic: code,
        codex: code,
        gemini: { ...code, clientId: "gemini-client", clientSecret: "gemini-secret" },
        qwen: { deviceCodeUrl: oauth.deviceCodeUrl, tokenUrl: oauth.url },
      },
    },
  });
  await gateway.ready;
  await gateway.management.setKey(MGMT);
  await gateway.settings.set({ "request-retry": 0 });
  const cred = await gateway.credentials.add({
    provider: "openai",
    label: "mock",
    baseUrl: mock.url,
    secret: { apiKey: UPSTREAM_KEY },
  });
  const { key } = await gateway.keys.create({ name: "app", unlimitedQuota: true });
  handler = toNodeHandler(gateway);

  const traffic = async (n: number, failing = 0) => {
    if (failing > 0) mock.fail({ status: 500, times: failing, path: "/v1/chat/completions" });
    for (let i = 0; i < n; i++) {
      const res = await fetch(`${root}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
      });
      await res.arrayBuffer();
    }
    await gateway.usage.flush();
  };

  return {
    root,
    base,
    gateway,
    mock,
    oauth,
    key,
    cred,
    traffic,
    close: async () => {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await gateway.close();
      await mock.close();
      await oauth.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A comma-separated header as lower-case names. */
export const headerNames = (value: string | null): string[] =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);

/** One answer as a UI sees it. */
export interface UiAnswer {
  status: number;
  headers: Headers;
  contentType: string;
  text: string;
  /** The parsed JSON body, or undefined when the body is not JSON. */
  body: any;
}

/** Which UI sends the calls: decides the headers (reference §1.2). */
export type UiVersion = "v0.1.3" | "v0.1.15" | "HEAD";

/** Every call a session made, for the coverage summary. */
export interface CallRecord {
  method: string;
  path: string;
  status: number;
}

/**
 * A browser session of one UI version against the server. With `origin`, every call is
 * cross-origin as a browser makes it: a preflight first (every call carries `Authorization`),
 * checked like a browser checks it, then the call with `Origin`, whose answer must carry
 * `Access-Control-Allow-Origin` and expose the version headers.
 */
export function uiSession(server: ContractServer, version: UiVersion, origin?: string) {
  const calls: CallRecord[] = [];
  const sameOrigin = origin === undefined || origin === server.root;

  const preflight = async (method: string, path: string, headers: Record<string, string>) => {
    const requested = Object.keys(headers)
      .map((h) => h.toLowerCase())
      .filter((h) => {
        if (h === "accept") return false;
        if (h === "content-type")
          return !/^(multipart\/form-data|text\/plain|application\/x-www-form-urlencoded)/.test(
            headers[h] ?? headers["Content-Type"] ?? "",
          );
        return true;
      });
    const res = await fetch(`${server.base}${path}`, {
      method: "OPTIONS",
      headers: {
        origin: origin as string,
        "access-control-request-method": method,
        ...(requested.length ? { "access-control-request-headers": requested.join(",") } : {}),
      },
    });
    expect(res.status, `preflight ${method} ${path}`).toBe(204);
    const allowOrigin = res.headers.get("access-control-allow-origin");
    expect([origin, "*"], `preflight ${method} ${path}`).toContain(allowOrigin);
    if (!["GET", "HEAD", "POST"].includes(method))
      expect(headerNames(res.headers.get("access-control-allow-methods"))).toContain(
        method.toLowerCase(),
      );
    const allowed = headerNames(res.headers.get("access-control-allow-headers"));
    for (const h of requested) expect(allowed, `preflight allows ${h}`).toContain(h);
  };

  /** Checks every management answer: version headers; cross-origin, CORS and exposure. */
  const checkHeaders = (res: Response, path: string) => {
    if (!path.startsWith("/oauth-callback"))
      expect(res.headers.get("x-cpa-version"), `X-CPA-VERSION on ${path}`).toBe(VERSION);
    if (!sameOrigin) {
      expect([origin, "*"], `Access-Control-Allow-Origin on ${path}`).toContain(
        res.headers.get("access-control-allow-origin"),
      );
      const exposed = headerNames(res.headers.get("access-control-expose-headers"));
      for (const h of ["x-cpa-version", "x-cpa-build-date", "x-cpa-support-plugin"])
        expect(exposed, `${h} exposed on ${path}`).toContain(h);
    }
  };

  /** Sends one call with the given headers (plus Authorization and, cross-origin, Origin). */
  const send = async (
    method: string,
    path: string,
    headers: Record<string, string>,
    body?: RequestInit["body"],
    auth = true,
  ): Promise<UiAnswer> => {
    const all: Record<string, string> = {
      ...(auth ? { Authorization: `Bearer ${MGMT}` } : {}),
      ...headers,
    };
    if (!sameOrigin) await preflight(method, path, all);
    // Browsers send Origin on same-origin calls too, except GET and HEAD.
    const withOrigin: Record<string, string> =
      !sameOrigin || !["GET", "HEAD"].includes(method) ? { Origin: origin ?? server.root } : {};
    const res = await fetch(`${server.base}${path}`, {
      method,
      headers: { ...all, ...withOrigin },
      ...(body !== undefined ? { body } : {}),
    });
    const text = await res.text();
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    checkHeaders(res, path);
    calls.push({ method, path: path.split("?")[0] as string, status: res.status });
    // The HEAD UI logs out on any 401 (§1.3); no call of a session with the right key may get one.
    expect(res.status, `${method} ${path}: never 401 with the key`).not.toBe(401);
    return {
      status: res.status,
      headers: res.headers,
      contentType: res.headers.get("content-type") ?? "",
      text,
      body: json,
    };
  };

  /**
   * v0.1.x `makeRequest`: `Content-Type: application/json` on every call (GET and DELETE too),
   * the body JSON-stringified; a 2xx answer goes through `response.json()`, so it must be JSON.
   * HEAD (axios): `Content-Type: application/json` only with a body, `Accept` axios' default.
   */
  const request = async (method: string, path: string, body?: unknown): Promise<UiAnswer> => {
    const headers: Record<string, string> =
      version === "HEAD"
        ? {
            Accept: "application/json, text/plain, */*",
            ...(body !== undefined ? { "Content-Type": "application/json" } : {}),
          }
        : { "Content-Type": "application/json" };
    const res = await send(
      method,
      path,
      headers,
      body !== undefined ? JSON.stringify(body) : undefined,
    );
    if (res.status >= 200 && res.status < 300) {
      expect(res.contentType, `${method} ${path}: a JSON answer`).toMatch(/^application\/json/);
      expect(res.body, `${method} ${path}: a JSON body`).not.toBeUndefined();
    }
    return res;
  };

  /** A call the UI expects to succeed with a 200 (the answer's body is returned). */
  const ok = async (method: string, path: string, body?: unknown): Promise<any> => {
    const res = await request(method, path, body);
    expect(res.status, `${method} ${path} → ${res.text.slice(0, 300)}`).toBe(200);
    return res.body;
  };

  /** A multipart upload of auth files, one `file` part each (the browser sets the boundary). */
  const upload = async (files: { name: string; json: unknown }[]): Promise<UiAnswer> => {
    const form = new FormData();
    for (const f of files)
      form.append("file", new Blob([JSON.stringify(f.json)], { type: "application/json" }), f.name);
    // No Content-Type of our own: fetch sets multipart/form-data with the boundary, as the
    // browser does (a CORS-safelisted type, so the preflight asks for `authorization` only).
    return send(
      "POST",
      "/auth-files",
      version === "HEAD" ? { Accept: "application/json, text/plain, */*" } : {},
      form,
    );
  };

  return { calls, send, request, ok, upload, version };
}

/** `value` is a non-empty object mapping every key to something `check` accepts. */
export function expectMapOf(value: unknown, check: (v: any, k: string) => void): void {
  expect(value).toBeTypeOf("object");
  expect(value).not.toBeNull();
  expect(Array.isArray(value)).toBe(false);
  for (const [k, v] of Object.entries(value as object)) check(v, k);
}

/** `value` is a number-valued map (`requests_by_hour` ...). */
export function expectNumberMap(value: unknown): void {
  expectMapOf(value, (v) => expect(v).toBeTypeOf("number"));
}

/** `value` is a date string or number that `new Date()` parses. */
export function expectDate(value: unknown): void {
  expect(["string", "number"]).toContain(typeof value);
  expect(Number.isNaN(new Date(value as string).getTime()), String(value)).toBe(false);
}
