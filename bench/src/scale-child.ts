/**
 * The child process of `pnpm bench:scale`: one gateway on a seeded SQLite file (`--db`), served
 * on node:http with `toNodeHandler`. It times its own start-up (`createGateway` until
 * `gateway.ready`), and answers the runner's `stats` questions over IPC with its CPU time and
 * memory, so that both are this process's own.
 *
 * @module
 */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { parseArgs } from "node:util";
import { createGateway, type Store } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { SCALE_SECRET } from "./scale-seed.js";

/** A message from the runner. */
export type ScaleParentMessage = { type: "stats"; id: number; gc?: boolean } | { type: "stop" };

/** Memory and CPU of the child. */
export interface ScaleStats {
  cpu: NodeJS.CpuUsage;
  rss: number;
  heapUsed: number;
  /** With `BENCH_SCALE_STORE_CALLS=1`: store calls so far, by method (`keys.getByHash`, ...). */
  storeCalls?: Record<string, number>;
}

/** A message to the runner. */
export type ScaleChildMessage =
  | {
      type: "ready";
      origin: string;
      startupMs: number;
      /** RSS before `createGateway` (the runtime and the loaded code). */
      rssBefore: number;
      after: ScaleStats;
    }
  | ({ type: "stats"; id: number } & ScaleStats)
  | { type: "error"; message: string };

const send = process.send?.bind(process);
if (!send) {
  process.stderr.write("this file is a child of `pnpm bench:scale`\n");
  process.exit(2);
}

const gc = (globalThis as { gc?: () => void }).gc;
const storeCalls: Record<string, number> | undefined =
  process.env.BENCH_SCALE_STORE_CALLS === "1" ? {} : undefined;
const stats = (collect = false): ScaleStats => {
  if (collect) gc?.();
  const m = process.memoryUsage();
  return {
    cpu: process.cpuUsage(),
    rss: m.rss,
    heapUsed: m.heapUsed,
    ...(storeCalls ? { storeCalls: { ...storeCalls } } : {}),
  };
};

/** The store with every method call counted in `calls` (diagnostics; it costs a little CPU). */
function counted<T extends object>(target: T, calls: Record<string, number>, prefix = ""): T {
  const cache = new Map<PropertyKey, unknown>();
  return new Proxy(target, {
    get(t, prop) {
      const v = Reflect.get(t, prop, t) as unknown;
      if (typeof prop !== "string") return v;
      let w = cache.get(prop);
      if (w !== undefined) return w;
      if (typeof v === "function") {
        const name = `${prefix}${prop}`;
        w = (...args: unknown[]) => {
          calls[name] = (calls[name] ?? 0) + 1;
          return (v as (...a: unknown[]) => unknown).apply(t, args);
        };
      } else if (typeof v === "object" && v !== null && prefix === "") {
        w = counted(v, calls, `${prop}.`);
      } else return v;
      cache.set(prop, w);
      return w;
    },
  });
}

const { values } = parseArgs({ options: { db: { type: "string" } }, strict: true });
if (!values.db) throw new Error("missing --db <file>");

try {
  gc?.();
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  const gateway = createGateway({
    store: storeCalls
      ? counted<Store>(sqliteStore({ filename: values.db }), storeCalls)
      : sqliteStore({ filename: values.db }),
    secret: SCALE_SECRET,
    logger: false,
  });
  await gateway.ready;
  const startupMs = performance.now() - t0;
  const after = stats(true);
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    setTimeout(() => process.exit(0), 3000).unref();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await gateway.close();
    process.exit(0);
  };
  process.on("message", (m: ScaleParentMessage) => {
    if (m.type === "stats")
      send({ type: "stats", id: m.id, ...stats(m.gc) } satisfies ScaleChildMessage);
    else void stop();
  });
  process.once("disconnect", () => void stop());
  process.once("SIGTERM", () => void stop());
  send({ type: "ready", origin, startupMs, rssBefore, after } satisfies ScaleChildMessage);
} catch (error) {
  send(
    {
      type: "error",
      message: error instanceof Error ? (error.stack ?? error.message) : String(error),
    },
    () => process.exit(1),
  );
}
