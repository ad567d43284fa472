/**
 * @tokenpool/client in a few calls: create a user and a key, set the key's quota, send a chat
 * request through the gateway with that key, and print what it used.
 *
 *   TOKENPOOL_URL=http://127.0.0.1:8317 TOKENPOOL_MANAGEMENT_KEY=tp-mgmt-... pnpm start
 *   pnpm start --demo   # starts a gateway in-process (SQLite in a temp dir, mock upstream): works offline
 *
 * Options (environment): TOKENPOOL_MODEL (default gpt-4o-mini).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, isTokenpoolError } from "@tokenpool/client";
import { createGateway } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { createMockUpstream } from "@tokenpool/testing";

interface Target {
  baseUrl: string;
  managementKey: string;
  close(): Promise<void>;
}

/** A gateway in this process: SQLite in a temp dir, one credential on a mock upstream. */
async function startDemo(): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), "tokenpool-client-example-"));
  const mock = await createMockUpstream({ apiKeys: ["sk-demo-upstream"] });
  const gateway = createGateway({
    store: sqliteStore({ filename: join(dir, "tokenpool.db") }),
    secret: "demo-secret-not-for-production-0123456789abcdef",
    logger: false,
    usage: { flushIntervalMs: 50 },
  });
  const managementKey = await gateway.management.generateKey();
  await gateway.credentials.add({
    provider: "openai",
    baseUrl: mock.url,
    kind: "api-key",
    secret: { apiKey: "sk-demo-upstream" },
  });
  const server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  console.log(`Demo gateway on ${baseUrl} (SQLite in ${dir}, mock upstream on ${mock.url})`);
  return {
    baseUrl,
    managementKey,
    async close() {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
      await gateway.close();
      await mock.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function target(): Promise<Target> {
  if (process.argv.includes("--demo")) return startDemo();
  const baseUrl = process.env.TOKENPOOL_URL;
  const managementKey = process.env.TOKENPOOL_MANAGEMENT_KEY;
  if (!baseUrl || !managementKey) {
    console.error(
      "Set TOKENPOOL_URL and TOKENPOOL_MANAGEMENT_KEY, or run `pnpm start --demo` for an in-process gateway.",
    );
    process.exit(2);
  }
  return { baseUrl, managementKey, close: async () => {} };
}

async function main(): Promise<void> {
  const t = await target();
  try {
    const client = createClient({ baseUrl: t.baseUrl, managementKey: t.managementKey });
    const model = process.env.TOKENPOOL_MODEL ?? "gpt-4o-mini";

    const user = await client.users.create({
      username: `example-${Date.now().toString(36)}`,
      quota: 5_000_000,
    });
    console.log(`Created user #${user.id} ${user.username}`);

    const token = await client.tokens.create({
      name: "client example",
      user_id: user.id,
      remain_quota: 1_000_000,
      expired_time: -1,
    });
    console.log(`Created key #${token.id} ${token.key.slice(0, 7)}… for user #${user.id}`);

    // 500000 quota units = 1 USD.
    const updated = await client.tokens.update({ id: token.id, remain_quota: 250_000 });
    console.log(`Quota set to ${updated.remain_quota} units ($${updated.remain_quota / 500_000})`);

    const reply = await client.proxy(token.key).chat({
      model,
      messages: [{ role: "user", content: "Say hello in one sentence." }],
    });
    console.log(`Reply: ${reply.choices[0].message.content}`);
    console.log(
      `Tokens: ${reply.usage.prompt_tokens} prompt + ${reply.usage.completion_tokens} completion`,
    );

    // The usage route writes queued usage records first, so this includes the request above.
    const usage = await client.management.usage();
    const after = await client.tokens.get(token.id);
    console.log(
      `Usage: key used ${after.used_quota} units, ${after.remain_quota} left; gateway total ${usage.total_requests} requests, ${usage.total_tokens} tokens`,
    );
  } finally {
    await t.close();
  }
}

main().catch((error: unknown) => {
  if (isTokenpoolError(error))
    console.error(`tokenpool answered ${error.status}: ${error.message}`);
  else console.error(error);
  process.exit(1);
});
