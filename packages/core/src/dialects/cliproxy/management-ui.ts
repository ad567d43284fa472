/**
 * `GET /management.html`: a management UI file the operator provides (the `management.html` of a
 * release of CLIProxyAPI's management center), served same-origin like CLIProxyAPI serves it.
 * Only that one path, only that one file: the request path never reaches the file system. No
 * key is needed to load the page (it asks for the management key and sends it to the API).
 *
 * @module
 */
import { accessSync, constants, statSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { GatewayError } from "../../errors.js";
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";

/** Where the management UI is served. */
export const MANAGEMENT_UI_PATH = "/management.html";

/**
 * The headers of the page: HTML, never cached (a replaced file shows at the next load), not to
 * be framed by another site (the page holds the management key).
 */
const UI_HEADERS: Readonly<Record<string, string>> = {
  "content-type": "text/html; charset=utf-8",
  "cache-control": "no-cache, no-store, must-revalidate",
  pragma: "no-cache",
  expires: "0",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "content-security-policy": "frame-ancestors 'none'",
  "referrer-policy": "no-referrer",
};

function invalidUiFile(path: string, detail: string): GatewayError {
  return new GatewayError(
    "INVALID_OPTIONS",
    `Invalid tokenpool option \`management.uiFile\`: ${path} ${detail}. Download management.html from a release of router-for-me/Cli-Proxy-API-Management-Center and pass its path, or remove the option.`,
  );
}

/**
 * The route of `management.uiFile` (none without it). The file must exist and be readable now
 * (a configuration mistake throws `INVALID_OPTIONS` at `createGateway()`); it is read on every
 * request, so replacing it upgrades the UI without a restart.
 *
 * @example
 * ```ts
 * router.add(managementUiRoutes("./management.html"));
 * ```
 */
export function managementUiRoutes(uiFile: string | undefined): Route[] {
  if (uiFile === undefined) return [];
  if (typeof uiFile !== "string" || uiFile.trim() === "")
    throw invalidUiFile(JSON.stringify(uiFile), "is not a file path");
  const file = resolve(uiFile);
  try {
    if (!statSync(file).isFile()) throw invalidUiFile(file, "is not a file");
    accessSync(file, constants.R_OK);
  } catch (error) {
    if ((error as GatewayError).code === "INVALID_OPTIONS") throw error;
    const code = (error as NodeJS.ErrnoException).code;
    throw invalidUiFile(
      file,
      code === "ENOENT" ? "does not exist" : `cannot be read (${code ?? String(error)})`,
    );
  }
  return [
    {
      method: "GET",
      path: MANAGEMENT_UI_PATH,
      // The router logs the cause (with the path); the client learns nothing about the disk.
      onError: () => json(500, { error: "the management UI file could not be read" }),
      async handle() {
        let body: Buffer;
        try {
          body = await readFile(file);
        } catch (error) {
          throw new GatewayError(
            "INTERNAL",
            `the management UI file ${file} could not be read: ${(error as Error).message}`,
          );
        }
        return { status: 200, headers: { ...UI_HEADERS }, body };
      },
    },
  ];
}
