import { readFileSync } from "node:fs";
import { defineConfig } from "tsup";

const { version } = JSON.parse(readFileSync(new URL("./package.json", import.meta.url), "utf8"));
// A reproducible build sets SOURCE_DATE_EPOCH (seconds); otherwise the build's own time.
const epoch = Number(process.env.SOURCE_DATE_EPOCH);
const buildDate = (Number.isFinite(epoch) && epoch > 0 ? new Date(epoch * 1000) : new Date())
  .toISOString()
  .replace(/\.\d{3}Z$/, "Z");
const commit = process.env.TOKENPOOL_BUILD_COMMIT ?? process.env.GITHUB_SHA ?? "";

export default defineConfig({
  entry: ["src/index.ts", "src/node.ts", "src/store-kernel.ts", "src/config-model/index.ts"],
  format: ["esm"],
  dts: true,
  clean: true,
  sourcemap: true,
  target: "node20",
  // Read by src/version.ts (X-CPA-VERSION, X-CPA-BUILD-DATE, X-CPA-COMMIT on management answers).
  define: {
    __TOKENPOOL_VERSION__: JSON.stringify(version),
    __TOKENPOOL_BUILD_DATE__: JSON.stringify(buildDate),
    __TOKENPOOL_COMMIT__: JSON.stringify(commit),
  },
});
