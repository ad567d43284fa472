/**
 * The version of `@tokenpool/core` and how it was built, read once at load. A build (tsup)
 * writes them as constants (`define` in `tsup.config.ts`), so `dist/` and the package installed
 * from npm never read a file; run from source (tests, `--conditions=source`), the version comes
 * from this package's own `package.json` and the build date and commit are unknown.
 *
 * @module
 */
import { readFileSync } from "node:fs";

// Replaced by tsup's `define` in a build; absent (undefined) when the source runs as is.
declare const __TOKENPOOL_VERSION__: string | undefined;
declare const __TOKENPOOL_BUILD_DATE__: string | undefined;
declare const __TOKENPOOL_COMMIT__: string | undefined;

/** The `version` of this package's `package.json` beside `src/`, or `dev` when unreadable. */
function sourceVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
    return typeof pkg.version === "string" && pkg.version !== "" ? pkg.version : "dev";
  } catch {
    return "dev";
  }
}

/**
 * The version of `@tokenpool/core` (what `package.json` said when it was built); CLIProxyAPI's
 * management API sends it as `X-CPA-VERSION`.
 */
export const TOKENPOOL_VERSION: string =
  typeof __TOKENPOOL_VERSION__ === "string" ? __TOKENPOOL_VERSION__ : sourceVersion();

/**
 * When this package was built (ISO 8601, UTC; `SOURCE_DATE_EPOCH` when the build sets it), or
 * `unknown` when it runs from source. Sent as `X-CPA-BUILD-DATE`.
 */
export const TOKENPOOL_BUILD_DATE: string =
  typeof __TOKENPOOL_BUILD_DATE__ === "string" ? __TOKENPOOL_BUILD_DATE__ : "unknown";

/**
 * The commit the build was made from, when the build knew it (`TOKENPOOL_BUILD_COMMIT` or
 * `GITHUB_SHA` at build time), else `none`. Sent as `X-CPA-COMMIT`.
 */
export const TOKENPOOL_COMMIT: string =
  typeof __TOKENPOOL_COMMIT__ === "string" && __TOKENPOOL_COMMIT__ !== ""
    ? __TOKENPOOL_COMMIT__
    : "none";
