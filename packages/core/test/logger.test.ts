import { randomBytes } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  consoleLogger,
  createGateway,
  type Gateway,
  isPinoLogger,
  type Logger,
  memoryStore,
  pinoLogger,
} from "../src/index.js";
import { toNodeHandler } from "../src/node.js";

const SECRET = "logger-test-secret-0123456789-0123456789-abcdef";

/** A real pino logger writing its JSON lines into `lines`. */
function capturedPino(level = "info") {
  const lines: Record<string, unknown>[] = [];
  const raw: string[] = [];
  const log = pino(
    { level },
    {
      write(chunk: string) {
        raw.push(chunk);
        lines.push(JSON.parse(chunk) as Record<string, unknown>);
      },
    },
  );
  return { log, lines, raw };
}

/** The `request` lines once there are `n` of them (or what there is after 2 s). */
async function settled(lines: Record<string, unknown>[], n: number) {
  const requests = () => lines.filter((l) => l.msg === "request");
  for (let i = 0; i < 100 && requests().length < n; i++)
    await new Promise((r) => setTimeout(r, 20));
  expect(requests()).toHaveLength(n);
  return requests();
}

describe("a pino logger as the gateway's logger", () => {
  let upstream: MockUpstream;
  let server: Server;
  let gateway: Gateway | null = null;
  /** The upstream credential: a careless upstream quotes it back in its errors. */
  const credentialKey = `sk-upstream-${randomBytes(24).toString("hex")}`;

  beforeEach(async () => {
    upstream = await createMockUpstream();
  });
  afterEach(async () => {
    server?.close();
    server?.closeAllConnections();
    await gateway?.close();
    gateway = null;
    await upstream.close();
  });

  async function serve(logger: Parameters<typeof createGateway>[0]["logger"]) {
    gateway = createGateway({ store: memoryStore(), secret: SECRET, logger });
    await gateway.ready;
    await gateway.settings.set({ "request-log": true });
    await gateway.credentials.add({
      provider: "openai",
      baseUrl: upstream.url,
      secret: { apiKey: credentialKey },
    });
    const { key, record } = await gateway.keys.create({ name: "app", unlimitedQuota: true });
    server = createServer(toNodeHandler(gateway));
    await new Promise<void>((ok) => server.listen(0, "127.0.0.1", ok));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const chat = (content: string) =>
      fetch(`${url}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
        body: JSON.stringify({ model: "gpt-4o-mini", messages: [{ role: "user", content }] }),
      });
    return { key, keyId: record.id, chat };
  }

  it("is recognised as it is: fields go in the object, the message in msg, secrets stay out", async () => {
    const { log, lines, raw } = capturedPino();
    expect(isPinoLogger(log)).toBe(true);
    const { key, keyId, chat } = await serve(log);

    // A client pasting a key into its prompt: the request log carries the body, redacted.
    const pasted = `sk-pasted-${randomBytes(16).toString("hex")}`;
    expect((await chat(`my key is ${pasted}`)).status).toBe(200);
    upstream.fail({ status: 401, echoCredential: true, path: "/v1/chat/completions" });
    expect((await chat("again")).status).toBeGreaterThanOrEqual(400);

    // Request lines are written when a request settles, which may follow its answer.
    const requests = await settled(lines, 2);
    expect(requests[0]).toMatchObject({ level: 30, keyId, status: 200, model: "gpt-4o-mini" });
    expect(String(requests[0]!.request)).toContain("my key is [redacted]");
    expect(requests[1]).toMatchObject({ level: 30, keyId, error: "upstream 401" });
    // Neither the pasted key, nor our credential (quoted back in full by the upstream), nor the
    // client's key is in any line.
    const all = raw.join("");
    expect(all).not.toContain(pasted);
    expect(all).not.toContain(credentialKey);
    expect(all).not.toContain(key);
  });

  it("the debug setting raises the pino logger's level and restores it", async () => {
    const { log } = capturedPino("warn");
    await serve(log);
    await gateway!.settings.set({ debug: true });
    expect(log.level).toBe("debug");
    await gateway!.settings.set({ debug: false });
    expect(log.level).toBe("warn");
  });

  it("a pino child logger plugs in too, with its bindings on every line", async () => {
    const { log, lines } = capturedPino();
    const { chat } = await serve(log.child({ component: "tokenpool" }));
    expect((await chat("hello")).status).toBe(200);
    expect((await settled(lines, 1))[0]).toMatchObject({
      component: "tokenpool",
      status: 200,
    });
  });

  it("pinoLogger() adapts any logger in pino's style, and the level follows", () => {
    const calls: unknown[][] = [];
    const styled = {
      level: "info",
      debug: (...a: unknown[]) => calls.push(["debug", ...a]),
      info: (...a: unknown[]) => calls.push(["info", ...a]),
      warn: (...a: unknown[]) => calls.push(["warn", ...a]),
      error: (...a: unknown[]) => calls.push(["error", ...a]),
    };
    // Same method names as tokenpool's shape: not taken for pino without being asked.
    expect(isPinoLogger(styled)).toBe(false);
    const adapted = pinoLogger(styled) as Logger & { level: string };
    adapted.warn("with fields", { id: 1 });
    adapted.info("alone");
    adapted.error("empty fields", {});
    expect(calls).toEqual([
      ["warn", { id: 1 }, "with fields"],
      ["info", "alone"],
      ["error", "empty fields"],
    ]);
    adapted.level = "debug";
    expect(styled.level).toBe("debug");
  });

  it("tokenpool's own shape is still called as (message, fields)", async () => {
    const calls: unknown[][] = [];
    const logger: Logger = {
      debug: () => {},
      info: (m, f) => calls.push([m, f]),
      warn: () => {},
      error: () => {},
    };
    expect(isPinoLogger(logger)).toBe(false);
    expect(isPinoLogger(consoleLogger())).toBe(false);
    const { chat } = await serve(logger);
    expect((await chat("hello")).status).toBe(200);
    for (let i = 0; i < 100 && !calls.some((c) => c[0] === "request"); i++)
      await new Promise((r) => setTimeout(r, 20));
    expect(calls.find((c) => c[0] === "request")?.[1]).toMatchObject({ status: 200 });
  });
});
