/**
 * The data-loss test of issue 17: CLIProxyAPI's management UIs (v0.1.3, v0.1.15, HEAD) replay
 * their exact request bodies (docs: /work/notes/cpa-ui-contract.md sections 3, 4, 5.7) against
 * a real gateway over HTTP, in the older shape after a read in the newer one and the reverse;
 * every stored secret, proxy URL, header, model and exclusion must still be there.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import { toNodeHandler } from "../src/node.js";
import type { CredentialRecord } from "../src/store/types.js";

let gateway: Gateway;
let server: Server;
let base: string;
let mgmt: string;

beforeEach(async () => {
  gateway = createGateway({
    store: memoryStore(),
    secret: "cpa-lists-secret-0123456789-0123456789-abcdef",
    logger: false,
  });
  await gateway.ready;
  mgmt = await gateway.management.generateKey();
  server = createServer(toNodeHandler(gateway));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v0/management`;
});

afterEach(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  await gateway.close();
});

/** One call as the UIs make it: Bearer key, JSON content type (v0.1.x also on GET/DELETE). */
async function call(method: string, path: string, body?: unknown) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${mgmt}`, "content-type": "application/json" },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const OK = { status: 200, body: { status: "ok" } };
const creds = (provider: string): CredentialRecord[] =>
  gateway.credentials.pool.list().filter((c) => c.provider === provider && c.kind === "api-key");
const byKey = (provider: string, key: string) =>
  creds(provider).find((c) => c.secret.apiKey === key);

const PROXY = "socks5://127.0.0.1:1080";

describe("openai-compatibility: api-keys ↔ api-key-entries", () => {
  const seeded = {
    name: "openrouter",
    "base-url": "https://openrouter.ai/api/v1",
    "api-key-entries": [
      { "api-key": "sk-or-1", "proxy-url": PROXY },
      { "api-key": "sk-or-2", "proxy-url": "" },
    ],
    models: [{ name: "moonshotai/kimi-k2:free", alias: "kimi-k2" }],
    headers: { "X-Title": "tokenpool" },
  };

  beforeEach(async () => {
    expect(await call("PUT", "/openai-compatibility", [seeded])).toEqual(OK);
  });

  const expectAllKept = () => {
    expect(byKey("openai", "sk-or-1")?.proxyUrl).toBe(PROXY);
    expect(byKey("openai", "sk-or-2")?.proxyUrl).toBe("");
    for (const c of creds("openai").filter((x) => x.label === "openrouter")) {
      expect(c.headers).toEqual({ "X-Title": "tokenpool" });
      expect(c.models).toEqual([{ name: "moonshotai/kimi-k2:free", alias: "kimi-k2" }]);
    }
  };

  it("GET answers both shapes, in /openai-compatibility and in /config", async () => {
    const { body } = await call("GET", "/openai-compatibility");
    const entry = (body["openai-compatibility"] as Record<string, unknown>[])[0]!;
    expect(entry["api-keys"]).toEqual(["sk-or-1", "sk-or-2"]);
    expect(entry["api-key-entries"]).toEqual(seeded["api-key-entries"]);
    const config = (await call("GET", "/config")).body;
    expect(config["openai-compatibility"]).toEqual(body["openai-compatibility"]);
  });

  it("seed-era client: reads, then PUTs `api-keys` strings only — the proxies stay with their keys", async () => {
    const read = (await call("GET", "/openai-compatibility")).body[
      "openai-compatibility"
    ] as Record<string, unknown>[];
    const { "api-key-entries": _e, ...old } = read[0]!;
    // It adds a key in the seed's shape and knows nothing of api-key-entries.
    expect(
      await call("PUT", "/openai-compatibility", [
        { ...old, "api-keys": ["sk-or-1", "sk-or-2", "sk-or-3"] },
      ]),
    ).toEqual(OK);
    expectAllKept();
    expect(byKey("openai", "sk-or-3")?.proxyUrl).toBe("");
    // The seed's PATCH by name with only name/base-url/models keeps keys and headers.
    expect(
      await call("PATCH", "/openai-compatibility", {
        name: "openrouter",
        value: {
          name: "openrouter",
          "base-url": "https://openrouter.ai/api/v1",
          models: [{ name: "moonshotai/kimi-k2:free", alias: "kimi-k2" }],
        },
      }),
    ).toEqual(OK);
    expectAllKept();
    expect(creds("openai")).toHaveLength(3);
  });

  it("seed-era client echoing both shapes: the edited one wins, the echo is not a wipe", async () => {
    const read = (await call("GET", "/openai-compatibility")).body[
      "openai-compatibility"
    ] as Record<string, unknown>[];
    // Edits api-keys, passes api-key-entries through unchanged from the read.
    expect(
      await call("PUT", "/openai-compatibility", [
        { ...read[0], "api-keys": ["sk-or-1", "sk-or-2", "sk-or-3"] },
      ]),
    ).toEqual(OK);
    expect(creds("openai").map((c) => c.secret.apiKey)).toEqual(["sk-or-1", "sk-or-2", "sk-or-3"]);
    expectAllKept();
  });

  it("v0.1.3 / v0.1.15: PATCH {index, value:full} from the form keeps every key", async () => {
    // The UI rebuilt the entry from GET's api-key-entries (it renders them; v0.1.15 falls back
    // to api-keys) and sends name, base-url, api-key-entries, models — no headers.
    const value = {
      name: "openrouter",
      "base-url": "https://openrouter.ai/api/v1",
      "api-key-entries": [
        { "api-key": "sk-or-1", "proxy-url": PROXY },
        { "api-key": "sk-or-2", "proxy-url": "" },
      ],
      models: [{ name: "moonshotai/kimi-k2:free", alias: "kimi-k2" }],
    };
    expect(await call("PATCH", "/openai-compatibility", { index: 0, value })).toEqual(OK);
    expectAllKept();
    // v0.1.3 add: GET, then PUT the array with a new entry appended.
    const read = (await call("GET", "/openai-compatibility")).body["openai-compatibility"];
    expect(
      await call("PUT", "/openai-compatibility", [
        ...(read as unknown[]),
        {
          name: "iflow",
          "base-url": "https://apis.iflow.cn/v1",
          "api-key-entries": [{ "api-key": "sk-if-1", "proxy-url": "" }],
          models: [{ name: "glm-4.5" }],
        },
      ]),
    ).toEqual(OK);
    expectAllKept();
    expect(byKey("openai", "sk-if-1")?.label).toBe("iflow");
    // Delete by name (old UIs): the other provider keeps everything.
    expect(await call("DELETE", "/openai-compatibility?name=iflow")).toEqual(OK);
    expectAllKept();
  });

  it("HEAD UI: read-modify-write PUT over GET /config's raw record, and the {disabled} toggle", async () => {
    const raw = (await call("GET", "/config")).body["openai-compatibility"] as Record<
      string,
      unknown
    >[];
    // Its payload merged over the raw record: api-keys (unknown to it) is echoed unchanged,
    // api-key-entries carries its edit (a third key).
    const payload = {
      ...raw[0],
      "api-key-entries": [
        { "api-key": "sk-or-1", "proxy-url": PROXY },
        { "api-key": "sk-or-2" },
        { "api-key": "sk-or-3", "proxy-url": "http://10.0.0.1:3128" },
      ],
      headers: { "X-Title": "tokenpool" },
      models: [{ name: "moonshotai/kimi-k2:free", alias: "kimi-k2" }],
    };
    expect(await call("PUT", "/openai-compatibility", [payload])).toEqual(OK);
    expectAllKept();
    expect(byKey("openai", "sk-or-3")?.proxyUrl).toBe("http://10.0.0.1:3128");

    expect(
      await call("PATCH", "/openai-compatibility", { index: 0, value: { disabled: true } }),
    ).toEqual(OK);
    expect(creds("openai").every((c) => !c.enabled)).toBe(true);
    expectAllKept();
    const entry = (
      (await call("GET", "/openai-compatibility")).body["openai-compatibility"] as Record<
        string,
        unknown
      >[]
    )[0]!;
    expect(entry.disabled).toBe(true);
    expect(entry["api-keys"]).toEqual(["sk-or-1", "sk-or-2", "sk-or-3"]);
    expect(
      await call("PATCH", "/openai-compatibility", { index: 0, value: { disabled: false } }),
    ).toEqual(OK);
    expect(creds("openai").every((c) => c.enabled)).toBe(true);
    // The HEAD UI's delete.
    expect(await call("DELETE", "/openai-compatibility?index=0")).toEqual(OK);
    expect(creds("openai")).toEqual([]);
  });

  it("an explicit empty key list wipes; null and an absent one keep; contradictions are a 400", async () => {
    const patch = (value: unknown) => call("PATCH", "/openai-compatibility", { index: 0, value });
    expect(await patch({ "api-keys": null, "api-key-entries": null })).toEqual(OK);
    expectAllKept();
    const bad = await patch({
      "api-keys": ["sk-x"],
      "api-key-entries": [{ "api-key": "sk-y" }],
    });
    expect(bad.status).toBe(400);
    expect(String(bad.body.error)).toMatch(/^invalid body: .*api-keys/);
    expectAllKept();
    // Unknown fields with a value are refused, never silently dropped.
    const unknown = await patch({ prefix: "team-a" });
    expect(unknown).toEqual({
      status: 400,
      body: {
        error:
          "invalid body: `prefix` is not supported by tokenpool (sent with a value, it would be lost)",
      },
    });
    // ... while empty ones (nothing to lose) and the response-only auth-index are accepted.
    expect(await patch({ prefix: "", "test-model": null, "auth-index": "3" })).toEqual(OK);
    expectAllKept();
    expect(await patch({ "api-key-entries": [] })).toEqual(OK);
    expect(creds("openai").filter((c) => c.secret.apiKey !== undefined)).toEqual([]);
    expect((await call("GET", "/openai-compatibility")).body["openai-compatibility"]).toEqual([
      expect.objectContaining({ name: "openrouter", "api-keys": [], "api-key-entries": [] }),
    ]);
  });
});

describe("gemini: generative-language-api-key ↔ gemini-api-key", () => {
  const objects = [
    {
      "api-key": "AIza-1",
      "base-url": "https://gemini.example.com",
      "proxy-url": PROXY,
      headers: { "X-Goog-User-Project": "p1" },
      "excluded-models": ["gemini-1.5-pro"],
      models: [{ name: "gemini-2.5-pro", alias: "g-pro" }],
    },
    { "api-key": "AIza-2", "base-url": "" },
  ];

  const expectAllKept = () => {
    const c = byKey("gemini", "AIza-1")!;
    expect(c.baseUrl).toBe("https://gemini.example.com");
    expect(c.proxyUrl).toBe(PROXY);
    expect(c.headers).toEqual({ "X-Goog-User-Project": "p1" });
    expect(c.excludedModels).toEqual(["gemini-1.5-pro"]);
    expect(c.models).toEqual([{ name: "gemini-2.5-pro", alias: "g-pro" }]);
  };

  it("HEAD UI writes objects; v0.1.3/v0.1.15 read the strings and add, edit, delete: nothing else moves", async () => {
    expect(await call("PUT", "/gemini-api-key", objects)).toEqual(OK);
    const config = (await call("GET", "/config")).body;
    expect(config["gemini-api-key"]).toEqual(objects);
    expect(config["generative-language-api-key"]).toEqual(["AIza-1", "AIza-2"]);
    // v0.1.3 add: GET the strings, PUT them back with one more.
    const read = (await call("GET", "/generative-language-api-key")).body[
      "generative-language-api-key"
    ] as string[];
    expect(read).toEqual(["AIza-1", "AIza-2"]);
    expect(await call("PUT", "/generative-language-api-key", [...read, "AIza-3"])).toEqual(OK);
    expectAllKept();
    // A PUT that drops the first string by rewriting the list does not move AIza-1's fields
    // onto another key.
    expect(await call("PUT", "/generative-language-api-key", ["AIza-2", "AIza-3"])).toEqual(OK);
    expect(byKey("gemini", "AIza-2")!.headers).toEqual({});
    expect(await call("PUT", "/generative-language-api-key", ["AIza-1"])).toEqual(OK);
    expect(await call("PUT", "/gemini-api-key", objects)).toEqual(OK);
    // Edit: PATCH {old, new} renames the key in place, keeping its endpoint and headers.
    expect(
      await call("PATCH", "/generative-language-api-key", { old: "AIza-1", new: "AIza-1b" }),
    ).toEqual(OK);
    const renamed = byKey("gemini", "AIza-1b")!;
    expect(renamed.baseUrl).toBe("https://gemini.example.com");
    expect(renamed.headers).toEqual({ "X-Goog-User-Project": "p1" });
    expect(
      await call("PATCH", "/generative-language-api-key", { old: "AIza-1b", new: "AIza-1" }),
    ).toEqual(OK);
    // Delete a value that is not there: a 200 no-op; a real one removes only it.
    expect(await call("DELETE", "/generative-language-api-key?value=AIza-none")).toEqual(OK);
    expect(await call("DELETE", "/generative-language-api-key?value=AIza-2")).toEqual(OK);
    expectAllKept();
    expect(creds("gemini").map((c) => c.secret.apiKey)).toEqual(["AIza-1"]);
  });

  it("strings written by an old UI, then objects read and written by the HEAD UI: keys kept", async () => {
    expect(await call("PUT", "/generative-language-api-key", ["AIza-a", "AIza-b"])).toEqual(OK);
    const raw = (await call("GET", "/config")).body["gemini-api-key"] as Record<string, unknown>[];
    expect(raw).toEqual([
      { "api-key": "AIza-a", "base-url": "" },
      { "api-key": "AIza-b", "base-url": "" },
    ]);
    // HEAD UI create: append to the raw list and PUT the whole array.
    expect(
      await call("PUT", "/gemini-api-key", [
        ...raw,
        { "api-key": "AIza-c", headers: { "X-Team": "a" } },
      ]),
    ).toEqual(OK);
    expect(
      (await call("GET", "/generative-language-api-key")).body["generative-language-api-key"],
    ).toEqual(["AIza-a", "AIza-b", "AIza-c"]);
    // HEAD UI delete: ?api-key=&base-url= with an empty base-url (the default endpoint).
    expect(await call("DELETE", "/gemini-api-key?api-key=AIza-a&base-url=")).toEqual(OK);
    expect(await call("DELETE", "/gemini-api-key?api-key=AIza-a&base-url=")).toEqual({
      status: 404,
      body: { error: "item not found" },
    });
    // A PATCH that sends only the changed field (the HEAD server's merge patch).
    expect(
      await call("PATCH", "/gemini-api-key", { match: "AIza-c", value: { "proxy-url": PROXY } }),
    ).toEqual(OK);
    const c = byKey("gemini", "AIza-c")!;
    expect(c.headers).toEqual({ "X-Team": "a" });
    expect(c.proxyUrl).toBe(PROXY);
    expect(creds("gemini").map((x) => x.secret.apiKey)).toEqual(["AIza-b", "AIza-c"]);
  });

  it("several entries with one key: the HEAD server's 400s instead of a guess", async () => {
    await call("PUT", "/gemini-api-key", [
      { "api-key": "AIza-d", "base-url": "https://a.example.com" },
      { "api-key": "AIza-d", "base-url": "https://b.example.com" },
    ]);
    expect(await call("DELETE", "/gemini-api-key?api-key=AIza-d")).toEqual({
      status: 400,
      body: { error: "multiple items match api-key; base-url is required" },
    });
    expect(await call("PATCH", "/gemini-api-key", { match: "AIza-d", value: {} })).toEqual({
      status: 400,
      body: { error: "multiple items match; index is required" },
    });
    // An old UI's string PUT keeps both (the same key twice is two credentials).
    expect(await call("PUT", "/generative-language-api-key", ["AIza-d"])).toEqual(OK);
    expect(creds("gemini").map((c) => c.baseUrl)).toEqual([
      "https://a.example.com",
      "https://b.example.com",
    ]);
    expect(
      await call("DELETE", "/gemini-api-key?api-key=AIza-d&base-url=https://b.example.com"),
    ).toEqual(OK);
    expect(creds("gemini").map((c) => c.baseUrl)).toEqual(["https://a.example.com"]);
  });
});

describe.each([
  ["codex-api-key", "codex"],
  ["claude-api-key", "anthropic"],
] as const)("%s entries with fields the older UIs do not show", (list, provider) => {
  const full = {
    "api-key": "sk-full",
    "base-url": "https://relay.example.com/v1",
    "proxy-url": PROXY,
    headers: { "X-Relay-Token": "relay-secret" },
    models: [{ name: "model-up", alias: "model-x" }],
    "excluded-models": ["model-old"],
  };

  const expectAllKept = (key = "sk-full") => {
    const c = byKey(provider, key)!;
    expect(c.baseUrl).toBe("https://relay.example.com/v1");
    expect(c.proxyUrl).toBe(PROXY);
    expect(c.headers).toEqual({ "X-Relay-Token": "relay-secret" });
    expect(c.models).toEqual([{ name: "model-up", alias: "model-x" }]);
    expect(c.excludedModels).toEqual(["model-old"]);
  };

  beforeEach(async () => {
    // The HEAD UI wrote an entry with headers, models and exclusions.
    expect(await call("PUT", `/${list}`, [full])).toEqual(OK);
  });

  it("v0.1.3: edit by PATCH with a fresh object of three fields, add by PUT, delete by api-key", async () => {
    expect(
      await call("PATCH", `/${list}`, {
        index: 0,
        value: { "api-key": "sk-full", "base-url": "https://relay.example.com/v1" },
      }),
    ).toEqual(OK);
    expectAllKept();
    // Add: GET the list, PUT it back with a new entry of the fields the UI knows.
    const read = (await call("GET", `/${list}`)).body[list] as unknown[];
    expect(await call("PUT", `/${list}`, [...read, { "api-key": "sk-new" }])).toEqual(OK);
    expectAllKept();
    // The same PUT from a client that rebuilt the entries with only the fields it shows.
    expect(
      await call("PUT", `/${list}`, [
        { "api-key": "sk-full", "base-url": "https://relay.example.com/v1", "proxy-url": PROXY },
        { "api-key": "sk-new" },
      ]),
    ).toEqual(OK);
    expectAllKept();
    expect(await call("DELETE", `/${list}?api-key=sk-new`)).toEqual(OK);
    expect(await call("DELETE", `/${list}?api-key=sk-gone`)).toEqual(OK);
    expectAllKept();
  });

  it("v0.1.15: GET, then PATCH {index, value: {...original, api-key, base-url, proxy-url}}", async () => {
    const read = (await call("GET", `/${list}`)).body[list] as Record<string, unknown>[];
    expect(read).toEqual([full]);
    expect(
      await call("PATCH", `/${list}`, {
        index: 0,
        value: {
          ...read[0],
          "api-key": "sk-full",
          "base-url": full["base-url"],
          "proxy-url": PROXY,
        },
      }),
    ).toEqual(OK);
    expectAllKept();
    // The key rotated: the entry keeps everything else.
    expect(
      await call("PATCH", `/${list}`, { index: 0, value: { "api-key": "sk-rotated" } }),
    ).toEqual(OK);
    expectAllKept("sk-rotated");
  });

  it("HEAD UI: read-modify-write PUT, then DELETE ?api-key=&base-url=", async () => {
    const raw = (await call("GET", "/config")).body[list] as Record<string, unknown>[];
    expect(
      await call("PUT", `/${list}`, [
        ...raw,
        { "api-key": "sk-b", "base-url": "https://x.example/v1", priority: 2 },
      ]),
    ).toEqual(OK);
    expectAllKept();
    expect(byKey(provider, "sk-b")!.priority).toBe(2);
    expect(await call("DELETE", `/${list}?api-key=sk-b&base-url=https://x.example/v1`)).toEqual(OK);
    expect(await call("DELETE", `/${list}?api-key=sk-full&base-url=`)).toEqual(OK);
    expectAllKept();
    expect(await call("DELETE", `/${list}?index=7`)).toEqual({
      status: 400,
      body: { error: "missing api-key or index" },
    });
  });
});

describe("vertex-api-key and xai-api-key", () => {
  it.each([
    ["vertex-api-key", "vertex"],
    ["xai-api-key", "xai"],
  ] as const)(
    "%s: GET/PUT/PATCH/DELETE over stored credentials, shown in /config",
    async (list, provider) => {
      const entry = {
        "api-key": "vk-1",
        "base-url": "https://zenmux.example.com/api",
        headers: { "X-A": "1" },
        models: [{ name: "gemini-2.5-pro", alias: "vx-pro" }],
      };
      expect(await call("PUT", `/${list}`, [entry])).toEqual(OK);
      expect((await call("GET", `/${list}`)).body).toEqual({ [list]: [entry] });
      expect((await call("GET", "/config")).body[list]).toEqual([entry]);
      expect(
        await call("PATCH", `/${list}`, { match: "vk-1", value: { "proxy-url": PROXY } }),
      ).toEqual(OK);
      expect(byKey(provider, "vk-1")).toMatchObject({ proxyUrl: PROXY, headers: { "X-A": "1" } });
      expect(
        await call("DELETE", `/${list}?api-key=vk-1&base-url=https://zenmux.example.com/api`),
      ).toEqual(OK);
      expect((await call("GET", `/${list}`)).body).toEqual({ [list]: [] });
    },
  );
});

describe("interactions-api-key (GeminiKey)", () => {
  const entry = {
    "api-key": "AIza-i1",
    "base-url": "https://interactions.example.com",
    "proxy-url": PROXY,
    headers: { "X-Goog-User-Project": "p1" },
    models: [{ name: "gemini-2.5-pro", alias: "i-pro" }],
    "excluded-models": ["gemini-1.5-pro"],
  };

  it("stored as gemini-interactions credentials, shown in GET and /config, apart from gemini-api-key", async () => {
    expect(await call("PUT", "/gemini-api-key", [{ "api-key": "AIza-g" }])).toEqual(OK);
    expect(await call("PUT", "/interactions-api-key", [entry])).toEqual(OK);
    expect((await call("GET", "/interactions-api-key")).body).toEqual({
      "interactions-api-key": [entry],
    });
    const config = (await call("GET", "/config")).body;
    expect(config["interactions-api-key"]).toEqual([entry]);
    expect(config["gemini-api-key"]).toEqual([{ "api-key": "AIza-g", "base-url": "" }]);
    expect(config["generative-language-api-key"]).toEqual(["AIza-g"]);
    expect(byKey("gemini-interactions", "AIza-i1")).toMatchObject({
      baseUrl: "https://interactions.example.com",
      proxyUrl: PROXY,
    });
  });

  it("HEAD UI: a read-modify-write PUT and a PATCH merge over the stored item; DELETE as gemini-api-key", async () => {
    await call("PUT", "/interactions-api-key", [entry]);
    // The HEAD UI's payload omits the fields it does not manage: they are kept.
    expect(
      await call("PUT", "/interactions-api-key", [
        { "api-key": "AIza-i1", "base-url": "https://interactions.example.com", priority: 2 },
        { "api-key": "AIza-i2" },
      ]),
    ).toEqual(OK);
    expect(byKey("gemini-interactions", "AIza-i1")).toMatchObject({
      proxyUrl: PROXY,
      headers: { "X-Goog-User-Project": "p1" },
      excludedModels: ["gemini-1.5-pro"],
      priority: 2,
    });
    expect(
      await call("PATCH", "/interactions-api-key", { match: "AIza-i2", value: { weight: 3 } }),
    ).toEqual(OK);
    expect(byKey("gemini-interactions", "AIza-i2")).toMatchObject({
      weight: 3,
      baseUrl: "https://generativelanguage.googleapis.com",
    });
    expect(
      await call("PUT", "/interactions-api-key", [{ "api-key": "AIza-i2", prefix: "team-a" }]),
    ).toMatchObject({ status: 400, body: { error: expect.stringContaining("`prefix`") } });
    expect(creds("gemini-interactions")).toHaveLength(2);
    expect(await call("DELETE", "/interactions-api-key?api-key=AIza-x&base-url=")).toEqual({
      status: 404,
      body: { error: "item not found" },
    });
    expect(await call("DELETE", "/interactions-api-key?api-key=AIza-i2&base-url=")).toEqual(OK);
    expect(creds("gemini-interactions").map((c) => c.secret.apiKey)).toEqual(["AIza-i1"]);
    await call("PUT", "/interactions-api-key", [
      { "api-key": "AIza-d", "base-url": "https://a.example.com" },
      { "api-key": "AIza-d", "base-url": "https://b.example.com" },
    ]);
    expect(await call("DELETE", "/interactions-api-key?api-key=AIza-d")).toEqual({
      status: 400,
      body: { error: "multiple items match api-key; base-url is required" },
    });
    expect(await call("PATCH", "/interactions-api-key", { match: "AIza-d", value: {} })).toEqual({
      status: 400,
      body: { error: "multiple items match; index is required" },
    });
    expect(creds("gemini")).toHaveLength(0);
  });
});

describe("string lists: CLIProxyAPI's delete and patch answers", () => {
  it("api-keys: DELETE of an unknown value is a 200 no-op; bad index is a 400", async () => {
    expect(await call("PUT", "/api-keys", ["k-one-0123456789", "k-two-0123456789"])).toEqual(OK);
    expect(await call("DELETE", "/api-keys?value=k-none")).toEqual(OK);
    expect(await call("DELETE", "/api-keys?index=9")).toEqual({
      status: 400,
      body: { error: "missing index or value" },
    });
    expect(await call("DELETE", "/api-keys")).toEqual({
      status: 400,
      body: { error: "missing index or value" },
    });
    expect(await call("PATCH", "/api-keys", { index: 9, value: "k-x-0123456789" })).toEqual({
      status: 400,
      body: { error: "missing fields" },
    });
    expect((await call("GET", "/api-keys")).body["api-keys"]).toEqual([
      "k-one-0123456789",
      "k-two-0123456789",
    ]);
  });
});
