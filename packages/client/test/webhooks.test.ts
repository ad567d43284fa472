/** `client.management.webhooks` against a real gateway and a real receiver on port 0. */
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { signWebhook } from "@tokenpool/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, createClient, isTokenpoolError } from "../src/index.js";
import { startGateway, type TestGateway } from "./setup.js";

let g: TestGateway;
let client: Client;

beforeAll(async () => {
  g = await startGateway();
  client = createClient({ baseUrl: g.base, managementKey: g.managementKey });
});

afterAll(() => g.close());

describe("client.management.webhooks", () => {
  it("creates, reads, updates, tests, rotates and deletes a subscription", async () => {
    const bodies: { body: string; headers: Record<string, string> }[] = [];
    const receiver = createServer((req, res) => {
      let body = "";
      req.on("data", (c: Buffer) => {
        body += c.toString("utf8");
      });
      req.on("end", () => {
        bodies.push({ body, headers: req.headers as Record<string, string> });
        res.end("ok");
      });
    });
    await new Promise<void>((r) => receiver.listen(0, "127.0.0.1", r));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/h`;
    try {
      const hooks = client.management.webhooks;
      const created = await hooks.create({ url, events: ["key.exhausted"], description: "a" });
      expect(created.status).toBe("ok");
      const { id } = created.webhook;
      expect(await hooks.list()).toContainEqual(expect.objectContaining({ id, url }));
      expect((await hooks.get(id)).secret).not.toBe(created.secret);
      const updated = await hooks.update(id, { events: ["*"] });
      expect(updated).toMatchObject({ events: ["*"], description: "a", enabled: true });

      const attempt = await hooks.test(id);
      expect(attempt).toMatchObject({ eventType: "webhook.test", status: 200, success: true });
      const got = bodies[0]!;
      expect(JSON.parse(got.body)).toMatchObject({ type: "webhook.test" });
      const ts = Number(got.headers["webhook-timestamp"]);
      expect(got.headers["webhook-signature"]).toBe(
        signWebhook(created.secret, got.headers["webhook-id"]!, ts, got.body),
      );
      const deliveries = await hooks.deliveries(id);
      expect(deliveries[0]).toMatchObject({ messageId: attempt.messageId, attempt: 1 });

      const rotated = await hooks.rotateSecret(id);
      expect(rotated.secret).toMatch(/^whsec_/);
      expect(rotated.secret).not.toBe(created.secret);
      expect(await hooks.delete(id)).toEqual({ status: "ok" });
      try {
        await hooks.get(id);
        expect.unreachable();
      } catch (e) {
        expect(isTokenpoolError(e) && e.status).toBe(404);
      }
    } finally {
      await new Promise<void>((r) => receiver.close(() => r()));
    }
  });
});
