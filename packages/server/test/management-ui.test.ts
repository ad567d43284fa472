import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCommand, type ServerProcess, startCli } from "./helpers.js";

const SECRET = "mgmt-ui-secret-0123456789-0123456789-abcdef";
const HTML = "<!doctype html><title>CLI Proxy API Management Center</title>";
const CLI = fileURLToPath(new URL("../src/cli.ts", import.meta.url));

let dir: string;

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "tokenpool-mgmt-ui-"));
  writeFileSync(join(dir, "management.html"), HTML);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("tokenpool serve --management-ui", () => {
  let server: ServerProcess;
  let key: string;

  beforeAll(async () => {
    server = await startCli(
      [
        "serve",
        "--port",
        "0",
        "--store",
        "memory",
        "--log-level",
        "warn",
        "--management-ui",
        join(dir, "management.html"),
      ],
      { TOKENPOOL_SECRET: SECRET },
    );
    key = server.match(/Management key \(shown once[^)]*\): (\S+)/)!;
  });
  afterAll(async () => {
    await server?.stop();
  });

  it("serves the file at /management.html and says where", async () => {
    expect(server.stdout()).toContain(`Management UI: ${server.url}/management.html`);
    const res = await fetch(`${server.url}/management.html`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("cache-control")).toMatch(/no-cache/);
    expect(await res.text()).toBe(HTML);
  });

  it("answers the UI's preflight and its cross-origin calls with CORS and version headers", async () => {
    const pre = await fetch(`${server.url}/v0/management/config`, {
      method: "OPTIONS",
      headers: {
        origin: "http://localhost:5173",
        "access-control-request-method": "GET",
        "access-control-request-headers": "authorization",
      },
    });
    expect(pre.status).toBe(204);
    expect(pre.headers.get("access-control-allow-origin")).toBe("*");
    const res = await fetch(`${server.url}/v0/management/config`, {
      headers: { origin: "http://localhost:5173", authorization: `Bearer ${key}` },
    });
    expect(res.status).toBe(200);
    expect(res.headers.get("access-control-expose-headers")).toContain("X-CPA-BUILD-DATE");
    expect(res.headers.get("x-cpa-version")).toMatch(/^\d+\.\d+\.\d+/);
    await res.arrayBuffer();
  });

  it("refuses to start when the file is missing, naming the flag", async () => {
    const missing = join(dir, "nope.html");
    const run = await runCommand(
      process.execPath,
      [
        "--conditions=source",
        "--import",
        "tsx",
        CLI,
        "serve",
        "--store",
        "memory",
        "--port",
        "0",
        "--management-ui",
        missing,
      ],
      { TOKENPOOL_SECRET: SECRET },
    );
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`--management-ui ${missing}: no such file`);
    expect(run.stdout).not.toContain("listening");
  });
});
