/**
 * Starts a real redis-server for tests on a free port (`--save "" --appendonly no`), and stops
 * it again. The binary is looked up on PATH (e.g. `apt-get install redis-server`).
 */
import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { connect } from "node:net";
import { delimiter, join } from "node:path";
import { freePort } from "./listen.js";

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
