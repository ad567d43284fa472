/**
 * `pnpm bench`: proxy overhead of tokenpool against the mock upstream, in one run, for four
 * targets that each run in their own child process:
 *
 * - direct: the mock upstream itself;
 * - floor: a bare undici pass-through proxy (bench/src/floor.ts);
 * - tokenpool: the gateway on node:http with the SQLite store (bench/src/tokenpool-target.ts);
 * - portkey: Portkey's open-source gateway, a peer (bench/src/portkey-target.ts).
 *
 * The load generator (autocannon) runs here; the runner reads each target's `process.cpuUsage()`
 * over IPC before and after each load run. After each load run, outside that CPU window, a
 * sequential probe at concurrency 1 measures time to the headers, the first body byte and the end
 * of the body. `BENCH_RUNS=N` repeats the matrix and reports the medians. See bench/README.md for
 * how to read the output.
 *
 * @module
 */
import { type ChildProcess, fork } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { Client, request } from "undici";
import { BENCH_METRICS_TOKEN, type ChildMessage, type ParentMessage } from "./child.js";
import { bundle, log, PIN, pin, ROOT } from "./runner.js";

const SECONDS = positiveNumber("BENCH_SECONDS", 5);
const WARMUP_SECONDS = positiveNumber("BENCH_WARMUP_SECONDS", 1);
/**
 * `BENCH_PROCESS_WARMUP_SECONDS`: once, before the first measurement, each target serves this
 * many seconds of load spread over the cells (not measured), so that every run measures warm
 * processes, as a gateway that runs for days is. V8 compiles the hot code of tokenpool (a larger
 * program than the floor) over its first ~10-15 s of load at c=1: measured per thread, its
 * background compiler threads used 25-40 % of the main thread's CPU in the first seconds and
 * ~5 % after, so with only the per-cell 1 s warm-up the first cell (c=1 json) paid that
 * compilation in its CPU per request. 0 turns it off.
 */
const PROCESS_WARMUP_SECONDS = nonNegativeNumber("BENCH_PROCESS_WARMUP_SECONDS", 12);
const CHUNK_DELAY_MS = Number(process.env.BENCH_CHUNK_DELAY_MS ?? 0);
/**
 * `BENCH_RUNS=N`: the whole matrix N times over the same child processes (not restarted: see
 * {@link main}); the report gives the median of the N runs per cell and target.
 */
const RUNS = positiveInteger("BENCH_RUNS", 1);
/**
 * Requests of the latency probe after each load run: sequential, concurrency 1, one keep-alive
 * connection. It stops early after {@link PROBE_MAX_MS}, so that a slow target (Portkey's streams
 * take ~30 ms each) does not stretch the run.
 */
const PROBE = positiveInteger("BENCH_PROBE", 300);
const PROBE_MAX_MS = 2000;
/** Unmeasured requests on the probe's fresh connection before the measured ones. */
const PROBE_WARMUP = 10;
/** The issue's latency targets, in ms over direct, read from the c=1 probe's p50s. */
const FIRST_BYTE_TARGET_MS = 0.3;
const ADDED_P50_TARGET_MS = 0.2;
/**
 * Write V8 CPU profiles of every child to bench/results/profiles/<target>/ (the largest file is
 * the main thread). Profiling slows the targets, so the numbers of such a run are not valid.
 */
const CPU_PROF = process.env.BENCH_CPU_PROF === "1";
/**
 * A/B mode: another checkout of this repository (e.g. a git worktree of the previous commit,
 * dependencies installed). Its tokenpool target runs beside this one and the two take turns,
 * `BENCH_AB_SLICES` slices of `BENCH_SECONDS` each per cell, so that the machine's drift falls
 * on both alike; the report is this checkout's CPU per request ÷ the base's.
 */
const AB_BASE = process.env.BENCH_AB_BASE
  ? resolve(process.env.INIT_CWD || process.cwd(), process.env.BENCH_AB_BASE)
  : undefined;
const AB_SLICES = positiveNumber("BENCH_AB_SLICES", 10);
/**
 * `BENCH_LIMITS_AB=1`: what admission control costs per request. One tokenpool target with two
 * keys, A as the bench key is and B with rpm, tpm and concurrency limits (too high to refuse
 * anything; `BENCH_LIMITS=rpm,tpm,maxConcurrency` picks which), taking turns in ABBA slices.
 * One process for both, so that what two processes of the same code differ by (their memory
 * layout, the JIT's choices: up to ±5 % per cell here) does not count as the limits' cost.
 */
const LIMITS_AB = process.env.BENCH_LIMITS_AB === "1" || process.env.BENCH_LIMITS_AB === "aa";
/** `BENCH_LIMITS_AB=aa`: the same, with no limits on either key (the noise floor). */
const LIMITS_AA = process.env.BENCH_LIMITS_AB === "aa";
/**
 * `BENCH_METRICS_AB=1`: what Prometheus metrics cost per request. One tokenpool process with two
 * gateways, A with `metrics: false` and B with metrics on (the default), taking turns in ABBA
 * slices; one process for both for the same reason as the limits A/B. `aa`: B without metrics
 * too (the noise floor).
 */
const METRICS_AB = process.env.BENCH_METRICS_AB === "1" || process.env.BENCH_METRICS_AB === "aa";
const METRICS_AA = process.env.BENCH_METRICS_AB === "aa";
/**
 * Pinning (`BENCH_PIN`, on by default with 2 CPUs or more and `taskset` installed): the load
 * generator (this process) and the mock upstream on CPU 0, every measured target on CPU 1, so
 * that a target never shares its core with the load or migrates between cores mid-run: the
 * biggest source of noise in CPU per request on a small shared machine.
 */
const LOAD_CPU = 0;
const TARGET_CPU = 1;
/** The CPU budget tokenpool must stay within, as a multiple of the floor's CPU per request. */
const CPU_TARGET_VS_FLOOR = 1.5;
const CHAT_PATH = "/v1/chat/completions";
const RESULTS_FILE = fileURLToPath(new URL("../results/latest.json", import.meta.url));
const PROFILE_DIR = fileURLToPath(new URL("../results/profiles/", import.meta.url));
const STARTED_AT = new Date().toISOString();

type TargetName =
  | "direct"
  | "floor"
  | "minimal"
  | "tokenpool"
  | "portkey"
  | "base"
  | "limits"
  | "metrics";
const TARGETS: readonly TargetName[] = ["direct", "floor", "minimal", "tokenpool", "portkey"];

/**
 * `BENCH_TARGETS=floor,tokenpool`: only these targets (all but `minimal` when unset: it is a
 * yardstick, measured when named). direct always runs: it is the upstream of the others. The A/B
 * modes start tokenpool whatever this says.
 */
const TARGET_FILTER: ReadonlySet<TargetName> | undefined = (() => {
  const raw = process.env.BENCH_TARGETS;
  if (!raw) return undefined;
  const names = raw
    .split(",")
    .map((x) => x.trim())
    .filter(Boolean);
  for (const name of names) {
    if (!TARGETS.includes(name as TargetName)) {
      throw new Error(`BENCH_TARGETS: unknown target ${name} (known: ${TARGETS.join(", ")})`);
    }
  }
  return new Set(["direct", ...names] as TargetName[]);
})();
const wanted = (name: TargetName) => (TARGET_FILTER ? TARGET_FILTER.has(name) : name !== "minimal");

/** One cell of the matrix. */
interface Cell {
  concurrency: number;
  stream: boolean;
}
const ALL_CELLS: readonly Cell[] = [
  { concurrency: 1, stream: false },
  { concurrency: 1, stream: true },
  { concurrency: 50, stream: false },
  { concurrency: 50, stream: true },
];

/** BENCH_CELLS="c=50 json,c=1 stream" runs only those cells (all when unset). */
const CELLS: readonly Cell[] = process.env.BENCH_CELLS
  ? ALL_CELLS.filter((c) =>
      process.env
        .BENCH_CELLS!.split(",")
        .map((x) => x.trim())
        .includes(cellName(c)),
    )
  : ALL_CELLS;

/** One measured load run: one target in one cell. */
interface Row {
  cell: string;
  concurrency: number;
  stream: boolean;
  target: TargetName;
  requests: number;
  durationSeconds: number;
  rps: number;
  p50Ms: number;
  p99Ms: number;
  cpuUsPerRequest: number;
  /** CPU of the mock upstream per request during the same run, for reference. */
  upstreamCpuUsPerRequest: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  /** The latency probe after the load run (absent in the A/B modes, which do not probe). */
  probe?: ProbeResult;
}

/** The sequential c=1 probe of one target in one cell: p50s in ms from sending the request. */
interface ProbeResult {
  /** Measured requests (fewer than `BENCH_PROBE` when it hit its time limit). */
  requests: number;
  /** Time to the response headers. */
  headersP50Ms: number;
  /** Time to the first body byte (for streams: the first SSE chunk). */
  firstByteP50Ms: number;
  /** Time to the end of the body. */
  totalP50Ms: number;
  totalP99Ms: number;
  /** Non-2xx answers and failed requests (must be 0). */
  failures: number;
}

/** Per cell: the probe's p50s of tokenpool and floor minus direct's, in ms. */
interface LatencyRow {
  cell: string;
  tokenpoolFirstByteOverDirectMs: number | null;
  tokenpoolTotalOverDirectMs: number | null;
  floorFirstByteOverDirectMs: number | null;
  floorTotalOverDirectMs: number | null;
  /** Streams: first byte ≤ {@link FIRST_BYTE_TARGET_MS} over direct; null for JSON cells. */
  withinFirstByteTarget: boolean | null;
  /** Total p50 ≤ {@link ADDED_P50_TARGET_MS} over direct (the probe is always at c=1). */
  withinAddedP50Target: boolean | null;
}

/** tokenpool against the floor and direct targets, and Portkey against tokenpool, in one cell. */
interface Ratio {
  cell: string;
  cpuPerRequestVsFloor: number | null;
  /** Each run's CPU/req tokenpool ÷ floor (one entry with `BENCH_RUNS=1`). */
  cpuPerRequestVsFloorPerRun: (number | null)[];
  /** Portkey's CPU per request ÷ tokenpool's. */
  portkeyCpuPerRequestVsTokenpool: number | null;
  /** Portkey's CPU per request ÷ the floor's. */
  portkeyCpuPerRequestVsFloor: number | null;
  /** Portkey's p50 ÷ tokenpool's. */
  portkeyP50VsTokenpool: number | null;
  /** The minimal target's CPU per request ÷ the floor's (null unless it was measured). */
  minimalCpuPerRequestVsFloor: number | null;
  /** tokenpool's CPU per request ÷ the minimal target's. */
  cpuPerRequestVsMinimal: number | null;
  rpsVsFloor: number | null;
  rpsVsDirect: number | null;
  p50VsFloor: number | null;
  p50VsDirect: number | null;
  floorRpsVsDirect: number | null;
  withinCpuTarget: boolean | null;
}

function positiveNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number`);
  return value;
}

function nonNegativeNumber(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be 0 or more`);
  return value;
}

function positiveInteger(name: string, fallback: number): number {
  const value = positiveNumber(name, fallback);
  if (!Number.isInteger(value)) throw new Error(`${name} must be a positive integer`);
  return value;
}

function cellName(cell: Cell): string {
  return `c=${cell.concurrency} ${cell.stream ? "stream" : "json"}`;
}

/**
 * Bundles the three children into plain JavaScript, as a published build would be (the workspace
 * packages from their sources, the same undici for floor and tokenpool), no `keepNames` (running
 * the TypeScript through tsx would add a `__name()` call to every closure made per request, a
 * cost no user of the built packages pays).
 */
async function buildChildren(): Promise<{
  upstream: string;
  floor: string;
  minimal: string;
  tokenpool: string;
  portkey: string;
}> {
  const outdir = fileURLToPath(new URL("../.build/", import.meta.url));
  // The portkey child is a small wrapper; it imports Portkey's published server as it is.
  const entries = {
    upstream: "upstream.ts",
    floor: "floor.ts",
    minimal: "minimal.ts",
    tokenpool: "tokenpool-target.ts",
    portkey: "portkey-target.ts",
  };
  await bundle(
    Object.fromEntries(
      Object.entries(entries).map(([k, f]) => [k, fileURLToPath(new URL(f, import.meta.url))]),
    ),
    outdir,
  );
  return {
    upstream: `${outdir}upstream.mjs`,
    floor: `${outdir}floor.mjs`,
    minimal: `${outdir}minimal.mjs`,
    tokenpool: `${outdir}tokenpool.mjs`,
    portkey: `${outdir}portkey.mjs`,
  };
}

/** The tokenpool target of another checkout (A/B mode), bundled from that checkout's sources. */
async function buildBase(base: string): Promise<string> {
  const outdir = fileURLToPath(new URL("../.build/base/", import.meta.url));
  await bundle({ base: `${base.replace(/\/$/, "")}/bench/src/tokenpool-target.ts` }, outdir, base);
  return `${outdir}base.mjs`;
}

// ---------------------------------------------------------------------------------------------
// Child processes

const live = new Set<ChildProcess>();
/** Children being stopped on purpose (their exit is not an error). */
const stopping = new WeakSet<ChildProcess>();

/** What load is sent to and CPU read from: a target, or a second key of one. */
interface Endpoint {
  readonly name: TargetName;
  readonly origin: string;
  readonly authorization: string;
  /** More headers every request carries (Portkey's provider and upstream). */
  readonly headers?: Record<string, string>;
  cpu(): Promise<NodeJS.CpuUsage>;
}

/** A target (or the upstream) running in its own process. */
class Target implements Endpoint {
  private nextId = 0;
  private readonly waiting = new Map<number, (usage: NodeJS.CpuUsage) => void>();

  private constructor(
    readonly name: TargetName,
    readonly proc: ChildProcess,
    readonly origin: string,
    readonly authorization: string,
    private readonly stderr: () => string,
    readonly headers?: Record<string, string>,
    private readonly limitedAuthorization?: string,
    private readonly secondGateway?: { origin: string; authorization: string },
  ) {
    proc.on("message", (message: ChildMessage) => {
      if (message.type !== "cpu") return;
      this.waiting.get(message.id)?.(message.usage);
      this.waiting.delete(message.id);
    });
    proc.once("exit", (code, signal) => {
      if (stopping.has(proc)) return;
      log(`${name} exited unexpectedly (${signal ?? `code ${code}`}):\n${this.stderr()}`);
    });
  }

  /** Fork `file` (a bundle from {@link buildChildren}) and wait until it reports `ready`. */
  static start(
    name: TargetName,
    file: string,
    args: string[] = [],
    timeoutMs = 60_000,
    env: NodeJS.ProcessEnv = {},
  ) {
    const proc = fork(file, args, {
      cwd: ROOT,
      env: { ...process.env, ...env },
      execArgv: [
        ...(CPU_PROF ? ["--cpu-prof", `--cpu-prof-dir=${PROFILE_DIR}${name}`] : []),
        ...(NODE_FLAGS && name !== "direct" ? NODE_FLAGS : []),
        ...(BASE_NODE_FLAGS && name === "base" ? BASE_NODE_FLAGS : []),
      ],
      stdio: ["ignore", NODE_FLAGS ? "inherit" : "ignore", "pipe", "ipc"],
    });
    live.add(proc);
    proc.once("exit", () => live.delete(proc));
    // Without a listener, a failed send() to a dead child would crash the runner.
    proc.on("error", (error) => log(`${name}: ${error.message}`));
    let stderr = "";
    proc.stderr?.on("data", (chunk: Buffer) => {
      stderr = (stderr + chunk.toString()).slice(-4000);
    });
    return new Promise<Target>((resolve, reject) => {
      const fail = (reason: string) => {
        cleanup();
        stopProcess(proc).finally(() => {
          const error = new Error(`${name} failed to start: ${reason}`);
          Object.assign(error, { stderr: stderr.trim() });
          reject(error);
        });
      };
      const onMessage = (message: ChildMessage) => {
        if (message.type === "ready") {
          cleanup();
          // The mock upstream ("direct") serves the load of every target: it stays with the load.
          pin(proc.pid, name === "direct" ? LOAD_CPU : TARGET_CPU);
          resolve(
            new Target(
              name,
              proc,
              message.origin,
              message.authorization,
              () => stderr,
              message.headers,
              message.limitedAuthorization,
              message.secondOrigin && message.secondAuthorization
                ? { origin: message.secondOrigin, authorization: message.secondAuthorization }
                : undefined,
            ),
          );
        } else if (message.type === "error") {
          fail(message.message);
        }
      };
      const onExit = (code: number | null, signal: string | null) =>
        fail(`exited (${signal ?? `code ${code}`}) before it was ready`);
      const timer = setTimeout(() => fail(`not ready after ${timeoutMs} ms`), timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        proc.off("message", onMessage);
        proc.off("exit", onExit);
      };
      proc.on("message", onMessage);
      proc.once("exit", onExit);
    });
  }

  /** The child's `process.cpuUsage()`. */
  /** The same process through its second key (`BENCH_KEY_LIMITS`), measured as "limits". */
  limited(): Endpoint {
    const authorization = this.limitedAuthorization;
    if (!authorization) throw new Error(`${this.name} has no second key`);
    return { name: "limits", origin: this.origin, authorization, cpu: () => this.cpu() };
  }

  /** The second gateway of the same process (`BENCH_SECOND_GATEWAY`), measured as "metrics". */
  second(): Endpoint {
    const g = this.secondGateway;
    if (!g) throw new Error(`${this.name} has no second gateway`);
    return {
      name: "metrics",
      origin: g.origin,
      authorization: g.authorization,
      cpu: () => this.cpu(),
    };
  }

  cpu(): Promise<NodeJS.CpuUsage> {
    const id = ++this.nextId;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(id);
        reject(new Error(`${this.name} did not report its CPU usage`));
      }, 5000);
      this.waiting.set(id, (usage) => {
        clearTimeout(timer);
        resolve(usage);
      });
      if (!this.proc.connected) {
        clearTimeout(timer);
        this.waiting.delete(id);
        reject(new Error(`${this.name} is not running:\n${this.stderr()}`));
        return;
      }
      this.proc.send({ type: "cpu", id } satisfies ParentMessage);
    });
  }

  stop(): Promise<void> {
    return stopProcess(this.proc);
  }
}

/** Ask a child to stop, then SIGTERM, then SIGKILL; resolves once it has exited. */
async function stopProcess(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  stopping.add(proc);
  const exited = new Promise<void>((resolve) => proc.once("exit", () => resolve()));
  const within = (ms: number) =>
    Promise.race([exited.then(() => true), new Promise<boolean>((r) => setTimeout(r, ms, false))]);
  if (proc.connected) proc.send({ type: "stop" } satisfies ParentMessage);
  else proc.kill("SIGTERM");
  if (await within(3000)) return;
  proc.kill("SIGKILL");
  await within(2000);
}

/** The most telling line of a crashed child's stderr (the error message, not the stack). */
function firstErrorLine(stderr: string | undefined): string {
  const lines = (stderr ?? "").split("\n").map((line) => line.trim());
  return lines.find((line) => /^(\w*Error\b|Error \[)/.test(line)) ?? lines.findLast(Boolean) ?? "";
}

async function stopAll(): Promise<void> {
  await Promise.all([...live].map((proc) => stopProcess(proc)));
}

// Last resort (e.g. an uncaught exception): never leave a child behind.
process.on("exit", () => {
  for (const proc of live) proc.kill("SIGKILL");
});
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.once(signal, () => {
    log(`${signal}: stopping child processes`);
    stopAll().finally(() => process.exit(130));
  });
}

// ---------------------------------------------------------------------------------------------
// Load

function requestBody(stream: boolean): string {
  return JSON.stringify({
    model: "gpt-4o-mini",
    messages: [
      { role: "system", content: "You are a helpful assistant." },
      { role: "user", content: "Say hello in one short sentence." },
    ],
    max_tokens: 64,
    ...(stream ? { stream: true } : {}),
  });
}

/** Send one request of each kind and check the answer looks like a chat completion. */
async function smokeTest(target: Endpoint): Promise<void> {
  for (const stream of [false, true]) {
    const res = await request(`${target.origin}${CHAT_PATH}`, {
      method: "POST",
      headers: {
        ...target.headers,
        "content-type": "application/json",
        authorization: target.authorization,
      },
      body: requestBody(stream),
    });
    const text = await res.body.text();
    const kind = stream ? "streaming" : "non-streaming";
    if (res.statusCode !== 200) {
      throw new Error(`${target.name}: ${kind} request answered ${res.statusCode}: ${text}`);
    }
    const ok = stream
      ? text.endsWith("data: [DONE]\n\n") && text.includes("chat.completion.chunk")
      : (JSON.parse(text) as { object?: string }).object === "chat.completion";
    if (!ok) throw new Error(`${target.name}: unexpected ${kind} answer: ${text.slice(0, 500)}`);
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[index]!;
}

interface LoadResult {
  result: autocannon.Result;
  /** Latencies of the 2xx responses in ms (autocannon's own histogram has 1 ms resolution). */
  latencies: number[];
}

function load(target: Endpoint, cell: Cell, seconds: number): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const latencies: number[] = [];
    const instance = autocannon(
      {
        url: `${target.origin}${CHAT_PATH}`,
        method: "POST",
        headers: {
          ...target.headers,
          "content-type": "application/json",
          authorization: target.authorization,
        },
        body: requestBody(cell.stream),
        connections: cell.concurrency,
        pipelining: 1,
        duration: seconds,
        timeout: 10,
      },
      (error, result) => (error ? reject(error) : resolve({ result, latencies })),
    );
    instance.on("response", (_client, statusCode, _bytes, responseTime) => {
      if (statusCode >= 200 && statusCode < 300) latencies.push(responseTime);
    });
  });
}

/** `BENCH_NODE_FLAGS`: extra node flags for the targets (e.g. `--trace-gc`), their stdout shown. */
const NODE_FLAGS = process.env.BENCH_NODE_FLAGS?.split(/\s+/).filter(Boolean);

/**
 * `BENCH_BASE_NODE_FLAGS`: node flags for the A side of an A/B run only, so that a flag can be
 * measured against its absence (`BENCH_AB_BASE=.`: both sides this checkout).
 */
const BASE_NODE_FLAGS = process.env.BENCH_BASE_NODE_FLAGS?.split(/\s+/).filter(Boolean);

function cpuMicros(before: NodeJS.CpuUsage, after: NodeJS.CpuUsage): number {
  return after.user - before.user + (after.system - before.system);
}

/** Nanoseconds (from `process.hrtime.bigint()`) to milliseconds. */
const nsToMs = (ns: bigint) => Number(ns) / 1e6;

/**
 * The latency probe: `BENCH_PROBE` requests one after the other (concurrency 1) on one keep-alive
 * connection of its own, with the load's body and headers, after {@link PROBE_WARMUP} unmeasured
 * ones; stops early after {@link PROBE_MAX_MS}. Per request, with `process.hrtime.bigint()`: the
 * time from just before `request()` to its resolving (the response headers), to the body's first
 * `data` event (the first byte; for streams the first SSE chunk) and to its `end`.
 */
async function probe(target: Endpoint, cell: Cell): Promise<ProbeResult> {
  const client = new Client(target.origin, { pipelining: 1 });
  const options = {
    path: CHAT_PATH,
    method: "POST" as const,
    headers: {
      ...target.headers,
      "content-type": "application/json",
      authorization: target.authorization,
    },
    body: requestBody(cell.stream),
  };
  /** One request: [headers, first byte, end] in ns after the start, or null if it failed. */
  const one = async (): Promise<[bigint, bigint, bigint] | null> => {
    const start = process.hrtime.bigint();
    const res = await client.request(options);
    const headers = process.hrtime.bigint();
    let first = 0n;
    const end = await new Promise<bigint>((resolve, reject) => {
      res.body.on("data", () => {
        if (first === 0n) first = process.hrtime.bigint();
      });
      res.body.once("end", () => resolve(process.hrtime.bigint()));
      res.body.once("error", reject);
    });
    if (res.statusCode < 200 || res.statusCode >= 300 || first === 0n) return null;
    return [headers - start, first - start, end - start];
  };
  const headers: number[] = [];
  const firstByte: number[] = [];
  const total: number[] = [];
  let failures = 0;
  try {
    for (let i = 0; i < PROBE_WARMUP; i++) await one().catch(() => null);
    const deadline = process.hrtime.bigint() + BigInt(PROBE_MAX_MS) * 1_000_000n;
    for (let i = 0; i < PROBE && process.hrtime.bigint() < deadline; i++) {
      const t = await one().catch(() => null);
      if (!t) {
        failures++;
        continue;
      }
      headers.push(nsToMs(t[0]));
      firstByte.push(nsToMs(t[1]));
      total.push(nsToMs(t[2]));
    }
  } finally {
    await client.close().catch(() => undefined);
  }
  const sort = (xs: number[]) => Float64Array.from(xs).sort();
  const sortedTotal = sort(total);
  return {
    requests: total.length,
    headersP50Ms: percentile(sort(headers), 0.5),
    firstByteP50Ms: percentile(sort(firstByte), 0.5),
    totalP50Ms: percentile(sortedTotal, 0.5),
    totalP99Ms: percentile(sortedTotal, 0.99),
    failures,
  };
}

/**
 * One load run of `target` in `cell`: warm-up, then `BENCH_SECONDS` of load with the target's
 * (and the upstream's) CPU read just before and just after; then, with `withProbe`, the latency
 * probe, outside that CPU window.
 */
/**
 * The once-per-process warm-up ({@link PROCESS_WARMUP_SECONDS}): load on `target` in every
 * cell in turn, not measured.
 */
async function warmProcess(target: Endpoint): Promise<void> {
  if (PROCESS_WARMUP_SECONDS <= 0) return;
  log(`${target.name}: process warm-up ${PROCESS_WARMUP_SECONDS}s over ${CELLS.length} cells`);
  for (const cell of CELLS) await load(target, cell, PROCESS_WARMUP_SECONDS / CELLS.length);
}

async function measure(
  target: Endpoint,
  upstream: Endpoint,
  cell: Cell,
  withProbe = false,
): Promise<Row> {
  log(`${cellName(cell)} · ${target.name}: warm-up ${WARMUP_SECONDS}s, run ${SECONDS}s`);
  await load(target, cell, WARMUP_SECONDS);
  const [cpu0, up0] = await Promise.all([target.cpu(), upstream.cpu()]);
  const { result, latencies } = await load(target, cell, SECONDS);
  const [cpu1, up1] = await Promise.all([target.cpu(), upstream.cpu()]);
  const probed = withProbe ? await probe(target, cell) : undefined;
  const requests = result.requests.total;
  if (process.env.BENCH_SPLIT)
    log(
      `split ${target.name} user ${((cpu1.user - cpu0.user) / requests).toFixed(1)} sys ${((cpu1.system - cpu0.system) / requests).toFixed(1)}`,
    );
  const sorted = Float64Array.from(latencies).sort();
  return {
    cell: cellName(cell),
    concurrency: cell.concurrency,
    stream: cell.stream,
    target: target.name,
    requests,
    durationSeconds: result.duration,
    rps: requests / result.duration,
    p50Ms: percentile(sorted, 0.5),
    p99Ms: percentile(sorted, 0.99),
    cpuUsPerRequest: requests > 0 ? cpuMicros(cpu0, cpu1) / requests : Number.NaN,
    upstreamCpuUsPerRequest: requests > 0 ? cpuMicros(up0, up1) / requests : Number.NaN,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    ...(probed ? { probe: probed } : {}),
  };
}

// ---------------------------------------------------------------------------------------------
// Report

function ratio(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) {
    return null;
  }
  return a / b;
}

/** The median of `values` (the mean of the middle two for an even count); NaN when empty. */
function median(values: readonly number[]): number {
  const sorted = values.filter((v) => !Number.isNaN(v)).sort((x, y) => x - y);
  if (sorted.length === 0) return Number.NaN;
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Per cell and target, the median of the runs' rows: every measured number is the median of its
 * N values; non-2xx answers, errors, timeouts and probe failures are summed over the runs.
 */
function medianRows(runs: readonly (readonly Row[])[]): Row[] {
  const first = runs[0] ?? [];
  return first.map((row) => {
    const same = runs
      .map((rows) => rows.find((r) => r.cell === row.cell && r.target === row.target))
      .filter((r): r is Row => r !== undefined);
    const med = (pick: (r: Row) => number) => median(same.map(pick));
    const sum = (pick: (r: Row) => number) => same.reduce((t, r) => t + pick(r), 0);
    const probes = same.map((r) => r.probe).filter((p): p is ProbeResult => p !== undefined);
    const medProbe = (pick: (p: ProbeResult) => number) => median(probes.map(pick));
    return {
      ...row,
      requests: med((r) => r.requests),
      durationSeconds: med((r) => r.durationSeconds),
      rps: med((r) => r.rps),
      p50Ms: med((r) => r.p50Ms),
      p99Ms: med((r) => r.p99Ms),
      cpuUsPerRequest: med((r) => r.cpuUsPerRequest),
      upstreamCpuUsPerRequest: med((r) => r.upstreamCpuUsPerRequest),
      non2xx: sum((r) => r.non2xx),
      errors: sum((r) => r.errors),
      timeouts: sum((r) => r.timeouts),
      ...(probes.length > 0
        ? {
            probe: {
              requests: medProbe((p) => p.requests),
              headersP50Ms: medProbe((p) => p.headersP50Ms),
              firstByteP50Ms: medProbe((p) => p.firstByteP50Ms),
              totalP50Ms: medProbe((p) => p.totalP50Ms),
              totalP99Ms: medProbe((p) => p.totalP99Ms),
              failures: probes.reduce((t, p) => t + p.failures, 0),
            },
          }
        : {}),
    };
  });
}

function find(rows: readonly Row[], cell: string, target: TargetName): Row | undefined {
  return rows.find((r) => r.cell === cell && r.target === target);
}

/** The ratios of each cell, from `rows` (the medians); `runs` for the per-run CPU spread. */
function ratios(rows: readonly Row[], runs: readonly (readonly Row[])[]): Ratio[] {
  return CELLS.map((cell) => {
    const name = cellName(cell);
    const get = (target: TargetName) => find(rows, name, target);
    const [direct, floor, tp, pk] = [get("direct"), get("floor"), get("tokenpool"), get("portkey")];
    const min = get("minimal");
    const cpu = ratio(tp?.cpuUsPerRequest, floor?.cpuUsPerRequest);
    return {
      cell: name,
      cpuPerRequestVsFloor: cpu,
      cpuPerRequestVsFloorPerRun: runs.map((run) =>
        ratio(
          find(run, name, "tokenpool")?.cpuUsPerRequest,
          find(run, name, "floor")?.cpuUsPerRequest,
        ),
      ),
      portkeyCpuPerRequestVsTokenpool: ratio(pk?.cpuUsPerRequest, tp?.cpuUsPerRequest),
      portkeyCpuPerRequestVsFloor: ratio(pk?.cpuUsPerRequest, floor?.cpuUsPerRequest),
      portkeyP50VsTokenpool: ratio(pk?.p50Ms, tp?.p50Ms),
      minimalCpuPerRequestVsFloor: ratio(min?.cpuUsPerRequest, floor?.cpuUsPerRequest),
      cpuPerRequestVsMinimal: ratio(tp?.cpuUsPerRequest, min?.cpuUsPerRequest),
      rpsVsFloor: ratio(tp?.rps, floor?.rps),
      rpsVsDirect: ratio(tp?.rps, direct?.rps),
      p50VsFloor: ratio(tp?.p50Ms, floor?.p50Ms),
      p50VsDirect: ratio(tp?.p50Ms, direct?.p50Ms),
      floorRpsVsDirect: ratio(floor?.rps, direct?.rps),
      withinCpuTarget: cpu === null ? null : cpu <= CPU_TARGET_VS_FLOOR,
    };
  });
}

function difference(a: number | undefined, b: number | undefined): number | null {
  if (a === undefined || b === undefined || !Number.isFinite(a) || !Number.isFinite(b)) return null;
  return a - b;
}

/** The probe's p50s over direct's, per cell, from `rows` (the medians). */
function latencyOverDirect(rows: readonly Row[]): LatencyRow[] {
  return CELLS.map((cell) => {
    const name = cellName(cell);
    const probeOf = (target: TargetName) => find(rows, name, target)?.probe;
    const [direct, floor, tp] = [probeOf("direct"), probeOf("floor"), probeOf("tokenpool")];
    const tpFirst = difference(tp?.firstByteP50Ms, direct?.firstByteP50Ms);
    const tpTotal = difference(tp?.totalP50Ms, direct?.totalP50Ms);
    return {
      cell: name,
      tokenpoolFirstByteOverDirectMs: tpFirst,
      tokenpoolTotalOverDirectMs: tpTotal,
      floorFirstByteOverDirectMs: difference(floor?.firstByteP50Ms, direct?.firstByteP50Ms),
      floorTotalOverDirectMs: difference(floor?.totalP50Ms, direct?.totalP50Ms),
      withinFirstByteTarget:
        !cell.stream || tpFirst === null ? null : tpFirst <= FIRST_BYTE_TARGET_MS,
      withinAddedP50Target: tpTotal === null ? null : tpTotal <= ADDED_P50_TARGET_MS,
    };
  });
}

function table(head: string[], body: string[][], textColumns: number): string {
  const align = head.map((_, i) => (i < textColumns ? "---" : "---:"));
  return [head, align, ...body].map((cells) => `| ${cells.join(" | ")} |`).join("\n");
}

const fixed = (n: number, digits: number) => (Number.isFinite(n) ? n.toFixed(digits) : "n/a");
const times = (n: number | null) => (n === null ? "n/a" : `${n.toFixed(2)}×`);
const plusMs = (n: number | null) =>
  n === null ? "n/a" : `${n >= 0 ? "+" : "−"}${Math.abs(n).toFixed(3)}`;
const verdict = (ok: boolean | null) => (ok === null ? "n/a" : ok ? "ok" : "OVER");

function render(
  rows: readonly Row[],
  ratioRows: readonly Ratio[],
  latency: readonly LatencyRow[],
  notes: string[],
): string {
  const out: string[] = [];
  out.push(
    `## tokenpool proxy bench`,
    "",
    `${STARTED_AT} · node ${process.version} · ${os.cpus().length} CPUs ` +
      `(${os.cpus()[0]?.model.trim() ?? "unknown"}) · ${SECONDS}s per run after ${WARMUP_SECONDS}s ` +
      `warm-up · upstream chunk delay ${CHUNK_DELAY_MS} ms · probe ${PROBE} requests at c=1 ` +
      `(at most ${PROBE_MAX_MS / 1000}s) · ` +
      (RUNS > 1 ? `median of ${RUNS} runs` : "1 run"),
    "",
  );
  for (const note of notes) out.push(`> ${note}`, "");
  out.push(
    table(
      [
        "cell",
        "target",
        "req/s",
        "p50 ms",
        "p99 ms",
        "CPU µs/req",
        "first byte p50 ms",
        "total p50 ms",
        "non-2xx",
        "errors",
      ],
      rows.map((r) => [
        r.cell,
        r.target,
        fixed(r.rps, 0),
        fixed(r.p50Ms, 2),
        fixed(r.p99Ms, 2),
        fixed(r.cpuUsPerRequest, 0),
        r.probe ? fixed(r.probe.firstByteP50Ms, 3) : "n/a",
        r.probe ? fixed(r.probe.totalP50Ms, 3) : "n/a",
        String(r.non2xx),
        String(r.errors + r.timeouts + (r.probe?.failures ?? 0)),
      ]),
      2,
    ),
    "",
  );
  if (RUNS > 1) {
    out.push(
      `CPU/req tp÷floor per run: ${ratioRows
        .map((r) => {
          const perRun = r.cpuPerRequestVsFloorPerRun.filter((x): x is number => x !== null);
          const paired = perRun.length > 0 ? ` (median ${times(median(perRun))})` : "";
          return `${r.cell} ${r.cpuPerRequestVsFloorPerRun.map(times).join(" ")}${paired}`;
        })
        .join(" · ")}`,
      "",
    );
  }
  out.push(
    `### Ratios (tokenpool target: CPU per request ≤ ${CPU_TARGET_VS_FLOOR}× floor)`,
    "",
    table(
      [
        "cell",
        "CPU/req tp÷floor",
        "CPU/req portkey÷tp",
        "req/s tp÷floor",
        "req/s tp÷direct",
        "p50 tp÷floor",
        "p50 tp÷direct",
        "req/s floor÷direct",
        "CPU target",
      ],
      ratioRows.map((r) => [
        r.cell,
        times(r.cpuPerRequestVsFloor),
        times(r.portkeyCpuPerRequestVsTokenpool),
        times(r.rpsVsFloor),
        times(r.rpsVsDirect),
        times(r.p50VsFloor),
        times(r.p50VsDirect),
        times(r.floorRpsVsDirect),
        verdict(r.withinCpuTarget),
      ]),
      1,
    ),
    "",
    `### Latency over direct (c=1 probe; targets: streaming first byte ≤ ${FIRST_BYTE_TARGET_MS} ms, ` +
      `added p50 ≤ ${ADDED_P50_TARGET_MS} ms)`,
    "",
    table(
      [
        "cell",
        "first byte p50 tp−direct ms",
        "total p50 tp−direct ms",
        "first byte p50 floor−direct ms",
        "total p50 floor−direct ms",
        "first byte target",
        "p50 target",
      ],
      latency.map((r) => [
        r.cell,
        plusMs(r.tokenpoolFirstByteOverDirectMs),
        plusMs(r.tokenpoolTotalOverDirectMs),
        plusMs(r.floorFirstByteOverDirectMs),
        plusMs(r.floorTotalOverDirectMs),
        verdict(r.withinFirstByteTarget),
        verdict(r.withinAddedP50Target),
      ]),
      1,
    ),
    "",
    "### Beside a peer: Portkey's gateway",
    "",
    table(
      ["cell", "CPU/req tp÷floor", "CPU/req portkey÷tp", "CPU/req portkey÷floor", "p50 portkey÷tp"],
      ratioRows.map((r) => [
        r.cell,
        times(r.cpuPerRequestVsFloor),
        times(r.portkeyCpuPerRequestVsTokenpool),
        times(r.portkeyCpuPerRequestVsFloor),
        times(r.portkeyP50VsTokenpool),
      ]),
      1,
    ),
    "",
  );
  if (ratioRows.some((r) => r.minimalCpuPerRequestVsFloor !== null)) {
    out.push(
      "### The least work of a gateway: the minimal target",
      "",
      table(
        ["cell", "CPU/req minimal÷floor", "CPU/req tp÷minimal", "CPU/req tp÷floor"],
        ratioRows.map((r) => [
          r.cell,
          times(r.minimalCpuPerRequestVsFloor),
          times(r.cpuPerRequestVsMinimal),
          times(r.cpuPerRequestVsFloor),
        ]),
        1,
      ),
      "",
    );
  }
  return out.join("\n");
}

// ---------------------------------------------------------------------------------------------
// Main

/**
 * Starts the children once, then measures: an A/B mode, or the matrix `BENCH_RUNS` times.
 *
 * The runs share the children; the targets are not restarted between runs. What `BENCH_RUNS` is
 * for is the machine's drift over time (other tenants, turbo, thermal state: ±50 % between whole
 * runs here), which the median evens out; restarting would add a process's own variance on top
 * (memory layout and JIT choices: up to ±5 % per cell between two processes of the same code)
 * and its start-up, while each run's warm-up already precedes each measurement. The one thing
 * that grows across runs is tokenpool's SQLite file (its usage records); the per-run ratio line
 * shows whether later runs drift from the first.
 */
async function main(): Promise<number> {
  const abMode = Boolean(AB_BASE || LIMITS_AB || METRICS_AB);
  const loadRuns = abMode ? 2 * AB_SLICES : RUNS * (TARGET_FILTER?.size ?? TARGETS.length);
  // Per load run: warm-up, run, the probe (at most PROBE_MAX_MS) and some slack.
  const perRunSeconds = SECONDS + WARMUP_SECONDS + (abMode ? 0 : PROBE_MAX_MS / 1000 + 1) + 5;
  const budgetMs =
    90_000 + (CELLS.length * loadRuns * perRunSeconds + 6 * PROCESS_WARMUP_SECONDS) * 1000;
  const watchdog = setTimeout(() => {
    log(`the bench did not finish within ${Math.round(budgetMs / 1000)} s; giving up`);
    stopAll().finally(() => process.exit(1));
  }, budgetMs);
  watchdog.unref();

  const notes: string[] = [];
  pin(process.pid, LOAD_CPU);
  if (PIN) {
    notes.push(
      `Pinned: the load generator and the mock upstream on CPU ${LOAD_CPU}, the measured targets on CPU ${TARGET_CPU} (BENCH_PIN=0 to turn off).`,
    );
  }
  if (CPU_PROF) {
    await mkdir(PROFILE_DIR, { recursive: true });
    notes.push(
      `BENCH_CPU_PROF=1: CPU profiles in ${PROFILE_DIR}; profiling slows the targets, so these ` +
        "numbers are not comparable with normal runs.",
    );
  }
  const status: Record<string, { status: "ok" | "skipped"; reason?: string }> = {};
  log("starting the mock upstream");
  // The mock upstream is both the "direct" target and the upstream of the other two.
  const built = await buildChildren();
  const upstream = await Target.start("direct", built.upstream);
  const upstreamUrl = `${upstream.origin}/v1`;
  log(`upstream at ${upstreamUrl}; starting targets`);
  if (TARGET_FILTER) notes.push(`BENCH_TARGETS: ${[...TARGET_FILTER].join(", ")} only.`);
  const notStarted = (name: TargetName) =>
    Promise.reject(Object.assign(new Error(`${name} not in BENCH_TARGETS`), { filtered: true }));
  const [floor, minimal, tokenpool] = await Promise.allSettled([
    wanted("floor")
      ? Target.start("floor", built.floor, ["--upstream", upstreamUrl])
      : notStarted("floor"),
    wanted("minimal") && !abMode
      ? Target.start("minimal", built.minimal, ["--upstream", upstreamUrl])
      : notStarted("minimal"),
    // The A/B modes measure tokenpool whatever BENCH_TARGETS says.
    !wanted("tokenpool") && !abMode
      ? notStarted("tokenpool")
      : Target.start(
          "tokenpool",
          built.tokenpool,
          ["--upstream", upstreamUrl],
          60_000,
          // The limits A/B: a second key, with limits (`BENCH_LIMITS`: which; all by default).
          // The metrics A/B: a second gateway, with metrics.
          {
            ...(LIMITS_AB
              ? { BENCH_KEY_LIMITS: LIMITS_AA ? "none" : (process.env.BENCH_LIMITS ?? "1") }
              : {}),
            ...(METRICS_AB ? { BENCH_SECOND_GATEWAY: METRICS_AA ? "aa" : "metrics" } : {}),
          },
        ),
  ]);
  const targets: Target[] = [upstream];
  await smokeTest(upstream);
  status.direct = { status: "ok" };
  if (floor.status === "fulfilled") {
    targets.push(floor.value);
    await smokeTest(floor.value);
    status.floor = { status: "ok" };
  } else if ((floor.reason as { filtered?: boolean }).filtered) {
    status.floor = { status: "skipped", reason: (floor.reason as Error).message };
  } else {
    throw floor.reason;
  }
  /** Smoke-test a target that may have failed to start: measured if it passes, else skipped. */
  const admit = async (name: TargetName, started: PromiseSettledResult<Target>) => {
    let reason: string | undefined;
    if (started.status === "rejected" && (started.reason as { filtered?: boolean }).filtered) {
      status[name] = { status: "skipped", reason: (started.reason as Error).message };
      return (started.reason as Error).message;
    }
    if (started.status === "rejected") {
      const { message, stderr } = started.reason as Error & { stderr?: string };
      reason = [message, firstErrorLine(stderr)].filter(Boolean).join(": ");
      if (stderr) log(`${name} stderr:\n${stderr}`);
    } else {
      try {
        await smokeTest(started.value);
        targets.push(started.value);
      } catch (error) {
        reason = `smoke test failed: ${(error as Error).message}`;
        await started.value.stop();
      }
    }
    if (reason) {
      status[name] = { status: "skipped", reason };
      notes.push(`**${name} SKIPPED**: ${reason.split("\n").slice(0, 3).join(" / ")}`);
      log(`${name} target SKIPPED: ${reason}`);
    } else {
      status[name] = { status: "ok" };
    }
    return reason;
  };
  await admit("minimal", minimal);
  const skipReason = await admit("tokenpool", tokenpool);

  if (LIMITS_AB) {
    if (skipReason || tokenpool.status !== "fulfilled")
      throw new Error(`limits A/B: the tokenpool target failed: ${skipReason}`);
    const limited = tokenpool.value.limited();
    await smokeTest(limited);
    const code = await abRun(
      limited,
      tokenpool.value,
      upstream,
      LIMITS_AA
        ? "A/A: one gateway, two keys without limits (the noise floor of the limits A/B)"
        : "One gateway, two keys: A without limits, B with rpm + tpm + concurrency limits",
    );
    await stopAll();
    return code;
  }

  if (METRICS_AB) {
    if (skipReason || tokenpool.status !== "fulfilled")
      throw new Error(`metrics A/B: the tokenpool target failed: ${skipReason}`);
    const withMetrics = tokenpool.value.second();
    await smokeTest(withMetrics);
    const code = await abRun(
      withMetrics,
      tokenpool.value,
      upstream,
      METRICS_AA
        ? "A/A: one process, two gateways without metrics (the noise floor of the metrics A/B)"
        : "One process, two gateways: A with `metrics: false`, B with metrics on (the default)",
    );
    if (!METRICS_AA) {
      // B really counted: its requests_total covers every request of its slices.
      const res = await request(`${withMetrics.origin}/metrics`, {
        headers: { authorization: `Bearer ${BENCH_METRICS_TOKEN}` },
      });
      const text = await res.body.text();
      const counted = [...text.matchAll(/^tokenpool_requests_total\{[^}]*\} (\d+)$/gm)].reduce(
        (t, m) => t + Number(m[1]),
        0,
      );
      process.stdout.write(`B's tokenpool_requests_total at the end: ${counted}\n`);
      if (res.statusCode !== 200 || counted === 0) {
        log(`FAILED: B's /metrics answered ${res.statusCode} and counted ${counted} requests`);
        await stopAll();
        return 1;
      }
    }
    await stopAll();
    return code;
  }

  if (AB_BASE) {
    if (skipReason) throw new Error(`A/B: this checkout's tokenpool target failed: ${skipReason}`);
    const base = await Target.start("base", await buildBase(AB_BASE), ["--upstream", upstreamUrl]);
    await smokeTest(base);
    const code = await abRun(
      tokenpool.status === "fulfilled" ? tokenpool.value : base,
      base,
      upstream,
    );
    await stopAll();
    return code;
  }

  // The peer, in the plain run only (the A/B modes above measure tokenpool alone).
  if (wanted("portkey")) {
    log("starting portkey");
    await admit(
      "portkey",
      await Promise.allSettled([
        Target.start("portkey", built.portkey, ["--upstream", upstreamUrl]),
      ]).then(([started]) => started),
    );
  }

  for (const target of targets) await warmProcess(target);
  const runs: Row[][] = [];
  for (let run = 1; run <= RUNS; run++) {
    if (RUNS > 1) log(`run ${run} of ${RUNS}`);
    const rows: Row[] = [];
    for (const cell of CELLS) {
      for (const target of targets) rows.push(await measure(target, upstream, cell, true));
    }
    runs.push(rows);
  }
  await stopAll();

  const bad = runs.flatMap((rows, i) =>
    rows
      .filter((r) => r.non2xx > 0 || r.errors > 0 || r.timeouts > 0 || (r.probe?.failures ?? 0) > 0)
      .map((r) => ({ run: i + 1, r })),
  );
  for (const { run, r } of bad) {
    notes.push(
      `**FAILED: ${r.target} in ${r.cell}${RUNS > 1 ? ` (run ${run})` : ""} had ${r.non2xx} ` +
        `non-2xx answers, ${r.errors} errors, ${r.timeouts} timeouts, ` +
        `${r.probe?.failures ?? 0} failed probe requests**; its numbers are not valid.`,
    );
  }
  const rows = medianRows(runs);
  const ratioRows = ratios(rows, runs);
  const latency = latencyOverDirect(rows);
  process.stdout.write(`${render(rows, ratioRows, latency, notes)}\n`);

  await mkdir(new URL("../results/", import.meta.url), { recursive: true });
  const json = {
    date: STARTED_AT,
    cpuProfiles: CPU_PROF ? PROFILE_DIR : null,
    node: process.version,
    platform: `${os.platform()} ${os.arch()}`,
    cpus: os.cpus().length,
    cpuModel: os.cpus()[0]?.model.trim() ?? null,
    seconds: SECONDS,
    warmupSeconds: WARMUP_SECONDS,
    chunkDelayMs: CHUNK_DELAY_MS,
    probeRequests: PROBE,
    probeMaxMs: PROBE_MAX_MS,
    cpuTargetVsFloor: CPU_TARGET_VS_FLOOR,
    firstByteTargetMs: FIRST_BYTE_TARGET_MS,
    addedP50TargetMs: ADDED_P50_TARGET_MS,
    targets: status,
    /** The medians of the runs (with one run, that run's rows). */
    rows,
    /** Every run's rows, in order. */
    runs,
    ratios: ratioRows,
    latencyOverDirect: latency,
  };
  await writeFile(RESULTS_FILE, `${JSON.stringify(json, null, 2)}\n`);
  log(`results written to ${RESULTS_FILE}`);

  if (bad.length > 0) {
    log(`FAILED: ${bad.length} run(s) had non-2xx answers or errors (see the notes above)`);
    return 1;
  }
  return 0;
}

/** One side of one A/B slice. */
interface SliceRow {
  cpu: number;
  rps: number;
  p50: number;
}

/** The mean of the lower half of `values` (the quieter slices). */
function quietMean(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const half = sorted.slice(0, Math.max(1, Math.ceil(sorted.length / 2)));
  return half.reduce((t, v) => t + v, 0) / half.length;
}

/**
 * A/B mode: per cell, this checkout's tokenpool target (B) and the base's (A) take turns for
 * `AB_SLICES` slices each (in ABBA order, so neither always goes first); prints CPU per request
 * of each side over all its slices, their ratio, and the median of the per-pair ratios.
 */
async function abRun(
  b: Endpoint,
  a: Endpoint,
  upstream: Endpoint,
  label = `A = ${AB_BASE}, B = this checkout`,
): Promise<number> {
  const out: string[][] = [];
  const results: unknown[] = [];
  let failed = false;
  for (const t of [a, b]) await warmProcess(t);
  for (const cell of CELLS) {
    const sum = { a: { cpu: 0, n: 0 }, b: { cpu: 0, n: 0 } };
    const pairs: number[] = [];
    const slices: { a: SliceRow; b: SliceRow }[] = [];
    for (let i = 0; i < AB_SLICES; i++) {
      const order = i % 2 === 0 ? [a, b] : [b, a];
      const rows = new Map<Endpoint, Row>();
      for (const t of order) rows.set(t, await measure(t, upstream, cell));
      for (const [t, r] of rows) {
        if (r.non2xx > 0 || r.errors > 0 || r.timeouts > 0) failed = true;
        const side = t === a ? sum.a : sum.b;
        side.cpu += r.cpuUsPerRequest * r.requests;
        side.n += r.requests;
      }
      pairs.push(rows.get(b)!.cpuUsPerRequest / rows.get(a)!.cpuUsPerRequest);
      slices.push({
        a: { cpu: rows.get(a)!.cpuUsPerRequest, rps: rows.get(a)!.rps, p50: rows.get(a)!.p50Ms },
        b: { cpu: rows.get(b)!.cpuUsPerRequest, rps: rows.get(b)!.rps, p50: rows.get(b)!.p50Ms },
      });
    }
    const cpuA = sum.a.cpu / sum.a.n;
    const cpuB = sum.b.cpu / sum.b.n;
    // Contention on a shared machine only ever adds CPU time to a slice: the quieter half of
    // each side's slices is the steadiest estimate of what a request costs.
    const quietA = quietMean(slices.map((x) => x.a.cpu));
    const quietB = quietMean(slices.map((x) => x.b.cpu));
    const sorted = [...pairs].sort((x, y) => x - y);
    const median = sorted[Math.floor(sorted.length / 2)]!;
    const higher = pairs.filter((p) => p > 1).length;
    out.push([
      cellName(cell),
      fixed(cpuA, 0),
      fixed(cpuB, 0),
      times(cpuB / cpuA),
      times(median),
      `${higher}/${pairs.length}`,
      fixed(quietA, 0),
      fixed(quietB, 0),
      times(quietB / quietA),
    ]);
    results.push({
      cell: cellName(cell),
      cpuA,
      cpuB,
      ratio: cpuB / cpuA,
      quietA,
      quietB,
      quietRatio: quietB / quietA,
      pairs,
      slices,
    });
  }
  process.stdout.write(
    `${label}; ${AB_SLICES} slices of ${SECONDS} s per side and cell\n\n` +
      `${table(
        [
          "cell",
          "A CPU µs/req",
          "B CPU µs/req",
          "B÷A",
          "median pair B÷A",
          "pairs B>A",
          "A quiet half",
          "B quiet half",
          "quiet B÷A",
        ],
        out,
        1,
      )}\n`,
  );
  await mkdir(new URL("../results/", import.meta.url), { recursive: true });
  await writeFile(
    fileURLToPath(new URL("../results/ab.json", import.meta.url)),
    `${JSON.stringify({ date: STARTED_AT, base: LIMITS_AB ? "limits" : METRICS_AB ? "metrics" : AB_BASE, slices: AB_SLICES, seconds: SECONDS, results }, null, 2)}\n`,
  );
  if (failed) log("FAILED: some slices had non-2xx answers or errors; the numbers are not valid");
  return failed ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    log(`FAILED: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
    const stderr = (error as { stderr?: string } | null)?.stderr;
    if (stderr) log(`child stderr:\n${stderr}`);
    stopAll().finally(() => process.exit(1));
  },
);
