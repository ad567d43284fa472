import { toNextRouteHandlers } from "@tokenpool/next";
import { gateway } from "../../../lib/gateway";

// better-sqlite3 and streaming need Node; answers must never be cached or prerendered.
export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export const { GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS } = toNextRouteHandlers(gateway, {
  basePath: "/api",
  // Behind a reverse proxy that sets X-Forwarded-For, set this to true.
  trustProxy: process.env.TOKENPOOL_TRUST_PROXY === "1",
});
