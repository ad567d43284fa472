/** A real gateway on a node:http server (port 0) with one credential on a mock upstream. */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createGateway, type Gateway, memoryStore } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";

export const UPSTREAM_KEY = "sk-upstream-client-0a1b2c3d4e5f6a7b8c9d";

export interface TestGateway {
  gateway: Gateway;
  mock: MockUpstream;
  base: string;
  managementKey: string;
  close(): Promise<void>;
}

export async function startGateway(): Promise<TestGateway> {
  const mock = await createMockUpstream({ apiKeys: [UPSTREAM_KEY] });
  const gateway = createGateway({
    store: memoryStore(),
    secret: "client-test-secret-0123456789-0123456789-abcdef",
    logger: false,
    usage: { flushIntervalMs: 10 },
  });
  const managementKey = await gateway.management.generateKey();
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    kind: "api-key",
    // A name, so that the credential is a valid `openai-compatibility` entry (a list PUT keeps it).
    label: "mock",
    secret: { apiKey: UPSTREAM_KEY },
  });
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    gateway,
    mock,
    base,
    managementKey,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await gateway.close();
      await mock.close();
    },
  };
}

/** Listens on port 0 with a handler; resolves with its base URL and a closer. */
export async function tinyServer(
  handle: Parameters<typeof createServer>[1],
): Promise<{ base: string; close(): Promise<void> }> {
  const server: Server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    },
  };
}
