#!/usr/bin/env node
// `pnpm check:packages`: builds every publishable package, packs each one with `pnpm pack` (the
// tarball `changeset publish` uploads: workspace: ranges rewritten, publishConfig applied) and runs
// publint and Are the Types Wrong on that tarball. Exits non-zero on any problem.
//
// - publint runs with --strict, so its warnings fail the check too.
// - attw runs with --profile esm-only: the packages are ESM only on purpose (engines node >=20.19),
//   so the node10 and node16-from-CJS resolution modes are not checked (their only findings are
//   "cjs-resolves-to-esm" and node10's missing subpaths, both expected for an ESM-only package).
// - The `source` export condition points at src/*.ts, which is not published. Each package's
//   publishConfig.exports is its exports map without `source` (pnpm publishes that instead), so a
//   consumer that enables a `source` condition of its own never resolves to a missing file. This
//   script checks that the two maps stay in sync.
//
// Flags: --no-build skips the build (use after `pnpm build`).
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { buildPackages, packPackage, publicPackages, root } from "./pack-packages.mjs";

const rootPkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8"));
const bin = (name) => join(root, "node_modules", ".bin", name);
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: "inherit" });

if (!process.argv.includes("--no-build")) {
  console.log("> pnpm build");
  buildPackages();
}

const out = mkdtempSync(join(tmpdir(), "tokenpool-pack-"));
const failures = [];
try {
  for (const { dir: cwd, pkg } of publicPackages()) {
    console.log(`\n=== ${pkg.name}`);

    const expected = Object.fromEntries(
      Object.entries(pkg.exports ?? {}).map(([key, target]) => {
        if (typeof target !== "object" || target === null) return [key, target];
        const { source: _source, ...rest } = target;
        return [key, rest];
      }),
    );
    if (!isDeepStrictEqual(pkg.publishConfig?.exports, expected)) {
      console.error(
        `publishConfig.exports must equal exports without the "source" condition:\n${JSON.stringify(expected, null, 2)}`,
      );
      failures.push(`${pkg.name}: publishConfig.exports out of sync`);
    }

    const file = packPackage(cwd, out);

    // The license travels with the code: a LICENSE file beside package.json, in the tarball.
    const license = pkg.license === rootPkg.license ? null : `license ${pkg.license}`;
    const inTarball = execFileSync("tar", ["-tzf", file], { encoding: "utf8" }).split("\n");
    if (license || !existsSync(join(cwd, "LICENSE")) || !inTarball.includes("package/LICENSE")) {
      console.error(
        `${pkg.name}: needs "license": "${rootPkg.license}" and a LICENSE file in its folder and tarball`,
      );
      failures.push(`${pkg.name}: LICENSE`);
    }

    for (const [tool, args] of [
      ["publint", ["run", file, "--strict"]],
      ["attw", [file, "--profile", "esm-only", "--format", "table-flipped"]],
    ]) {
      try {
        run(bin(tool), args, cwd);
      } catch {
        failures.push(`${pkg.name}: ${tool}`);
      }
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}

if (failures.length > 0) {
  console.error(`\ncheck:packages failed:\n  ${failures.join("\n  ")}`);
  process.exit(1);
}
console.log("\ncheck:packages: publint and attw found no problems");
