import type { NextConfig } from "next";

/**
 * The workspace packages (@tokenpool/*) resolve to their TypeScript sources through the `source`
 * export condition, so the app runs right after `pnpm install` without building them. Webpack is
 * told that condition and that `./x.js` means `./x.ts` (the sources use NodeNext specifiers).
 * Turbopack cannot map `.js` specifiers to `.ts` files (vercel/next.js#82945), hence the
 * `--webpack` flag in the package scripts.
 */
interface WebpackConfig {
  resolve?: { conditionNames?: string[]; extensionAlias?: Record<string, string[]> };
}

const nextConfig: NextConfig = {
  // The example's test builds into its own directory, beside a `pnpm dev` that may be running.
  distDir: process.env.NEXT_DIST_DIR ?? ".next",
  // A native module: loaded by Node at run time, never bundled.
  serverExternalPackages: ["better-sqlite3"],
  transpilePackages: [
    "@tokenpool/core",
    "@tokenpool/next",
    "@tokenpool/store-sqlite",
    "@tokenpool/testing",
  ],
  webpack: (config: WebpackConfig) => {
    config.resolve ??= {};
    config.resolve.conditionNames = ["source", ...(config.resolve.conditionNames ?? ["..."])];
    config.resolve.extensionAlias = { ".js": [".ts", ".tsx", ".js"] };
    return config;
  },
};

export default nextConfig;
