import { defineConfig } from "tsup";

export default defineConfig({
  entry: [
    "src/index.ts",
    "src/mock-upstream.ts",
    "src/mock-oauth.ts",
    "src/mock-upstream-cli.ts",
    "src/redis-server.ts",
    "src/postgres-server.ts",
  ],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node20",
});
