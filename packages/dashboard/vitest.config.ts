import { defineProject } from "vitest/config";

/** Browser tests: real Chromium (Debian's) driven by playwright-core against real gateways. */
export default defineProject({
  resolve: { conditions: ["source"] },
  ssr: { resolve: { conditions: ["source"] } },
  test: {
    name: "dashboard",
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: "forks",
    globalSetup: ["./test/global-setup.ts"],
  },
});
