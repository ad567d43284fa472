import { defineProject } from "vitest/config";

/** The per-package Vitest project config: resolve workspace packages to their sources. */
export function packageProject(name: string, extra: { testTimeout?: number } = {}) {
  return defineProject({
    resolve: { conditions: ["source"] },
    ssr: { resolve: { conditions: ["source"] } },
    test: {
      name,
      include: ["test/**/*.test.ts", "src/**/*.test.ts"],
      testTimeout: extra.testTimeout ?? 20_000,
      hookTimeout: 60_000,
      pool: "forks",
    },
  });
}
