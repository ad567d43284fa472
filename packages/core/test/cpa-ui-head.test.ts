/**
 * Contract replay: CLIProxyAPI's management center **HEAD** (Aug 2026, the React rewrite, axios)
 * against a real tokenpool server, from another origin (the UI on a dev server or hosted
 * elsewhere: every call preflighted, the version headers read through `Expose-Headers`).
 * Calls, bodies and the fields each page reads: notes/cpa-ui-contract.md §5 and §2.
 *
 * Coverage — every call of the reference's HEAD call list:
 *
 * | call                                                              | replayed |
 * | ----------------------------------------------------------------- | -------- |
 * | GET /config (login; version from X-CPA-VERSION / BUILD-DATE / SUPPORT-PLUGIN) | yes |
 * | GET /latest-version                                               | yes (answered locally, no network) |
 * | GET /api-keys (models helper)                                     | yes |
 * | GET <apiBase>/v1/models with a proxy API key (System page)        | yes, same origin only: the proxy routes send no CORS headers (by design, issue 17: CORS on the management API only) |
 * | GET /config.yaml, PUT /config.yaml (visual and source editor)     | yes |
 * | PUT /request-log {value}                                          | yes |
 * | PUT /gemini-api-key [obj] (read-modify-write over GET /config), DELETE ?api-key=&base-url= | yes |
 * | PUT /codex-api-key, DELETE ?api-key=&base-url=                    | yes |
 * | PUT /claude-api-key, DELETE ?api-key=&base-url=                   | yes |
 * | PUT /xai-api-key, DELETE ?api-key=&base-url=                      | yes |
 * | GET /vertex-api-key, PUT, DELETE ?api-key=&base-url=              | yes |
 * | PUT /interactions-api-key [obj] (read-modify-write over GET /config), DELETE ?api-key=&base-url= | yes (`gemini-interactions` credentials: stored and shown, no upstream adapter) |
 * | GET /openai-compatibility, PUT, PATCH {index, value:{disabled}}, DELETE ?index= | yes |
 * | POST /api-call (model discovery: with a provider key header; with authIndex) | yes, to the mock upstream |
 * | GET /auth-files (all the fields the page reads)                   | yes |
 * | POST /auth-files (multipart, n `file` parts)                      | yes |
 * | GET /auth-files/download?name= (text view)                        | yes |
 * | PATCH /auth-files/status {name, disabled}                         | yes |
 * | PATCH /auth-files/fields {name, …}                                | yes |
 * | GET /auth-files/models?name=                                      | yes |
 * | DELETE /auth-files {names:[…]}, DELETE /auth-files?all=true       | yes |
 * | GET /model-definitions/:channel                                   | yes (the models the channel's credentials list; no static catalogue) |
 * | POST /vertex/import (multipart service account, `location`)       | yes (a sealed `vertex` credential, listed in /auth-files; no upstream adapter) |
 * | GET/PUT/PATCH/DELETE /oauth-excluded-models                       | yes |
 * | GET /oauth-model-alias, PATCH (save; `aliases: []` deletes)       | yes (the DELETE fallback is only sent after a 405, which never comes) |
 * | GET /anthropic-auth-url, /codex-auth-url (?is_webui=true), poll, POST /oauth-callback | yes, through the mock OAuth server |
 * | GET /antigravity-auth-url, /xai-auth-url (?is_webui=true), /kimi-auth-url | yes: 501 `{error}` (no such login in tokenpool) |
 * | GET /<plugin provider>-auth-url                                   | no: plugins (X-CPA-SUPPORT-PLUGIN: 0, the UI shows no plugin cards) |
 * | GET /get-auth-status?state=                                       | yes |
 * | GET /api-key-usage (Dashboard)                                    | yes |
 * | GET /logs?limit=10000[&cursor=][&after=], DELETE /logs            | yes |
 * | GET /request-error-logs, GET /request-error-logs/:name            | yes |
 * | GET /request-log-by-id/:id                                        | yes |
 * | GET /plugins, PATCH /plugins/:id/enabled, DELETE /plugins/:id, GET/PATCH /plugins/:id/config | no: plugins (not applicable, X-CPA-SUPPORT-PLUGIN: 0) |
 * | GET /plugin-store, POST /plugin-store/:id/install                 | no: plugin store (not applicable; needs the network) |
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ContractServer,
  expectDate,
  expectMapOf,
  MGMT,
  PANEL,
  startContractServer,
  UPSTREAM_KEY,
  uiSession,
  VERSION,
} from "./cpa-ui-harness.js";

let srv: ContractServer;
let ui: ReturnType<typeof uiSession>;

beforeAll(async () => {
  srv = await startContractServer();
  await srv.traffic(3);
  await srv.traffic(1, 1);
  ui = uiSession(srv, "HEAD", PANEL);
});
afterAll(async () => {
  await srv.close();
});

/** The HEAD UI's read-modify-write: GET /config raw, the section, then PUT the whole array. */
async function rawSection(section: string): Promise<any[]> {
  const raw = await ui.ok("GET", "/config");
  return Array.isArray(raw[section]) ? raw[section] : [];
}

/** Strips the answer-only `auth-index` as the UI does before writing back. */
const stripIndex = ({ "auth-index": _, ...rest }: any) => rest;

describe("management center HEAD, cross-origin session", () => {
  it("login: GET /config is a JSON object; the version headers are readable cross-origin", async () => {
    const res = await ui.request("GET", "/config");
    expect(res.status).toBe(200);
    expect(res.body).toBeTypeOf("object");
    expect(res.headers.get("x-cpa-version")).toBe(VERSION);
    expectDate(
      res.headers.get("x-cpa-build-date") === "unknown"
        ? Date.now()
        : res.headers.get("x-cpa-build-date"),
    );
    // `0` parses as "no plugin support": the UI hides the plugin pages.
    expect(res.headers.get("x-cpa-support-plugin")).toBe("0");
    const c = res.body;
    expect(c.debug).toBeTypeOf("boolean");
    expect(c["proxy-url"]).toBeTypeOf("string");
    expect(typeof c["request-retry"]).toBe("number");
    expect(c["request-log"]).toBeTypeOf("boolean");
    expect(c["logging-to-file"]).toBeTypeOf("boolean");
    for (const k of [
      "gemini-api-key",
      "interactions-api-key",
      "codex-api-key",
      "claude-api-key",
      "xai-api-key",
      "vertex-api-key",
      "openai-compatibility",
    ])
      expect(Array.isArray(c[k] ?? []), k).toBe(true);
    const latest = await ui.ok("GET", "/latest-version");
    expect(latest["latest-version"]).toBeTypeOf("string");
  });

  it("dashboard: /api-key-usage per provider and `base-url|api-key`, /auth-files, /api-keys", async () => {
    const usage = await ui.ok("GET", "/api-key-usage");
    expectMapOf(usage, (byKey) =>
      expectMapOf(byKey, (u, composite) => {
        expect(composite).toContain("|");
        expect(u.success).toBeTypeOf("number");
        expect(u.failed).toBeTypeOf("number");
        expect(u.recent_requests).toHaveLength(20);
        for (const b of u.recent_requests) {
          expect(b.time).toMatch(/^\d\d:\d\d-\d\d:\d\d$/);
          expect(b.success).toBeTypeOf("number");
          expect(b.failed).toBeTypeOf("number");
        }
      }),
    );
    // The openai-compatibility provider "mock": its key, under its base URL as /config shows it.
    const c = await ui.ok("GET", "/config");
    const mock = c["openai-compatibility"].find((p: any) => p.name === "mock");
    expect(usage.mock[`${mock["base-url"].trim()}|${UPSTREAM_KEY}`]).toMatchObject({
      success: 3,
      failed: 1,
    });
    expect(Array.isArray((await ui.ok("GET", "/auth-files")).files)).toBe(true);
    const keys = await ui.ok("GET", "/api-keys");
    expect(Array.isArray(keys["api-keys"] ?? [])).toBe(true);
  });

  it("config page: GET /config.yaml as text, PUT the edited YAML, /config shows it", async () => {
    const yaml = await ui.send("GET", "/config.yaml", {
      Accept: "application/yaml, text/yaml, text/plain",
    });
    expect(yaml.status).toBe(200);
    expect(yaml.contentType).toContain("yaml");
    const edited = yaml.text
      .replace(/^logging-to-file: .*$/m, "logging-to-file: true")
      .replace(/^request-retry: .*$/m, "request-retry: 1");
    const put = await ui.send(
      "PUT",
      "/config.yaml",
      { "Content-Type": "application/yaml", Accept: "application/json, text/plain, */*" },
      edited,
    );
    expect(put.status, put.text).toBe(200);
    expect(put.body).toMatchObject({ ok: true, changed: expect.any(Array) });
    expect(await ui.ok("GET", "/config")).toMatchObject({
      "logging-to-file": true,
      "request-retry": 1,
    });
    await ui.ok("GET", "/config.yaml".replace(".yaml", ""));
  });

  it("system page: PUT /request-log; the available models with a proxy API key (same origin)", async () => {
    expect(await ui.ok("PUT", "/request-log", { value: true })).toEqual({ status: "ok" });
    expect((await ui.ok("GET", "/config"))["request-log"]).toBe(true);
    const models = await fetch(`${srv.root}/v1/models`, {
      headers: { authorization: `Bearer ${srv.key}` },
    });
    expect(models.status).toBe(200);
    expect(Array.isArray(((await models.json()) as any).data)).toBe(true);
  });

  for (const [section, entry, update] of [
    [
      "gemini-api-key",
      {
        "api-key": "AIza-head-a",
        priority: 2,
        "base-url": "https://generativelanguage.example.com",
        headers: { "X-Team": "a" },
        models: [{ name: "gemini-2.5-pro", alias: "pro" }],
        "excluded-models": ["gemini-1.5-*"],
      },
      { weight: 3 },
    ],
    [
      "interactions-api-key",
      {
        "api-key": "AIza-head-i",
        "base-url": "https://interactions.example.com",
        "proxy-url": "http://127.0.0.1:3128",
        headers: { "X-Team": "i" },
        models: [{ name: "gemini-2.5-flash", alias: "iflash" }],
      },
      { priority: 2 },
    ],
    [
      "codex-api-key",
      {
        "api-key": "sk-codex-head",
        "base-url": "https://codex.example.com/v1",
        "proxy-url": "http://127.0.0.1:3128",
        headers: { "X-Team": "b" },
      },
      { priority: 4 },
    ],
    ["claude-api-key", { "api-key": "sk-ant-head", "base-url": "", priority: 1 }, { weight: 2 }],
    [
      "xai-api-key",
      { "api-key": "xai-head", "base-url": "https://xai.example.com/v1" },
      { priority: 1 },
    ],
    [
      "vertex-api-key",
      {
        "api-key": "vertex-head",
        "base-url": "https://aiplatform.example.com",
        models: [{ name: "gemini-2.5-pro", alias: "vpro" }],
      },
      { priority: 5 },
    ],
  ] as [string, Record<string, unknown>, Record<string, unknown>][])
    it(`${section}: create and update by a whole-list PUT over GET /config's raw records, then DELETE ?api-key=&base-url=`, async () => {
      if (section === "vertex-api-key")
        expect(Array.isArray((await ui.ok("GET", "/vertex-api-key"))["vertex-api-key"])).toBe(true);
      const before = await rawSection(section);
      // Create: append.
      expect(await ui.ok("PUT", `/${section}`, [...before.map(stripIndex), entry])).toEqual({
        status: "ok",
      });
      let now = await rawSection(section);
      expect(now).toHaveLength(before.length + 1);
      const created = now[now.length - 1];
      expect(created).toMatchObject(entry);
      // Update: the payload merged over the raw record (unknown fields kept), whole list PUT.
      const target = now.findIndex(
        (r: any) =>
          String(r["api-key"]).trim() === entry["api-key"] &&
          String(r["base-url"] ?? "").trim() === String(entry["base-url"] ?? ""),
      );
      expect(target).toBeGreaterThanOrEqual(0);
      const next = now.map(stripIndex);
      next[target] = { ...next[target], ...entry, ...update };
      await ui.ok("PUT", `/${section}`, next);
      now = await rawSection(section);
      expect(now[target]).toMatchObject({ ...entry, ...update });
      // Delete: URLSearchParams with base-url always present.
      const q = new URLSearchParams({
        "api-key": entry["api-key"] as string,
        "base-url": String(now[target]["base-url"] ?? ""),
      });
      expect(await ui.ok("DELETE", `/${section}?${q}`)).toEqual({ status: "ok" });
      expect(await rawSection(section)).toHaveLength(before.length);
    });

  it("openai-compatibility: GET (auth-index), model discovery via /api-call, PUT, {disabled} toggle, DELETE ?index=", async () => {
    const got = (await ui.ok("GET", "/openai-compatibility"))["openai-compatibility"];
    const mock = got.find((p: any) => p.name === "mock");
    expect(mock.disabled === true).toBe(false);
    const entry = mock["api-key-entries"][0];
    expect(entry["api-key"]).toBe(UPSTREAM_KEY);
    // tokenpool shows no `auth-index` per entry (optional for the UI): the discovery below goes
    // through the key the header carries; with an auth index, the credential id of the key.
    const authIndex: string = entry["auth-index"] ?? srv.cred.id;
    // Model discovery: the provider's key in a header, no authIndex…
    const discovered = await ui.ok("POST", "/api-call", {
      method: "GET",
      url: `${mock["base-url"]}/models`,
      header: { Authorization: `Bearer ${UPSTREAM_KEY}` },
    });
    expect(discovered.status_code).toBe(200);
    expectMapOf(discovered.header, (v) => expect(Array.isArray(v)).toBe(true));
    expect(discovered.body).toBeTypeOf("string");
    expect(Array.isArray(JSON.parse(discovered.body).data)).toBe(true);
    // …and through the auth index with $TOKEN$.
    const byIndex = await ui.ok("POST", "/api-call", {
      authIndex,
      method: "GET",
      url: `${mock["base-url"]}/models`,
      header: { Authorization: "Bearer $TOKEN$" },
    });
    expect(byIndex.status_code).toBe(200);

    // Create a second provider from GET /config's raw list.
    const raw = (await rawSection("openai-compatibility")).map(stripIndex);
    await ui.ok("PUT", "/openai-compatibility", [
      ...raw,
      {
        name: "head",
        "base-url": srv.mock.url,
        "api-key-entries": [{ "api-key": "sk-head-a" }, { "api-key": "sk-head-b", weight: 2 }],
        headers: { "X-Team": "c" },
        models: [{ name: "gpt-4o-mini", alias: "mini" }],
        priority: 1,
      },
    ]);
    const list = (await ui.ok("GET", "/openai-compatibility"))["openai-compatibility"];
    const index = list.findIndex((p: any) => p.name === "head");
    // The toggle reads `disabled`: absent (tokenpool shows it only when true) is enabled.
    expect(list[index].disabled === true).toBe(false);
    expect(list[index]).toMatchObject({
      name: "head",
      headers: { "X-Team": "c" },
      "api-key-entries": [{ "api-key": "sk-head-a" }, { "api-key": "sk-head-b", weight: 2 }],
    });
    expect(
      await ui.ok("PATCH", "/openai-compatibility", { index, value: { disabled: true } }),
    ).toEqual({ status: "ok" });
    const toggled = (await ui.ok("GET", "/openai-compatibility"))["openai-compatibility"][index];
    expect(toggled).toMatchObject({ disabled: true, headers: { "X-Team": "c" } });
    expect(toggled["api-key-entries"]).toHaveLength(2);
    expect(await ui.ok("DELETE", `/openai-compatibility?index=${index}`)).toEqual({
      status: "ok",
    });
    expect((await ui.ok("GET", "/openai-compatibility"))["openai-compatibility"]).toHaveLength(
      got.length,
    );
  });

  it("auth files: multipart upload of two, the page's fields, text view, status, fields, models, bulk delete", async () => {
    const file = (email: string) => ({
      type: "codex",
      email,
      access_token: `at-${email}`,
      refresh_token: `rt-${email}`,
    });
    const up = await ui.upload([
      { name: "codex-h1.json", json: file("h1@example.com") },
      { name: "codex-h2.json", json: file("h2@example.com") },
      { name: "codex-h3.json", json: file("h3@example.com") },
    ]);
    expect(up.status).toBe(200);
    expect(up.body).toMatchObject({ status: "ok", uploaded: 3 });
    expect([...up.body.files].sort()).toEqual(["codex-h1.json", "codex-h2.json", "codex-h3.json"]);

    const { files } = await ui.ok("GET", "/auth-files");
    expect(files).toHaveLength(3);
    for (const f of files) {
      expect(f.name).toBeTypeOf("string");
      expect(f.type).toBe("codex");
      expect(f.provider).toBe("codex");
      expect(f.email).toBeTypeOf("string");
      expect(["string", "number"]).toContain(typeof f.auth_index);
      expect(f.runtime_only).toBe(false);
      expect(f.disabled).toBe(false);
      expect(f.unavailable).toBeTypeOf("boolean");
      expect(f.status).toBeTypeOf("string");
      expect(f.status_message).toBeTypeOf("string");
      expectDate(f.modtime);
      expect(f.success).toBeTypeOf("number");
      expect(f.failed).toBeTypeOf("number");
      expect(f.recent_requests).toHaveLength(20);
      expect(f.source).toBe("file");
      expect(f.size).toBeTypeOf("number");
      expect(JSON.stringify(f)).not.toContain("at-h");
    }

    const view = await ui.send("GET", "/auth-files/download?name=codex-h1.json", {
      Accept: "application/json, text/plain, */*",
    });
    expect(view.status).toBe(200);
    expect(JSON.parse(view.text)).toMatchObject({ type: "codex", email: "h1@example.com" });

    expect(
      await ui.ok("PATCH", "/auth-files/status", { name: "codex-h1.json", disabled: true }),
    ).toMatchObject({ status: "ok", disabled: true });
    const disabled = (await ui.ok("GET", "/auth-files")).files.find(
      (f: any) => f.name === "codex-h1.json",
    );
    expect(disabled.disabled).toBe(true);
    await ui.ok("PATCH", "/auth-files/status", { name: "codex-h1.json", disabled: false });

    expect(
      await ui.ok("PATCH", "/auth-files/fields", {
        name: "codex-h2.json",
        priority: 3,
        proxy_url: "http://127.0.0.1:3128",
        headers: { "X-Team": "d" },
        "excluded-models": ["gpt-4"],
      }),
    ).toEqual({ status: "ok" });
    // "Manual refresh": expired = now − 60 s.
    await ui.ok("PATCH", "/auth-files/fields", {
      name: "codex-h2.json",
      expired: new Date(Date.now() - 60_000).toISOString(),
    });
    const edited = (await ui.ok("GET", "/auth-files")).files.find(
      (f: any) => f.name === "codex-h2.json",
    );
    expect(edited.priority).toBe(3);

    const models = await ui.ok("GET", "/auth-files/models?name=codex-h2.json");
    expect(Array.isArray(models.models)).toBe(true);
    for (const m of models.models) expect(m.id).toBeTypeOf("string");

    const bulk = await ui.ok("DELETE", "/auth-files", {
      names: ["codex-h1.json", "codex-h2.json"],
    });
    expect(bulk).toMatchObject({ status: "ok", deleted: 2 });
    const single = await ui.ok("DELETE", "/auth-files", { names: ["codex-h3.json"] });
    expect(single.status).toBe("ok");
    await ui.upload([{ name: "codex-h4.json", json: file("h4@example.com") }]);
    expect((await ui.ok("DELETE", "/auth-files?all=true")).deleted).toBe(1);
    expect((await ui.ok("GET", "/auth-files")).files).toEqual([]);
  });

  it("Vertex import: multipart service account with a location; listed as an auth file, the key never shown", async () => {
    const privateKey =
      "-----BEGIN PRIVATE KEY-----\nMIIEvQ-head-ui-private-key-material\n-----END PRIVATE KEY-----\n";
    const sa = {
      type: "service_account",
      project_id: "head-proj",
      private_key_id: "kid",
      private_key: privateKey,
      client_email: "ui@head-proj.iam.gserviceaccount.com",
    };
    const form = new FormData();
    form.append("file", new Blob([JSON.stringify(sa)], { type: "application/json" }), "sa.json");
    form.append("location", "europe-west1");
    const res = await ui.send(
      "POST",
      "/vertex/import",
      { Accept: "application/json, text/plain, */*" },
      form,
    );
    expect(res.status).toBe(200);
    expect(res.contentType).toMatch(/^application\/json/);
    expect(res.body).toEqual({
      status: "ok",
      "auth-file": "vertex-head-proj.json",
      project_id: "head-proj",
      email: "ui@head-proj.iam.gserviceaccount.com",
      location: "europe-west1",
    });
    const { files } = await ui.ok("GET", "/auth-files");
    const vertex = files.find((f: any) => f.name === "vertex-head-proj.json");
    expect(vertex).toMatchObject({ type: "vertex", project_id: "head-proj" });
    const view = await ui.send("GET", "/auth-files/download?name=vertex-head-proj.json", {
      Accept: "application/json, text/plain, */*",
    });
    for (const text of [res.text, JSON.stringify(files), view.text])
      expect(text).not.toContain("head-ui-private-key-material");
    const bad = new FormData();
    bad.append("location", "us-central1");
    const missing = await ui.send("POST", "/vertex/import", {}, bad);
    expect({ status: missing.status, body: missing.body }).toEqual({
      status: 400,
      body: { error: "file required" },
    });
    expect(await ui.ok("DELETE", "/auth-files", { names: ["vertex-head-proj.json"] })).toEqual({
      status: "ok",
    });
  });

  it("model pickers: GET /model-definitions/:channel for the auth files' channels", async () => {
    for (const channel of [
      "claude",
      "codex",
      "gemini",
      "gemini-cli",
      "vertex",
      "antigravity",
      "qwen",
      "iflow",
      "aistudio",
    ]) {
      const defs = await ui.ok("GET", `/model-definitions/${channel}`);
      expect(defs.channel).toBe(channel);
      expect(Array.isArray(defs.models)).toBe(true);
      for (const m of defs.models) expect(m.id).toBeTypeOf("string");
    }
    // The openai-compatibility entry `mock` is a channel too (its credential's models).
    const mock = await ui.ok("GET", "/model-definitions/MOCK");
    expect(mock.channel).toBe("mock");
    const unknown = await ui.request("GET", "/model-definitions/no-such-channel");
    expect({ status: unknown.status, body: unknown.body }).toEqual({
      status: 400,
      body: { error: "unknown channel", channel: "no-such-channel" },
    });
  });

  it("OAuth excluded models and model aliases: GET, PUT, PATCH, DELETE", async () => {
    const ex = await ui.ok("GET", "/oauth-excluded-models");
    expect(ex).toHaveProperty("oauth-excluded-models");
    expect(await ui.ok("PUT", "/oauth-excluded-models", { codex: ["gpt-4"] })).toEqual({
      status: "ok",
    });
    expect(
      await ui.ok("PATCH", "/oauth-excluded-models", {
        provider: "gemini-cli",
        models: ["gemini-1.5-pro"],
      }),
    ).toEqual({ status: "ok" });
    expect((await ui.ok("GET", "/oauth-excluded-models"))["oauth-excluded-models"]).toEqual({
      codex: ["gpt-4"],
      "gemini-cli": ["gemini-1.5-pro"],
    });
    expect(await ui.ok("DELETE", "/oauth-excluded-models?provider=gemini-cli")).toEqual({
      status: "ok",
    });

    const alias = await ui.ok("GET", "/oauth-model-alias");
    expect(alias).toHaveProperty("oauth-model-alias");
    expect(
      await ui.ok("PATCH", "/oauth-model-alias", {
        channel: "codex",
        aliases: [{ name: "gpt-5", alias: "five", fork: true }],
      }),
    ).toEqual({ status: "ok" });
    expect((await ui.ok("GET", "/oauth-model-alias"))["oauth-model-alias"].codex).toEqual([
      expect.objectContaining({ name: "gpt-5", alias: "five" }),
    ]);
    // Delete: PATCH with no aliases (the DELETE fallback only follows a 405).
    const removed = await ui.request("PATCH", "/oauth-model-alias", {
      channel: "codex",
      aliases: [],
    });
    expect(removed.status).toBe(200);
    expect((await ui.ok("GET", "/oauth-model-alias"))["oauth-model-alias"].codex).toBeUndefined();
  });

  it("OAuth logins: url + state, polled, the pasted redirect relayed by POST /oauth-callback", async () => {
    for (const provider of ["codex", "anthropic"]) {
      const start = await ui.ok("GET", `/${provider}-auth-url?is_webui=true`);
      expect(start.url).toBeTypeOf("string");
      expect(start.state).toBeTypeOf("string");
      expect(await ui.ok("GET", `/get-auth-status?state=${start.state}`)).toEqual({
        status: "wait",
      });
      const consent = await fetch(start.url, { redirect: "manual" });
      const redirect = consent.headers.get("location") as string;
      expect(await ui.ok("POST", "/oauth-callback", { provider, redirect_url: redirect })).toEqual({
        status: "ok",
      });
      expect(await ui.ok("GET", `/get-auth-status?state=${start.state}`)).toEqual({
        status: "ok",
      });
    }
    // Without a key, as CLIProxyAPI: an unknown state is refused in the UI's error shape.
    const anon = await ui.send(
      "POST",
      "/oauth-callback",
      { "Content-Type": "application/json" },
      JSON.stringify({ provider: "codex", redirect_url: "http://localhost/cb?code=c&state=nope" }),
      false,
    );
    expect(anon.status).toBe(404);
    expect(anon.body).toEqual({ status: "error", error: "unknown or expired state" });
    expect((await ui.ok("GET", "/auth-files")).files.map((f: any) => f.type).sort()).toEqual([
      "claude",
      "codex",
    ]);
    for (const path of [
      "/antigravity-auth-url?is_webui=true",
      "/xai-auth-url?is_webui=true",
      "/kimi-auth-url",
    ]) {
      const res = await ui.request("GET", path);
      expect(res.status, path).toBe(501);
      expect(res.body.error, path).toBeTypeOf("string");
    }
  });

  it("logs page: ?limit=10000, incremental with cursor and after, error logs, log by id, DELETE", async () => {
    const full = await ui.ok("GET", "/logs?limit=10000");
    expect(full.lines.length).toBeGreaterThanOrEqual(4);
    for (const l of full.lines) expect(l).toBeTypeOf("string");
    expect(full["latest-timestamp"]).toBeTypeOf("number");
    expect(full["next-cursor"]).toBeTypeOf("string");
    await srv.traffic(1);
    const after = full["latest-timestamp"] - 1;
    const q = `limit=10000&cursor=${encodeURIComponent(full["next-cursor"])}${after > 1 ? `&after=${after}` : ""}`;
    const more = await ui.ok("GET", `/logs?${q}`);
    expect(more.lines).toHaveLength(1);
    expect(more["next-cursor"]).toBeTypeOf("string");
    expect(more["cursor-reset"] === true || more["cursor-reset"] === "true").toBe(false);

    const errors = await ui.ok("GET", "/request-error-logs");
    expect(errors.files.length).toBeGreaterThanOrEqual(1);
    for (const f of errors.files) {
      expect(f.name).toBeTypeOf("string");
      expect(f.size).toBeTypeOf("number");
      expect(f.modified).toBeTypeOf("number");
    }
    const one = await ui.send(
      "GET",
      `/request-error-logs/${encodeURIComponent(errors.files[0].name)}`,
      { Accept: "application/json, text/plain, */*" },
    );
    expect(one.status).toBe(200);
    expect(one.headers.get("content-disposition")).toContain("attachment");
    // A line: `[<time>] [info] [<request id>] 200 POST …`.
    const id = /^\[[^\]]+\] \[[^\]]+\] \[([^\]]+)\]/.exec(full.lines[0])?.[1] as string;
    expect(id).toBeTruthy();
    const byId = await ui.send("GET", `/request-log-by-id/${encodeURIComponent(id)}`, {
      Accept: "application/json, text/plain, */*",
    });
    expect(byId.status).toBe(200);
    expect(byId.text).toContain(id);

    await ui.ok("DELETE", "/logs");
    expect((await ui.ok("GET", "/logs?limit=10000")).lines).toEqual([]);
  });

  it("no call of the session got a 5xx or a 404, and none was refused by a preflight", () => {
    expect(
      ui.calls.filter((c) => (c.status >= 500 && c.status !== 501) || c.status === 404),
    ).toEqual(ui.calls.filter((c) => c.path === "/oauth-callback" && c.status === 404));
    expect(ui.calls.length).toBeGreaterThan(70);
    expect(MGMT).toBeTruthy();
  });
});
