/**
 * Contract replay: CLIProxyAPI's management center **v0.1.3** (Oct 2025, vanilla JS) against a
 * real tokenpool server, from another origin (the page hosted elsewhere: every call preflighted).
 * Calls, bodies and the fields each page reads: notes/cpa-ui-contract.md §3.
 *
 * Coverage — every call of the reference's v0.1.3 call list:
 *
 * | call                                                     | replayed |
 * | -------------------------------------------------------- | -------- |
 * | GET /debug (login probe)                                 | yes |
 * | GET /config (load everything)                            | yes |
 * | PUT /debug {value}                                       | yes |
 * | PUT /proxy-url {value} ("" too), DELETE /proxy-url       | yes |
 * | PUT /request-retry {value} (and NaN → null → 400)        | yes |
 * | PUT /quota-exceeded/switch-project, …/switch-preview-model | yes |
 * | GET + PUT /api-keys, PATCH {index,value}, DELETE ?index= | yes |
 * | GET + PUT /generative-language-api-key, PATCH {old,new}, DELETE ?value= | yes |
 * | GET + PUT /codex-api-key, PATCH {index,value}, DELETE ?api-key= | yes |
 * | GET + PUT /claude-api-key, PATCH {index,value}, DELETE ?api-key= | yes |
 * | GET + PUT /openai-compatibility, PATCH {index,value:full}, DELETE ?name= | yes |
 * | GET /auth-files                                          | yes |
 * | POST /auth-files (multipart, one `file`)                 | yes |
 * | GET /auth-files/download?name=                           | yes |
 * | DELETE /auth-files?name=, DELETE /auth-files?all=true    | yes |
 * | GET /codex-auth-url, /anthropic-auth-url, /gemini-cli-auth-url?…&project_id= (is_webui=1) | yes, through the mock OAuth server to a saved credential |
 * | GET /qwen-auth-url?is_webui=1                            | yes (start only: the device URL has no `state` for this UI to poll, as with CLIProxyAPI) |
 * | GET /iflow-auth-url?is_webui=1                           | yes: a 501 with `{error}` (tokenpool has no iFlow login; the UI shows the message) |
 * | GET /get-auth-status?state= (poll)                       | yes |
 * | GET /usage (usage page)                                  | yes |
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ContractServer,
  expectDate,
  expectMapOf,
  expectNumberMap,
  PANEL,
  startContractServer,
  uiSession,
} from "./cpa-ui-harness.js";

let srv: ContractServer;
let ui: ReturnType<typeof uiSession>;

beforeAll(async () => {
  srv = await startContractServer();
  await srv.traffic(3);
  await srv.traffic(1, 1);
  ui = uiSession(srv, "v0.1.3", PANEL);
});
afterAll(async () => {
  await srv.close();
});

/** The `GET /config` fields v0.1.3 reads (each block only when truthy). */
function expectV013Config(c: any): void {
  expect(c.debug).toBeTypeOf("boolean");
  expect(c["proxy-url"]).toBeTypeOf("string");
  expect(c["request-retry"]).toBeTypeOf("number");
  expect(c["quota-exceeded"]["switch-project"]).toBeTypeOf("boolean");
  expect(c["quota-exceeded"]["switch-preview-model"]).toBeTypeOf("boolean");
  for (const k of ["api-keys", "generative-language-api-key"])
    if (c[k]) for (const s of c[k]) expect(s, k).toBeTypeOf("string");
  for (const k of ["codex-api-key", "claude-api-key"])
    if (c[k])
      for (const e of c[k]) {
        expect(e["api-key"]).toBeTypeOf("string");
        if (e["base-url"] !== undefined) expect(e["base-url"]).toBeTypeOf("string");
        if (e["proxy-url"] !== undefined) expect(e["proxy-url"]).toBeTypeOf("string");
      }
  if (c["openai-compatibility"])
    for (const p of c["openai-compatibility"]) {
      expect(p.name).toBeTypeOf("string");
      expect(p["base-url"]).toBeTypeOf("string");
      expect(Array.isArray(p["api-key-entries"])).toBe(true);
      for (const e of p["api-key-entries"]) {
        expect(e["api-key"]).toBeTypeOf("string");
        if (e["proxy-url"] !== undefined) expect(e["proxy-url"]).toBeTypeOf("string");
      }
      for (const m of p.models ?? []) expect(m.name).toBeTypeOf("string");
    }
}

describe("management center v0.1.3, cross-origin session", () => {
  it("login: GET /debug answers JSON, then GET /config, GET /auth-files, GET /usage", async () => {
    expect((await ui.ok("GET", "/debug")).debug).toBeTypeOf("boolean");
    const config = await ui.ok("GET", "/config");
    expectV013Config(config);
    expect(config["openai-compatibility"]).toEqual([
      expect.objectContaining({
        name: "mock",
        "api-key-entries": [expect.objectContaining({ "api-key": expect.any(String) })],
      }),
    ]);
    expect(Array.isArray((await ui.ok("GET", "/auth-files")).files)).toBe(true);
    expect((await ui.ok("GET", "/usage")).usage.total_requests).toBe(4);
  });

  it("settings page: debug, proxy, retry and quota toggles", async () => {
    expect(await ui.ok("PUT", "/debug", { value: true })).toEqual({ status: "ok" });
    expect(await ui.ok("PUT", "/proxy-url", { value: "socks5://127.0.0.1:1080" })).toEqual({
      status: "ok",
    });
    expect((await ui.ok("GET", "/config"))["proxy-url"]).toBe("socks5://127.0.0.1:1080");
    expect(await ui.ok("PUT", "/proxy-url", { value: "" })).toEqual({ status: "ok" });
    expect(await ui.ok("DELETE", "/proxy-url")).toEqual({ status: "ok" });
    expect(await ui.ok("PUT", "/request-retry", { value: 3 })).toEqual({ status: "ok" });
    // parseInt of an empty field is NaN, which JSON.stringify sends as null.
    const nan = await ui.request("PUT", "/request-retry", { value: Number.NaN });
    expect(nan.status).toBe(400);
    expect(nan.body.error).toBeTypeOf("string");
    expect(await ui.ok("PUT", "/quota-exceeded/switch-project", { value: false })).toEqual({
      status: "ok",
    });
    expect(await ui.ok("PUT", "/quota-exceeded/switch-preview-model", { value: false })).toEqual({
      status: "ok",
    });
    const c = await ui.ok("GET", "/config");
    expectV013Config(c);
    expect(c).toMatchObject({
      debug: true,
      "proxy-url": "",
      "request-retry": 3,
      "quota-exceeded": { "switch-project": false, "switch-preview-model": false },
    });
    await ui.ok("PUT", "/debug", { value: false });
    await ui.ok("PUT", "/request-retry", { value: 0 });
  });

  it("proxy API keys: GET then PUT the array, PATCH {index,value}, DELETE ?index=", async () => {
    const keys: string[] = (await ui.ok("GET", "/api-keys"))["api-keys"] || [];
    expect(await ui.ok("PUT", "/api-keys", [...keys, "sk-ui-one", "sk-ui-two"])).toEqual({
      status: "ok",
    });
    expect(await ui.ok("PATCH", "/api-keys", { index: keys.length, value: "sk-ui-uno" })).toEqual({
      status: "ok",
    });
    expect(await ui.ok("DELETE", `/api-keys?index=${keys.length + 1}`)).toEqual({ status: "ok" });
    expect((await ui.ok("GET", "/config"))["api-keys"]).toEqual([...keys, "sk-ui-uno"]);
  });

  it("Gemini keys: GET then PUT strings, PATCH {old,new}, DELETE ?value=", async () => {
    const keys: string[] =
      (await ui.ok("GET", "/generative-language-api-key"))["generative-language-api-key"] || [];
    await ui.ok("PUT", "/generative-language-api-key", [...keys, "AIza-one", "AIza-two"]);
    await ui.ok("PATCH", "/generative-language-api-key", { old: "AIza-one", new: "AIza-uno" });
    await ui.ok("DELETE", `/generative-language-api-key?value=${encodeURIComponent("AIza-two")}`);
    expect((await ui.ok("GET", "/config"))["generative-language-api-key"]).toEqual([
      ...keys,
      "AIza-uno",
    ]);
  });

  for (const section of ["codex-api-key", "claude-api-key"])
    it(`${section}: GET then PUT (blank fields omitted), PATCH {index, value}, DELETE ?api-key=`, async () => {
      const list: any[] = (await ui.ok("GET", `/${section}`))[section] || [];
      expect(Array.isArray(list)).toBe(true);
      // A new entry: base-url and proxy-url only when the form has them.
      await ui.ok("PUT", `/${section}`, [
        ...list,
        { "api-key": "sk-one" },
        { "api-key": "sk-two", "base-url": "https://two.example.com/v1" },
      ]);
      let now = (await ui.ok("GET", "/config"))[section];
      expect(now).toEqual([
        expect.objectContaining({ "api-key": "sk-one" }),
        expect.objectContaining({ "api-key": "sk-two", "base-url": "https://two.example.com/v1" }),
      ]);
      // Edit: a fresh object of the form's fields, unset ones omitted.
      await ui.ok("PATCH", `/${section}`, {
        index: 0,
        value: { "api-key": "sk-uno", "proxy-url": "http://127.0.0.1:3128" },
      });
      await ui.ok("DELETE", `/${section}?api-key=${encodeURIComponent("sk-two")}`);
      now = (await ui.ok("GET", "/config"))[section];
      expect(now).toEqual([
        expect.objectContaining({ "api-key": "sk-uno", "proxy-url": "http://127.0.0.1:3128" }),
      ]);
      expectV013Config({ ...(await ui.ok("GET", "/config")) });
    });

  it("OpenAI-compatible providers: GET then PUT, PATCH {index, value: full}, DELETE ?name=", async () => {
    const list: any[] = (await ui.ok("GET", "/openai-compatibility"))["openai-compatibility"] || [];
    await ui.ok("PUT", "/openai-compatibility", [
      ...list,
      {
        name: "second",
        "base-url": srv.mock.url,
        "api-key-entries": [{ "api-key": "sk-second-a", "proxy-url": "" }],
        models: [{ name: "gpt-4o-mini", alias: "mini" }],
      },
    ]);
    const index = list.length;
    await ui.ok("PATCH", "/openai-compatibility", {
      index,
      value: {
        name: "second",
        "base-url": srv.mock.url,
        "api-key-entries": [
          { "api-key": "sk-second-a", "proxy-url": "" },
          { "api-key": "sk-second-b", "proxy-url": "http://127.0.0.1:3128" },
        ],
        models: [{ name: "gpt-4o-mini", alias: "mini" }],
      },
    });
    const c = await ui.ok("GET", "/config");
    expectV013Config(c);
    expect(c["openai-compatibility"][index]).toMatchObject({
      name: "second",
      "api-key-entries": [
        { "api-key": "sk-second-a" },
        { "api-key": "sk-second-b", "proxy-url": "http://127.0.0.1:3128" },
      ],
      models: [{ name: "gpt-4o-mini", alias: "mini" }],
    });
    await ui.ok("DELETE", `/openai-compatibility?name=${encodeURIComponent("second")}`);
    expect((await ui.ok("GET", "/config"))["openai-compatibility"]).toHaveLength(list.length);
  });

  it("auth files: upload one, list (size a number, modtime a date), download, delete one, delete all", async () => {
    const file = {
      type: "codex",
      email: "a@example.com",
      access_token: "at-contract",
      refresh_token: "rt-contract",
    };
    const up = await ui.upload([{ name: "codex-a.json", json: file }]);
    expect(up.status).toBe(200);
    expect(up.contentType).toMatch(/^application\/json/);
    await ui.upload([{ name: "codex-b.json", json: { ...file, email: "b@example.com" } }]);
    const { files } = await ui.ok("GET", "/auth-files");
    expect(files.map((f: any) => f.name).sort()).toEqual(["codex-a.json", "codex-b.json"]);
    for (const f of files) {
      expect(f.name).toBeTypeOf("string");
      expect(f.size).toBeTypeOf("number");
      expectDate(f.modtime);
    }
    // Download: a blob, no Content-Type of its own in v0.1.3.
    const dl = await ui.send("GET", "/auth-files/download?name=codex-a.json", {});
    expect(dl.status).toBe(200);
    expect(dl.body).toMatchObject({ type: "codex", email: "a@example.com" });
    expect(await ui.ok("DELETE", "/auth-files?name=codex-a.json")).toEqual({ status: "ok" });
    const all = await ui.ok("DELETE", "/auth-files?all=true");
    expect(all.deleted).toBe(1);
    expect((await ui.ok("GET", "/auth-files")).files).toEqual([]);
  });

  it("OAuth logins: codex, anthropic, gemini-cli through the mock provider; state from the URL; polled", async () => {
    for (const [login, query] of [
      ["codex", "?is_webui=1"],
      ["anthropic", "?is_webui=1"],
      ["gemini-cli", "?is_webui=1&project_id=contract-proj"],
    ] as const) {
      const start = await ui.ok("GET", `/${login}-auth-url${query}`);
      expect(start.url, login).toBeTypeOf("string");
      // v0.1.3 takes the state from the URL, not from the answer.
      const state = new URL(start.url).searchParams.get("state") as string;
      expect(state, login).toBeTruthy();
      expect(await ui.ok("GET", `/get-auth-status?state=${state}`)).toEqual({ status: "wait" });
      // The user's browser: consent at the provider, redirected to the gateway's callback.
      const consent = await fetch(start.url, { redirect: "manual" });
      const done = await fetch(consent.headers.get("location") as string);
      expect(done.status, login).toBe(200);
      await done.arrayBuffer();
      expect(await ui.ok("GET", `/get-auth-status?state=${state}`)).toEqual({ status: "ok" });
    }
    const names = (await ui.ok("GET", "/auth-files")).files.map((f: any) => f.type).sort();
    expect(names).toEqual(["claude", "codex", "gemini"]);
  });

  it("OAuth logins: qwen starts (a URL), iflow is a 501 with an error the UI shows", async () => {
    const qwen = await ui.ok("GET", "/qwen-auth-url?is_webui=1");
    expect(qwen.url).toBeTypeOf("string");
    const iflow = await ui.request("GET", "/iflow-auth-url?is_webui=1");
    expect(iflow.status).toBe(501);
    expect(iflow.contentType).toMatch(/^application\/json/);
    expect(iflow.body.error).toBeTypeOf("string");
  });

  it("usage page: totals, by hour and day, per API and model", async () => {
    const { usage } = await ui.ok("GET", "/usage");
    expect(usage).toBeTypeOf("object");
    for (const f of ["total_requests", "success_count", "failure_count", "total_tokens"])
      expect(usage[f], f).toBeTypeOf("number");
    expect(usage.total_requests).toBe(4);
    expect(usage.failure_count).toBe(1);
    for (const f of ["requests_by_hour", "requests_by_day", "tokens_by_hour", "tokens_by_day"])
      expectNumberMap(usage[f]);
    expect(Object.keys(usage.apis).length).toBeGreaterThan(0);
    expectMapOf(usage.apis, (api) => {
      expect(api.total_requests).toBeTypeOf("number");
      expect(api.total_tokens).toBeTypeOf("number");
      expectMapOf(api.models, (m) => {
        expect(m.total_requests).toBeTypeOf("number");
        expect(m.total_tokens).toBeTypeOf("number");
      });
    });
  });

  it("no call of the session got a 5xx, and every one carried the CORS and version headers", () => {
    expect(ui.calls.filter((c) => c.status >= 500 && c.status !== 501)).toEqual([]);
    expect(ui.calls.length).toBeGreaterThan(50);
  });
});
