import { createServer } from "node:http";
import { createGateway, memoryStore } from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";

const gateway = createGateway({
  store: memoryStore(),
  secret: "bench-secret-0123456789abcdef0123456789",
  logger: false,
});
await gateway.credentials.add({
  provider: "openai",
  baseUrl: process.env.UPSTREAM!,
  secret: { apiKey: "k" },
});
const { key } = await gateway.keys.create({ name: "b", remainQuota: 1e12 });
const server = createServer(toNodeHandler(gateway));
server.listen(Number(process.env.PORT), "127.0.0.1", () =>
  console.log(JSON.stringify({ key, pid: process.pid })),
);
