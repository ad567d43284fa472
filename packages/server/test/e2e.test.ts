/** The shared end-to-end suite against the standalone server (`tokenpool serve --demo`). */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { runEndToEndSuite } from "@tokenpool/e2e";
import { afterAll, beforeAll } from "vitest";
import { type ServerProcess, startCli } from "./helpers.js";

let dir: string;
let server: ServerProcess;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "tokenpool-e2e-"));
  server = await startCli(
    ["serve", "--port", "0", "--store", `sqlite:${join(dir, "tokenpool.db")}`, "--demo"],
    { TOKENPOOL_SECRET: "" },
  );
});

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

runEndToEndSuite("tokenpool serve", () => ({
  root: server.url,
  managementKey: server.match(/Management key \(shown once[^:]*: (\S+)/)!,
}));
