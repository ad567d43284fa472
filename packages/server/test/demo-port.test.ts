import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { freePort } from "@tokenpool/testing";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";
import { runCommand, startCli } from "./helpers.js";

describe("tokenpool serve --demo --demo-port", () => {
  it("starts the demo upstream on that port, prints it, and serves through it", async () => {
    const demoPort = await freePort();
    const server = await startCli([
      "serve",
      "--store",
      "memory",
      "--port",
      "0",
      "--demo",
      "--demo-port",
      String(demoPort),
      "--log-level",
      "warn",
    ]);
    try {
      expect(server.match(/Demo upstream: (\S+)/)).toBe(`http://127.0.0.1:${demoPort}/v1`);
      // The upstream itself answers on the chosen port (with its own key only).
      const direct = await fetch(`http://127.0.0.1:${demoPort}/v1/models`);
      expect(direct.status).toBe(401);
      await direct.arrayBuffer();
      const demoKey = server.match(/Demo key: (\S+)/)!;
      const client = new OpenAI({ baseURL: `${server.url}/v1`, apiKey: demoKey, maxRetries: 0 });
      const completion = await client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "hello" }],
      });
      expect(completion.choices[0]!.message.content).toMatch(/mock upstream/);
    } finally {
      expect(await server.stop("SIGTERM")).toBe(0);
    }
  });

  it("a taken port stops the server with a message that names it and the flag", async () => {
    const taken: Server = createServer();
    await new Promise<void>((ok) => taken.listen(0, "127.0.0.1", ok));
    const { port } = taken.address() as AddressInfo;
    try {
      await expect(
        startCli(["serve", "--store", "memory", "--port", "0", "--demo", "--demo-port", `${port}`]),
      ).rejects.toThrow(
        `tokenpool: the demo upstream cannot listen on 127.0.0.1:${port}: the port is in use; pick another --demo-port`,
      );
    } finally {
      taken.close();
    }
  });

  it("refuses a bad --demo-port, or one without --demo, with exit code 2", async () => {
    await expect(
      startCli(["serve", "--store", "memory", "--demo", "--demo-port", "99999"]),
    ).rejects.toThrow(/exited with 2[\s\S]*--demo-port must be an integer between 0 and 65535/);
    await expect(startCli(["serve", "--store", "memory", "--demo-port", "0"])).rejects.toThrow(
      /exited with 2[\s\S]*--demo-port only applies with --demo/,
    );
  });

  it("documents --demo-port in --help", async () => {
    const cli = new URL("../src/cli.ts", import.meta.url).pathname;
    const { code, stdout } = await runCommand(process.execPath, [
      "--conditions=source",
      "--import",
      "tsx",
      cli,
      "--help",
    ]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/--demo-port <n> +with --demo: the mock upstream's port/);
  });
});
