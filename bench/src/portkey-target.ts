/**
 * Bench child "portkey": Portkey's open-source gateway (`@portkey-ai/gateway`, a peer to compare
 * tokenpool with), its own Node server as published (`build/start-server.js`: Hono on
 * `@hono/node-server`), run inside this process so that the runner reads its CPU time over IPC
 * like the other targets'. Requests name the provider and the upstream in headers
 * (`x-portkey-provider: openai`, `x-portkey-custom-host: <mock upstream>/v1`) and carry the
 * upstream key as their `Authorization`, which Portkey forwards.
 *
 * @module
 */
import { createServer, request } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { runChild, UPSTREAM_KEY, upstreamArg } from "./child.js";

/** A port that was free a moment ago (Portkey's server takes a port number, not 0). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Whether `GET /` of the server answers 200 ("AI Gateway says hey!"). */
function answers(origin: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = request(`${origin}/`, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on("error", () => resolve(false));
    req.end();
  });
}

runChild(async () => {
  const upstreamUrl = upstreamArg();
  const port = await freePort();
  // start-server.js reads its flags from process.argv: `--port=N`, and `--headless` (no web UI).
  process.argv.push(`--port=${port}`, "--headless");
  const pkg = createRequire(import.meta.url).resolve("@portkey-ai/gateway/package.json");
  // The import resolves once the server listens (after its 1 s start-up spinner on stdout).
  await import(pathToFileURL(join(dirname(pkg), "build/start-server.js")).href);
  const origin = `http://127.0.0.1:${port}`;
  for (let i = 0; !(await answers(origin)); i++) {
    if (i >= 100) throw new Error(`Portkey's server does not answer on ${origin}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    origin,
    authorization: `Bearer ${UPSTREAM_KEY}`,
    headers: { "x-portkey-provider": "openai", "x-portkey-custom-host": upstreamUrl },
    // start-server.js keeps its server to itself: the process exits right after close().
    close: async () => {},
  };
});
