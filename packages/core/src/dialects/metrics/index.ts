/**
 * The metrics dialect: `GET /metrics`, the gateway's Prometheus metrics in the text exposition
 * format of its prom-client registry. Read with the management key (under the management gate's
 * rules: loopback only unless `management.allowRemote`, bans after failures) or with the
 * `metrics.token` option's token (from anywhere: that is what it is for). Errors are
 * `{ "error": "..." }`; 404 when the gateway's metrics are off.
 *
 * @module
 */
import { createHash, timingSafeEqual } from "node:crypto";
import { GatewayError, isGatewayError } from "../../errors.js";
import { type Exchange, header, json, type Reply } from "../../exchange.js";
import type { ManagementGate, ManagementRefusal } from "../../keys/management-gate.js";
import type { GatewayMetrics } from "../../metrics/metrics.js";
import { type Dialect, plainDialect } from "../dialect.js";

/** Renders an error of the metrics route: `{ "error": "..." }` with its status. */
export function metricsError(error: unknown): Reply {
  if (isGatewayError(error)) {
    return json(
      error.status,
      { error: error.message },
      error.status === 401
        ? { "www-authenticate": 'Bearer realm="metrics"', ...error.headers }
        : error.headers,
    );
  }
  return json(500, { error: "internal error" });
}

/** The presented bearer token (`Authorization: Bearer ...`), else undefined. */
function bearerOf(ex: Exchange): string | undefined {
  const auth = header(ex.headers, "authorization")?.trim();
  const m = auth ? /^bearer\s+(.+)$/i.exec(auth) : null;
  return m ? m[1]!.trim() || undefined : undefined;
}

/** Compares two secrets in constant time (their SHA-256 digests, so lengths leak nothing). */
function sameSecret(a: string, b: string): boolean {
  const digest = (s: string) => createHash("sha256").update(s).digest();
  return timingSafeEqual(digest(a), digest(b));
}

function refusalError(refusal: ManagementRefusal, hasToken: boolean): GatewayError {
  switch (refusal.reason) {
    case "disabled":
      return new GatewayError(
        "UNAUTHORIZED",
        hasToken
          ? "unauthorized: the token is neither the metrics token nor the management key"
          : "unauthorized: no management key is set and no metrics token is configured: set the `metrics.token` gateway option (tokenpool server: TOKENPOOL_METRICS_TOKEN), or a management key",
        { status: 401 },
      );
    case "banned":
    case "remote":
      return new GatewayError("FORBIDDEN", refusal.message, { status: 403 });
    default:
      return new GatewayError("UNAUTHORIZED", `unauthorized: ${refusal.message}`, { status: 401 });
  }
}

/**
 * Lets a request read the metrics: the metrics token, else the management key through the gate.
 * A wrong token counts towards the gate's ban like a wrong management key.
 */
async function authorize(ex: Exchange, gate: ManagementGate, token: string | null): Promise<void> {
  const ban = await gate.banned(ex);
  if (ban) throw refusalError(ban, token !== null);
  const presented = bearerOf(ex);
  if (!presented)
    throw new GatewayError(
      "UNAUTHORIZED",
      "unauthorized: send Authorization: Bearer <metrics token or management key>",
      { status: 401 },
    );
  if (token !== null && sameSecret(presented, token)) return;
  const refusal = await gate.admit(ex, presented, { countEveryRefusal: token !== null });
  if (refusal) throw refusalError(refusal, token !== null);
}

async function scrape(
  ex: Exchange,
  gate: ManagementGate,
  metrics: GatewayMetrics | undefined,
): Promise<Reply> {
  if (!metrics?.enabled)
    throw new GatewayError(
      "NOT_FOUND",
      "not found: this gateway's metrics are off (the `metrics.enabled` gateway option)",
      { status: 404 },
    );
  await authorize(ex, gate, metrics.token);
  const { registry } = metrics;
  return {
    status: 200,
    headers: { "content-type": registry.contentType, "cache-control": "no-store" },
    body: await registry.metrics(),
  };
}

/** The metrics dialect. */
export const metricsDialect: Dialect = plainDialect({
  name: "metrics",
  prefixes: ["/metrics"],
  routes: ({ gate, metrics }) => [
    {
      method: "GET",
      path: "/metrics",
      onError: metricsError,
      handle: (ex) => scrape(ex, gate, metrics),
    },
  ],
  renderError: metricsError,
});
