import type { Gateway } from "@tokenpool/core";

/** Options of {@link getGateway}. */
export interface GetGatewayOptions {
  /**
   * Names the gateway, for an app that runs more than one.
   * @default "default"
   */
  key?: string;
  /**
   * Close the gateway (flush usage, close the store) when the process gets SIGINT or SIGTERM,
   * or empties its event loop. On a signal, a `process.exit()` call (Next's shutdown ends with
   * one) is held until the gateway is closed, at most 5 seconds.
   * @default true
   */
  closeOnExit?: boolean;
}

interface Entry {
  value: Gateway | Promise<Gateway>;
}

/**
 * The registry lives on `globalThis` under a `Symbol.for` key: Next re-evaluates route modules
 * on every hot reload in development and bundles each route (and `instrumentation.ts`)
 * separately, so a module-level variable would create a gateway per reload and per bundle.
 */
const REGISTRY = Symbol.for("tokenpool.next.gateways");

type GlobalWithRegistry = typeof globalThis & { [REGISTRY]?: Map<string, Entry> };

function registry(): Map<string, Entry> {
  const g = globalThis as GlobalWithRegistry;
  g[REGISTRY] ??= new Map();
  return g[REGISTRY];
}

const SIGNALS = ["SIGINT", "SIGTERM"] as const;

/** How long a shutdown waits for the gateway to close. */
const CLOSE_GRACE_MS = 5_000;

function closeOnExit(gateway: Gateway): void {
  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= gateway.close().catch((error: unknown) => {
      console.error("[tokenpool] closing the gateway failed:", error);
    });
    return closing;
  };
  const onSignal = (signal: NodeJS.Signals) => {
    for (const s of SIGNALS) process.off(s, onSignal);
    const done = Promise.race([
      close(),
      new Promise<void>((resolve) => setTimeout(resolve, CLOSE_GRACE_MS).unref()),
    ]);
    if (process.listenerCount(signal) === 0) {
      // Nobody else handles the signal, which would have ended the process: end it the same
      // way once the gateway is closed.
      void done.then(() => process.kill(process.pid, signal));
      return;
    }
    // `next start` and `next dev` handle the signal themselves: they stop the HTTP server, then
    // call process.exit(), which would cut the close short (usage not flushed, store not
    // closed). From now on, process.exit() waits for the close.
    const exit = process.exit;
    process.exit = ((code?: number | string | null) => {
      void done.then(() => exit.call(process, code));
    }) as typeof process.exit;
  };
  for (const s of SIGNALS) process.on(s, onSignal);
  process.once("beforeExit", () => void close());
}

/**
 * One gateway per process, kept on `globalThis`, so that hot reloads in `next dev` and separate
 * route bundles reuse it instead of opening the store again (and leaking its timers and file
 * handles). The factory runs once per key; later calls return the same gateway (or the same
 * promise while an async factory is running; a rejected factory is forgotten so that the next
 * call tries again). Changes to the factory's options need a restart of the dev server.
 *
 * Unless `closeOnExit` is false, the gateway is closed on SIGINT/SIGTERM (Next's own shutdown,
 * which ends with `process.exit()`, waits for it, at most 5 s) and when the event loop empties.
 *
 * @example
 * ```ts
 * // lib/gateway.ts
 * import { createGateway } from "@tokenpool/core";
 * import { getGateway } from "@tokenpool/next";
 * import { sqliteStore } from "@tokenpool/store-sqlite";
 *
 * export const gateway = () =>
 *   getGateway(() =>
 *     createGateway({
 *       store: sqliteStore({ filename: "./data/tokenpool.db" }),
 *       secret: process.env.TOKENPOOL_SECRET,
 *     }),
 *   );
 * ```
 */
export function getGateway(factory: () => Gateway, options?: GetGatewayOptions): Gateway;
export function getGateway(
  factory: () => Gateway | Promise<Gateway>,
  options?: GetGatewayOptions,
): Gateway | Promise<Gateway>;
export function getGateway(
  factory: () => Gateway | Promise<Gateway>,
  options: GetGatewayOptions = {},
): Gateway | Promise<Gateway> {
  const key = options.key ?? "default";
  const map = registry();
  const found = map.get(key);
  if (found) return found.value;

  const created = factory();
  const entry: Entry = { value: created };
  map.set(key, entry);
  const ready = (gateway: Gateway) => {
    if (options.closeOnExit !== false) closeOnExit(gateway);
    entry.value = gateway;
    return gateway;
  };
  if (!(created instanceof Promise)) return ready(created);
  entry.value = created.then(ready, (error: unknown) => {
    if (map.get(key) === entry) map.delete(key);
    throw error;
  });
  return entry.value;
}

/**
 * Forgets a gateway kept by {@link getGateway} (it does not close it), so that the next call
 * creates a new one. Meant for tests.
 */
export function forgetGateway(key = "default"): void {
  registry().delete(key);
}
