import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { isAutoDisabled } from "../src/credentials/health.js";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";

const SECRET = "probe-secret-0123456789-0123456789-abcdef";
let mock: MockUpstream;
let gateway: Gateway;

beforeEach(async () => {
  mock = await createMockUpstream({ apiKeys: ["k"] });
  gateway = createGateway({
    store: memoryStore(),
    secret: SECRET,
    logger: false,
    recoveryProbe: { intervalMs: 50 },
    settings: { "credential-max-failures": 2 },
  });
  await gateway.ready;
  await gateway.credentials.add({
    id: "a",
    provider: "openai",
    baseUrl: mock.url,
    secret: { apiKey: "k" },
  });
});

afterEach(async () => {
  await gateway.close();
  await mock.close();
});

describe("recoveryProbe option", () => {
  it("re-enables a credential the pool disabled once the upstream answers again", async () => {
    const pool = gateway.credentials.pool;
    pool.reportFailure("a", "gpt-4o-mini", 500, "boom", { kind: "server" });
    pool.reportFailure("a", "gpt-4o-mini", 500, "boom", { kind: "server" });
    const disabled = gateway.credentials.get("a")!;
    expect(disabled.enabled).toBe(false);
    expect(isAutoDisabled(disabled)).toBe(true);

    const enabled = new Promise<Record<string, unknown>>((resolve) =>
      gateway.events.on("credential.enabled", (p) => resolve(p as Record<string, unknown>)),
    );
    expect(await enabled).toMatchObject({ credentialId: "a", by: "probe" });
    expect(gateway.credentials.get("a")!.enabled).toBe(true);
    expect(mock.requests.some((r) => r.path === "/v1/models")).toBe(true);
  });

  it("is refused with a clear message when misconfigured", () => {
    expect(() =>
      createGateway({ store: memoryStore(), secret: SECRET, recoveryProbe: { intervalMs: 0 } }),
    ).toThrow(/`recoveryProbe/);
  });
});
