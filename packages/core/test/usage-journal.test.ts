/**
 * The usage journal (`UsageJournal`, `claimDeadJournals`) on real files, with real child
 * processes: a journal written by a process killed with SIGKILL is claimed whole and in order by
 * exactly one of several claimers, a replayer that died is replayed again, old segments go once
 * their tags are done, and nothing but the journal's own files is ever touched.
 */
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import {
  closeSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { claimDeadJournals, UsageJournal } from "../src/usage/journal.js";

const JOURNAL = new URL("../src/usage/journal.ts", import.meta.url).href;
const CORE = fileURLToPath(new URL("..", import.meta.url));

const dirs: string[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "tokenpool-journal-"));
  dirs.push(d);
  return d;
}

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ["-e", ""]);
  expect(r.status).toBe(0);
  return r.pid;
}

/**
 * Starts `node --import tsx` on a module whose source is `body` (with `claimDeadJournals` and
 * `UsageJournal` imported from the source); resolves with the child once it printed "ready".
 */
async function startChild(
  body: string,
  args: string[],
): Promise<{ child: ChildProcess; out: () => string }> {
  const script = join(tempDir(), "child.mjs");
  writeFileSync(
    script,
    `import { claimDeadJournals, UsageJournal } from ${JSON.stringify(JOURNAL)};\n` +
      `const args = process.argv.slice(2);\n${body}\n`,
  );
  const child = spawn(
    process.execPath,
    ["--conditions=source", "--import", "tsx", script, ...args],
    {
      cwd: CORE,
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  children.push(child);
  let out = "";
  let err = "";
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString();
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the child is not ready:\n${err}`)), 15_000);
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (out.includes("ready\n")) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`the child exited (${code}):\n${err}`));
    });
  });
  return { child, out: () => out };
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once("exit", () => resolve()));
}

/** Closes this process's file descriptors open on files under `dir` (Linux: /proc/self/fd). */
function closeFdOf(dir: string): void {
  for (const fd of readdirSync("/proc/self/fd")) {
    let target = "";
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue;
    }
    if (target.startsWith(`${dir}/`)) closeSync(Number(fd));
  }
}

/** Appends and writes at once (what the end of the event-loop turn would do). */
function put(journal: UsageJournal, entry: unknown, tag: string): void {
  journal.append(entry, tag);
  journal.flush();
}

/** Opens a journal in a child, appends `n` entries ({ i }, tagged by tens), then waits. */
const WRITER = `
const [dir, n, segmentBytes] = args;
const journal = UsageJournal.open(dir, { segmentBytes: Number(segmentBytes) });
for (let i = 0; i < Number(n); i++) {
  journal.append({ i, pad: "x".repeat(40) }, "b" + Math.floor(i / 10));
  // Several segments need several writes: one per ten entries.
  if (i % 10 === 9) journal.flush();
}
journal.flush();
process.stdout.write("ready\\n");
setInterval(() => {}, 1000);
`;

/** Runs the writer and kills it with SIGKILL once it is ready; returns its pid. */
async function writeAndKill(dir: string, n: number, segmentBytes = 4 * 1024 * 1024) {
  const { child } = await startChild(WRITER, [dir, String(n), String(segmentBytes)]);
  child.kill("SIGKILL");
  await exited(child);
  expect(child.signalCode).toBe("SIGKILL");
  return child.pid!;
}

const journalFiles = (dir: string) => readdirSync(dir).filter((f) => f.includes(".journal"));

describe("UsageJournal", () => {
  it("leaves nothing after close({ remove: true }), and its own live journal is not claimed", () => {
    const dir = join(tempDir(), "j");
    const journal = UsageJournal.open(dir);
    journal.append({ a: 1 }, "t");
    expect(journalFiles(dir)).toHaveLength(1);
    expect(claimDeadJournals(dir)).toEqual([]);
    expect(journalFiles(dir)).toHaveLength(1);
    journal.close({ remove: true });
    expect(readdirSync(dir)).toEqual([]);
    expect(() => journal.append({ a: 2 }, "t")).toThrow(/closed/);
  });

  it("creates the directory 0o700 and segments 0o600, named <pid>.<instance>.<seq>.journal", () => {
    const dir = join(tempDir(), "a", "b");
    const journal = UsageJournal.open(dir);
    put(journal, { a: 1 }, "t");
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const [name] = journalFiles(dir);
    expect(name).toMatch(new RegExp(`^${process.pid}\\.[0-9a-f]+\\.1\\.journal$`));
    expect(statSync(join(dir, name!)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(dir, name!), "utf8")).toBe('{"a":1}\n');
    journal.close({ remove: true });
  });

  it("writes the lines of one event-loop turn together when the turn ends, and at close", async () => {
    const dir = tempDir();
    const journal = UsageJournal.open(dir);
    const [name] = journalFiles(dir);
    const text = () => readFileSync(join(dir, name!), "utf8");
    journal.append({ a: 1 }, "t");
    journal.append({ a: 2 }, "t");
    expect(text()).toBe("");
    await new Promise((r) => setImmediate(r));
    expect(text()).toBe('{"a":1}\n{"a":2}\n');
    journal.append({ a: 3 }, "u");
    journal.close();
    expect(text()).toBe('{"a":1}\n{"a":2}\n{"a":3}\n');
    journal.close({ remove: true });
  });

  it("writes a lazy line with the next eager line's write, before a batch (flush), or 20 ms later", async () => {
    const dir = tempDir();
    const journal = UsageJournal.open(dir);
    const [name] = journalFiles(dir);
    const text = () => readFileSync(join(dir, name!), "utf8");
    const turn = () => new Promise((r) => setImmediate(r));
    // Alone, a lazy line does not make the turn's write: it waits (up to 20 ms) for one.
    const t0 = performance.now();
    journal.append({ d: 1 }, "t", true);
    await turn();
    // (Only meaningful when the turn took less than the 20 ms a lazy line may wait.)
    if (performance.now() - t0 < 15) expect(text()).toBe("");
    // An eager line's write takes it along, in order.
    journal.append({ t: 2 }, "t");
    await turn();
    expect(text()).toBe('{"d":1}\n{"t":2}\n');
    // flush() (the usage writer's, before each batch) writes it at once.
    journal.append({ d: 3 }, "t", true);
    journal.flush();
    expect(text()).toBe('{"d":1}\n{"t":2}\n{"d":3}\n');
    // With nothing else to carry it, it is written after 20 ms.
    journal.append({ d: 4 }, "t", true);
    const deadline = Date.now() + 2000;
    while (!text().includes('{"d":4}') && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 5));
    expect(text()).toBe('{"d":1}\n{"t":2}\n{"d":3}\n{"d":4}\n');
    journal.close({ remove: true });
  });

  it("after a failed write, appends throw and the error is reported once", () => {
    const dir = tempDir();
    const errors: Error[] = [];
    const journal = UsageJournal.open(dir, { onError: (e) => errors.push(e) });
    journal.append({ a: 1 }, "t");
    // Its descriptor closed behind its back: the write fails with EBADF.
    closeFdOf(dir);
    expect(() => journal.flush()).toThrow();
    expect(errors).toHaveLength(1);
    expect(() => journal.append({ a: 2 }, "t")).toThrow();
    journal.close({ remove: true });
  });

  it("gives each open its own instance, and refuses what JSON cannot write", () => {
    const dir = tempDir();
    const a = UsageJournal.open(dir);
    const b = UsageJournal.open(dir);
    a.append(1, "t");
    b.append(2, "t");
    expect(journalFiles(dir)).toHaveLength(2);
    expect(() => a.append(undefined, "t")).toThrow(TypeError);
    expect(() => a.append({ n: 1n }, "t")).toThrow();
    a.close({ remove: true });
    b.close({ remove: true });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("rotates past segmentBytes and unlinks an old segment once all its tags are done", () => {
    const dir = tempDir();
    const journal = UsageJournal.open(dir, { segmentBytes: 500 });
    for (let i = 0; i < 40; i++) put(journal, { i, pad: "y".repeat(30) }, `b${Math.floor(i / 7)}`);
    const segments = () =>
      journalFiles(dir).sort((x, y) => Number(x.split(".")[2]) - Number(y.split(".")[2]));
    const names = segments();
    expect(names.length).toBeGreaterThanOrEqual(3);
    names.forEach((n, i) => {
      expect(n.split(".")[2]).toBe(String(i + 1));
      expect(statSync(join(dir, n)).size).toBeLessThan(500 + 60);
    });
    const tagsOf = (name: string) =>
      new Set(
        readFileSync(join(dir, name), "utf8")
          .trim()
          .split("\n")
          .map((l) => `b${Math.floor(JSON.parse(l).i / 7)}`),
      );
    const first = names[0]!;
    const tags = [...tagsOf(first)];
    for (const t of tags.slice(0, -1)) journal.done(t);
    expect(existsSync(join(dir, first))).toBe(true);
    journal.done(tags.at(-1)!);
    expect(existsSync(join(dir, first))).toBe(false);
    expect(segments()).toEqual(names.slice(1));
    // The current segment stays while open, even with every tag done.
    for (let b = 0; b < 6; b++) journal.done(`b${b}`);
    expect(segments()).toEqual([names.at(-1)]);
    // Closed, a segment whose tags are all done goes; one with a pending tag stays.
    journal.append({ i: 99 }, "late");
    journal.close();
    expect(segments()).toEqual([names.at(-1)]);
    journal.done("late");
    expect(segments()).toEqual([]);
  });

  it("an old segment whose tags were done before the rotation is unlinked at the rotation", () => {
    const dir = tempDir();
    const journal = UsageJournal.open(dir, { segmentBytes: 10 });
    put(journal, { a: "0123456789" }, "x");
    journal.done("x");
    put(journal, { a: 1 }, "y");
    expect(journalFiles(dir)).toEqual([expect.stringMatching(/\.2\.journal$/)]);
    journal.close({ remove: true });
  });
});

describe("claimDeadJournals", () => {
  it("returns [] for a missing directory", () => {
    expect(claimDeadJournals(join(tempDir(), "missing"))).toEqual([]);
  });

  it("claims the journal of a process killed with SIGKILL: every entry, in order, once", async () => {
    const dir = tempDir();
    const pid = await writeAndKill(dir, 500);
    expect(journalFiles(dir)).toHaveLength(1);
    const claims = claimDeadJournals(dir);
    expect(claims).toHaveLength(1);
    const [c] = claims;
    expect(c!.pid).toBe(pid);
    expect(c!.instance).toMatch(/^[0-9a-f]+$/);
    expect(c!.entries).toEqual(Array.from({ length: 500 }, (_, i) => ({ i, pad: "x".repeat(40) })));
    expect(journalFiles(dir)).toEqual([expect.stringMatching(`\\.claimed-${process.pid}$`)]);
    expect(claimDeadJournals(dir)).toEqual([]);
    c!.release();
    expect(readdirSync(dir)).toEqual([]);
    expect(claimDeadJournals(dir)).toEqual([]);
  });

  it("returns a killed multi-segment journal in order across its segments", async () => {
    const dir = tempDir();
    await writeAndKill(dir, 300, 2000);
    expect(journalFiles(dir).length).toBeGreaterThanOrEqual(5);
    const [c, ...rest] = claimDeadJournals(dir);
    expect(rest).toEqual([]);
    expect(c!.entries.map((e) => (e as { i: number }).i)).toEqual(
      Array.from({ length: 300 }, (_, i) => i),
    );
    c!.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it("ignores a torn last line and lines that are not JSON", () => {
    const dir = tempDir();
    const pid = deadPid();
    writeFileSync(join(dir, `${pid}.ab12.1.journal`), '{"i":0}\n{"i":1}\n');
    writeFileSync(join(dir, `${pid}.ab12.2.journal`), '{"i":2}\n{"i":3}\n{"i":4,"pa');
    writeFileSync(join(dir, `${pid}.ab12.3.journal`), '{"i":5}\n{"i":6');
    writeFileSync(join(dir, `${pid}.cd34.1.journal`), '{"i":0}\n{"i":\n\n{"i":2}\n[1,');
    const claims = claimDeadJournals(dir).sort((a, b) => a.instance.localeCompare(b.instance));
    expect(claims.map((c) => [c.pid, c.instance, c.entries])).toEqual([
      [pid, "ab12", [{ i: 0 }, { i: 1 }, { i: 2 }, { i: 3 }, { i: 5 }]],
      [pid, "cd34", [{ i: 0 }, { i: 2 }]],
    ]);
    for (const c of claims) c.release();
    expect(readdirSync(dir)).toEqual([]);
  });

  it("claims again what a replayer that died had claimed, not what a live one holds", () => {
    const dir = tempDir();
    const writer = deadPid();
    const replayer = deadPid();
    // Died mid-claim: the first segment is claimed, the second not yet.
    writeFileSync(join(dir, `${writer}.aa.1.journal.claimed-${replayer}`), '{"i":0}\n');
    writeFileSync(join(dir, `${writer}.aa.2.journal`), '{"i":1}\n');
    // Held by a live process (this one's parent).
    writeFileSync(join(dir, `${writer}.bb.1.journal.claimed-${process.ppid}`), '{"i":0}\n');
    const claims = claimDeadJournals(dir);
    expect(claims.map((c) => [c.instance, c.entries])).toEqual([["aa", [{ i: 0 }, { i: 1 }]]]);
    expect(journalFiles(dir).sort()).toEqual(
      [
        `${writer}.aa.1.journal.claimed-${process.pid}`,
        `${writer}.aa.2.journal.claimed-${process.pid}`,
        `${writer}.bb.1.journal.claimed-${process.ppid}`,
      ].sort(),
    );
    claims[0]!.release();
    expect(readdirSync(dir)).toEqual([`${writer}.bb.1.journal.claimed-${process.ppid}`]);
  });

  it("claims a journal of this pid that this process did not open (a previous process's)", () => {
    const dir = tempDir();
    const mine = UsageJournal.open(dir);
    mine.append({ live: true }, "t");
    writeFileSync(join(dir, `${process.pid}.deadbeef.1.journal`), '{"old":true}\n');
    const claims = claimDeadJournals(dir);
    expect(claims.map((c) => [c.pid, c.instance, c.entries])).toEqual([
      [process.pid, "deadbeef", [{ old: true }]],
    ]);
    claims[0]!.release();
    mine.close({ remove: true });
    expect(readdirSync(dir)).toEqual([]);
  });

  it("leaves alone everything not named like a segment, symlinks and directories", () => {
    const root = tempDir();
    const dir = join(root, "journals");
    mkdirSync(dir);
    const pid = deadPid();
    const outside = join(root, `${pid}.ee.1.journal`);
    writeFileSync(outside, '{"outside":1}\n');
    const names = [
      "foo.journal",
      `${pid}.ABCD.1.journal`,
      `${pid}.ab.1.journal.tmp`,
      `${pid}.ab.x.journal`,
      `x${pid}.ab.1.journal`,
      `${pid}.ab.1.journal.claimed-`,
      `${pid}.ab.1.journal.claimed-1x`,
    ];
    for (const n of names) writeFileSync(join(dir, n), '{"i":0}\n');
    symlinkSync(outside, join(dir, `${pid}.ff.1.journal`));
    symlinkSync("../x", join(dir, `${pid}.ff.2.journal`));
    mkdirSync(join(dir, `${pid}.dd.1.journal`));
    const before = readdirSync(dir).sort();
    expect(claimDeadJournals(dir)).toEqual([]);
    expect(readdirSync(dir).sort()).toEqual(before);
    for (const n of names) expect(readFileSync(join(dir, n), "utf8")).toBe('{"i":0}\n');
    expect(lstatSync(join(dir, `${pid}.ff.1.journal`)).isSymbolicLink()).toBe(true);
    expect(readFileSync(outside, "utf8")).toBe('{"outside":1}\n');
    expect(readdirSync(root).sort()).toEqual([`${pid}.ee.1.journal`, "journals"]);
  });

  it("of two processes claiming at once, exactly one gets a dead journal", async () => {
    const CLAIMER = `
process.stdout.write("ready\\n");
process.stdin.once("data", () => {
  const claims = claimDeadJournals(args[0]);
  process.stdout.write("claimed " + JSON.stringify(claims.map((c) => c.entries.length)) + "\\n");
  for (const c of claims) c.release();
  process.exit(0);
});
`;
    for (let round = 0; round < 4; round++) {
      const dir = tempDir();
      const pid = deadPid();
      for (let seq = 1; seq <= 5; seq++) {
        const lines = Array.from({ length: 200 }, (_, i) => `{"s":${seq},"i":${i}}\n`);
        writeFileSync(join(dir, `${pid}.c0ffee.${seq}.journal`), lines.join(""));
      }
      const [a, b] = await Promise.all([startChild(CLAIMER, [dir]), startChild(CLAIMER, [dir])]);
      a.child.stdin!.write("go\n");
      b.child.stdin!.write("go\n");
      await Promise.all([exited(a.child), exited(b.child)]);
      expect([a.child.exitCode, b.child.exitCode]).toEqual([0, 0]);
      const got = [a.out(), b.out()].map((o) => JSON.parse(/claimed (.*)\n/.exec(o)![1]!));
      expect(got.sort((x, y) => x.length - y.length)).toEqual([[], [1000]]);
      expect(readdirSync(dir)).toEqual([]);
    }
  });
});
