/**
 * The `tokenpool-mock-upstream` bin as a user gets it: the package is built and packed with
 * `pnpm pack` (the tarball that is published), unpacked into a fresh folder's node_modules, and
 * the bin is linked and made executable the way npm does it, then run through that link.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const pkgDir = fileURLToPath(new URL("..", import.meta.url));

describe("tokenpool-mock-upstream, installed from the packed tarball", () => {
  let dir: string;
  let bin: string;
  let child: ChildProcess | undefined;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "tokenpool-mock-bin-"));
    execFileSync("pnpm", ["exec", "tsup"], { cwd: pkgDir, stdio: "ignore" });
    const packed = execFileSync("pnpm", ["pack", "--pack-destination", dir], {
      cwd: pkgDir,
      encoding: "utf8",
    });
    const tarball = packed.trim().split("\n").pop()!;
    const installed = join(dir, "app", "node_modules", "@tokenpool", "testing");
    mkdirSync(installed, { recursive: true });
    execFileSync("tar", ["-xzf", tarball, "-C", installed, "--strip-components=1"]);
    const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8")) as {
      type?: string;
      bin?: Record<string, string>;
    };
    expect(manifest.type).toBe("module");
    const target = manifest.bin?.["tokenpool-mock-upstream"];
    expect(target).toBe("./dist/mock-upstream-cli.js");
    // What npm does with a bin: the target made executable, a link in node_modules/.bin.
    chmodSync(join(installed, target!), 0o755);
    bin = join(dir, "app", "node_modules", ".bin", "tokenpool-mock-upstream");
    mkdirSync(dirname(bin), { recursive: true });
    symlinkSync(join("..", "@tokenpool", "testing", target!), bin);
  }, 180_000);

  afterAll(() => {
    child?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  });

  it("is a built ESM file with a shebang", () => {
    expect(readFileSync(bin, "utf8").startsWith("#!/usr/bin/env node\n")).toBe(true);
  });

  it("listens on --port 0 --host, prints its URL, serves, and exits 0 on SIGTERM", async () => {
    child = spawn(bin, ["--port", "0", "--host", "127.0.0.1", "--api-key", "bin-key"], {
      cwd: join(dir, "app"),
      stdio: ["ignore", "pipe", "pipe"],
    });
    const [line] = (await once(child.stdout!, "data")) as [Buffer];
    const info = JSON.parse(line.toString().trim()) as { url: string; port: number };
    expect(info.port).toBeGreaterThan(0);
    expect(info.url).toBe(`http://127.0.0.1:${info.port}/v1`);
    const res = await fetch(`${info.url}/chat/completions`, {
      method: "POST",
      headers: { authorization: "Bearer bin-key", "content-type": "application/json" },
      body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content: "hi" }] }),
    });
    expect(res.status).toBe(200);
    expect(((await res.json()) as { object: string }).object).toBe("chat.completion");
    const exited = once(child, "exit");
    child.kill("SIGTERM");
    expect((await exited)[0]).toBe(0);
  });

  it("answers --help with its usage and a bad flag with exit code 2", async () => {
    const help = execFileSync(bin, ["--help"], { encoding: "utf8" });
    expect(help).toContain("Usage: tokenpool-mock-upstream");
    expect(help).toContain("--port");
    const bad = spawn(bin, ["--port", "nope"], { stdio: ["ignore", "ignore", "pipe"] });
    let err = "";
    bad.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    expect((await once(bad, "exit"))[0]).toBe(2);
    expect(err).toContain("--port must be a non-negative integer");
  });
});
