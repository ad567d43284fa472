/**
 * The server's management refusals say what to do (issue 14, point 5), and CLIProxyAPI's
 * `allow-remote-management: true`, which the 403 names, is read from the config file.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "@tokenpool/core";
import { afterEach, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../src/serve.js";

const KEY = "tp-server-hints-key-0123456789abcdef";
const running: RunningServer[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(yaml: string): Promise<RunningServer> {
  const dir = mkdtempSync(join(tmpdir(), "tokenpool-hints-"));
  dirs.push(dir);
  const config = join(dir, "config.yaml");
  writeFileSync(config, yaml);
  const s = await startServer({
    port: 0,
    store: "memory",
    config,
    logger: silentLogger,
    print: () => {},
  });
  running.push(s);
  return s;
}

const remote = (s: RunningServer) =>
  fetch(`${s.url}/v0/management/debug`, {
    headers: { authorization: `Bearer ${KEY}`, "x-forwarded-for": "198.51.100.23" },
  });

describe("management hints of the server", () => {
  it("answers 404 naming remote-management.secret-key when the config disables the management API", async () => {
    const s = await start('remote-management:\n  secret-key: ""\n');
    const res = await fetch(`${s.url}/v0/management/usage`, {
      headers: { authorization: `Bearer ${KEY}` },
    });
    expect(res.status).toBe(404);
    const { error } = (await res.json()) as { error: string };
    expect(error).toMatch(/^not found: no management key is set; /);
    expect(error).toContain("set `remote-management.secret-key` in the file given with --config");
  });

  it("refuses a remote caller naming allow-remote-management, and lets it in once the config sets it", async () => {
    const base = `trusted-proxies: ["127.0.0.1"]\nremote-management:\n  secret-key: "${KEY}"\n`;
    const closed = await start(base);
    const refused = await remote(closed);
    expect(refused.status).toBe(403);
    const { error } = (await refused.json()) as { error: string };
    expect(error).toContain("this request came from the client address 198.51.100.23");
    expect(error).toContain("`allow-remote-management: true`");
    const open = await start(`${base}allow-remote-management: true\n`);
    expect((await remote(open)).status).toBe(200);
  });
});
