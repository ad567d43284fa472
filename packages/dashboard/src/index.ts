/**
 * `@tokenpool/dashboard`: the tokenpool web console, a single-page app built into `ui/` when the
 * package is built, served by one more dialect of the gateway. The console talks only to the
 * gateway's own public HTTP APIs (`/v0/management`, `/api/token`, `/api/user`, `/api/log`,
 * `/api/usage/token`), with the credential the person typed in, kept in memory.
 *
 * @example
 * ```ts
 * import { createGateway } from "@tokenpool/core";
 * import { dashboard } from "@tokenpool/dashboard";
 *
 * const gateway = await createGateway({ store, secret, dialects: [dashboard()] });
 * // open http://localhost:8317/dashboard/
 * ```
 *
 * @module
 */
import { readdirSync, readFileSync, statSync } from "node:fs";
import { extname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { brotliCompressSync, gzipSync, constants as zlib } from "node:zlib";
import {
  type Dialect,
  type Exchange,
  GatewayError,
  header,
  plainDialect,
  type Reply,
  type Route,
} from "@tokenpool/core";

/** Options of {@link dashboard}. */
export interface DashboardOptions {
  /**
   * Where the console is served: a path of one or more segments, without a trailing slash.
   * @default "/dashboard"
   */
  path?: string;
  /**
   * The folder of the built console. Tests and custom builds only.
   * @default the `ui/` folder of this package
   */
  uiDir?: string;
}

/** One file of the console, read once, compressed once. */
interface Asset {
  type: string;
  /** Whether the name carries a content hash (served as immutable). */
  hashed: boolean;
  raw: Buffer;
  gzip: Buffer;
  br: Buffer;
  etag: string;
}

const TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".png": "image/png",
  ".ico": "image/x-icon",
  ".json": "application/json; charset=utf-8",
  ".txt": "text/plain; charset=utf-8",
  ".woff2": "font/woff2",
};

/**
 * The console's Content-Security-Policy: scripts, styles, images and API calls from its own
 * origin only; no inline script or style element, no eval, no frames, no form posts elsewhere.
 */
export const DASHBOARD_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": DASHBOARD_CSP,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
};

const DEFAULT_UI_DIR = fileURLToPath(new URL("../ui/", import.meta.url));

/** The reply of a problem with the console itself (plain text: no dialect of the API applies). */
function textReply(status: number, message: string, headers: Record<string, string> = {}): Reply {
  return {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...SECURITY_HEADERS, ...headers },
    body: `${message}\n`,
  };
}

function renderError(error: unknown): Reply {
  if (error instanceof GatewayError || (error as { name?: string })?.name === "GatewayError") {
    const e = error as GatewayError;
    return textReply(e.status, e.message);
  }
  return textReply(500, "internal error");
}

/** Every file under `dir`, by its path relative to it with `/` separators. */
function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const full = join(d, name);
      if (statSync(full).isDirectory()) walk(full);
      else out.push(relative(dir, full).split(sep).join("/"));
    }
  };
  walk(dir);
  return out;
}

function loadAsset(file: string, raw: Buffer): Asset {
  const type = TYPES[extname(file)] ?? "application/octet-stream";
  return {
    type,
    hashed: /^assets\/.+-[A-Za-z0-9_-]{8,}\.[a-z0-9]+$/.test(file),
    raw,
    gzip: gzipSync(raw, { level: 9 }),
    br: brotliCompressSync(raw, {
      params: { [zlib.BROTLI_PARAM_QUALITY]: 11, [zlib.BROTLI_PARAM_SIZE_HINT]: raw.length },
    }),
    etag: `"${raw.length.toString(36)}-${hash32(raw).toString(36)}"`,
  };
}

/** FNV-1a over the bytes: an ETag, not a security measure. */
function hash32(buf: Buffer): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < buf.length; i++) h = Math.imul(h ^ buf[i]!, 0x01000193) >>> 0;
  return h;
}

/** The best encoding the client accepts among the ones we keep. */
function encodingOf(ex: Exchange): "br" | "gzip" | null {
  const accept = header(ex.headers, "accept-encoding") ?? "";
  if (/\bbr\b/.test(accept)) return "br";
  if (/\bgzip\b/.test(accept)) return "gzip";
  return null;
}

function serve(ex: Exchange, asset: Asset, cache: string): Reply {
  const headers: Record<string, string> = {
    "content-type": asset.type,
    "cache-control": cache,
    etag: asset.etag,
    vary: "accept-encoding",
    ...SECURITY_HEADERS,
  };
  if (header(ex.headers, "if-none-match") === asset.etag)
    return { status: 304, headers, body: null };
  const enc = encodingOf(ex);
  if (enc) headers["content-encoding"] = enc;
  return { status: 200, headers, body: enc === "br" ? asset.br : enc ? asset.gzip : asset.raw };
}

/**
 * The console as a gateway dialect: `GET <path>/` serves the app (never cached, so an upgrade
 * shows at once), `GET <path>/assets/*` the hashed bundles (cached for a year, immutable), all
 * with a strict Content-Security-Policy and compressed (br, gzip). Only files of the built
 * console are served (a fixed table read once at start, so no path can reach outside it).
 * The app finds the gateway's APIs beside its own path, so it works under a binding's mount
 * path too.
 *
 * @example
 * ```ts
 * const gateway = await createGateway({ store, secret, dialects: [dashboard({ path: "/console" })] });
 * ```
 */
export function dashboard(options: DashboardOptions = {}): Dialect {
  const path = options.path ?? "/dashboard";
  if (!/^(\/[A-Za-z0-9._~-]+)+$/.test(path) || path.split("/").some((seg) => /^\.+$/.test(seg)))
    throw new GatewayError(
      "INVALID_OPTIONS",
      `Invalid dashboard option \`path\`: ${JSON.stringify(path)} is not a path like "/dashboard" (segments of letters, digits, ".", "_", "~", "-", none only dots; no trailing slash).`,
    );
  const dir = options.uiDir ?? DEFAULT_UI_DIR;
  let files: string[];
  try {
    files = listFiles(dir);
  } catch {
    files = [];
  }
  const assets = new Map<string, Asset>();
  for (const file of files) {
    let raw = readFileSync(join(dir, file));
    if (file === "index.html") {
      // Tells the app where it is mounted (the APIs are beside that path); a meta element,
      // not a script, so the CSP needs no exception.
      raw = Buffer.from(
        raw
          .toString("utf8")
          .replace(
            "<head>",
            `<head>\n    <meta name="tokenpool-dashboard-path" content="${path}">`,
          ),
      );
    }
    assets.set(file, loadAsset(file, raw));
  }
  const index = assets.get("index.html");

  const route = (p: string, handle: Route["handle"]): Route => ({
    method: "GET",
    path: p,
    onError: renderError,
    handle,
  });
  const app = async (ex: Exchange): Promise<Reply> => {
    if (!index)
      return textReply(
        503,
        `The tokenpool console is not built: run \`pnpm --filter @tokenpool/dashboard build\` (looked in ${dir}).`,
      );
    return serve(ex, index, "no-cache");
  };

  return plainDialect({
    name: "dashboard",
    prefixes: [path],
    renderError,
    routes: () => [
      // The app's relative asset URLs need the trailing slash. The location is relative (the
      // last segment), so that it is right under a binding's mount path too (`/gw/dashboard`).
      route(path, async (ex) => ({
        status: 308,
        headers: {
          location: `${path.slice(path.lastIndexOf("/") + 1)}/${ex.search ? `?${ex.search}` : ""}`,
          ...SECURITY_HEADERS,
        },
        body: null,
      })),
      route(`${path}/`, app),
      route(`${path}/index.html`, app),
      route(`${path}/*file`, async (ex, params) => {
        const file = params.file ?? "";
        const asset = file === "index.html" ? undefined : assets.get(file);
        if (!asset) throw new GatewayError("NOT_FOUND", "Not found");
        return serve(
          ex,
          asset,
          asset.hashed ? "public, max-age=31536000, immutable" : "public, max-age=300",
        );
      }),
    ],
  });
}
