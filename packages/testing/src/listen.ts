import type { Server } from "node:http";
import { type AddressInfo, createServer } from "node:net";

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

/**
 * A TCP port on 127.0.0.1 that was free a moment ago, for a child process that needs a port
 * number before it starts (`--port N`).
 *
 * Chosen at random below Linux's ephemeral range (32768–60999) and checked by binding it: a port
 * the kernel handed out for `listen(0)` is in that range, and so is the local port of every
 * outgoing connection, so a parallel test's client socket can take it between our check and the
 * child's `listen` (EADDRINUSE). Outside that range only another `freePort()` could, at random.
 */
export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = 20000 + Math.floor(Math.random() * 12000);
    if (await canListen(port)) return port;
  }
  throw new Error("freePort: no free port found in 20000–31999 after 50 tries");
}

function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer();
    probe.once("error", () => resolve(false));
    probe.listen(port, "127.0.0.1", () => probe.close(() => resolve(true)));
  });
}
