import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startServer } from "../src/serve.js";
import { startCli } from "./helpers.js";

describe("the data folder of the default SQLite store", () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "tokenpool-data-dir-"));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("is created with its parents, and keeps secret.key beside the database across restarts", async () => {
    const saved = process.env.TOKENPOOL_SECRET;
    delete process.env.TOKENPOOL_SECRET;
    const data = join(dir, "deep", "data");
    const store = `sqlite:${join(data, "tokenpool.db")}`;
    const lines: string[] = [];
    try {
      const first = await startServer({
        port: 0,
        store,
        logLevel: "silent",
        print: (l) => lines.push(l),
      });
      const { key } = await first.gateway.keys.create({ name: "app", remainQuota: 10 });
      await first.close();
      expect(statSync(join(data, "tokenpool.db")).size).toBeGreaterThan(0);
      const secretFile = join(data, "secret.key");
      expect(statSync(secretFile).mode & 0o777).toBe(0o600);
      const secret = readFileSync(secretFile, "utf8").trim();
      expect(secret).toMatch(/^[0-9a-f]{64}$/);

      // The second start reads the same secret: the key made under the first still authorises.
      const second = await startServer({ port: 0, store, logLevel: "silent", print: () => {} });
      try {
        const res = await fetch(`${second.url}/v1/models`, {
          headers: { authorization: `Bearer ${key}` },
        });
        expect(res.status).toBe(200);
        expect(readFileSync(secretFile, "utf8").trim()).toBe(secret);
      } finally {
        await second.close();
      }
    } finally {
      if (saved !== undefined) process.env.TOKENPOOL_SECRET = saved;
    }
    expect(lines.some((l) => l.startsWith("Management key"))).toBe(true);
  });

  it("a file in the way of the folder stops `tokenpool serve` with a message naming it", async () => {
    writeFileSync(join(dir, "data"), "a file, not a folder");
    const filename = join(dir, "data", "tokenpool.db");
    await expect(
      startCli(["serve", "--port", "0", "--store", `sqlite:${filename}`]),
    ).rejects.toThrow(
      `tokenpool: sqliteStore: cannot create the folder ${join(dir, "data")} for the database file ${filename}: a file is in the way`,
    );
  });
});
