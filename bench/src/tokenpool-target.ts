/**
 * Bench child "tokenpool": a gateway on node:http with the SQLite store, one upstream credential
 * (the mock upstream) and one downstream key with a quota large enough for the whole run. Every
 * request therefore goes through the real proxy path: key check, quota reservation, credential
 * pick, upstream call, usage capture, settlement.
 *
 * @module
 */
import { mkdtemp, rm } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGateway, memoryStore } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { BENCH_METRICS_TOKEN, FEATURES, runChild, UPSTREAM_KEY, upstreamArg } from "./child.js";

/**
 * One gateway with its credential and bench key, served on node:http. `metrics`: whether it
 * keeps Prometheus metrics (the gateway's default is on).
 */
async function startGateway(
  upstreamUrl: string,
  dir: string,
  name: string,
  metrics: boolean,
  features: boolean,
) {
  const filename = join(dir, `${name}.db`);
  const gateway = createGateway({
    // BENCH_STORE=memory separates the engine's own cost from the store's.
    store: process.env.BENCH_STORE === "memory" ? memoryStore() : sqliteStore({ filename }),
    secret: "bench-secret-0123456789abcdef0123456789",
    metrics: metrics ? { token: BENCH_METRICS_TOKEN } : false,
  });
  await gateway.credentials.add({
    provider: "openai",
    kind: "api-key",
    baseUrl: upstreamUrl,
    secret: { apiKey: UPSTREAM_KEY },
    label: "bench",
  });
  const { key } = await gateway.keys.create({
    name: "bench",
    remainQuota: 1_000_000_000,
    unlimitedQuota: false,
    // Every admission feature on, each set too high to refuse anything, so that every step runs:
    // a quota that refills, per-minute/day request and token windows, a concurrency lease.
    ...(features ? FEATURES : {}),
  });
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return { gateway, server, key, origin: `http://127.0.0.1:${port}` };
}

runChild(async () => {
  const upstreamUrl = upstreamArg();
  const dir = await mkdtemp(join(tmpdir(), "tokenpool-bench-"));
  // BENCH_SECOND_GATEWAY (the metrics A/B): this gateway without metrics, and a second one in
  // the same process with them (`aa`: without either, the noise floor).
  const second = process.env.BENCH_SECOND_GATEWAY;
  const wanted = process.env.BENCH_KEY_LIMITS;
  // The plain run: one key with every feature. The A/B modes: plain keys, the difference is B's.
  const features = second === undefined && !wanted && process.env.BENCH_FEATURES !== "0";
  const { gateway, server, key, origin } = await startGateway(
    upstreamUrl,
    dir,
    "bench",
    second === undefined,
    features,
  );
  const other = second
    ? await startGateway(upstreamUrl, dir, "bench-second", second === "metrics", false)
    : null;
  // BENCH_KEY_LIMITS (the limits A/B): a second key like the first, with rpm, tpm and
  // concurrency limits too high to refuse anything, so every admission step runs. `aa`: the
  // second key without limits (the noise floor); `rpm,tpm,...`: only those limits.
  let limitedAuthorization: string | undefined;
  if (wanted) {
    const all = { rpm: 1_000_000_000, tpm: 1_000_000_000_000, maxConcurrency: 1_000_000 };
    const names = wanted === "1" ? Object.keys(all) : wanted.split(",");
    const limited = await gateway.keys.create({
      name: "bench-limited",
      remainQuota: 1_000_000_000,
      unlimitedQuota: false,
      limits: Object.fromEntries(Object.entries(all).filter(([k]) => names.includes(k))),
    });
    limitedAuthorization = `Bearer ${limited.key}`;
  }
  return {
    origin,
    authorization: `Bearer ${key}`,
    limitedAuthorization,
    ...(other ? { secondOrigin: other.origin, secondAuthorization: `Bearer ${other.key}` } : {}),
    async close() {
      for (const g of other ? [{ server, gateway }, other] : [{ server, gateway }]) {
        g.server.closeAllConnections();
        await new Promise<void>((resolve) => g.server.close(() => resolve()));
        await g.gateway.close();
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
});
