/**
 * bcrypt comparisons off the main thread.
 *
 * bcryptjs is plain JavaScript: its async `compare` runs in slices of up to ~100 ms on the event
 * loop, so a burst of wrong management keys (each ~70 ms of bcrypt) would hold every other
 * request, `/healthz` and the proxy path included, behind it. Bounding concurrency alone cannot
 * fix that; moving the work to a worker thread does. One worker, started at the first
 * comparison, runs them one after the other; the main thread only posts messages.
 *
 * The worker's code is a string evaluated as CommonJS, and it loads bcryptjs by the absolute path
 * the main thread resolved, so it works the same from TypeScript sources (vitest, tsx) and from
 * the tsup-built `dist`. When a worker cannot be started (a bundler that hides bcryptjs, a
 * runtime without worker_threads), comparisons fall back to bcryptjs on the main thread.
 *
 * @module
 */
import { createRequire } from "node:module";
import { Worker } from "node:worker_threads";
import bcrypt from "bcryptjs";

/** Compares plain values with bcrypt hashes; see {@link createBcryptComparer}. */
export interface BcryptComparer {
  /** Whether `plain` matches `hash` (false for a malformed hash). */
  compare(plain: string, hash: string): Promise<boolean>;
  /** Stops the worker; comparisons still waiting resolve on the main thread. */
  close(): Promise<void>;
}

/** Options of {@link createBcryptComparer}. */
export interface BcryptComparerOptions {
  /**
   * Run comparisons on a worker thread.
   * @default true
   */
  worker?: boolean;
}

const WORKER_CODE = `
const { parentPort, workerData } = require("node:worker_threads");
const bcrypt = require(workerData.bcryptPath);
try {
  const tid = Number(require("node:fs").readlinkSync("/proc/thread-self").split("/").pop());
  if (tid > 0) require("node:os").setPriority(tid, 5);
} catch {}
parentPort.on("message", (job) => {
  let ok = false;
  try { ok = bcrypt.compareSync(job.plain, job.hash); } catch {}
  parentPort.postMessage({ id: job.id, ok });
});
`;

interface Job {
  plain: string;
  hash: string;
  resolve(ok: boolean): void;
}

/** bcryptjs on the calling thread, never throwing (a malformed hash matches nothing). */
function compareHere(plain: string, hash: string): Promise<boolean> {
  return bcrypt.compare(plain, hash).catch(() => false);
}

/**
 * Creates a comparer whose work runs on one lazily started, unref'd worker thread (so that an
 * idle comparer never keeps the process alive), or on the main thread when that is not possible.
 *
 * @example
 * ```ts
 * const bcrypt = createBcryptComparer();
 * const ok = await bcrypt.compare(presented, storedHash);
 * await bcrypt.close();
 * ```
 */
export function createBcryptComparer(options: BcryptComparerOptions = {}): BcryptComparer {
  let worker: Worker | null = null;
  let broken = options.worker === false;
  let closed = false;
  let nextId = 0;
  const jobs = new Map<number, Job>();

  /** The worker failed or exited: finish its jobs here and stop using it. */
  const abandon = (w: Worker) => {
    if (worker !== w) return;
    worker = null;
    broken = true;
    const left = [...jobs.values()];
    jobs.clear();
    for (const job of left) void compareHere(job.plain, job.hash).then(job.resolve);
  };

  const start = (): Worker | null => {
    if (worker || broken || closed) return worker;
    try {
      const bcryptPath = createRequire(import.meta.url).resolve("bcryptjs");
      const w = new Worker(WORKER_CODE, { eval: true, workerData: { bcryptPath } });
      w.on("message", (msg: { id: number; ok: boolean }) => {
        const job = jobs.get(msg.id);
        if (!job) return;
        jobs.delete(msg.id);
        // Only a worker with work to do keeps the process alive.
        if (jobs.size === 0) w.unref();
        job.resolve(msg.ok === true);
      });
      w.on("error", () => abandon(w));
      w.on("exit", () => abandon(w));
      w.unref();
      worker = w;
    } catch {
      broken = true;
    }
    return worker;
  };

  return {
    compare(plain, hash) {
      const w = start();
      if (!w) return compareHere(plain, hash);
      return new Promise<boolean>((resolve) => {
        const id = nextId++;
        jobs.set(id, { plain, hash, resolve });
        if (jobs.size === 1) w.ref();
        w.postMessage({ id, plain, hash });
      });
    },
    async close() {
      closed = true;
      const w = worker;
      if (!w) return;
      abandon(w);
      await w.terminate();
    },
  };
}
