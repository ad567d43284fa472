// Builds and packs the publishable packages the way `changeset publish` does: `pnpm pack` in each
// non-private folder of packages/ (workspace: ranges rewritten, publishConfig applied). Used by
// `pnpm check:packages` (publint and attw on each tarball) and by the packed-install test
// (e2e/test/install.test.ts), which installs the tarballs with npm outside the workspace.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

/** The repository root. */
export const root = resolve(import.meta.dirname, "..");

/**
 * The publishable packages: every folder of packages/ with a package.json that is not private,
 * sorted by folder name.
 *
 * @returns {{ name: string, dir: string, pkg: Record<string, any> }[]}
 */
export function publicPackages() {
  const found = [];
  for (const dir of readdirSync(join(root, "packages")).sort()) {
    const cwd = join(root, "packages", dir);
    let pkg;
    try {
      pkg = JSON.parse(readFileSync(join(cwd, "package.json"), "utf8"));
    } catch {
      continue;
    }
    if (!pkg.private) found.push({ name: pkg.name, dir: cwd, pkg });
  }
  return found;
}

/** `pnpm build` of every package (tsup), output inherited unless `quiet`. */
export function buildPackages({ quiet = false } = {}) {
  execFileSync("pnpm", ["build"], { cwd: root, stdio: quiet ? "pipe" : "inherit" });
}

/**
 * `pnpm pack` of one package folder into `out`; returns the tarball's absolute path.
 *
 * @param {string} dir the package folder
 * @param {string} out the folder the tarball is written to
 */
export function packPackage(dir, out) {
  const packed = execFileSync("pnpm", ["pack", "--pack-destination", out], {
    cwd: dir,
    encoding: "utf8",
  });
  const tarball = packed
    .trim()
    .split("\n")
    .map((line) => line.trim())
    .findLast((line) => line.endsWith(".tgz"));
  if (!tarball) throw new Error(`pnpm pack printed no tarball in ${dir}:\n${packed}`);
  return resolve(out, tarball);
}

/** Modification times of the files under `path` (or of `path` itself), in ms. */
function mtimes(path) {
  if (!existsSync(path)) return [];
  const stat = statSync(path);
  if (!stat.isDirectory()) return [stat.mtimeMs];
  return readdirSync(path).flatMap((name) => mtimes(join(path, name)));
}

/**
 * Whether every package's `dist/` is newer than every package's build inputs (sources,
 * package.json, tsup and TypeScript configuration). Global on purpose: a package's declarations
 * can inline types of another's sources (the client's of core's).
 */
export function builtIsFresh() {
  const packages = publicPackages();
  const inputs = packages.flatMap(({ dir }) =>
    ["src", "package.json", "tsup.config.ts", "tsconfig.json"].flatMap((f) => mtimes(join(dir, f))),
  );
  inputs.push(...mtimes(join(root, "tsconfig.json")));
  const outputs = packages.flatMap(({ dir }) => mtimes(join(dir, "dist")));
  return (
    outputs.length > 0 &&
    packages.every(({ dir }) => existsSync(join(dir, "dist"))) &&
    Math.min(...outputs) > Math.max(...inputs)
  );
}
