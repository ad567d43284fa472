/** `client.management` against a real gateway: settings, lists, auth files, logins, usage. */
import type { ManagementSettingName } from "@tokenpool/core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Client, createClient, isTokenpoolError, type TokenpoolError } from "../src/index.js";
import { startGateway, type TestGateway } from "./setup.js";

let g: TestGateway;
let client: Client;

beforeAll(async () => {
  g = await startGateway();
  client = createClient({ baseUrl: g.base, managementKey: g.managementKey });
});

afterAll(() => g.close());

async function rejection(p: Promise<unknown>): Promise<TokenpoolError> {
  try {
    await p;
  } catch (e) {
    expect(isTokenpoolError(e)).toBe(true);
    return e as TokenpoolError;
  }
  throw new Error("expected a rejection");
}

describe("client.management settings", () => {
  const values: { [N in ManagementSettingName]: [unknown, unknown] } = {
    debug: [true, false],
    "force-gpt-5-codex": [true, false],
    "proxy-url": ["http://127.0.0.1:3128", ""],
    "quota-exceeded/switch-project": [false, true],
    "quota-exceeded/switch-preview-model": [false, true],
    "request-retry": [7, 2],
    "request-log": [true, false],
    "allow-localhost-unauthenticated": [true, false],
    "usage-retention-days": [3, 0],
    "group-limits": [{ gold: { rpm_limit: 5, max_concurrency: 2 } }, {}],
    "quota-refill-time-zone": ["Asia/Shanghai", "UTC"],
    "usage-statistics-enabled": [false, true],
    "logging-to-file": [true, false],
  };

  it("round-trips every scalar setting through set and get", async () => {
    for (const [name, [a, b]] of Object.entries(values) as [ManagementSettingName, [any, any]][]) {
      const before = await client.management.settings.get(name);
      expect(await client.management.settings.set(name, a)).toEqual({ status: "ok" });
      expect(await client.management.settings.get(name)).toEqual(a);
      await client.management.settings.set(name, b);
      expect(await client.management.settings.get(name)).toEqual(b);
      if (before !== undefined) await client.management.settings.set(name, before);
    }
  });

  it("rejects a value of the wrong type with the management error body", async () => {
    const e = await rejection(client.management.settings.set("request-retry", -1));
    expect(e.status).toBe(400);
    expect(e.message).toBe("invalid body");
    expect(e.body).toEqual({ error: "invalid body" });
  });

  it("clears the proxy with deleteProxyUrl and shows settings in config()", async () => {
    await client.management.settings.set("proxy-url", "socks5://127.0.0.1:1080");
    expect((await client.management.config())["proxy-url"]).toBe("socks5://127.0.0.1:1080");
    await client.management.settings.deleteProxyUrl();
    const config = await client.management.config();
    expect(config["proxy-url"]).toBe("");
    expect(config["quota-exceeded"]).toEqual(expect.objectContaining({ "switch-project": true }));
  });
});

describe("client.management lists", () => {
  it("edits api-keys with put, patch and delete, and they work as downstream keys", async () => {
    const keys = client.management.apiKeys;
    await keys.put(["sk-list-aaaaaaaaaaaaaaaa", "sk-list-bbbbbbbbbbbbbbbb"]);
    expect(await keys.get()).toEqual(["sk-list-aaaaaaaaaaaaaaaa", "sk-list-bbbbbbbbbbbbbbbb"]);
    await keys.patch({ old: "sk-list-aaaaaaaaaaaaaaaa", new: "sk-list-cccccccccccccccc" });
    await keys.patch({ index: 1, value: "sk-list-dddddddddddddddd" });
    expect(await keys.get()).toEqual(["sk-list-cccccccccccccccc", "sk-list-dddddddddddddddd"]);
    const models = await client.proxy("sk-list-cccccccccccccccc").models();
    expect(models).toMatchObject({ object: "list", data: expect.any(Array) });
    await keys.delete({ index: 0 });
    await keys.delete({ value: "sk-list-dddddddddddddddd" });
    expect(await keys.get()).toEqual([]);
    // CLIProxyAPI's answers: an unknown value is a no-op, an index out of range a 400.
    await keys.delete({ value: "nope" });
    expect((await rejection(keys.delete({ index: 5 }))).status).toBe(400);
  });

  it("edits generative-language-api-key", async () => {
    const gl = client.management.generativeLanguageApiKeys;
    await gl.put(["AIza-one", "AIza-two"]);
    await gl.patch({ index: 0, value: "AIza-uno" });
    expect(await gl.get()).toEqual(["AIza-uno", "AIza-two"]);
    await gl.put([]);
    expect(await client.management.stringList("generative-language-api-key").get()).toEqual([]);
  });

  it("edits claude-api-key, codex-api-key and openai-compatibility", async () => {
    const claude = client.management.claudeApiKeys;
    await claude.put([
      { "api-key": "sk-ant-one", "base-url": "" },
      { "api-key": "sk-ant-two", "base-url": "https://claude.example.com" },
    ]);
    expect((await claude.get()).map((i) => i["api-key"])).toEqual(["sk-ant-one", "sk-ant-two"]);
    await claude.patch({ match: "sk-ant-one", value: { "api-key": "sk-ant-uno", "base-url": "" } });
    await claude.delete({ "api-key": "sk-ant-two" });
    expect(await claude.get()).toEqual([expect.objectContaining({ "api-key": "sk-ant-uno" })]);
    await claude.delete({ index: 0 });

    const codex = client.management.configList("codex-api-key");
    await codex.put([{ "api-key": "sk-codex-one", "base-url": "" }]);
    expect(await client.management.codexApiKeys.get()).toHaveLength(1);
    await codex.put([]);

    // The gateway's own OpenAI credential is an entry of this list too: keep it.
    const compat = client.management.openaiCompatibility;
    const current = await compat.get();
    expect(current).toHaveLength(1);
    await compat.put([
      ...current,
      {
        name: "friend",
        "base-url": "https://friend.example.com/v1",
        "api-keys": ["sk-f1", "sk-f2"],
        models: [{ name: "up-model", alias: "friend-model" }],
      },
    ]);
    await compat.patch({
      name: "friend",
      value: {
        name: "friend",
        "base-url": "https://friend.example.com/v1",
        "api-keys": ["sk-f3"],
        models: [],
      },
    });
    expect((await compat.get())[1]!["api-keys"]).toEqual(["sk-f3"]);
    expect((await client.management.config())["openai-compatibility"]).toHaveLength(2);
    await compat.delete({ name: "friend" });
    expect(await compat.get()).toEqual(current);
    expect((await rejection(compat.put([{ name: "" } as never]))).status).toBe(400);
  });
});

describe("client.management auth files and logins", () => {
  it("uploads, lists, downloads and deletes auth files", async () => {
    const files = client.management.authFiles;
    await files.upload("claude-me.json", {
      type: "claude",
      access_token: "sk-ant-oat-access",
      refresh_token: "sk-ant-ort-refresh",
      email: "me@example.com",
    });
    await files.upload("codex-me.json", JSON.stringify({ type: "codex", refresh_token: "rt-x" }));
    const list = await files.list();
    expect(list.map((f) => f.name).sort()).toEqual(["claude-me.json", "codex-me.json"]);
    expect(list.find((f) => f.name === "claude-me.json")!.type).toBe("claude");
    const file = await files.download("claude-me.json");
    expect(file).toMatchObject({ type: "claude", refresh_token: "sk-ant-ort-refresh" });
    await files.delete("claude-me.json");
    expect((await rejection(files.download("claude-me.json"))).status).toBe(404);
    expect(await files.deleteAll()).toEqual({ status: "ok", deleted: 1 });
    expect((await rejection(files.upload("../evil.json", { type: "claude" }))).status).toBe(400);
  });

  it("starts a login and reads its status", async () => {
    const start = await client.management.authUrl("anthropic");
    expect(start.status).toBe("ok");
    expect(new URL(start.url).searchParams.get("state")).toBe(start.state);
    expect(await client.management.getAuthStatus(start.state)).toEqual({ status: "wait" });
    expect(await client.management.getAuthStatus("unknown")).toMatchObject({ status: "error" });
    const gemini = await client.management.authUrl("gemini-cli", { projectId: "my-proj" });
    expect(gemini.url).toContain("accounts.google.com");
    const web = await client.management.geminiWebToken({ secure_1psid: "psid-value" });
    expect(web.file).toMatch(/^gemini-web-.*\.json$/);
  });
});

describe("client.management usage", () => {
  it("counts a request sent through the proxy", async () => {
    const t = await client.tokens.create({ name: "usage", unlimited_quota: true });
    await client.proxy(t.key).chat({
      model: "gpt-4o-mini",
      messages: [{ role: "user", content: "count me" }],
    });
    const usage = await client.management.usage();
    expect(usage.total_requests).toBeGreaterThanOrEqual(1);
    expect(usage.total_tokens).toBeGreaterThan(0);
    expect(Object.keys(usage.apis).join(" ")).toContain("/v1/chat/completions");
  });

  it("answers 401 with the server's message for a wrong management key", async () => {
    const wrong = createClient({ baseUrl: g.base, managementKey: "tp-mgmt-wrong" });
    const e = await rejection(wrong.management.usage());
    expect(e.status).toBe(401);
    expect(e.message).toBe("invalid management key");
    const none = createClient({ baseUrl: g.base });
    expect((await rejection(none.management.config())).message).toBe("missing management key");
  });
});
