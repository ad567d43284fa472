/**
 * The end-to-end suite every deployment shape must pass: the standalone server and each example
 * app (Express, Fastify, Next.js) run it against a real process in demo mode (a mock upstream
 * behind a credential). Through `@tokenpool/client` with the management key it creates a key with
 * a quota; proxies a non-streaming and a streaming request with the official `openai` client;
 * reads the key's usage back through the client; and disables the key through the client, which
 * must take effect on the next request (and enabling it again too).
 *
 * @module
 */
import { type Client, createClient } from "@tokenpool/client";
import { DEFAULT_MOCK_REPLY } from "@tokenpool/testing/mock-upstream";
import OpenAI from "openai";
import { describe, expect, it } from "vitest";

/** Where a running deployment is, known once it has started. */
export interface E2ETarget {
  /** The gateway's root URL, with the mount prefix (e.g. `http://127.0.0.1:3000/llm`). */
  root: string;
  /** The management key the deployment printed at its first start. */
  managementKey: string;
  /** A model the demo credential serves. @default "gpt-4o-mini" */
  model?: string;
}

/**
 * Registers the suite under `describe(name)`. `target` is called by the tests (after the
 * caller's `beforeAll` started the deployment).
 */
export function runEndToEndSuite(name: string, target: () => E2ETarget): void {
  describe(`${name}: end to end`, () => {
    let client: Client;
    let keyId = 0;
    let apiKey = "";
    const QUOTA = 1_000_000;
    const model = () => target().model ?? "gpt-4o-mini";
    const openai = () =>
      new OpenAI({ apiKey, baseURL: `${target().root}/v1`, maxRetries: 0, timeout: 30_000 });

    it("creates a key with a quota through the client", async () => {
      client = createClient({ baseUrl: target().root, managementKey: target().managementKey });
      const created = await client.tokens.create({
        name: `e2e-${name}`.slice(0, 30),
        remain_quota: QUOTA,
        expired_time: -1,
      });
      keyId = created.id;
      apiKey = created.key;
      expect(apiKey).toMatch(/^sk-/);
      const listed = await client.tokens.get(keyId);
      expect(listed.remain_quota).toBe(QUOTA);
      expect(listed.key).not.toBe(apiKey); // masked in reads
    });

    it("proxies a non-streaming request with the openai client", async () => {
      const r = await openai().chat.completions.create({
        model: model(),
        messages: [{ role: "user", content: "Hello from the end-to-end suite" }],
      });
      expect(r.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
      expect(r.usage?.completion_tokens).toBeGreaterThan(0);
    });

    it("proxies a streaming request with the openai client", async () => {
      const stream = await openai().chat.completions.create({
        model: model(),
        messages: [{ role: "user", content: "Stream to me" }],
        stream: true,
      });
      let text = "";
      let chunks = 0;
      for await (const chunk of stream) {
        chunks++;
        text += chunk.choices[0]?.delta.content ?? "";
      }
      expect(text).toBe(DEFAULT_MOCK_REPLY);
      expect(chunks).toBeGreaterThan(2);
    });

    it("reads the key's usage back through the client", async () => {
      // Settlements are written in batches: wait until both requests are settled (no quota
      // held by a reservation any more).
      const settled = (v: { used_quota: number; remain_quota: number }) =>
        v.used_quota > 0 && v.remain_quota === QUOTA - v.used_quota;
      let view = await client.tokens.get(keyId);
      for (let i = 0; i < 50 && !settled(view); i++) {
        await new Promise((r) => setTimeout(r, 100));
        view = await client.tokens.get(keyId);
      }
      expect(view.used_quota).toBeGreaterThan(0);
      expect(view.remain_quota).toBe(QUOTA - view.used_quota);
      expect(view.accessed_time).toBeGreaterThan(0);
    });

    it("applies a management change on the next request (disable, then enable the key)", async () => {
      await client.tokens.setStatus(keyId, 2);
      await expect(
        openai().chat.completions.create({
          model: model(),
          messages: [{ role: "user", content: "x" }],
        }),
      ).rejects.toMatchObject({ status: expect.any(Number) });
      const refused = await fetch(`${target().root}/v1/chat/completions`, {
        method: "POST",
        headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
        body: JSON.stringify({ model: model(), messages: [{ role: "user", content: "x" }] }),
      });
      expect([401, 403]).toContain(refused.status);
      expect(((await refused.json()) as { error: { code: string } }).error.code).toBe(
        "key_disabled",
      );
      await client.tokens.setStatus(keyId, 1);
      const again = await openai().chat.completions.create({
        model: model(),
        messages: [{ role: "user", content: "Back again" }],
      });
      expect(again.choices[0]?.message.content).toBe(DEFAULT_MOCK_REPLY);
    });
  });
}
