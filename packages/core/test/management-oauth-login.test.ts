import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockOAuth, type MockOAuthServer } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

let oauth: MockOAuthServer;
let gateway: Gateway;
let server: Server;
let origin: string;
let base: string;
let mgmt: string;

beforeEach(async () => {
  oauth = await createMockOAuth({ email: "user@example.com", deviceInterval: 0.02 });
  // The server listens first: the redirect URI names its port.
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_q, res) => res.end();
  server = createServer((req, res) => handler(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  base = `${origin}/v0/management`;
  const callback = `${base}/oauth/callback`;
  gateway = createGateway({
    store: memoryStore(),
    secret: "oauth-login-secret-0123456789-0123456789-abc",
    logger: false,
    oauth: {
      scanIntervalMs: 0,
      providers: {
        anthropic: { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.url, redirectUri: callback },
        codex: { authorizeUrl: oauth.authorizeUrl, tokenUrl: oauth.url, redirectUri: callback },
        qwen: { deviceCodeUrl: oauth.deviceCodeUrl, tokenUrl: oauth.url },
      },
    },
  });
  await gateway.ready;
  mgmt = await gateway.management.generateKey();
  handler = toNodeHandler(gateway);
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
  await oauth.close();
});

const call = (path: string, init: RequestInit = {}) =>
  fetch(`${base}${path}`, {
    ...init,
    headers: { authorization: `Bearer ${mgmt}`, ...(init.headers as Record<string, string>) },
  });

const getJson = async (path: string) =>
  (await (await call(path)).json()) as Record<string, unknown>;

const status = (state: string) => getJson(`/get-auth-status?state=${encodeURIComponent(state)}`);

const authFiles = async () =>
  ((await getJson("/auth-files")) as { files: { name: string; type: string }[] }).files;

describe("OAuth login, authorization code flow with PKCE", () => {
  it("anthropic: auth URL → browser consent → callback → credential in the pool", async () => {
    const start = await getJson("/anthropic-auth-url");
    expect(start.status).toBe("ok");
    const url = new URL(start.url as string);
    expect(`${url.origin}${url.pathname}`).toBe(oauth.authorizeUrl);
    const q = url.searchParams;
    expect(q.get("code_challenge_method")).toBe("S256");
    expect(q.get("code_challenge")).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(q.get("client_id")).toBe("9d1c250a-e61b-44d9-88ed-5944d1962f5e");
    expect(q.get("response_type")).toBe("code");
    const state = q.get("state") as string;
    expect(state).toBe(start.state);
    expect(state.length).toBeGreaterThanOrEqual(32);
    expect(await status(state)).toEqual({ status: "wait" });

    // The browser: the provider's consent page redirects to the callback with code and state.
    const consent = await fetch(url, { redirect: "manual" });
    expect(consent.status).toBe(302);
    const redirect = consent.headers.get("location") as string;
    expect(redirect.startsWith(`${base}/oauth/callback?`)).toBe(true);
    const done = await fetch(redirect);
    expect(done.status).toBe(200);
    const body = (await done.json()) as { status: string; file: string };
    expect(body).toEqual({ status: "ok", file: "claude-user_example.com.json" });
    expect(await status(state)).toEqual({ status: "ok" });

    // The exchange sent the verifier that matches the challenge, as JSON (Anthropic's client).
    const exchange = oauth.requests.find((r) => r.grantType === "authorization_code");
    expect(exchange?.format).toBe("json");
    expect(exchange?.codeVerifier).toBeTruthy();

    const c = gateway.credentials.pool.get("claude-user_example.com.json");
    expect(c).toMatchObject({ provider: "anthropic", kind: "oauth", label: "user@example.com" });
    expect(c?.secret.accessToken).toBe(oauth.issued[0]);
    expect(c?.secret.refreshToken).toMatch(/^1\/\/mock-/);
    expect(c?.secret.expiresAt).toBeGreaterThan(Date.now());
    expect(await authFiles()).toEqual([
      expect.objectContaining({ name: "claude-user_example.com.json", type: "claude" }),
    ]);

    // The state is single use.
    const replay = await fetch(redirect);
    expect(replay.status).toBe(400);
    expect(await replay.json()).toEqual({ error: "unknown or expired state" });
  });

  it("codex: a code the mock issued for the URL's challenge completes the flow (form body)", async () => {
    const start = await getJson("/codex-auth-url");
    const url = new URL(start.url as string);
    expect(url.searchParams.get("scope")).toContain("offline_access");
    const code = oauth.issueCode({ codeChallenge: url.searchParams.get("code_challenge") ?? "" });
    const state = url.searchParams.get("state") as string;
    const res = await fetch(`${base}/oauth/callback?code=${code}&state=${state}`);
    expect(await res.json()).toEqual({ status: "ok", file: "codex-user_example.com.json" });
    expect(oauth.requests.at(-1)?.format).toBe("form");
    expect(await authFiles()).toEqual([
      expect.objectContaining({ name: "codex-user_example.com.json", type: "codex" }),
    ]);
  });

  it("gemini-cli: the URL uses Google's endpoint and keeps project_id for the credential", async () => {
    const start = await getJson("/gemini-cli-auth-url?project_id=my-proj");
    const url = new URL(start.url as string);
    expect(url.origin).toBe("https://accounts.google.com");
    expect(url.searchParams.get("redirect_uri")).toBe("http://localhost:8085/oauth2callback");
    expect(url.searchParams.get("access_type")).toBe("offline");
  });

  it("a callback with an unknown state changes nothing; get-auth-status says error", async () => {
    const res = await fetch(`${base}/oauth/callback?code=x&state=not-a-state`);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({ error: "unknown or expired state" });
    expect(await status("not-a-state")).toEqual({
      status: "error",
      error: "unknown or expired state",
    });
    expect(oauth.requests).toHaveLength(0);
    expect(await authFiles()).toEqual([]);
    expect((await call("/get-auth-status")).status).toBe(400);
  });

  it("a denied consent ends the flow with an error status", async () => {
    const start = await getJson("/anthropic-auth-url");
    oauth.denyNextAuthorization();
    const consent = await fetch(start.url as string, { redirect: "manual" });
    const res = await fetch(consent.headers.get("location") as string);
    expect(res.status).toBe(400);
    expect(await status(start.state as string)).toEqual({
      status: "error",
      error: "authorization denied: access_denied",
    });
    expect(await authFiles()).toEqual([]);
  });

  it("a code that does not match the PKCE challenge is refused by the token endpoint", async () => {
    const start = await getJson("/anthropic-auth-url");
    const code = oauth.issueCode({ codeChallenge: "some-other-challenge" });
    const res = await fetch(`${base}/oauth/callback?code=${code}&state=${start.state}`);
    expect(res.status).toBe(400);
    const st = await status(start.state as string);
    expect(st.status).toBe("error");
    expect(await authFiles()).toEqual([]);
  });
});

describe("OAuth login, device flow (qwen)", () => {
  const startDevice = async () => {
    const start = await getJson("/qwen-auth-url");
    expect(start.status).toBe("ok");
    const url = new URL(start.url as string);
    expect(url.origin).toBe(oauth.origin);
    const userCode = url.searchParams.get("user_code") as string;
    expect(userCode).toBeTruthy();
    return { state: start.state as string, userCode };
  };

  it("stays pending until the user approves, then saves the credential", async () => {
    const { state, userCode } = await startDevice();
    await vi.waitFor(() =>
      expect(oauth.requests.filter((r) => r.deviceCode).length).toBeGreaterThanOrEqual(2),
    );
    expect(await status(state)).toEqual({ status: "wait" });
    oauth.approve(userCode);
    await vi.waitFor(async () => expect(await status(state)).toEqual({ status: "ok" }));
    const files = await authFiles();
    expect(files).toEqual([expect.objectContaining({ name: "qwen-user_example.com.json" })]);
    expect(files[0]?.type).toBe("qwen");
    const c = gateway.credentials.pool.get("qwen-user_example.com.json");
    expect(c?.secret.accessToken).toBe(oauth.issued[0]);
    // Polls carried the PKCE verifier of the device authorization.
    expect(oauth.requests.filter((r) => r.deviceCode).every((r) => r.codeVerifier)).toBe(true);
  });

  it("a denied device authorization ends in an error", async () => {
    const { state, userCode } = await startDevice();
    oauth.deny(userCode);
    await vi.waitFor(async () =>
      expect(await status(state)).toEqual({ status: "error", error: "access denied" }),
    );
    expect(await authFiles()).toEqual([]);
  });

  it("an expired device code ends in an error", async () => {
    const { state, userCode } = await startDevice();
    oauth.expireDevice(userCode);
    await vi.waitFor(async () =>
      expect(await status(state)).toEqual({ status: "error", error: "device code expired" }),
    );
  });
});

describe("gemini-web-token", () => {
  it("stores the cookies as the auth file gemini-web-<hash>.json", async () => {
    const res = await call("/gemini-web-token", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ secure_1psid: "psid-value", secure_1psidts: "psidts-value" }),
    });
    const body = (await res.json()) as { status: string; file: string };
    expect(body.status).toBe("ok");
    expect(body.file).toMatch(/^gemini-web-[0-9a-f]{16}\.json$/);
    expect(await authFiles()).toEqual([
      expect.objectContaining({ name: body.file, type: "gemini-web" }),
    ]);
    const download = (await getJson(`/auth-files/download?name=${body.file}`)) as Record<
      string,
      unknown
    >;
    expect(download).toMatchObject({ secure_1psid: "psid-value", secure_1psidts: "psidts-value" });
    const bad = await call("/gemini-web-token", { method: "POST", body: "{}" });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: "invalid body" });
  });
});

describe("OAuth login state at rest", () => {
  it("keeps the code verifier sealed in the store's kv, and the flow still completes", async () => {
    const start = await getJson("/anthropic-auth-url");
    const url = new URL(start.url as string);
    const state = url.searchParams.get("state") as string;
    const raw = (await gateway.store.kv.get(`oauth-login:${state}`)) as string;
    const kept = JSON.parse(raw) as { verifier?: string };
    expect(kept.verifier).toMatch(/^v1\./);

    const consent = await fetch(url, { redirect: "manual" });
    const done = await fetch(consent.headers.get("location") as string);
    expect(await done.json()).toEqual({ status: "ok", file: "claude-user_example.com.json" });
    // The verifier sent to the token endpoint was never stored as it is.
    const sent = oauth.requests.find((r) => r.grantType === "authorization_code")?.codeVerifier;
    expect(sent).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(raw).not.toContain(sent);
  });
});
