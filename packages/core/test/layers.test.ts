import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The layers of @tokenpool/core, bottom first (docs/architecture.md, "Inside @tokenpool/core"):
 * a top-level folder or file of `src/` imports only from those before it in this list.
 */
const LAYERS = [
  "errors",
  "version",
  "util",
  "exchange",
  "logger",
  "net",
  "store",
  "events",
  "translate",
  "formats",
  "providers",
  "billing",
  "credentials",
  "settings",
  "keys",
  "users",
  "usage",
  "logs",
  "admission",
  "metrics",
  "webhooks",
  "proxy",
  "config-model",
  "options",
  "http",
  "dialects",
  "gateway",
  "node",
  "index",
  "store-kernel",
];

const SRC = fileURLToPath(new URL("../src/", import.meta.url));

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(path);
    return entry.name.endsWith(".ts") ? [path] : [];
  });
}

/** The layer of a path relative to src/: its first segment without the extension. */
function layerOf(relPath: string): string {
  return relPath.split(/[\\/]/)[0]!.replace(/\.(ts|js)$/, "");
}

describe("core layers", () => {
  it("every src file belongs to a known layer", () => {
    const unknown = sourceFiles(SRC)
      .map((file) => layerOf(relative(SRC, file)))
      .filter((layer) => !LAYERS.includes(layer));
    expect(unknown).toEqual([]);
  });

  it("imports point one way: down the list, never up", () => {
    const upward: string[] = [];
    for (const file of sourceFiles(SRC)) {
      const from = layerOf(relative(SRC, file));
      const text = readFileSync(file, "utf8");
      for (const match of text.matchAll(/from "(\.[^"]+)"/g)) {
        const target = normalize(join(dirname(file), match[1]!));
        const to = layerOf(relative(SRC, target));
        if (to !== from && LAYERS.indexOf(to) > LAYERS.indexOf(from)) {
          upward.push(`${relative(SRC, file)} → ${match[1]} (${from} → ${to})`);
        }
      }
    }
    expect(upward).toEqual([]);
  });
});
