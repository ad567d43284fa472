/**
 * Bench child "minimal": the least work any gateway with keys and usage accounting does, and
 * nothing more. A yardstick between the floor (no gateway work at all) and tokenpool (all of
 * it): what parsing, a key lookup, reading the usage and keeping a record cost on top of moving
 * the bytes. Opt-in: `BENCH_TARGETS=floor,minimal,tokenpool pnpm bench`.
 *
 * Per request it reads the body and parses it (a gateway must, for the model and `stream`),
 * looks the client's key up in a `Map` (no hashing, no store), forwards the original bytes with
 * its own upstream key through an undici `Pool`, and then:
 * - a JSON answer: buffers it, parses it for `usage`, writes it back with its length;
 * - a stream: writes each chunk back as it comes (with backpressure), and parses the SSE event
 *   of a chunk that mentions `"usage"`;
 * at the end it adds the tokens to the key's counter and pushes a record object onto an array
 * that a 200 ms timer empties (standing in for a batched write that costs nothing).
 *
 * What it leaves out, that a real gateway needs: admission (rate limits, concurrency), quota
 * reservation and settlement, credential selection and failover, the store, the request log,
 * metrics, secret masking, error handling in each dialect's format, header policies, timeouts.
 *
 * @module
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { Pool } from "undici";
import { runChild, UPSTREAM_KEY, upstreamArg } from "./child.js";

/** The key clients of this target send. */
const CLIENT_KEY = "Bearer sk-minimal-bench-0123456789";

interface Usage {
  prompt_tokens?: number;
  completion_tokens?: number;
}

interface KeyState {
  id: string;
  tokens: number;
}

runChild(async () => {
  const pool = new Pool(new URL(upstreamArg()).origin, { pipelining: 1 });
  const upstreamAuth = `Bearer ${UPSTREAM_KEY}`;
  const keys = new Map<string, KeyState>([[CLIENT_KEY, { id: "key-1", tokens: 0 }]]);
  let records: unknown[] = [];
  const drain = setInterval(() => {
    records = [];
  }, 200);
  drain.unref();

  const finish = (key: KeyState, model: unknown, usage: Usage | null, started: number) => {
    key.tokens += (usage?.prompt_tokens ?? 0) + (usage?.completion_tokens ?? 0);
    records.push({ key: key.id, model, usage, ms: Date.now() - started, at: started });
  };

  const fail = (res: ServerResponse, status: number, message: string) => {
    if (res.headersSent) {
      res.destroy();
      return;
    }
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify({ error: { message, type: "invalid_request_error" } }));
  };

  const proxy = (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    const key = keys.get(req.headers.authorization ?? "");
    if (!key) return fail(res, 401, "invalid key");
    let parsed: { model?: unknown; stream?: unknown };
    try {
      parsed = JSON.parse(body.toString("utf8"));
    } catch {
      return fail(res, 400, "invalid JSON");
    }
    const stream = parsed.stream === true;
    const started = Date.now();
    pool
      .request({
        method: "POST",
        path: req.url ?? "/",
        headers: { "content-type": "application/json", authorization: upstreamAuth },
        body,
      })
      .then(
        (up) => {
          const headers = { "content-type": String(up.headers["content-type"]) };
          const src = up.body;
          src.on("error", () => res.destroy());
          res.on("close", () => {
            if (!src.readableEnded) src.destroy();
          });
          if (!stream) {
            const chunks: Buffer[] = [];
            src.on("data", (c: Buffer) => chunks.push(c));
            src.on("end", () => {
              const all = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
              let usage: Usage | null = null;
              try {
                usage = (JSON.parse(all.toString("utf8")) as { usage?: Usage }).usage ?? null;
              } catch {}
              res.writeHead(up.statusCode, { ...headers, "content-length": String(all.length) });
              res.end(all);
              finish(key, parsed.model, usage, started);
            });
            return;
          }
          res.writeHead(up.statusCode, headers);
          let usage: Usage | null = null;
          const resume = () => src.resume();
          src.on("data", (c: Buffer) => {
            if (c.includes('"usage"')) {
              for (const line of c.toString("utf8").split("\n")) {
                if (!line.startsWith("data: {") || !line.includes('"usage"')) continue;
                try {
                  usage = (JSON.parse(line.slice(6)) as { usage?: Usage }).usage ?? usage;
                } catch {}
              }
            }
            if (!res.write(c)) {
              src.pause();
              res.once("drain", resume);
            }
          });
          src.on("end", () => {
            res.end();
            finish(key, parsed.model, usage, started);
          });
        },
        (error: unknown) => fail(res, 502, `upstream request failed: ${String(error)}`),
      );
  };

  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on("error", () => res.destroy());
    res.on("error", () => {});
    req.on("data", (c: Buffer) => parts.push(c));
    req.on("end", () => proxy(req, res, parts.length === 1 ? parts[0]! : Buffer.concat(parts)));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    origin: `http://127.0.0.1:${port}`,
    authorization: CLIENT_KEY,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.destroy();
    },
  };
});
