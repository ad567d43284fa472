import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { brotliDecompressSync, gunzipSync } from "node:zlib";
import { createGateway, type Gateway, memoryStore } from "@tokenpool/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DASHBOARD_CSP, dashboard } from "../src/index.js";

const SECRET = "dashboard-dialect-secret-0123456789abcdef0123";
let gateway: Gateway;

const get = (path: string, headers: Record<string, string> = {}) =>
  gateway.handler(new Request(`http://gw.test${path}`, { headers }));

beforeAll(async () => {
  gateway = await createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    dialects: [dashboard()],
  });
});
afterAll(() => gateway.close());

/** The app's page and the files it loads at once (its scripts and styles). */
async function initialLoad(): Promise<{ html: string; files: string[] }> {
  const html = await (await get("/dashboard/")).text();
  const files = [...html.matchAll(/(?:src|href)="\.\/(assets\/[^"]+)"/g)].map((m) => m[1]!);
  return { html, files };
}

describe("dashboard(): the console's dialect", () => {
  it("redirects the bare path to the trailing slash (the app's relative URLs need it), keeping the query", async () => {
    const res = await get("/dashboard?lang=zh");
    expect(res.status).toBe(308);
    // Relative, so that a binding's mount path (`/gw/dashboard`) is kept.
    expect(res.headers.get("location")).toBe("dashboard/?lang=zh");
    expect(new URL(res.headers.get("location")!, "http://h/gw/dashboard?lang=zh").pathname).toBe(
      "/gw/dashboard/",
    );
  });

  it("serves the app uncached with a strict CSP, no inline script, and its mount path in a meta element", async () => {
    const res = await get("/dashboard/");
    expect(res.status).toBe(200);
    expect(res.headers.get("cache-control")).toBe("no-cache");
    expect(res.headers.get("content-security-policy")).toBe(DASHBOARD_CSP);
    expect(DASHBOARD_CSP).toContain("script-src 'self'");
    expect(DASHBOARD_CSP).not.toContain("unsafe-inline");
    expect(DASHBOARD_CSP).not.toContain("unsafe-eval");
    expect(res.headers.get("x-frame-options")).toBe("DENY");
    expect(res.headers.get("referrer-policy")).toBe("no-referrer");
    const html = await res.text();
    expect(html).toContain('<meta name="tokenpool-dashboard-path" content="/dashboard">');
    // Every script is a file of the origin: no inline code.
    for (const m of html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)) {
      expect(m[1]).toMatch(/src="\.\/assets\//);
      expect(m[2]!.trim()).toBe("");
    }
    expect(html).not.toMatch(/<style\b|\sstyle="/);
    expect((await get("/dashboard/index.html")).status).toBe(200);
  });

  it("serves hashed assets as immutable for a year, compressed as asked, with an ETag that answers 304", async () => {
    const { files } = await initialLoad();
    expect(files.some((f) => f.endsWith(".js"))).toBe(true);
    expect(files.some((f) => f.endsWith(".css"))).toBe(true);
    for (const file of files) {
      const plain = await get(`/dashboard/${file}`);
      expect(plain.status).toBe(200);
      expect(plain.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
      expect(plain.headers.get("content-encoding")).toBeNull();
      const raw = Buffer.from(await plain.arrayBuffer());

      const br = await get(`/dashboard/${file}`, { "accept-encoding": "gzip, deflate, br" });
      expect(br.headers.get("content-encoding")).toBe("br");
      expect(br.headers.get("vary")).toBe("accept-encoding");
      // The Request/Response pair here does not decode: the bytes are the compressed ones.
      expect(brotliDecompressSync(Buffer.from(await br.arrayBuffer())).equals(raw)).toBe(true);

      const gz = await get(`/dashboard/${file}`, { "accept-encoding": "gzip" });
      expect(gz.headers.get("content-encoding")).toBe("gzip");
      expect(gunzipSync(Buffer.from(await gz.arrayBuffer())).equals(raw)).toBe(true);

      const etag = plain.headers.get("etag")!;
      const again = await get(`/dashboard/${file}`, { "if-none-match": etag });
      expect(again.status).toBe(304);
    }
  });

  it("keeps the initial load under 200 KB compressed (the app page and every file it loads at once)", async () => {
    const { files } = await initialLoad();
    let total = Buffer.byteLength(
      Buffer.from(await (await get("/dashboard/", { "accept-encoding": "br" })).arrayBuffer()),
    );
    for (const file of files) {
      const res = await get(`/dashboard/${file}`, { "accept-encoding": "br" });
      total += Buffer.from(await res.arrayBuffer()).length;
    }
    expect(total).toBeGreaterThan(1000);
    expect(total).toBeLessThanOrEqual(200 * 1024);
  });

  it("serves only files of the built console: unknown files, dot-dot paths and encoded tricks are 404s", async () => {
    for (const path of [
      "/dashboard/assets/nope.js",
      "/dashboard/../package.json",
      "/dashboard/%2e%2e/package.json",
      "/dashboard/assets/..%2f..%2fpackage.json",
      "/dashboard/%2e%2e%2f%2e%2e%2fsrc/index.ts",
      "/dashboard/vite.config.ts",
      "/dashboard/%00",
    ]) {
      const res = await get(path);
      expect(res.status, path).toBe(404);
    }
    // The gateway keeps serving.
    expect((await get("/dashboard/")).status).toBe(200);
  });

  it("answers only GET (a POST under its path is a 405)", async () => {
    const res = await gateway.handler(new Request("http://gw.test/dashboard/", { method: "POST" }));
    expect(res.status).toBe(405);
  });

  it("mounts under another path, and says so to the app", async () => {
    const g = await createGateway({
      store: memoryStore(),
      secret: SECRET,
      logger: false,
      dialects: [dashboard({ path: "/ops/console" })],
    });
    try {
      const res = await g.handler(new Request("http://gw.test/ops/console/"));
      expect(res.status).toBe(200);
      expect(await res.text()).toContain('content="/ops/console"');
      expect((await g.handler(new Request("http://gw.test/dashboard/"))).status).toBe(404);
    } finally {
      await g.close();
    }
  });

  it("refuses a bad path option and a path another dialect owns, naming the fix", async () => {
    for (const path of ["dashboard", "/dashboard/", "/a b", "/../x", ""]) {
      expect(() => dashboard({ path }), path).toThrow(/Invalid dashboard option `path`/);
    }
    expect(() =>
      createGateway({
        store: memoryStore(),
        secret: SECRET,
        logger: false,
        dialects: [dashboard({ path: "/api" })],
      }),
    ).toThrow(/the prefix \/api of "dashboard" belongs to the dialect "new-api"/);
    expect(() =>
      createGateway({
        store: memoryStore(),
        secret: SECRET,
        logger: false,
        dialects: [dashboard(), dashboard({ path: "/other" })],
      }),
    ).toThrow(/a dialect named "dashboard" is already mounted/);
  });

  it("without a built console answers 503 with the command that builds it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tokenpool-noui-"));
    const g = await createGateway({
      store: memoryStore(),
      secret: SECRET,
      logger: false,
      dialects: [dashboard({ uiDir: join(dir, "missing") })],
    });
    try {
      const res = await g.handler(new Request("http://gw.test/dashboard/"));
      expect(res.status).toBe(503);
      expect(await res.text()).toMatch(/pnpm --filter @tokenpool\/dashboard build/);
    } finally {
      await g.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("serves a custom build folder's files and nothing outside it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tokenpool-ui-"));
    mkdirSync(join(dir, "ui", "assets"), { recursive: true });
    writeFileSync(
      join(dir, "ui", "index.html"),
      "<!doctype html><html><head></head><body></body></html>",
    );
    writeFileSync(join(dir, "ui", "assets", "app-abcdef12.js"), "console.log(1)");
    writeFileSync(join(dir, "secret.txt"), "do not serve");
    const g = await createGateway({
      store: memoryStore(),
      secret: SECRET,
      logger: false,
      dialects: [dashboard({ uiDir: join(dir, "ui") })],
    });
    try {
      expect(
        (await g.handler(new Request("http://gw.test/dashboard/assets/app-abcdef12.js"))).status,
      ).toBe(200);
      expect((await g.handler(new Request("http://gw.test/dashboard/../secret.txt"))).status).toBe(
        404,
      );
      expect(
        (await g.handler(new Request("http://gw.test/dashboard/%2e%2e/secret.txt"))).status,
      ).toBe(404);
    } finally {
      await g.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
