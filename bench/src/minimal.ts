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
 * `BENCH_MINIMAL_STORE=sqlite` adds the store work the features cost tokenpool, done as
 * tokenpool does it and nothing around it: the key's quota taken from a block (one
 * `reserveQuota` of tokenpool's SQLite store per 32 requests), a usage-journal line per request
 * (one `writeSync` of the share's JSON line, carrying the previous request's finished line),
 * and at the end the request's `UsageCommit` (its share settled, its full usage record) written
 * by the store's `commitUsage` in batches of 256 or every 200 ms; plus rpm/tpm counters and a
 * concurrency count in `Map`s and a request counter for metrics. What a fast path of tokenpool
 * with every feature on could cost at the least.
 *
 * @module
 */
import { randomUUID } from "node:crypto";
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createGateway, type Reservation, type UsageCommit } from "@tokenpool/core";
import { sqliteStore } from "@tokenpool/store-sqlite";
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

/** The store work of tokenpool's features, at the least (`BENCH_MINIMAL_STORE=sqlite`). */
interface StoreWork {
  /** Before forwarding: admission and the quota share; the share's units. */
  start(requestId: string, model: string, started: number): number | Promise<number>;
  /** After the answer: the counters and the request's commit queued. */
  finish(requestId: string, model: string, usage: Usage | null, started: number): void;
  close(): Promise<void>;
}

/**
 * `BENCH_MINIMAL_PARTS` (with `BENCH_MINIMAL_STORE=sqlite`): which parts of the store work to do,
 * to tell their costs apart; all of `journal,commit` when unset (the block's reservations are
 * always made).
 */
const parts = new Set((process.env.BENCH_MINIMAL_PARTS ?? "journal,commit").split(","));

const BLOCK_REQUESTS = 32;
const UNITS = 300;
const MAX_BATCH = Number(process.env.BENCH_MINIMAL_BATCH ?? 256);

async function storeWork(): Promise<StoreWork> {
  const dir = await mkdtemp(join(tmpdir(), "tokenpool-minimal-"));
  const filename = join(dir, "minimal.db");
  // The key is made as tokenpool makes it, then the gateway is closed: the hot path below uses
  // the store alone.
  const setup = createGateway({
    store: sqliteStore({ filename }),
    secret: "bench-secret-0123456789abcdef0123456789",
    logger: false,
  });
  await setup.ready;
  const { record: keyRecord } = await setup.keys.create({
    name: "minimal",
    remainQuota: 1_000_000_000,
  });
  await setup.close();
  const store = sqliteStore({ filename });
  const keyId = keyRecord.id;
  const journal = openSync(join(dir, "journal.jsonl"), "a");
  let block: { reservation: Reservation; left: number } | null = null;
  let opening: Promise<void> | null = null;
  const windows = new Map<string, number>();
  let inflight = 0;
  let queue: UsageCommit[] = [];
  let writing: Promise<unknown> = Promise.resolve();
  const flush = () => {
    if (queue.length === 0) return;
    const batch = queue;
    queue = [];
    writing = writing.then(() => store.commitUsage(batch, Math.floor(Date.now() / 1000)));
  };
  const timer = setInterval(flush, 200);
  timer.unref();
  const open = async () => {
    const r = await store.reserveQuota(keyId, UNITS * BLOCK_REQUESTS, {});
    if (!r.ok) throw new Error(`minimal: the block was refused (${r.reason})`);
    block = { reservation: r.reservation, left: r.reservation.units };
    if (parts.has("journal")) lines.push(JSON.stringify({ t: "B", r: r.reservation }));
  };
  // The journal's lines of one loop turn go out with one write when the turn ends, as
  // tokenpool's do; a finished line waits for the next share line.
  let lines: string[] = [];
  let soon = false;
  const writeLines = () => {
    soon = false;
    if (lines.length === 0) return;
    writeSync(journal, `${lines.join("\n")}\n`);
    lines = [];
  };
  const take = (requestId: string, model: string, started: number): number => {
    block!.left -= UNITS;
    if (parts.has("journal")) {
      lines.push(
        JSON.stringify({
          t: "T",
          b: block!.reservation.id,
          u: UNITS,
          q: requestId,
          ro: "chat",
          m: model,
          ts: started,
        }),
      );
      if (!soon) {
        soon = true;
        setImmediate(writeLines);
      }
    }
    return UNITS;
  };
  return {
    start(requestId, model, started) {
      const minute = Math.floor(started / 60_000);
      const rpm = `r:${minute}`;
      windows.set(rpm, (windows.get(rpm) ?? 0) + 1);
      // The concurrency cap, set too high to refuse anything (as the bench key's).
      if (inflight >= 10_000) return Promise.reject(new Error("minimal: concurrency cap"));
      inflight++;
      // A block runs out before every request that waited for it got a share: the rest wait
      // for the next one.
      const share = (): number | Promise<number> => {
        if (block && block.left >= UNITS) return take(requestId, model, started);
        opening ??= open().finally(() => {
          opening = null;
        });
        return opening.then(share);
      };
      return share();
    },
    finish(requestId, model, usage, started) {
      inflight--;
      const input = usage?.prompt_tokens ?? 0;
      const output = usage?.completion_tokens ?? 0;
      const tpm = `t:${Math.floor(started / 60_000)}`;
      windows.set(tpm, (windows.get(tpm) ?? 0) + input + output);
      const now = Date.now();
      const record = {
        timestamp: Math.floor(started / 1000),
        requestId,
        keyId,
        userId: null,
        credentialId: "bench",
        provider: "openai",
        route: "chat",
        model,
        stream: false,
        status: 200,
        success: true,
        quota: input + output,
        durationMs: now - started,
        error: null,
        inputTokens: input,
        outputTokens: output,
        totalTokens: input + output,
        reasoningTokens: 0,
        cachedTokens: 0,
        keyName: "minimal",
        group: "default",
        format: "openai",
        firstTokenMs: now - started,
        retries: 0,
        errorType: null,
      };
      // The finished line goes out with the next write (tokenpool's lazy `D` line).
      if (parts.has("journal"))
        lines.push(
          JSON.stringify({
            t: "D",
            b: block!.reservation.id,
            q: requestId,
            u: UNITS,
            a: input + output,
            rec: record,
          }),
        );
      if (!parts.has("commit")) return;
      queue.push({
        reservation: block!.reservation,
        share: UNITS,
        actualUnits: input + output,
        record,
      });
      if (queue.length >= MAX_BATCH) setImmediate(flush);
    },
    async close() {
      clearInterval(timer);
      flush();
      writeLines();
      await writing;
      closeSync(journal);
      await store.close();
    },
  };
}

runChild(async () => {
  const pool = new Pool(new URL(upstreamArg()).origin, { pipelining: 1 });
  const upstreamAuth = `Bearer ${UPSTREAM_KEY}`;
  const keys = new Map<string, KeyState>([[CLIENT_KEY, { id: "key-1", tokens: 0 }]]);
  const work = process.env.BENCH_MINIMAL_STORE === "sqlite" ? await storeWork() : null;
  let records: unknown[] = [];
  const drain = setInterval(() => {
    records = [];
  }, 200);
  drain.unref();

  const finish = (
    key: KeyState,
    model: unknown,
    usage: Usage | null,
    started: number,
    requestId: string,
  ) => {
    key.tokens += (usage?.prompt_tokens ?? 0) + (usage?.completion_tokens ?? 0);
    if (work) work.finish(requestId, String(model), usage, started);
    else records.push({ key: key.id, model, usage, ms: Date.now() - started, at: started });
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
    const requestId = work ? randomUUID() : "";
    const units = work?.start(requestId, String(parsed.model), started);
    if (units instanceof Promise)
      units.then(
        () => forward(req, res, body, key, parsed, stream, started, requestId),
        (error: unknown) => fail(res, 500, String(error)),
      );
    else forward(req, res, body, key, parsed, stream, started, requestId);
  };

  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer,
    key: KeyState,
    parsed: { model?: unknown },
    stream: boolean,
    started: number,
    requestId: string,
  ) => {
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
              finish(key, parsed.model, usage, started, requestId);
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
            finish(key, parsed.model, usage, started, requestId);
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
      await work?.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await pool.destroy();
    },
  };
});
