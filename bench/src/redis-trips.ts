/**
 * `pnpm bench:redis-trips`: how many Redis round trips and commands one proxied request costs
 * with the Redis store. A real redis-server (`startRedisServer`), a counting TCP proxy in front
 * of it (`resp-counter.ts`: it parses both directions as RESP), a gateway on node:http in this
 * process whose `redisStore` connects through the proxy, the mock upstream in this process too,
 * and one key with a quota, a 30-day quota refill and rpm/tpm/rpd/concurrency limits (the
 * `FEATURES` of `child.ts`), one credential. `BENCH_REDIS_KEYS` (default 1) spreads the
 * load round robin over that many such keys instead (the key cache, the window claims and the
 * leases then have fewer requests of a key to share one store call).
 *
 * Each mode (the usage write-behind as configured by default, 200 ms / 64 per batch; and with
 * `usage: { flushIntervalMs: 3_600_000, maxBatch: 1_000_000 }` so that no batch is written during
 * the measured window) sends `BENCH_REDIS_REQUESTS` (default 2000) requests at c=1, then as many
 * at c=50, after a warm-up; counters are read before and after each phase (start-up and warm-up
 * excluded). In the default mode, the phase ends with `gateway.usage.flush()` inside the window,
 * so every settlement of its requests is counted; in the long-interval mode the flush comes after.
 *
 * Counts per request: round trips (a command that reaches Redis while its connection has nothing
 * unanswered: a new wait), client→server bursts (socket `data` events), top-level commands (as
 * the client sent them, `EVALSHA` by script name), and `INFO commandstats` calls (the server's
 * count, with the commands the Lua scripts run inside themselves). The subscriber connection of
 * the change feed is counted apart (messages pushed to it).
 *
 * @module
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createGateway } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { lua, redisStore } from "@tokenpool/store-redis";
import { createMockUpstream } from "@tokenpool/testing/mock-upstream";
import { startRedisServer } from "@tokenpool/testing/redis-server";
import { Redis } from "ioredis";
import { FEATURES, UPSTREAM_KEY } from "./child.js";
import { KeyLoad } from "./key-load.js";
import { diff, RespCounter, type RespCounts } from "./resp-counter.js";
import { log } from "./runner.js";

const REQUESTS = Number(process.env.BENCH_REDIS_REQUESTS ?? 2000);
/** Keys the load is spread over (round robin), each with the same features; 1 = one hot key. */
const KEYS = Number(process.env.BENCH_REDIS_KEYS ?? 1);
const WARMUP = 200;

/** `INFO commandstats` as calls per command. */
async function commandStats(redis: Redis): Promise<Record<string, number>> {
  const text = await redis.info("commandstats");
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

function statsDiff(a: Record<string, number>, b: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(a)) {
    // The INFO calls of this bench are not the gateway's.
    if (k === "info") continue;
    const d = v - (b[k] ?? 0);
    if (d) out[k] = d;
  }
  return out;
}

interface Phase {
  mode: string;
  concurrency: number;
  requests: number;
  seconds: number;
  counts: RespCounts;
  server: Record<string, number>;
}

interface Mode {
  name: string;
  usage?: { flushIntervalMs: number; maxBatch: number };
  flushInWindow: boolean;
}

const MODES: Mode[] = [
  { name: "write-behind 200 ms", flushInWindow: true },
  {
    name: "no flush in window",
    usage: { flushIntervalMs: 3_600_000, maxBatch: 1_000_000 },
    flushInWindow: false,
  },
];

async function runMode(
  mode: Mode,
  index: number,
  counter: RespCounter,
  counterUrl: string,
  direct: Redis,
  upstreamUrl: string,
): Promise<Phase[]> {
  const gateway = createGateway({
    store: redisStore({ redis: counterUrl, prefix: `trips${index}` }),
    secret: "bench-secret-0123456789abcdef0123456789",
    logger: false,
    ...(mode.usage ? { usage: mode.usage } : {}),
  });
  await gateway.ready;
  await gateway.credentials.add({
    provider: "openai",
    kind: "api-key",
    baseUrl: upstreamUrl,
    secret: { apiKey: UPSTREAM_KEY },
    label: "bench",
  });
  const keys: string[] = [];
  for (let i = 0; i < KEYS; i++) {
    const { key } = await gateway.keys.create({
      name: `bench-${i}`,
      remainQuota: 1_000_000_000,
      ...FEATURES,
    });
    keys.push(`Bearer ${key}`);
  }
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const load = new KeyLoad(origin, (i) => keys[i % keys.length]!);
  const phases: Phase[] = [];
  try {
    for (const concurrency of [1, 50]) {
      log(`${mode.name}, c=${concurrency}: warm-up ${WARMUP}, then ${REQUESTS} requests`);
      const warm = await load.run(concurrency, Infinity, WARMUP);
      if (warm.failures) throw new Error(`warm-up failed: ${warm.firstFailure}`);
      await gateway.usage.flush();
      await new Promise((r) => setTimeout(r, 300));
      const before = counter.snapshot();
      const stats0 = await commandStats(direct);
      const run = await load.run(concurrency, Infinity, REQUESTS);
      if (run.failures) throw new Error(`${run.failures} requests failed: ${run.firstFailure}`);
      if (mode.flushInWindow) await gateway.usage.flush();
      const counts = diff(counter.snapshot(), before);
      const server = statsDiff(await commandStats(direct), stats0);
      if (!mode.flushInWindow) await gateway.usage.flush();
      phases.push({
        mode: mode.name,
        concurrency,
        requests: run.requests,
        seconds: run.seconds,
        counts,
        server,
      });
    }
  } finally {
    await load.close();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await gateway.close();
  }
  return phases;
}

const per = (n: number, d: number) => (n / d).toFixed(3);

function report(phases: Phase[]): string {
  const out: string[] = [];
  out.push(
    `\n### Redis round trips per proxied request (${REQUESTS} requests per phase, ${KEYS === 1 ? "one key" : `spread over ${KEYS} keys`} with quota + refill + rpm/tpm/rpd/concurrency limits, one credential)\n`,
  );
  out.push(
    "| mode | c | req/s | round trips/req | bursts/req | commands/req (client) | commands/req (server, incl. inside scripts) | pushes to subscriber/req |",
  );
  out.push("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
  for (const p of phases) {
    const server = Object.values(p.server).reduce((a, b) => a + b, 0);
    out.push(
      `| ${p.mode} | ${p.concurrency} | ${Math.round(p.requests / p.seconds)} | ${per(p.counts.roundTrips, p.requests)} | ${per(p.counts.bursts, p.requests)} | ${per(p.counts.commands, p.requests)} | ${per(server, p.requests)} | ${per(p.counts.pushes, p.requests)} |`,
    );
  }
  const head = phases.map((p) => `${p.mode}, c=${p.concurrency}`);
  const table = (title: string, pick: (p: Phase) => Record<string, number>) => {
    const names = [...new Set(phases.flatMap((p) => Object.keys(pick(p))))].sort();
    out.push(`\n${title}\n`);
    out.push(`| command | ${head.join(" | ")} |`);
    out.push(`| --- |${head.map(() => " ---: |").join("")}`);
    for (const n of names) {
      out.push(`| \`${n}\` | ${phases.map((p) => per(pick(p)[n] ?? 0, p.requests)).join(" | ")} |`);
    }
  };
  table(
    "Client commands per request, by command (`EVALSHA` by script):",
    (p) => p.counts.byCommand,
  );
  table(
    "Round trips per request, by the command that opened them:",
    (p) => p.counts.tripsByCommand,
  );
  table("Server-side calls per request (`INFO commandstats`):", (p) => p.server);
  return out.join("\n");
}

const scripts: Record<string, string> = {};
for (const [name, value] of Object.entries(lua as Record<string, unknown>)) {
  if (typeof value === "string") scripts[name] = value;
}
const redis = await startRedisServer();
const counter = new RespCounter(redis.port, scripts);
const mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY], maxRecordedRequests: 0 });
const direct = new Redis(redis.url);
let exitCode = 0;
try {
  const counterUrl = await counter.listen();
  log(`redis-server on ${redis.port}, counting proxy on ${counter.port}`);
  const phases: Phase[] = [];
  for (const [i, mode] of MODES.entries()) {
    phases.push(...(await runMode(mode, i, counter, counterUrl, direct, mock.url)));
  }
  console.log(report(phases));
} catch (error) {
  console.error(error);
  exitCode = 1;
} finally {
  direct.disconnect();
  await counter.close();
  await mock.close();
  await redis.stop();
}
process.exit(exitCode);
