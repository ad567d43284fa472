import type { ClientSignal } from "../exchange.js";

/** Resolves true after `ms`, or false as soon as the client goes away. */
export function sleep(ms: number, signal: ClientSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      (signal as EventTarget).removeEventListener?.("abort", onAbort);
      (signal as import("node:events").EventEmitter).off?.("abort", onAbort);
      resolve(true);
    }, ms);
    if ("addEventListener" in signal) signal.addEventListener("abort", onAbort, { once: true });
    else signal.once("abort", onAbort);
  });
}
