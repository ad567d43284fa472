/**
 * Every code block of README.md and docs/*.md that is meant to run, run as written
 * (`scripts/run-doc-blocks.mjs`, also `pnpm test:docs`), so that `pnpm test` covers the docs too.
 */
import { spawn } from "node:child_process";
import { resolve } from "node:path";
import { expect, it } from "vitest";

const repoRoot = resolve(import.meta.dirname, "../..");

it("runs every runnable code block of README.md and docs/*.md, none failing", async () => {
  const child = spawn(process.execPath, ["scripts/run-doc-blocks.mjs"], {
    cwd: repoRoot,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  child.stdout.on("data", (c) => {
    out += c;
  });
  child.stderr.on("data", (c) => {
    out += c;
  });
  const code = await new Promise<number | null>((done) => child.on("close", done));
  const summary = /(\d+) blocks ran, (\d+) failed/.exec(out);
  expect(summary, out).not.toBeNull();
  expect(Number(summary![2]), out).toBe(0);
  // The README's library example, the binding guides and the curl blocks at least.
  expect(Number(summary![1])).toBeGreaterThanOrEqual(20);
  expect(code, out).toBe(0);
}, 900_000);
