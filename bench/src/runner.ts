/**
 * What the bench runners share (`proxy.ts`, `scale.ts`, `redis-trips.ts`, `scale-seed.ts`):
 * progress lines, CPU pinning with `taskset`, and the esbuild bundling of measured children (so
 * that no TypeScript loader runs on the measured path).
 *
 * @module
 */
import { execFileSync } from "node:child_process";
import os from "node:os";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

/** The repository root. */
export const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** A progress line on stderr (stdout carries the report). */
export function log(line: string): void {
  process.stderr.write(`[bench] ${line}\n`);
}

function hasTaskset(): boolean {
  try {
    execFileSync("taskset", ["-p", String(process.pid)], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Whether runs pin processes to CPUs: `BENCH_PIN` is not `0`, the machine has 2 CPUs or more and
 * `taskset` is installed.
 */
export const PIN = process.env.BENCH_PIN !== "0" && os.cpus().length >= 2 && hasTaskset();

/** Binds every thread of process `pid` (and the threads it starts later) to CPU `cpu`. */
export function pin(pid: number | undefined, cpu: number): void {
  if (!PIN || pid === undefined) return;
  execFileSync("taskset", ["-a", "-p", "-c", String(cpu), String(pid)], { stdio: "ignore" });
}

/**
 * Bundles `entryPoints` (name → file) into `outdir` as `<name>.mjs`: workspace packages from
 * their sources (the `source` condition), everything bundled but the native addon.
 */
export async function bundle(
  entryPoints: Record<string, string>,
  outdir: string,
  absWorkingDir = ROOT,
): Promise<void> {
  await build({
    absWorkingDir,
    entryPoints,
    outdir,
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    conditions: ["source"],
    external: ["better-sqlite3"],
    // CommonJS dependencies (undici) require Node built-ins at run time.
    banner: {
      js: 'import { createRequire as __cr } from "node:module"; const require = __cr(import.meta.url);',
    },
    logLevel: "warning",
  });
}
