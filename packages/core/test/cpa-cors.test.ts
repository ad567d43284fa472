import { readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, request, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  createGateway,
  type Gateway,
  type GatewayOptions,
  isGatewayError,
  memoryStore,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "cpa-cors-secret-0123456789-0123456789-abc";
const MGMT = "cpa-cors-management-key-0123456789";
const PANEL = "https://panel.example.com";
const VERSION = JSON.parse(
  readFileSync(new URL("../package.json", import.meta.url), "utf8"),
).version;

let dir: string;
let uiFile: string;
const UI_HTML = "<!doctype html><title>CLI Proxy API Management Center</title><p>panel</p>";

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "tokenpool-cpa-cors-"));
  uiFile = join(dir, "management.html");
  await writeFile(uiFile, UI_HTML);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const running: { server: Server; gateway: Gateway }[] = [];

/** A gateway with a management key behind a real node:http server on port 0. */
async function serve(
  management: GatewayOptions["management"] = {},
  withKey = true,
): Promise<{ base: string; gateway: Gateway }> {
  const gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    management,
  });
  if (withKey) await gateway.management.setKey(MGMT);
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  running.push({ server, gateway });
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, gateway };
}

afterEach(async () => {
  for (const { server, gateway } of running.splice(0)) {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
    await gateway.close();
  }
});

/** A comma-separated header as lower-case names. */
const names = (value: string | null) =>
  (value ?? "")
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter(Boolean);

function expectVersionHeaders(res: Response): void {
  expect(res.headers.get("x-cpa-version")).toBe(VERSION);
  // From source there is no build: the date is honest about it.
  expect(res.headers.get("x-cpa-build-date")).toBe("unknown");
  expect(res.headers.get("x-cpa-commit")).toBe("none");
  expect(res.headers.get("x-cpa-support-plugin")).toBe("0");
}

function expectCorsHeaders(res: Response, origin = "*"): void {
  expect(res.headers.get("access-control-allow-origin")).toBe(origin);
  expect(names(res.headers.get("access-control-allow-methods"))).toEqual([
    "get",
    "post",
    "put",
    "patch",
    "delete",
    "options",
  ]);
  expect(names(res.headers.get("access-control-allow-headers"))).toEqual(
    expect.arrayContaining(["authorization", "content-type", "x-management-key"]),
  );
  expect(names(res.headers.get("access-control-expose-headers"))).toEqual(
    expect.arrayContaining([
      "x-cpa-version",
      "x-cpa-commit",
      "x-cpa-build-date",
      "x-cpa-support-plugin",
      "x-server-version",
      "x-server-build-date",
      "retry-after",
    ]),
  );
  expect(res.headers.get("access-control-allow-credentials")).toBeNull();
}

describe("CORS on the management API (default: any origin, as CLIProxyAPI)", () => {
  it("answers a real preflight with 204, no body, no key, and the CORS headers", async () => {
    const { base } = await serve();
    const res = await fetch(`${base}/v0/management/openai-compatibility`, {
      method: "OPTIONS",
      headers: {
        origin: PANEL,
        "access-control-request-method": "PATCH",
        "access-control-request-headers": "authorization,content-type,x-panel-trace",
      },
    });
    expect(res.status).toBe(204);
    expect(await res.text()).toBe("");
    expectCorsHeaders(res);
    // The names the browser asked for are allowed too (as CLIProxyAPI's `*` would).
    expect(names(res.headers.get("access-control-allow-headers"))).toContain("x-panel-trace");
    expect(res.headers.get("access-control-max-age")).toBe("600");
  });

  it("answers OPTIONS on any management path with 204, never 404 or 405", async () => {
    const { base } = await serve();
    for (const path of ["/v0/management", "/v0/management/no-such-route", "/v0/management/a/b/c"]) {
      const res = await fetch(`${base}${path}`, {
        method: "OPTIONS",
        headers: { origin: PANEL, "access-control-request-method": "GET" },
      });
      expect(res.status, path).toBe(204);
      expect(res.headers.get("access-control-allow-origin"), path).toBe("*");
    }
  });

  it("gives a cross-origin request with the management key the CORS, expose and version headers", async () => {
    const { base } = await serve();
    const res = await fetch(`${base}/v0/management/config`, {
      headers: { origin: PANEL, authorization: `Bearer ${MGMT}` },
    });
    expect(res.status).toBe(200);
    expect(typeof (await res.json())).toBe("object");
    expectCorsHeaders(res);
    expectVersionHeaders(res);
    expect(res.headers.get("content-type")).toMatch(/^application\/json/);
  });

  it("puts the CORS and version headers on the guard's 401 and on 404s", async () => {
    const { base } = await serve();
    const missing = await fetch(`${base}/v0/management/config`, { headers: { origin: PANEL } });
    expect(missing.status).toBe(401);
    expect(await missing.json()).toEqual({ error: "missing management key" });
    expectCorsHeaders(missing);
    expectVersionHeaders(missing);

    const wrong = await fetch(`${base}/v0/management/config`, {
      headers: { origin: PANEL, authorization: "Bearer not-the-key" },
    });
    expect(wrong.status).toBe(401);
    expectCorsHeaders(wrong);
    expectVersionHeaders(wrong);

    const unknown = await fetch(`${base}/v0/management/no-such-route`, {
      headers: { origin: PANEL, authorization: `Bearer ${MGMT}` },
    });
    expect(unknown.status).toBe(404);
    expectCorsHeaders(unknown);
    expectVersionHeaders(unknown);
  });

  it("answers preflights and sends the headers with the management API disabled (no key)", async () => {
    const { base } = await serve({}, false);
    const pre = await fetch(`${base}/v0/management/config`, {
      method: "OPTIONS",
      headers: { origin: PANEL, "access-control-request-method": "GET" },
    });
    expect(pre.status).toBe(204);
    const res = await fetch(`${base}/v0/management/config`, { headers: { origin: PANEL } });
    expect(res.status).toBe(404);
    expectCorsHeaders(res);
    expectVersionHeaders(res);
  });

  it("leaves OPTIONS and answers outside the management API as they were", async () => {
    const { base } = await serve();
    for (const path of ["/v1/chat/completions", "/api/token/", "/v1/tokens", "/healthz"]) {
      const pre = await fetch(`${base}${path}`, {
        method: "OPTIONS",
        headers: { origin: PANEL, "access-control-request-method": "POST" },
      });
      expect(pre.status, path).not.toBe(204);
      expect(pre.headers.get("access-control-allow-origin"), path).toBeNull();
      expect(pre.headers.get("x-cpa-version"), path).toBeNull();
      await pre.arrayBuffer();
    }
    const res = await fetch(`${base}/v1/models`, { headers: { origin: PANEL } });
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    expect(res.headers.get("x-cpa-version")).toBeNull();
    await res.arrayBuffer();
    // A path that only starts like the prefix is not under it.
    const near = await fetch(`${base}/v0/managementx`, { method: "OPTIONS" });
    expect(near.status).not.toBe(204);
    await near.arrayBuffer();
  });

  it("answers the same through gateway.handler (the fetch entry)", async () => {
    const { gateway } = await serve();
    const pre = await gateway.handler(
      new Request("http://gw.test/v0/management/api-keys", {
        method: "OPTIONS",
        headers: { origin: PANEL, "access-control-request-method": "PUT" },
      }),
      { remoteAddress: "127.0.0.1" },
    );
    expect(pre.status).toBe(204);
    expectCorsHeaders(pre);
    const res = await gateway.handler(
      new Request("http://gw.test/v0/management/api-keys", {
        headers: { origin: PANEL, "x-management-key": MGMT },
      }),
      { remoteAddress: "127.0.0.1" },
    );
    expect(res.status).toBe(200);
    expectCorsHeaders(res);
    expectVersionHeaders(res);
  });
});

describe("CORS with a configured origin list", () => {
  const OTHER = "https://evil.example.net";

  it("echoes a listed origin with Vary: Origin", async () => {
    const { base } = await serve({ corsOrigins: [PANEL, "http://localhost:5173"] });
    const pre = await fetch(`${base}/v0/management/config`, {
      method: "OPTIONS",
      headers: {
        origin: PANEL,
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
      },
    });
    expect(pre.status).toBe(204);
    expectCorsHeaders(pre, PANEL);
    expect(names(pre.headers.get("vary"))).toContain("origin");

    const res = await fetch(`${base}/v0/management/config`, {
      headers: { origin: "http://localhost:5173", authorization: `Bearer ${MGMT}` },
    });
    expect(res.status).toBe(200);
    expectCorsHeaders(res, "http://localhost:5173");
    expect(names(res.headers.get("vary"))).toContain("origin");
    expectVersionHeaders(res);
  });

  it("sends no CORS headers to an origin that is not listed (the browser refuses)", async () => {
    const { base } = await serve({ corsOrigins: [PANEL] });
    const pre = await fetch(`${base}/v0/management/config`, {
      method: "OPTIONS",
      headers: { origin: OTHER, "access-control-request-method": "GET" },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBeNull();
    expect(pre.headers.get("access-control-allow-headers")).toBeNull();
    expect(names(pre.headers.get("vary"))).toContain("origin");

    const res = await fetch(`${base}/v0/management/config`, {
      headers: { origin: OTHER, authorization: `Bearer ${MGMT}` },
    });
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
    expect(res.headers.get("access-control-expose-headers")).toBeNull();
    // Not a browser's cross-origin call (no Origin): served, with the version, without CORS.
    const plain = await fetch(`${base}/v0/management/config`, {
      headers: { authorization: `Bearer ${MGMT}` },
    });
    expect(plain.status).toBe(200);
    expect(plain.headers.get("access-control-allow-origin")).toBeNull();
    expectVersionHeaders(plain);
  });

  it("allows no origin with an empty list", async () => {
    const { base } = await serve({ corsOrigins: [] });
    const res = await fetch(`${base}/v0/management/config`, {
      headers: { origin: PANEL, authorization: `Bearer ${MGMT}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });
});

describe("GET /management.html (management.uiFile)", () => {
  it("serves the file as no-cache HTML, without a key", async () => {
    const { base } = await serve({ uiFile });
    const res = await fetch(`${base}/management.html`);
    expect(res.status).toBe(200);
    expect(await res.text()).toBe(UI_HTML);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("cache-control")).toMatch(/no-cache/);
    expect(res.headers.get("x-content-type-options")).toBe("nosniff");
    // Same origin: no CORS on the page itself.
    expect(res.headers.get("access-control-allow-origin")).toBeNull();
  });

  it("reads the file on every request (a replaced file is served at once)", async () => {
    const file = join(dir, "replaced.html");
    await writeFile(file, "<p>v1</p>");
    const { base } = await serve({ uiFile: file });
    expect(await (await fetch(`${base}/management.html`)).text()).toBe("<p>v1</p>");
    await writeFile(file, "<p>v2</p>");
    expect(await (await fetch(`${base}/management.html`)).text()).toBe("<p>v2</p>");
  });

  it("serves that one path only", async () => {
    const { base } = await serve({ uiFile });
    for (const path of [
      "/management.html/",
      "/management.html%00",
      "/replaced.html",
      "/management.htm",
      `/${encodeURIComponent(uiFile)}`,
    ]) {
      const res = await fetch(`${base}${path}`);
      expect(res.status, path).toBe(404);
      expect(await res.text(), path).not.toContain("panel");
    }
    // Sent as is (fetch would resolve the dot segments itself).
    for (const path of ["/x/../management.html", "/./management.html", "//management.html"]) {
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(`${base}${path}`, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        req.on("error", reject);
        req.path = path;
        req.end();
      });
      expect(status, path).toBe(404);
    }
    const post = await fetch(`${base}/management.html`, { method: "POST" });
    expect(post.status).not.toBe(200);
    await post.arrayBuffer();
  });

  it("is a 404 without the option", async () => {
    const { base } = await serve();
    const res = await fetch(`${base}/management.html`);
    expect(res.status).toBe(404);
    expect(await res.text()).not.toContain("panel");
  });

  it("answers 500 without the path when the file went away", async () => {
    const file = join(dir, "gone.html");
    await writeFile(file, "<p>soon gone</p>");
    const { base } = await serve({ uiFile: file });
    await rm(file);
    const res = await fetch(`${base}/management.html`);
    expect(res.status).toBe(500);
    const text = await res.text();
    expect(text).not.toContain(dir);
    expect(JSON.parse(text)).toEqual({ error: "the management UI file could not be read" });
  });
});

describe("management options are checked at createGateway()", () => {
  const make = (management: unknown) => () =>
    createGateway({
      store: memoryStore(),
      secret: SECRET,
      logger: false,
      management: management as GatewayOptions["management"],
    });

  function expectInvalid(fn: () => unknown, pattern: RegExp): void {
    let caught: unknown;
    try {
      fn();
    } catch (error) {
      caught = error;
    }
    expect(isGatewayError(caught) && caught.code === "INVALID_OPTIONS", String(caught)).toBe(true);
    expect((caught as Error).message).toMatch(pattern);
  }

  it("refuses a corsOrigins that is not an array of origins", () => {
    expectInvalid(make({ corsOrigins: "*" }), /`management\.corsOrigins`.*array/);
    expectInvalid(make({ corsOrigins: [42] }), /`management\.corsOrigins/);
    expectInvalid(
      make({ corsOrigins: ["https://panel.example.com/app"] }),
      /`management\.corsOrigins`: "https:\/\/panel\.example\.com\/app" is not an origin/,
    );
    expectInvalid(make({ corsOrigins: ["panel.example.com"] }), /is not an origin/);
    expectInvalid(make({ corsOrigins: ["ftp://panel.example.com"] }), /is not an origin/);
  });

  it("accepts origins with a trailing slash, `*` and `null`", async () => {
    for (const corsOrigins of [["https://Panel.Example.com/"], ["*"], ["null"], []]) {
      const gw = make({ corsOrigins })() as Gateway;
      await gw.close();
    }
  });

  it("refuses a uiFile that is missing, not a file, or not a string", async () => {
    const missing = join(dir, "nope", "management.html");
    expectInvalid(
      make({ uiFile: missing }),
      new RegExp(
        `\`management\\.uiFile\`: ${missing.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")} does not exist`,
      ),
    );
    const sub = join(dir, "a-directory");
    await mkdir(sub, { recursive: true });
    expectInvalid(make({ uiFile: sub }), /`management\.uiFile`: .* is not a file/);
    expectInvalid(make({ uiFile: 7 }), /`management\.uiFile`/);
    expectInvalid(make({ uiFile: "" }), /`management\.uiFile`/);
  });
});
