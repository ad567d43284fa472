/**
 * Crash safety: a process writing to a store is killed with SIGKILL in the middle of a write
 * burst; reopened, the store is intact (SQLite `integrity_check`, every file of the file store
 * parses) and every write whose promise had resolved (an `ack` line) is there.
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Store } from "@tokenpool/core";
import { fileStore } from "@tokenpool/store-file";
import { sqliteStore } from "@tokenpool/store-sqlite";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";

const WRITER = fileURLToPath(new URL("./fixtures/crash-writer.ts", import.meta.url));
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

interface Acks {
  payer: number;
  keys: { id: number; n: number }[];
  usage: { id: number; n: number }[];
  settings: { name: string; n: number }[];
}

/** Runs the writer until it has acknowledged `count` writes, then kills it with SIGKILL. */
function burstAndKill(kind: "sqlite" | "file", path: string, count: number): Promise<Acks> {
  const child = spawn(
    process.execPath,
    ["--conditions=source", "--import", "tsx", WRITER, kind, path],
    {
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  const acks: Acks = { payer: 0, keys: [], usage: [], settings: [] };
  let out = "";
  let err = "";
  let total = 0;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`the writer did not reach ${count} writes.\nstdout:\n${out}\nstderr:\n${err}`),
      );
    }, 60_000);
    child.stderr!.on("data", (d: Buffer) => {
      err += d.toString();
    });
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      const lines = out.split("\n");
      out = lines.pop()!;
      for (const line of lines) {
        const [word, what, id, n] = line.split(" ");
        if (word === "ready") acks.payer = Number(what);
        if (word !== "ack") continue;
        total++;
        if (what === "key") acks.keys.push({ id: Number(id), n: Number(n) });
        else if (what === "usage") acks.usage.push({ id: Number(id), n: Number(n) });
        else acks.settings.push({ name: id!, n: Number(n) });
      }
      if (total >= count && child.exitCode === null) child.kill("SIGKILL");
    });
    child.once("exit", (_code, signal) => {
      clearTimeout(timer);
      if (signal !== "SIGKILL") reject(new Error(`the writer exited by itself.\nstderr:\n${err}`));
      else resolve(acks);
    });
  });
}

async function checkAcks(store: Store, acks: Acks): Promise<void> {
  expect(acks.keys.length + acks.usage.length + acks.settings.length).toBeGreaterThan(0);
  for (const { id, n } of acks.keys) {
    const k = await store.keys.get(id);
    expect(k?.name).toBe(`burst-${n}`);
  }
  const usage = await store.usage.list({ keyId: acks.payer, limit: 100_000 });
  const ids = new Set(usage.items.map((r) => r.id));
  for (const { id } of acks.usage) expect(ids.has(id)).toBe(true);
  const settings = await store.settings.all();
  for (const { name, n } of acks.settings) expect(settings[name]).toBe(n);
  // Quota and usage agree: every committed record charged 7 units of the payer's balance.
  const payer = await store.keys.get(acks.payer);
  const charged = usage.items.reduce((s, r) => s + r.quota, 0);
  expect(payer!.usedQuota).toBe(charged);
}

describe("SIGKILL during a write burst", () => {
  it("leaves a SQLite store intact with every acknowledged write", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tokenpool-crash-"));
    dirs.push(dir);
    const file = join(dir, "tokenpool.db");
    for (let round = 0; round < 3; round++) {
      const acks = await burstAndKill("sqlite", file, 300 + round * 100);
      const db = new Database(file);
      expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
      db.close();
      const store = sqliteStore({ filename: file });
      await checkAcks(store, acks);
      await store.close();
    }
  }, 120_000);

  it("leaves a file store with every file parseable and every acknowledged write", async () => {
    const dir = mkdtempSync(join(tmpdir(), "tokenpool-crash-file-"));
    dirs.push(dir);
    for (let round = 0; round < 3; round++) {
      const acks = await burstAndKill("file", dir, 150 + round * 50);
      // Every file parses; no temporary file is mistaken for data (they may be left over).
      const walk = (d: string): string[] =>
        readdirSync(d).flatMap((f) => {
          const p = join(d, f);
          return statSync(p).isDirectory() ? walk(p) : [p];
        });
      for (const f of walk(dir)) {
        if (f.endsWith(".json")) expect(() => JSON.parse(readFileSync(f, "utf8")), f).not.toThrow();
        if (f.endsWith(".yaml")) expect(() => parseYaml(readFileSync(f, "utf8")), f).not.toThrow();
      }
      // The killed process left its lock behind: a stale lock is taken over.
      const store = fileStore({ dir, watch: false });
      await checkAcks(store, acks);
      await store.close();
    }
  }, 120_000);
});
