/**
 * Builds the console (`app/` → `ui/`) before the browser tests when the build is missing or
 * older than a source file: the tests run against the bundle that ships.
 */
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

function newest(dir: string): number {
  let t = 0;
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    const s = statSync(full);
    t = Math.max(t, s.isDirectory() ? newest(full) : s.mtimeMs);
  }
  return t;
}

export default function setup(): void {
  const built = join(root, "ui", "index.html");
  const stale =
    !existsSync(built) ||
    statSync(built).mtimeMs <
      Math.max(newest(join(root, "app")), statSync(join(root, "vite.config.ts")).mtimeMs);
  if (stale)
    execFileSync(join(root, "node_modules", ".bin", "vite"), ["build", "--logLevel", "warn"], {
      cwd: root,
      stdio: "inherit",
    });
}
