#!/usr/bin/env node
/**
 * Run a mock OpenAI-compatible upstream standalone. Installed, the package has it as a bin:
 *
 * ```sh
 * npx tokenpool-mock-upstream --port 8787 --api-key sk-a --api-key sk-b --chunk-delay-ms 20
 * ```
 *
 * In this repository, from the sources:
 * `node --conditions=source --import tsx packages/testing/src/mock-upstream-cli.ts --port 0`.
 *
 * Prints one JSON line `{"url": "http://127.0.0.1:8787/v1", "port": 8787}` on stdout once it
 * listens, and exits on SIGTERM or SIGINT (or when its parent's IPC channel closes).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createMockUpstream, type MockUpstreamOptions } from "./mock-upstream.js";

const USAGE = `Usage: tokenpool-mock-upstream [options]
  --port N                    port to listen on (default 0: a free port)
  --host H                    interface (default 127.0.0.1)
  --api-key K                 accepted upstream key, repeatable (default: accept any)
  --chunk-delay-ms N          delay between SSE chunks (default 0)
  --reply TEXT                assistant reply text
  --model ID                  model listed by GET /v1/models, repeatable
  --max-recorded-requests N   requests kept in memory (default 1000, 0 disables)`;

/** Parse the command line into mock upstream options; throws on invalid input. */
function parseMockUpstreamArgs(argv: readonly string[]): MockUpstreamOptions {
  const { values } = parseArgs({
    args: [...argv],
    strict: true,
    options: {
      port: { type: "string" },
      host: { type: "string" },
      "api-key": { type: "string", multiple: true },
      "chunk-delay-ms": { type: "string" },
      reply: { type: "string" },
      model: { type: "string", multiple: true },
      "max-recorded-requests": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    process.exit(0);
  }
  const options: MockUpstreamOptions = {};
  if (values.port !== undefined) options.port = toInt("--port", values.port);
  if (values.host !== undefined) options.host = values.host;
  if (values["api-key"]?.length) options.apiKeys = values["api-key"];
  if (values["chunk-delay-ms"] !== undefined) {
    options.chunkDelayMs = toInt("--chunk-delay-ms", values["chunk-delay-ms"]);
  }
  if (values.reply !== undefined) options.reply = values.reply;
  if (values.model?.length) options.models = values.model;
  if (values["max-recorded-requests"] !== undefined) {
    options.maxRecordedRequests = toInt("--max-recorded-requests", values["max-recorded-requests"]);
  }
  return options;
}

function toInt(flag: string, value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${flag} must be a non-negative integer`);
  return n;
}

async function main(): Promise<void> {
  let options: MockUpstreamOptions;
  try {
    options = parseMockUpstreamArgs(process.argv.slice(2));
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  const mock = await createMockUpstream(options);
  const stop = () => {
    mock.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once("SIGTERM", stop);
  process.once("SIGINT", stop);
  // Started by fork(): a parent that dies must not leave the mock running.
  if (process.send) process.once("disconnect", stop);
  process.stdout.write(`${JSON.stringify({ url: mock.url, port: mock.port })}\n`);
}

main().catch((error: unknown) => {
  process.stderr.write(`mock upstream failed to start: ${String(error)}\n`);
  process.exit(1);
});
