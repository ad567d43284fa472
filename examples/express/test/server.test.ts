import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { runEndToEndSuite } from "@tokenpool/e2e";
import { DEFAULT_MOCK_REPLY } from "@tokenpool/testing";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

const exampleDir = fileURLToPath(new URL("..", import.meta.url));
const dataDir = mkdtempSync(join(tmpdir(), "tokenpool-example-express-"));
let child: ChildProcess;
let output = "";

/** Starts the example as `pnpm start --demo` does, and waits until it printed its demo key. */
function startExample(): Promise<void> {
  child = spawn(
    process.execPath,
    ["--conditions=source", "--import", "tsx", "src/server.ts", "--demo"],
    {
      cwd: exampleDir,
      env: { ...process.env, PORT: "0", DATA_DIR: dataDir, TOKENPOOL_SECRET: "" },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (/Demo key: \S+/.test(output)) resolve();
    };
    child.stdout!.on("data", onData);
    child.stderr!.on("data", onData);
    child.once("exit", (code) => reject(new Error(`the example exited (${code}):\n${output}`)));
  });
}

beforeAll(startExample, 60_000);

afterAll(async () => {
  if (child.exitCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await exited;
  }
  rmSync(dataDir, { recursive: true, force: true });
});

describe("the Express example", () => {
  it("prints its URL and a management key, and serves the openai client under /llm/v1", async () => {
    expect(output).toMatch(/tokenpool \(Express\) listening on http:\/\/\S+\/llm/);
    expect(output).toMatch(/Management key \(shown once, keep it\): tp-mgmt-\S+/);
    const baseURL = /OpenAI base URL: (\S+)/.exec(output)![1]!;
    const apiKey = /Demo key: (\S+)/.exec(output)![1]!;
    const client = new OpenAI({ apiKey, baseURL, maxRetries: 0 });
    const completion = await client.chat.completions.create({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "hello from the example test" }],
    });
    expect(completion.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    expect(completion.usage?.prompt_tokens).toBeGreaterThan(0);
    expect(completion.usage?.completion_tokens).toBeGreaterThan(0);
  });
});

runEndToEndSuite("examples/express", () => ({
  root: /listening on (\S+)/.exec(output)![1]!,
  managementKey: /Management key \(shown once, keep it\): (\S+)/.exec(output)![1]!,
}));
