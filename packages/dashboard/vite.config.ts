import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

/**
 * The console's build: `app/` → `ui/` (shipped in the package, served by the `dashboard()`
 * dialect). Relative asset URLs (`base: "./"`) so that the console works under any mount path;
 * hashed file names under `ui/assets/`, which the dialect serves as immutable.
 */
export default defineConfig({
  root: fileURLToPath(new URL("./app", import.meta.url)),
  base: "./",
  build: {
    outDir: fileURLToPath(new URL("./ui", import.meta.url)),
    emptyOutDir: true,
    target: "es2022",
    // No inline script or style anywhere: the CSP allows only files of the console's own origin.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    reportCompressedSize: false,
  },
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
});
