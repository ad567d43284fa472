/**
 * tokenpool mounted in an Express app under /llm, with the SQLite store.
 *
 *   pnpm start            # serve ./data/tokenpool.db on http://127.0.0.1:3000/llm
 *   pnpm start --demo     # plus a mock upstream and a demo key: works offline
 *
 * Environment: PORT (default 3000, 0 = any free port), HOST (default 127.0.0.1),
 * TOKENPOOL_SECRET (else one is generated and kept in ./data/secret), DATA_DIR (default ./data).
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { createGateway, type Gateway } from "@tokenpool/core";
import { tokenpoolErrorHandler, tokenpoolRouter } from "@tokenpool/express";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { createMockUpstream, type MockUpstream } from "@tokenpool/testing";
import express from "express";

const demo = process.argv.includes("--demo");
const port = Number(process.env.PORT ?? 3000);
const host = process.env.HOST ?? "127.0.0.1";
const dataDir = process.env.DATA_DIR ?? "./data";
mkdirSync(dataDir, { recursive: true });

/** TOKENPOOL_SECRET, else a secret generated once and kept in the data directory. */
function secret(): string {
  if (process.env.TOKENPOOL_SECRET) return process.env.TOKENPOOL_SECRET;
  const path = join(dataDir, "secret");
  if (existsSync(path)) return readFileSync(path, "utf8").trim();
  const value = randomBytes(32).toString("hex");
  writeFileSync(path, `${value}\n`, { mode: 0o600 });
  return value;
}

const gateway = createGateway({
  store: sqliteStore({ filename: join(dataDir, "tokenpool.db") }),
  secret: secret(),
  logger: "warn",
});
await gateway.ready;

const app = express();
app.use(express.json({ limit: "20mb" })); // the app's own parser: tokenpool works after it too
app.get("/", (_req, res) => {
  res.type("text/plain").send("An Express app with tokenpool under /llm\n");
});
app.use("/llm", tokenpoolRouter(gateway), tokenpoolErrorHandler(gateway));

const mock = demo ? await setUpDemo(gateway) : null;
const server = app.listen(port, host, async () => {
  const { port: actual } = server.address() as AddressInfo;
  const base = `http://${host.includes(":") ? `[${host}]` : host}:${actual}/llm`;
  console.log(`tokenpool (Express) listening on ${base}`);
  console.log(`OpenAI base URL: ${base}/v1`);
  if (!gateway.management.hasKey()) {
    console.log(`Management key (shown once, keep it): ${await gateway.management.generateKey()}`);
  }
  if (mock) console.log(`Demo key: ${mock.key} (a mock upstream answers every model)`);
});

/** Adds (or re-points) a credential at a local mock upstream and returns a demo key. */
async function setUpDemo(gw: Gateway): Promise<{ upstream: MockUpstream; key: string }> {
  const upstream = await createMockUpstream();
  const id = "demo-mock-upstream";
  if (gw.credentials.get(id)) await gw.credentials.update(id, { baseUrl: upstream.url });
  else
    await gw.credentials.add({
      id,
      provider: "openai",
      label: "demo (mock upstream)",
      baseUrl: upstream.url,
      secret: { apiKey: "demo" },
    });
  // Plain keys are not stored: the demo key is kept in the data directory to be shown again.
  const file = join(dataDir, "demo-key");
  let key = existsSync(file) ? readFileSync(file, "utf8").trim() : "";
  if (!key || !(await gw.keys.findByPlain(key))) {
    ({ key } = await gw.keys.create({ name: "demo", unlimitedQuota: true }));
    writeFileSync(file, `${key}\n`, { mode: 0o600 });
  }
  return { upstream, key };
}

async function shutdown() {
  server.close();
  server.closeAllConnections();
  await gateway.close();
  await mock?.upstream.close();
  process.exit(0);
}
process.once("SIGINT", shutdown);
process.once("SIGTERM", shutdown);
