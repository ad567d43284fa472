import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { createGateway, type Gateway } from "@tokenpool/core";
import { getGateway } from "@tokenpool/next";
import { sqliteStore } from "@tokenpool/store-sqlite";

/** Where the database and the generated secret live: `TOKENPOOL_DATA_DIR`, else ./data. */
const DATA_DIR = resolve(process.env.TOKENPOOL_DATA_DIR ?? "data");
const DEMO_CREDENTIAL = "demo-mock-upstream";
const DEMO_KEY_NAME = "demo";

/** `TOKENPOOL_SECRET`, else a secret generated once and kept in ./data/secret (mode 600). */
function secret(): string {
  const fromEnv = process.env.TOKENPOOL_SECRET;
  if (fromEnv) return fromEnv;
  const file = join(DATA_DIR, "secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  const generated = randomBytes(32).toString("base64url");
  writeFileSync(file, generated, { mode: 0o600, flag: "wx" });
  return generated;
}

/**
 * Demo mode (`TOKENPOOL_DEMO=1`): a mock OpenAI upstream in this process, a credential on it and
 * an API key named "demo", printed to the server log. Off unless asked for, so that a production
 * deployment never starts the mock nor prints a key.
 */
async function setUpDemo(gateway: Gateway): Promise<void> {
  const { createMockUpstream } = await import("@tokenpool/testing/mock-upstream");
  const upstream = await createMockUpstream({ chunkDelayMs: 20 });
  process.once("exit", () => void upstream.close());
  await gateway.ready;
  // The mock listens on a new port at every start: point the stored credential at it.
  if (gateway.credentials.get(DEMO_CREDENTIAL)) {
    await gateway.credentials.update(DEMO_CREDENTIAL, { baseUrl: upstream.url });
  } else {
    await gateway.credentials.add({
      id: DEMO_CREDENTIAL,
      label: "demo (mock upstream)",
      provider: "openai",
      baseUrl: upstream.url,
      secret: { apiKey: "sk-mock" },
    });
  }
  const existing = (await gateway.keys.list({ keyword: DEMO_KEY_NAME })).items.find(
    (k) => k.name === DEMO_KEY_NAME,
  );
  const key = existing
    ? await gateway.keys.reveal(existing.id)
    : (await gateway.keys.create({ name: DEMO_KEY_NAME, unlimitedQuota: true })).key;
  console.log(`[tokenpool demo] mock upstream at ${upstream.url}`);
  console.log(`[tokenpool demo] API key: ${key}`);
}

async function create(): Promise<Gateway> {
  mkdirSync(DATA_DIR, { recursive: true });
  const gateway = createGateway({
    store: sqliteStore({ filename: join(DATA_DIR, "tokenpool.db") }),
    secret: secret(),
  });
  // First start: a management key for the management routes, shown once (only its hash is kept).
  await gateway.ready;
  if (!gateway.management.hasKey()) {
    console.log(
      `[tokenpool] Management key (shown once, keep it): ${await gateway.management.generateKey()}`,
    );
  }
  if (process.env.TOKENPOOL_DEMO === "1") {
    try {
      await setUpDemo(gateway);
    } catch (error) {
      await gateway.close();
      throw error;
    }
  }
  return gateway;
}

/**
 * The process-wide gateway. Called on each request rather than at import, so that `next build`
 * (which imports route modules) opens no database; `getGateway` keeps one instance across hot
 * reloads and route bundles.
 */
export const gateway = () => getGateway(create);
