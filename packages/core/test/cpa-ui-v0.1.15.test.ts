/**
 * Contract replay: CLIProxyAPI's management center **v0.1.15** (Nov 2025, vanilla JS) against a
 * real tokenpool server, same origin: the page is served by the gateway at `/management.html`
 * (`management.uiFile`), as CLIProxyAPI serves it. Calls, bodies and the fields each page reads:
 * notes/cpa-ui-contract.md §4 (everything of v0.1.3 with the same shapes, plus the changes).
 *
 * Coverage — every call of the reference's v0.1.15 call list:
 *
 * | call                                                          | replayed |
 * | ------------------------------------------------------------- | -------- |
 * | GET /management.html (the page itself, outside the API)       | yes |
 * | GET /debug (login probe)                                      | yes |
 * | GET /config (+ `usage-statistics-enabled`, `logging-to-file`) | yes |
 * | GET /usage (per provider list, per-key badges from `details[].source` / `failed`) | yes |
 * | GET /auth-files (+ `type`, `runtime_only`)                    | yes |
 * | GET /config.yaml (Accept application/yaml; content-type must contain `yaml`) | yes |
 * | PUT /config.yaml (raw YAML, application/yaml; `ok !== false`) | yes, the file read back, edited, saved |
 * | PUT /usage-statistics-enabled {value}                         | yes |
 * | PUT /logging-to-file {value}                                  | yes |
 * | GET /logs, GET /logs?after=<latest-timestamp>, DELETE /logs   | yes |
 * | GET /auth-files/download?name= (JSON view: `response.json()`) | yes |
 * | GET + PUT /codex-api-key (new entry always with the three fields, "" when blank) | yes |
 * | GET /codex-api-key, PATCH {index, value: {...original, api-key, base-url, proxy-url}} | yes |
 * | v0.1.3's calls with the same shapes (settings, api-keys, generative-language-api-key, claude, openai-compatibility, auth files, OAuth, usage) | replayed by cpa-ui-v0.1.3.test.ts; here: the settings, the Gemini strings, Claude and the OAuth start, same origin |
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ContractServer,
  expectDate,
  expectMapOf,
  MGMT,
  startContractServer,
  UI_HTML,
  UPSTREAM_KEY,
  uiSession,
} from "./cpa-ui-harness.js";

let srv: ContractServer;
let ui: ReturnType<typeof uiSession>;

beforeAll(async () => {
  srv = await startContractServer({ uiFile: true });
  await srv.traffic(3);
  await srv.traffic(1, 1);
  ui = uiSession(srv, "v0.1.15");
});
afterAll(async () => {
  await srv.close();
});

/** How v0.1.15 masks a key to match it against `details[].source`. */
const masked = (key: string) => `${key.slice(0, 4)}...${key.slice(-4)}`;

describe("management center v0.1.15, same-origin session (page served by the gateway)", () => {
  it("the page: GET /management.html is the user's file, as HTML", async () => {
    const res = await fetch(`${srv.root}/management.html`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await res.text()).toBe(UI_HTML);
  });

  it("login: /debug, /config (with the two new flags), /usage, /auth-files, /usage, /config.yaml", async () => {
    expect((await ui.ok("GET", "/debug")).debug).toBeTypeOf("boolean");
    const c = await ui.ok("GET", "/config");
    expect(c["usage-statistics-enabled"]).toBeTypeOf("boolean");
    expect(c["logging-to-file"]).toBeTypeOf("boolean");
    for (const k of ["codex-api-key", "claude-api-key", "openai-compatibility"])
      expect(Array.isArray(c[k] ?? []), k).toBe(true);
    await ui.ok("GET", "/usage");
    const { files } = await ui.ok("GET", "/auth-files");
    expect(Array.isArray(files)).toBe(true);
    await ui.ok("GET", "/usage");
    const yaml = await ui.send("GET", "/config.yaml", { Accept: "application/yaml" });
    expect(yaml.status).toBe(200);
    expect(yaml.contentType).toContain("yaml");
    expect(yaml.text).toContain("request-retry:");
  });

  it("per-key badges: /usage details carry a string `source` matching the masked key, and `failed`", async () => {
    const { usage } = await ui.ok("GET", "/usage");
    const sources = new Map<string, { ok: number; bad: number }>();
    expectMapOf(usage.apis, (api) =>
      expectMapOf(api.models, (m) => {
        expect(Array.isArray(m.details)).toBe(true);
        for (const d of m.details) {
          expect(d.source).toBeTypeOf("string");
          expect(d.failed).toBeTypeOf("boolean");
          expectDate(d.timestamp);
          for (const t of ["input_tokens", "output_tokens", "total_tokens"])
            expect(d.tokens[t], t).toBeTypeOf("number");
          const s = sources.get(d.source) ?? { ok: 0, bad: 0 };
          if (d.failed === true) s.bad++;
          else s.ok++;
          sources.set(d.source, s);
        }
      }),
    );
    // The badge of the openai-compatibility key: 3 successes, 1 failure.
    expect(sources.get(masked(UPSTREAM_KEY))).toEqual({ ok: 3, bad: 1 });
  });

  it("config editor: GET /config.yaml, edit, PUT it back as application/yaml; then reload", async () => {
    const yaml = await ui.send("GET", "/config.yaml", { Accept: "application/yaml" });
    const edited = yaml.text.replace(/^request-retry: .*$/m, "request-retry: 2");
    expect(edited).not.toBe(yaml.text);
    const put = await ui.send(
      "PUT",
      "/config.yaml",
      { "Content-Type": "application/yaml", Accept: "application/json, text/plain, */*" },
      edited,
    );
    expect(put.status).toBe(200);
    expect(put.contentType).toMatch(/^application\/json/);
    expect(put.body.ok).toBe(true);
    const c = await ui.ok("GET", "/config");
    expect(c["request-retry"]).toBe(2);
    // Saving the file back changed nothing else: the provider keys are all there.
    expect(c["openai-compatibility"]).toEqual([
      expect.objectContaining({
        name: "mock",
        "api-key-entries": [expect.objectContaining({ "api-key": UPSTREAM_KEY })],
      }),
    ]);
    // A broken file: an error the UI can show (`message || error`).
    const bad = await ui.send(
      "PUT",
      "/config.yaml",
      { "Content-Type": "application/yaml" },
      "request-retry: [",
    );
    expect(bad.status).toBe(400);
    expect(bad.contentType).toMatch(/^application\/json/);
    expect(bad.body.message || bad.body.error).toBeTypeOf("string");
    await ui.ok("PUT", "/request-retry", { value: 0 });
  });

  it("settings: usage-statistics and logging-to-file toggles, plus v0.1.3's setters", async () => {
    expect(await ui.ok("PUT", "/usage-statistics-enabled", { value: true })).toEqual({
      status: "ok",
    });
    expect(await ui.ok("PUT", "/logging-to-file", { value: true })).toEqual({ status: "ok" });
    expect(await ui.ok("PUT", "/debug", { value: false })).toEqual({ status: "ok" });
    expect(await ui.ok("PUT", "/proxy-url", { value: "" })).toEqual({ status: "ok" });
    expect(await ui.ok("DELETE", "/proxy-url")).toEqual({ status: "ok" });
    expect(await ui.ok("PUT", "/quota-exceeded/switch-project", { value: true })).toEqual({
      status: "ok",
    });
    expect(await ui.ok("PUT", "/quota-exceeded/switch-preview-model", { value: true })).toEqual({
      status: "ok",
    });
    expect(await ui.ok("GET", "/config")).toMatchObject({
      "usage-statistics-enabled": true,
      "logging-to-file": true,
    });
  });

  it("logs page: GET /logs, GET /logs?after=<latest-timestamp>, download, DELETE /logs", async () => {
    const full = await ui.ok("GET", "/logs");
    expect(Array.isArray(full.lines)).toBe(true);
    expect(full.lines.length).toBeGreaterThanOrEqual(4);
    for (const l of full.lines) expect(l).toBeTypeOf("string");
    expect(full["line-count"]).toBeTypeOf("number");
    expect(full["latest-timestamp"]).toBeTypeOf("number");
    // Auto-refresh: only what came after.
    await srv.traffic(1);
    const more = await ui.ok("GET", `/logs?after=${full["latest-timestamp"]}`);
    expect(Array.isArray(more.lines)).toBe(true);
    for (const l of more.lines) expect(l).toBeTypeOf("string");
    expect(more["latest-timestamp"]).toBeGreaterThanOrEqual(full["latest-timestamp"]);
    const cleared = await ui.ok("DELETE", "/logs");
    expect(cleared).toBeTypeOf("object");
    expect((await ui.ok("GET", "/logs")).lines).toEqual([]);
  });

  it("Codex: add with all three fields (blank ones empty strings), edit from the GET's entry", async () => {
    const got = await ui.ok("GET", "/codex-api-key");
    const list: any[] = Array.isArray(got) ? got : (got["codex-api-key"] ?? got.items ?? []);
    await ui.ok("PUT", "/codex-api-key", [
      ...list,
      { "api-key": "sk-codex-a", "base-url": "", "proxy-url": "" },
      { "api-key": "sk-codex-b", "base-url": "https://codex.example.com/v1", "proxy-url": "" },
    ]);
    const again: any[] = (await ui.ok("GET", "/codex-api-key"))["codex-api-key"];
    expect(again).toHaveLength(2);
    // Edit: the original entry as the GET gave it, with the form's three fields over it.
    await ui.ok("PATCH", "/codex-api-key", {
      index: 0,
      value: {
        ...again[0],
        "api-key": "sk-codex-a2",
        "base-url": "",
        "proxy-url": "http://127.0.0.1:3128",
      },
    });
    await ui.ok("PATCH", "/codex-api-key", {
      index: 1,
      value: { ...again[1], "api-key": "sk-codex-b", "base-url": "https://codex.example.com/v2" },
    });
    expect((await ui.ok("GET", "/config"))["codex-api-key"]).toEqual([
      expect.objectContaining({ "api-key": "sk-codex-a2", "proxy-url": "http://127.0.0.1:3128" }),
      expect.objectContaining({
        "api-key": "sk-codex-b",
        "base-url": "https://codex.example.com/v2",
      }),
    ]);
    await ui.ok("DELETE", `/codex-api-key?api-key=${encodeURIComponent("sk-codex-b")}`);
    expect((await ui.ok("GET", "/codex-api-key"))["codex-api-key"]).toHaveLength(1);
  });

  it("Claude and Gemini strings as in v0.1.3; OpenAI-compatible from legacy `api-keys` or entries", async () => {
    await ui.ok("PUT", "/claude-api-key", [{ "api-key": "sk-ant-a" }]);
    await ui.ok("PATCH", "/claude-api-key", { index: 0, value: { "api-key": "sk-ant-b" } });
    await ui.ok("DELETE", "/claude-api-key?api-key=sk-ant-b");
    await ui.ok("PUT", "/generative-language-api-key", ["AIza-a"]);
    await ui.ok("PATCH", "/generative-language-api-key", { old: "AIza-a", new: "AIza-b" });
    await ui.ok("DELETE", "/generative-language-api-key?value=AIza-b");
    const c = await ui.ok("GET", "/config");
    expect(c["claude-api-key"] ?? []).toEqual([]);
    expect(c["generative-language-api-key"] ?? []).toEqual([]);
    for (const p of c["openai-compatibility"]) {
      const entries = p["api-key-entries"] ?? p["api-keys"].map((k: string) => ({ "api-key": k }));
      expect(entries.length).toBeGreaterThan(0);
    }
  });

  it("auth files: upload, list with type and runtime_only, JSON view of the download, delete", async () => {
    const up = await ui.upload([
      {
        name: "codex-v015.json",
        json: { type: "codex", email: "c@example.com", access_token: "at", refresh_token: "rt" },
      },
    ]);
    expect(up.status).toBe(200);
    const { files } = await ui.ok("GET", "/auth-files");
    const f = files.find((x: any) => x.name === "codex-v015.json");
    expect(f.type).toBe("codex");
    expect(f.size).toBeTypeOf("number");
    expectDate(f.modtime);
    // `runtime_only === true` hides download and delete: a file must not say so.
    expect(f.runtime_only === true).toBe(false);
    const view = await fetch(`${srv.base}/auth-files/download?name=codex-v015.json`, {
      headers: { authorization: `Bearer ${MGMT}` },
    });
    expect(view.status).toBe(200);
    expect(await view.json()).toMatchObject({ type: "codex", email: "c@example.com" });
    expect(await ui.ok("DELETE", "/auth-files?name=codex-v015.json")).toEqual({ status: "ok" });
  });

  it("OAuth starts: a URL with a state parameter for the code flows", async () => {
    for (const login of ["codex", "anthropic", "gemini-cli"]) {
      const start = await ui.ok("GET", `/${login}-auth-url?is_webui=1`);
      const state = new URL(start.url).searchParams.get("state") as string;
      expect(await ui.ok("GET", `/get-auth-status?state=${state}`)).toEqual({ status: "wait" });
    }
  });

  it("no call of the session got a 5xx", () => {
    expect(ui.calls.filter((c) => c.status >= 500)).toEqual([]);
  });
});
