/**
 * Starts a real redis-server (or a three-node Redis Cluster) for tests on free ports
 * (`--save "" --appendonly no`), and stops it again. The binaries are looked up on PATH
 * (e.g. `apt-get install redis-server`).
 */
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { accessSync, constants, mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { promisify } from "node:util";
import { freePort } from "./listen.js";

const execFileAsync = promisify(execFile);

/** A running redis-server started by {@link startRedisServer}. */
export interface RedisServer {
  url: string;
  port: number;
  stop(): Promise<void>;
}

function findOnPath(name: string): string | null {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {}
  }
  return null;
}

/** Starts a redis-server on a free port and waits until it answers PING. */
export async function startRedisServer(): Promise<RedisServer> {
  const bin = findOnPath("redis-server");
  if (!bin) {
    throw new Error(
      "redis-server was not found on PATH: the Redis store tests start a real redis-server " +
        "(install it, e.g. `apt-get install redis-server`; .ci/run does so on CI).",
    );
  }
  const port = await freePort();
  let output = "";
  const proc: ChildProcess = spawn(
    bin,
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
    { stdio: ["ignore", "pipe", "pipe"] },
  );
  proc.stdout?.on("data", (d) => {
    output += d;
  });
  proc.stderr?.on("data", (d) => {
    output += d;
  });
  const kill = () => proc.kill("SIGKILL");
  process.once("exit", kill);
  const url = `redis://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (proc.exitCode !== null) {
      throw new Error(`redis-server exited with ${proc.exitCode}:\n${output}`);
    }
    const pong = await ping(port);
    if (pong === "PONG") break;
    if (Date.now() > deadline) {
      kill();
      throw new Error(`redis-server did not answer PING on port ${port}:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    port,
    async stop() {
      process.removeListener("exit", kill);
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000))]);
      if (proc.exitCode === null) kill();
    },
  };
}

/** A running Redis Cluster started by {@link startRedisCluster}. */
export interface RedisCluster {
  /**
   * `redis://127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3`: the store's URL form for a cluster (several
   * hosts).
   */
  url: string;
  /** The three masters, in the order the cluster was created. */
  nodes: { host: string; port: number }[];
  /** Stops every node and removes their folders. */
  stop(): Promise<void>;
}

/**
 * Starts a Redis Cluster of three masters (no replicas) on free ports of 127.0.0.1, each node in
 * its own temporary folder (`--cluster-enabled yes`, no persistence), joins them with
 * `redis-cli --cluster create` and waits until every node reports `cluster_state:ok` and knows the
 * other two. The nodes are killed when the process exits, if `stop()` did not run first.
 *
 * @example
 * ```ts
 * const cluster = await startRedisCluster();
 * const store = redisStore({ redis: cluster.url });
 * // ...
 * await cluster.stop();
 * ```
 */
export async function startRedisCluster(): Promise<RedisCluster> {
  const bin = findOnPath("redis-server");
  const cli = findOnPath("redis-cli");
  if (!bin || !cli) {
    throw new Error(
      `${bin ? "redis-cli" : "redis-server"} was not found on PATH: the Redis Cluster tests start ` +
        "real redis-server nodes and join them with redis-cli (install them, e.g. " +
        "`apt-get install redis-server`; .ci/run does so on CI).",
    );
  }
  const nodes: { port: number; dir: string; proc: ChildProcess; output: string }[] = [];
  const killAll = () => {
    for (const n of nodes) {
      if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill("SIGKILL");
      rmSync(n.dir, { recursive: true, force: true });
    }
  };
  process.once("exit", killAll);
  const fail = (message: string): never => {
    killAll();
    process.removeListener("exit", killAll);
    const logs = nodes.map((n) => `--- node ${n.port}:\n${n.output}`).join("\n");
    throw new Error(`${message}\n${logs}`);
  };
  try {
    // Each node also listens on a cluster bus port, by default port + 10000, which would land in
    // the kernel's ephemeral range; the bus ports are chosen by freePort() too.
    const chosen = new Set<number>();
    while (chosen.size < 6) chosen.add(await freePort());
    const [p1, p2, p3, b1, b2, b3] = [...chosen] as number[];
    for (const [port, busPort] of [
      [p1, b1],
      [p2, b2],
      [p3, b3],
    ] as [number, number][]) {
      const dir = mkdtempSync(join(tmpdir(), "tp-redis-cluster-"));
      const proc = spawn(
        bin,
        [
          "--port",
          String(port),
          "--bind",
          "127.0.0.1",
          "--dir",
          dir,
          "--cluster-enabled",
          "yes",
          "--cluster-port",
          String(busPort),
          "--cluster-config-file",
          join(dir, `nodes-${port}.conf`),
          "--save",
          "",
          "--appendonly",
          "no",
        ],
        { cwd: dir, stdio: ["ignore", "pipe", "pipe"] },
      );
      const node = { port, dir, proc, output: "" };
      proc.stdout?.on("data", (d) => {
        node.output += d;
      });
      proc.stderr?.on("data", (d) => {
        node.output += d;
      });
      nodes.push(node);
    }
    const deadline = Date.now() + 20_000;
    for (const node of nodes) {
      for (;;) {
        if (node.proc.exitCode !== null) fail(`redis-server (cluster node ${node.port}) exited`);
        if ((await ping(node.port)) === "PONG") break;
        if (Date.now() > deadline) fail(`cluster node ${node.port} did not answer PING`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    const addresses = nodes.map((n) => `127.0.0.1:${n.port}`);
    try {
      await execFileAsync(
        cli,
        ["--cluster", "create", ...addresses, "--cluster-replicas", "0", "--cluster-yes"],
        { timeout: 15_000 },
      );
    } catch (e) {
      const err = e as { stdout?: string; stderr?: string; message: string };
      fail(
        `redis-cli --cluster create failed: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`,
      );
    }
    // `--cluster create` returns once the slots are assigned; the nodes agree on the epoch
    // and on each other's slots a little later (gossip), and a client that connects before then
    // gets CLUSTERDOWN or a MOVED loop.
    for (const node of nodes) {
      for (;;) {
        const info = await clusterInfo(cli, node.port);
        if (
          /^cluster_state:ok\r?$/m.test(info) &&
          /^cluster_known_nodes:3\r?$/m.test(info) &&
          /^cluster_slots_ok:16384\r?$/m.test(info)
        ) {
          break;
        }
        if (Date.now() > deadline) fail(`cluster node ${node.port} is not ready:\n${info}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  } catch (e) {
    killAll();
    process.removeListener("exit", killAll);
    throw e;
  }
  return {
    url: `redis://${nodes.map((n) => `127.0.0.1:${n.port}`).join(",")}`,
    nodes: nodes.map((n) => ({ host: "127.0.0.1", port: n.port })),
    async stop() {
      process.removeListener("exit", killAll);
      await Promise.all(
        nodes.map(async (n) => {
          if (n.proc.exitCode !== null || n.proc.signalCode !== null) return;
          const exited = new Promise((r) => n.proc.once("exit", r));
          n.proc.kill("SIGTERM");
          await Promise.race([exited, new Promise((r) => setTimeout(r, 2_000))]);
          if (n.proc.exitCode === null && n.proc.signalCode === null) n.proc.kill("SIGKILL");
        }),
      );
      for (const n of nodes) rmSync(n.dir, { recursive: true, force: true });
    },
  };
}

/** `CLUSTER INFO` of one node through redis-cli; "" when it does not answer. */
async function clusterInfo(cli: string, port: number): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cli, ["-p", String(port), "cluster", "info"], {
      timeout: 2_000,
    });
    return stdout;
  } catch {
    return "";
  }
}

/** Sends PING over a plain socket; resolves "PONG" or null. */
function ping(port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const socket = connect(port, "127.0.0.1");
    let data = "";
    const done = (v: string | null) => {
      socket.destroy();
      resolve(v);
    };
    socket.setTimeout(1_000, () => done(null));
    socket.once("error", () => done(null));
    socket.once("connect", () => socket.write("PING\r\n"));
    socket.on("data", (d) => {
      data += d.toString();
      if (data.includes("\r\n")) done(data.startsWith("+PONG") ? "PONG" : null);
    });
  });
}
