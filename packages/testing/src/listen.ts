import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/** Starts `server` on `host:port` (0 = a free port) and returns where it listens. */
export async function listenMock(
  server: Server,
  port: number,
  host: string,
): Promise<{ port: number; origin: string }> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  const actual = (server.address() as AddressInfo).port;
  return { port: actual, origin: `http://${host.includes(":") ? `[${host}]` : host}:${actual}` };
}

/**
 * A `close()` for a mock server: clears its pending timers, stops listening and destroys open
 * connections (streams in progress included); idempotent.
 */
export function mockCloser(server: Server, timers: Set<NodeJS.Timeout>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => {
    closing ??= new Promise<void>((resolve) => {
      for (const t of timers) clearTimeout(t);
      timers.clear();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
}
