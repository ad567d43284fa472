/** Runs the example script for real (a child process) and checks what it prints. */
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { fileURLToPath } from "node:url";
import { createGateway, memoryStore } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { createMockUpstream, DEFAULT_MOCK_REPLY } from "@tokenpool/testing";
import { describe, expect, it } from "vitest";

const exampleDir = fileURLToPath(new URL("..", import.meta.url));

/** Runs `src/main.ts` as `pnpm start` does; resolves with its exit code and output. */
function run(args: string[], env: Record<string, string> = {}) {
  const child = spawn(
    process.execPath,
    ["--conditions=source", "--import", "tsx", "src/main.ts", ...args],
    { cwd: exampleDir, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let output = "";
  child.stdout.on("data", (c: Buffer) => (output += c.toString()));
  child.stderr.on("data", (c: Buffer) => (output += c.toString()));
  return new Promise<{ code: number | null; output: string }>((resolve) =>
    child.once("close", (code) => resolve({ code, output })),
  );
}

function checkOutput(output: string) {
  expect(output).toMatch(/Created user #\d+ example-\S+/);
  expect(output).toMatch(/Created key #\d+ sk-/);
  expect(output).toContain("Quota set to 250000 units ($0.5)");
  expect(output).toContain(`Reply: ${DEFAULT_MOCK_REPLY}`);
  const m = /Usage: key used (\d+) units, (\d+) left; gateway total (\d+) requests/.exec(output);
  expect(m).not.toBeNull();
  const [used, left, requests] = [Number(m![1]), Number(m![2]), Number(m![3])];
  expect(used).toBeGreaterThan(0);
  expect(used + left).toBe(250_000);
  expect(requests).toBeGreaterThanOrEqual(1);
}

describe("the client example", () => {
  it("--demo runs offline against an in-process gateway with the SQLite store", async () => {
    const { code, output } = await run(["--demo"]);
    expect(code, output).toBe(0);
    expect(output).toMatch(/Demo gateway on http:\/\/127\.0\.0\.1:\d+ \(SQLite in /);
    checkOutput(output);
  });

  it("uses TOKENPOOL_URL and TOKENPOOL_MANAGEMENT_KEY against a running gateway", async () => {
    const mock = await createMockUpstream({ apiKeys: ["sk-example-test-upstream"] });
    const gateway = createGateway({
      store: memoryStore(),
      secret: "example-client-test-secret-0123456789-abcdef",
      logger: false,
    });
    const managementKey = await gateway.management.generateKey();
    await gateway.credentials.add({
      provider: "openai",
      baseUrl: mock.url,
      kind: "api-key",
      secret: { apiKey: "sk-example-test-upstream" },
    });
    const server = createServer(toNodeHandler(gateway));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const { code, output } = await run([], {
        TOKENPOOL_URL: url,
        TOKENPOOL_MANAGEMENT_KEY: managementKey,
      });
      expect(code, output).toBe(0);
      checkOutput(output);
      expect((await gateway.keys.list({})).items.map((k) => k.name)).toContain("client example");
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await gateway.close();
      await mock.close();
    }
  });

  it("explains what to set when neither the environment nor --demo is given", async () => {
    const { code, output } = await run([], { TOKENPOOL_URL: "", TOKENPOOL_MANAGEMENT_KEY: "" });
    expect(code).toBe(2);
    expect(output).toContain("TOKENPOOL_URL and TOKENPOOL_MANAGEMENT_KEY");
  });
});
