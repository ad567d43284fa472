/** `trusted-proxies` in config.yaml: X-Forwarded-For is believed only from the listed proxies. */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { silentLogger } from "@tokenpool/core";
import { afterEach, describe, expect, it } from "vitest";
import { type RunningServer, startServer } from "../src/serve.js";

const running: RunningServer[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const s of running.splice(0)) await s.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

async function start(yaml: string): Promise<RunningServer> {
  const dir = mkdtempSync(join(tmpdir(), "tokenpool-trusted-"));
  dirs.push(dir);
  const config = join(dir, "config.yaml");
  writeFileSync(config, yaml);
  const s = await startServer({
    port: 0,
    store: "memory",
    config,
    demo: true,
    logger: silentLogger,
    print: () => {},
  });
  running.push(s);
  return s;
}

/** A request from the allowlisted client 10.1.2.3, as relayed by a proxy on 127.0.0.1. */
async function viaProxy(s: RunningServer): Promise<number> {
  const { key } = await s.gateway.keys.create({
    name: "allowlisted",
    unlimitedQuota: true,
    allowIps: ["10.1.2.3"],
  });
  const res = await fetch(`${s.url}/v1/chat/completions`, {
    method: "POST",
    headers: {
      authorization: `Bearer ${key}`,
      "content-type": "application/json",
      "x-forwarded-for": "10.1.2.3",
    },
    body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
  });
  await res.text();
  return res.status;
}

describe("trusted-proxies", () => {
  it("believes X-Forwarded-For from a listed proxy", async () => {
    expect(await viaProxy(await start('trusted-proxies: ["127.0.0.1"]\n'))).toBe(200);
  });

  it("ignores X-Forwarded-For without it", async () => {
    expect(await viaProxy(await start("debug: false\n"))).toBe(403);
  });
});
