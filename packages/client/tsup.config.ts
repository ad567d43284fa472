import { defineConfig } from "tsup";

export default defineConfig({
  entry: ["src/index.ts"],
  format: ["esm"],
  // The wire types come from @tokenpool/core (types only: `import type`). They are inlined into
  // dist/index.d.ts so that the published client depends on core neither at run time nor for its
  // types: `npm i @tokenpool/client` brings ky and nothing of the engine.
  // (`paths` sends the declaration bundler to core's sources: its built .d.ts files are split
  // into chunks that the bundler cannot follow.)
  dts: {
    resolve: ["@tokenpool/core"],
    compilerOptions: { paths: { "@tokenpool/core": ["../core/src/index.ts"] } },
  },
  clean: true,
  sourcemap: true,
  target: "node20",
});
