/**
 * CLIProxyAPI's management center against tokenpool: the contract replay (issue 17).
 *
 * Each UI version's session is replayed against a real server (node:http on port 0, a mock
 * upstream and a mock OAuth server from `@tokenpool/testing`, traffic so that usage and logs
 * have data), call by call in the order a user makes them, with the headers that version sends,
 * and every answer is checked for its status, content type and the fields the page reads
 * (reference: notes/cpa-ui-contract.md). One file per version, each listing every call of the
 * reference's call list for that version and what is not replayed:
 *
 * | file                    | UI version                    | how it is served                          |
 * | ----------------------- | ----------------------------- | ----------------------------------------- |
 * | cpa-ui-v0.1.3.test.ts   | v0.1.3 (Oct 2025, vanilla JS) | another origin: every call preflighted    |
 * | cpa-ui-v0.1.15.test.ts  | v0.1.15 (Nov 2025)            | same origin, page at /management.html     |
 * | cpa-ui-head.test.ts     | HEAD (Aug 2026, React/axios)  | another origin: every call preflighted    |
 * | cpa-ui-harness.ts       | the server, the sessions and the checks every call gets (version headers, CORS, JSON on every 2xx of a v0.1.x `makeRequest`, never a 401 with the key) |
 *
 * Not replayed anywhere (see each file's list): HEAD's `interactions-api-key`,
 * `model-definitions/:channel` and `vertex/import` (not in tokenpool: known gaps, "missing" in
 * docs/dialects.md's route table); the plugin routes and the plugin store (no plugins,
 * `X-CPA-SUPPORT-PLUGIN: 0`; the store needs the network).
 *
 * This file: one server, the versions one after the other on the same lists — no version's
 * write drops what another wrote (the field-by-field data-loss cases are
 * cpa-lists-data-loss.test.ts; this is the end-to-end check).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ContractServer,
  PANEL,
  startContractServer,
  UPSTREAM_KEY,
  uiSession,
} from "./cpa-ui-harness.js";

let srv: ContractServer;
let old: ReturnType<typeof uiSession>;
let mid: ReturnType<typeof uiSession>;
let head: ReturnType<typeof uiSession>;

beforeAll(async () => {
  srv = await startContractServer();
  old = uiSession(srv, "v0.1.3", PANEL);
  mid = uiSession(srv, "v0.1.15");
  head = uiSession(srv, "HEAD", PANEL);
});
afterAll(async () => {
  await srv.close();
});

const stripIndex = ({ "auth-index": _, ...rest }: any) => rest;

describe("v0.1.3, v0.1.15 and HEAD sessions on the same lists keep every key and field", () => {
  it("v0.1.3 writes, HEAD edits by read-modify-write, v0.1.3 reads everything back", async () => {
    await old.ok("PUT", "/api-keys", ["sk-client-old"]);
    await old.ok("PUT", "/generative-language-api-key", ["AIza-old-1", "AIza-old-2"]);
    await old.ok("PUT", "/codex-api-key", [
      {
        "api-key": "sk-codex-old",
        "base-url": "https://codex.example.com/v1",
        "proxy-url": "http://127.0.0.1:3128",
      },
    ]);
    const compat = (await old.ok("GET", "/openai-compatibility"))["openai-compatibility"];
    await old.ok("PUT", "/openai-compatibility", [
      ...compat,
      {
        name: "shared",
        "base-url": srv.mock.url,
        "api-key-entries": [
          { "api-key": "sk-shared-1", "proxy-url": "http://127.0.0.1:3128" },
          { "api-key": "sk-shared-2", "proxy-url": "" },
        ],
        models: [{ name: "gpt-4o-mini", alias: "mini" }],
      },
    ]);

    // HEAD: GET /config raw, its payload merged over each record, whole lists PUT.
    const raw = await head.ok("GET", "/config");
    const codex = raw["codex-api-key"].map(stripIndex);
    codex[0] = { ...codex[0], priority: 2, headers: { "X-Team": "head" } };
    await head.ok("PUT", "/codex-api-key", codex);
    const gemini = raw["gemini-api-key"].map(stripIndex);
    gemini[0] = { ...gemini[0], "base-url": "https://gemini.example.com", headers: { "X-G": "1" } };
    await head.ok("PUT", "/gemini-api-key", [
      ...gemini,
      { "api-key": "AIza-head", "excluded-models": ["gemini-1.5-*"] },
    ]);
    const openai = raw["openai-compatibility"].map(stripIndex);
    const at = openai.findIndex((p: any) => p.name === "shared");
    openai[at] = {
      ...openai[at],
      headers: { "X-Title": "shared" },
      "api-key-entries": [
        ...openai[at]["api-key-entries"],
        { "api-key": "sk-shared-3", weight: 2 },
      ],
    };
    await head.ok("PUT", "/openai-compatibility", openai);
    await head.ok("PATCH", "/openai-compatibility", { index: at, value: { disabled: true } });
    await head.ok("PATCH", "/openai-compatibility", { index: at, value: { disabled: false } });

    // v0.1.3's view: every key of both sessions, the proxies it set.
    const c = await old.ok("GET", "/config");
    expect(c["api-keys"]).toEqual(["sk-client-old"]);
    expect(c["generative-language-api-key"]).toEqual(["AIza-old-1", "AIza-old-2", "AIza-head"]);
    expect(c["codex-api-key"]).toEqual([
      expect.objectContaining({
        "api-key": "sk-codex-old",
        "base-url": "https://codex.example.com/v1",
        "proxy-url": "http://127.0.0.1:3128",
        priority: 2,
        headers: { "X-Team": "head" },
      }),
    ]);
    const shared = c["openai-compatibility"].find((p: any) => p.name === "shared");
    expect(shared["api-key-entries"]).toEqual([
      { "api-key": "sk-shared-1", "proxy-url": "http://127.0.0.1:3128" },
      { "api-key": "sk-shared-2", "proxy-url": "" },
      { "api-key": "sk-shared-3", "proxy-url": "", weight: 2 },
    ]);
    expect(shared).toMatchObject({
      headers: { "X-Title": "shared" },
      models: [{ name: "gpt-4o-mini", alias: "mini" }],
    });
    // The seeded provider is untouched by all of it.
    expect(c["openai-compatibility"].find((p: any) => p.name === "mock")).toMatchObject({
      "api-key-entries": [expect.objectContaining({ "api-key": UPSTREAM_KEY })],
    });
  });

  it("then the old UIs edit from their forms: what only HEAD showed survives, HEAD sees it all", async () => {
    const c = await old.ok("GET", "/config");
    const at = c["openai-compatibility"].findIndex((p: any) => p.name === "shared");
    const shared = c["openai-compatibility"][at];
    // v0.1.3: PATCH {index, value} with a fresh object of the form's fields only.
    await old.ok("PATCH", "/codex-api-key", {
      index: 0,
      value: { "api-key": "sk-codex-old2", "base-url": "https://codex.example.com/v1" },
    });
    await old.ok("PATCH", "/openai-compatibility", {
      index: at,
      value: {
        name: "shared",
        "base-url": shared["base-url"],
        "api-key-entries": shared["api-key-entries"].map((e: any) => ({
          "api-key": e["api-key"],
          "proxy-url": e["proxy-url"] ?? "",
        })),
        models: shared.models,
      },
    });
    await old.ok("PUT", "/generative-language-api-key", [
      ...c["generative-language-api-key"],
      "AIza-old-3",
    ]);
    await old.ok("PATCH", "/generative-language-api-key", {
      old: "AIza-old-2",
      new: "AIza-old-2b",
    });
    // v0.1.15: GET the list, PATCH with the original entry and the form's three fields.
    const list = (await mid.ok("GET", "/codex-api-key"))["codex-api-key"];
    await mid.ok("PATCH", "/codex-api-key", {
      index: 0,
      value: { ...list[0], "api-key": "sk-codex-old3", "proxy-url": "" },
    });

    const h = await head.ok("GET", "/config");
    expect(h["codex-api-key"]).toEqual([
      expect.objectContaining({
        "api-key": "sk-codex-old3",
        "base-url": "https://codex.example.com/v1",
        priority: 2,
        headers: { "X-Team": "head" },
      }),
    ]);
    expect(h["gemini-api-key"]).toEqual([
      expect.objectContaining({
        "api-key": "AIza-old-1",
        "base-url": "https://gemini.example.com",
        headers: { "X-G": "1" },
      }),
      expect.objectContaining({ "api-key": "AIza-old-2b" }),
      expect.objectContaining({ "api-key": "AIza-head", "excluded-models": ["gemini-1.5-*"] }),
      expect.objectContaining({ "api-key": "AIza-old-3" }),
    ]);
    const after = h["openai-compatibility"].find((p: any) => p.name === "shared");
    expect(after).toMatchObject({ headers: { "X-Title": "shared" } });
    expect(after.disabled === true).toBe(false);
    expect(after["api-key-entries"]).toEqual([
      { "api-key": "sk-shared-1", "proxy-url": "http://127.0.0.1:3128" },
      { "api-key": "sk-shared-2", "proxy-url": "" },
      { "api-key": "sk-shared-3", "proxy-url": "", weight: 2 },
    ]);
    expect(h["api-keys"]).toEqual(["sk-client-old"]);
  });

  it("a HEAD config.yaml save of what it read changes nothing an old UI wrote", async () => {
    const before = await old.ok("GET", "/config");
    const yaml = await head.send("GET", "/config.yaml", {
      Accept: "application/yaml, text/yaml, text/plain",
    });
    const put = await head.send(
      "PUT",
      "/config.yaml",
      { "Content-Type": "application/yaml", Accept: "application/json, text/plain, */*" },
      yaml.text,
    );
    expect(put.status).toBe(200);
    expect(put.body).toEqual({ ok: true, changed: [] });
    expect(await old.ok("GET", "/config")).toEqual(before);
  });
});
