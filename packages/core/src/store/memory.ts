import { liftKernel, tableKernel } from "./kernel.js";
import type { Store, StoreChange } from "./types.js";

/** Options of {@link memoryStore}. */
export interface MemoryStoreOptions {
  /** Clock used for TTLs and lock expiry (ms). @default Date.now */
  now?: () => number;
}

/**
 * The in-memory reference store: everything lives in this process and is lost on exit.
 * Every step runs synchronously inside one call, so the atomic steps are atomic by construction.
 * Use it for tests and for embedding where persistence is not wanted.
 *
 * @example
 * ```ts
 * const gateway = createGateway({ store: memoryStore(), secret: process.env.TOKENPOOL_SECRET });
 * ```
 */
export function memoryStore(options: MemoryStoreOptions = {}): Store {
  const listeners = new Set<(c: StoreChange) => void>();
  const kernel = tableKernel({
    ...(options.now ? { now: options.now } : {}),
    onChange: (change) => {
      // Deliver after the caller's await resumes, like an adapter that commits first.
      queueMicrotask(() => {
        for (const l of listeners) l(change);
      });
    },
  });
  return {
    name: "memory",
    capabilities: { multiProcess: false, quotaShares: true },
    ...liftKernel(kernel, async (run) => run()),

    watch(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },

    async close() {
      listeners.clear();
    },
  };
}
