/**
 * The IPC protocol between the bench runner (bench/src/proxy.ts) and the processes it forks: each
 * target runs alone in its child so that its CPU time can be read with `process.cpuUsage()`
 * without counting the load generator or the upstream.
 *
 * @module
 */
import { parseArgs } from "node:util";

/** The key the mock upstream accepts; the floor forwards it, tokenpool holds it as a credential. */
export const UPSTREAM_KEY = "mock-key";

/**
 * What the bench's keys have besides their quota: every admission feature the performance issue
 * names (a quota refill, rpm/tpm/rpd windows, a concurrency limit), each too high to refuse
 * anything, so that every step runs. Shared by `pnpm bench`, `bench:scale` and `bench:redis-trips`.
 */
export const FEATURES = {
  limits: {
    rpm: 1_000_000_000,
    tpm: 1_000_000_000_000,
    rpd: 1_000_000_000,
    maxConcurrency: 1_000_000,
  },
  quotaRefill: { interval: "30d", amount: 1_000_000_000 },
} as const;

/** The token `GET /metrics` of the bench's tokenpool gateways accepts (`metrics.token`). */
export const BENCH_METRICS_TOKEN = "bench-metrics-token-0123456789";

/** A message from the runner to a child. */
export type ParentMessage = { type: "cpu"; id: number } | { type: "stop" };

/** A message from a child to the runner. */
export type ChildMessage =
  | {
      type: "ready";
      origin: string;
      authorization: string;
      headers?: Record<string, string>;
      limitedAuthorization?: string;
      secondOrigin?: string;
      secondAuthorization?: string;
    }
  | { type: "cpu"; id: number; usage: NodeJS.CpuUsage }
  | { type: "error"; message: string };

/** What a child's start function returns. */
export interface StartedTarget {
  /** Origin to send load to, e.g. `http://127.0.0.1:41234`; requests go to `/v1/chat/completions`. */
  origin: string;
  /** The `Authorization` header value clients must send to this target. */
  authorization: string;
  /** More headers clients must send (Portkey: the provider and the upstream). */
  headers?: Record<string, string>;
  /** tokenpool with `BENCH_KEY_LIMITS`: the header of a second key, the one with limits. */
  limitedAuthorization?: string;
  /** tokenpool with `BENCH_SECOND_GATEWAY`: the origin of a second gateway in the same process. */
  secondOrigin?: string;
  /** The `Authorization` header of the second gateway's bench key. */
  secondAuthorization?: string;
  /** Stop serving and release resources. */
  close(): Promise<void>;
}

/** The `--upstream` argument of a child process (the mock upstream's base URL, with `/v1`). */
export function upstreamArg(): string {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: { upstream: { type: "string" } },
    strict: true,
  });
  if (!values.upstream) throw new Error("missing --upstream <url>");
  return values.upstream;
}

/**
 * Run this process as a bench child: start the target, report `ready`, answer CPU usage queries,
 * and exit on `stop`, SIGTERM/SIGINT or when the runner goes away (IPC disconnect).
 */
export function runChild(start: () => Promise<StartedTarget>): void {
  const send = process.send?.bind(process);
  if (!send) {
    process.stderr.write("this file is a bench child process; run `pnpm bench` instead\n");
    process.exit(2);
  }
  let target: StartedTarget | undefined;
  let stopping = false;
  const stop = (code: number) => {
    if (stopping) return;
    stopping = true;
    const done = () => process.exit(code);
    const timer = setTimeout(done, 2000);
    timer.unref();
    (target ? target.close() : Promise.resolve()).then(done, done);
  };
  process.on("message", (message: ParentMessage) => {
    if (message.type === "cpu") {
      send({ type: "cpu", id: message.id, usage: process.cpuUsage() } satisfies ChildMessage);
    } else if (message.type === "stop") {
      stop(0);
    }
  });
  process.once("SIGTERM", () => stop(0));
  process.once("SIGINT", () => stop(0));
  process.once("disconnect", () => stop(0));

  start().then(
    (started) => {
      target = started;
      const ready: ChildMessage = {
        type: "ready",
        origin: started.origin,
        authorization: started.authorization,
        headers: started.headers,
        limitedAuthorization: started.limitedAuthorization,
        secondOrigin: started.secondOrigin,
        secondAuthorization: started.secondAuthorization,
      };
      send(ready);
    },
    (error: unknown) => {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      send({ type: "error", message } satisfies ChildMessage, () => stop(1));
    },
  );
}
