/**
 * Starts a real PostgreSQL server for tests: a fresh cluster made by `initdb` in a temporary
 * folder, served on a free port of 127.0.0.1 (trust authentication, no fsync), and removed again
 * by `stop()`. The binaries come from Debian's `postgresql` package (`/usr/lib/postgresql/<v>/bin`)
 * or PATH. PostgreSQL refuses to run as root: under root the cluster belongs to the `postgres`
 * system user (which the package creates) and the server runs as that user.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { accessSync, chownSync, constants, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { freePort } from "./listen.js";

/** A running PostgreSQL server started by {@link startPostgresServer}. */
export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres` */
  url: string;
  port: number;
  /** Stops the server (fast shutdown) and removes its data folder. */
  stop(): Promise<void>;
}

const executable = (path: string): boolean => {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** The folder holding `initdb` and `postgres`: the newest Debian install, else PATH. */
function findBinaries(): string | null {
  const root = "/usr/lib/postgresql";
  try {
    const versions = readdirSync(root)
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      if (executable(join(root, v, "bin", "initdb"))) return join(root, v, "bin");
    }
  } catch {}
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && executable(join(dir, "initdb")) && executable(join(dir, "postgres"))) return dir;
  }
  return null;
}

/** uid and gid of the `postgres` user, when running as root (PostgreSQL refuses root). */
function serverUser(): { uid: number; gid: number } | undefined {
  if (typeof process.getuid !== "function" || process.getuid() !== 0) return undefined;
  try {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    return { uid, gid };
  } catch {
    throw new Error(
      "running as root, but there is no `postgres` user to run PostgreSQL as (install Debian's postgresql package, which creates it)",
    );
  }
}

/** Starts PostgreSQL on a free port and waits until it accepts connections. */
export async function startPostgresServer(): Promise<PostgresServer> {
  const bin = findBinaries();
  if (!bin) {
    throw new Error(
      "PostgreSQL was not found (no initdb under /usr/lib/postgresql/*/bin or on PATH): the " +
        "Postgres store tests start a real server (install it, e.g. `apt-get install postgresql`; " +
        ".ci/run does so on CI).",
    );
  }
  const user = serverUser();
  const dir = mkdtempSync(join(tmpdir(), "tp-pg-"));
  if (user) chownSync(dir, user.uid, user.gid);
  const data = join(dir, "data");
  const asUser = user ? { uid: user.uid, gid: user.gid } : {};
  try {
    execFileSync(
      join(bin, "initdb"),
      [
        "-D",
        data,
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "UTF8",
        "--no-sync",
        "--no-instructions",
      ],
      { ...asUser, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } },
    );
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    const out = err as { stderr?: Buffer; stdout?: Buffer };
    throw new Error(
      `initdb failed: ${out.stderr?.toString() ?? ""}${out.stdout?.toString() ?? ""}`,
    );
  }

  const port = await freePort();
  let output = "";
  const proc: ChildProcess = spawn(
    join(bin, "postgres"),
    [
      "-D",
      data,
      "-p",
      String(port),
      "-k",
      dir,
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
      "-c",
      "max_connections=400",
      "-c",
      "shared_buffers=64MB",
    ],
    { ...asUser, stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LC_ALL: "C" } },
  );
  proc.stdout?.on("data", (d) => {
    output += d;
  });
  proc.stderr?.on("data", (d) => {
    output = (output + d).slice(-20_000);
  });
  // SIGQUIT: immediate shutdown; the backends exit with the postmaster.
  const kill = () => {
    proc.kill("SIGQUIT");
    rmSync(dir, { recursive: true, force: true });
  };
  process.once("exit", kill);

  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) {
      process.removeListener("exit", kill);
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`postgres exited with ${proc.exitCode}:\n${output}`);
    }
    if (/ready to accept connections/.test(output)) break;
    if (Date.now() > deadline) {
      process.removeListener("exit", kill);
      kill();
      throw new Error(`postgres did not start on port ${port}:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async stop() {
      process.removeListener("exit", kill);
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once("exit", r));
        proc.kill("SIGINT"); // fast shutdown: disconnects clients, no checkpoint wait for them
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5_000))]);
        if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
