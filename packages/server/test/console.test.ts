import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServerProcess, startCli } from "./helpers.js";

const SECRET = "console-cli-secret-0123456789-0123456789-abc";
const ARGS = ["serve", "--port", "0", "--store", "memory", "--log-level", "warn"];

describe("tokenpool serve: the web console", () => {
  let on: ServerProcess;
  let off: ServerProcess;

  beforeAll(async () => {
    [on, off] = await Promise.all([
      startCli(ARGS, { TOKENPOOL_SECRET: SECRET }),
      startCli([...ARGS, "--no-dashboard"], { TOKENPOOL_SECRET: SECRET }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([on?.stop(), off?.stop()]);
  });

  it("is served at /dashboard/ by default, with a strict CSP, and says where", async () => {
    expect(on.stdout()).toContain(`Console: ${on.url}/dashboard/`);
    const res = await fetch(`${on.url}/dashboard/`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/html; charset=utf-8");
    expect(res.headers.get("content-security-policy")).toContain("script-src 'self'");
    const html = await res.text();
    expect(html).toContain('<meta name="tokenpool-dashboard-path" content="/dashboard">');
    const script = html.match(/src="\.\/(assets\/[^"]+\.js)"/)?.[1];
    expect(script).toBeDefined();
    const js = await fetch(`${on.url}/dashboard/${script}`);
    expect(js.status).toBe(200);
    expect(js.headers.get("cache-control")).toBe("public, max-age=31536000, immutable");
  });

  it("--no-dashboard leaves it out (the path is no route) and prints no console line", async () => {
    expect(off.stdout()).not.toContain("Console:");
    const res = await fetch(`${off.url}/dashboard/`);
    expect(res.status).toBe(404);
  });
});
