import { spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { recordUsage, type Store, type StoreChange } from "@tokenpool/core";
import { fixtures } from "@tokenpool/testing";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parse } from "yaml";
import { type FileStoreError, fileStore } from "../src/index.js";

const here = dirname(fileURLToPath(import.meta.url));
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const waitUntil = async (
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
) => {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(10);
  }
};

describe("fileStore", () => {
  let dir: string;
  const stores: Store[] = [];
  const errors: FileStoreError[] = [];
  const open = (extra: { poolProvider?: string } = {}) => {
    const store = fileStore({ dir, onError: (e) => errors.push(e), watchDebounceMs: 50, ...extra });
    stores.push(store);
    return store;
  };
  const read = (rel: string) => readFileSync(join(dir, rel), "utf8");
  const readJson = (rel: string) => JSON.parse(read(rel));

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "tokenpool-file-unit-"));
    errors.length = 0;
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe("the seeds' formats on disk", () => {
    it("writes settings and API-key credentials into config.yaml as the management seed's lists", async () => {
      const store = open();
      await store.settings.set({
        "request-retry": 3,
        "proxy-url": "socks5://127.0.0.1:1080",
        "quota-exceeded": { "switch-project": true, "switch-preview-model": false },
        "remote-management": { "allow-remote": false, "secret-key": "$2a$10$hash" },
      });
      await store.credentials.create(
        fixtures.credential({
          provider: "anthropic",
          kind: "api-key",
          label: "",
          baseUrl: "https://api.anthropic.com",
          secret: { apiKey: "sk-ant-1" },
          models: [],
          headers: {},
          proxyUrl: "",
          excludedModels: ["claude-2"],
        }),
      );
      for (const key of ["sk-or-1", "sk-or-2"])
        await store.credentials.create(
          fixtures.credential({
            provider: "openai",
            kind: "api-key",
            label: "openrouter",
            baseUrl: "https://openrouter.ai/api/v1",
            secret: { apiKey: key },
            models: [{ name: "moonshot/kimi", alias: "kimi" }],
            headers: {},
            proxyUrl: "",
          }),
        );
      await store.credentials.create(
        fixtures.credential({
          provider: "gemini",
          kind: "api-key",
          label: "generative-language-api-key",
          baseUrl: "https://generativelanguage.googleapis.com",
          secret: { apiKey: "AIza-1" },
        }),
      );
      const config = parse(read("config.yaml"));
      expect(config["request-retry"]).toBe(3);
      expect(config["proxy-url"]).toBe("socks5://127.0.0.1:1080");
      expect(config["quota-exceeded"]).toEqual({
        "switch-project": true,
        "switch-preview-model": false,
      });
      expect(config["remote-management"]["secret-key"]).toBe("$2a$10$hash");
      expect(config["claude-api-key"]).toEqual([
        { "api-key": "sk-ant-1", "base-url": "", "excluded-models": ["claude-2"] },
      ]);
      expect(config["openai-compatibility"]).toEqual([
        {
          name: "openrouter",
          "base-url": "https://openrouter.ai/api/v1",
          "api-keys": ["sk-or-1", "sk-or-2"],
          // Both key shapes, as GET /config answers them.
          "api-key-entries": [
            { "api-key": "sk-or-1", "proxy-url": "" },
            { "api-key": "sk-or-2", "proxy-url": "" },
          ],
          models: [{ name: "moonshot/kimi", alias: "kimi" }],
        },
      ]);
      expect(config["generative-language-api-key"]).toEqual(["AIza-1"]);
      // The index keeps ids and health, not the keys the seed file holds.
      expect(read("credentials.json")).not.toContain("sk-ant-1");
      expect(readJson("credentials.json").credentials[0].source).toBe("config.yaml");
    });

    it("writes pool accounts to data/accounts.json and other OAuth credentials to auths/", async () => {
      const store = open();
      const expiresAt = Date.parse("2030-01-01T00:00:00Z");
      await store.credentials.create(
        fixtures.credential({
          id: "acc-1",
          provider: "antigravity",
          kind: "oauth",
          label: "",
          baseUrl: "https://daily-cloudcode-pa.sandbox.googleapis.com",
          secret: {
            accessToken: "ya29.a",
            refreshToken: "1//r",
            expiresAt,
            extra: { expiresIn: "3599" },
          },
          projectIds: ["project-123"],
        }),
      );
      await store.credentials.create(
        fixtures.credential({
          id: "claude-me.json",
          provider: "anthropic",
          kind: "oauth",
          label: "me@example.com",
          baseUrl: "https://api.anthropic.com",
          secret: { accessToken: "at", refreshToken: "rt", expiresAt },
        }),
      );
      expect(readJson("data/accounts.json")).toEqual([
        {
          id: "acc-1",
          access_token: "ya29.a",
          refresh_token: "1//r",
          expires_in: 3599,
          timestamp: expiresAt - 3_599_000,
          expires_at: expiresAt,
          enable: true,
          projectId: "project-123",
        },
      ]);
      const auth = readJson("auths/claude-me.json");
      expect(auth).toMatchObject({
        type: "claude",
        access_token: "at",
        refresh_token: "rt",
        email: "me@example.com",
        expired: "2030-01-01T00:00:00.000Z",
      });
      await store.credentials.delete("claude-me.json");
      expect(existsSync(join(dir, "auths/claude-me.json"))).toBe(false);
    });

    it("keeps a credential no seed format can express whole in credentials.json", async () => {
      const store = open();
      const c = await store.credentials.create(
        fixtures.credential({ provider: "qwen", kind: "api-key", secret: { apiKey: "q-1" } }),
      );
      const index = readJson("credentials.json").credentials;
      expect(index).toEqual([expect.objectContaining({ id: c.id, secret: { apiKey: "q-1" } })]);
      expect(index[0].source).toBeUndefined();
    });

    it("keeps interactions-api-key credentials and a Vertex service-account import whole in credentials.json across a reopen", async () => {
      const first = open();
      const interactions = await first.credentials.create(
        fixtures.credential({
          id: "interactions-api-key:1",
          provider: "gemini-interactions",
          kind: "api-key",
          baseUrl: "https://interactions.example.com",
          secret: { apiKey: "AIza-i1" },
          proxyUrl: "socks5://127.0.0.1:1080",
          headers: { "X-A": "1" },
          models: [{ name: "gemini-2.5-pro", alias: "i-pro" }],
          excludedModels: [],
        }),
      );
      const vertex = await first.credentials.create(
        fixtures.credential({
          id: "vertex-my-proj.json",
          provider: "vertex",
          kind: "oauth",
          label: "sa@my-proj.iam.gserviceaccount.com",
          baseUrl: "https://us-central1-aiplatform.googleapis.com",
          secret: {
            extra: { serviceAccount: '{"type":"service_account","project_id":"my-proj"}' },
          },
          projectIds: ["my-proj"],
        }),
      );
      expect(existsSync(join(dir, "auths", "vertex-my-proj.json"))).toBe(false);
      expect(read("config.yaml")).not.toContain("AIza-i1");
      await first.close();
      stores.length = 0;
      const second = open();
      expect(await second.credentials.get(interactions.id)).toEqual(interactions);
      expect(await second.credentials.get(vertex.id)).toEqual(vertex);
    });

    it("writes keys, users, usage and kv as JSON files with mode 0600", async () => {
      const store = open();
      const user = await store.users.create(fixtures.user());
      const key = await store.keys.create(fixtures.key({ userId: user.id, remainQuota: 100 }));
      await recordUsage(store, [fixtures.usage({ keyId: key.id })]);
      await store.kv.set("ban:1.2.3.4", "1");
      expect(readJson("keys.json").keys[0]).toEqual(key);
      expect(readJson("users.json").users[0]).toEqual(user);
      expect(readJson("usage.json").records).toHaveLength(1);
      expect(readJson("usage.json").rollups).toHaveLength(1);
      expect(readJson("kv.json").entries["ban:1.2.3.4"].value).toBe("1");
      for (const f of ["config.yaml", "keys.json", "users.json", "usage.json", "kv.json"])
        if (existsSync(join(dir, f))) expect(statSync(join(dir, f)).mode & 0o777).toBe(0o600);
    });

    it("reopens a directory with everything it held", async () => {
      const first = open();
      const user = await first.users.create(fixtures.user({ quota: 50 }));
      const key = await first.keys.create(fixtures.key({ userId: user.id, remainQuota: 10 }));
      const res = await first.reserveQuota(key.id, 4);
      expect(res.ok).toBe(true);
      await first.settings.set({ debug: true, "claude-api-key": "a setting named like a list" });
      const cred = await first.credentials.create(
        fixtures.credential({
          provider: "codex",
          kind: "api-key",
          baseUrl: "https://chatgpt.com/backend-api/codex",
          secret: { apiKey: "cx-1" },
          priority: 5,
          groups: ["vip"],
          models: [],
          headers: {},
          proxyUrl: "",
          excludedModels: [],
        }),
      );
      await first.credentials.update(cred.id, {
        state: { ...cred.state, errorCount: 2, cooldowns: { "*": 123 } },
      });
      await recordUsage(first, [fixtures.usage({ keyId: key.id })]);
      await first.kv.incr("n", 3);
      await first.close();
      stores.length = 0;

      const second = open();
      expect((await second.keys.get(key.id))?.remainQuota).toBe(6);
      expect((await second.users.get(user.id))?.quota).toBe(46);
      expect(await second.settings.all()).toEqual({
        debug: true,
        "claude-api-key": "a setting named like a list",
      });
      expect(await second.credentials.get(cred.id)).toEqual(
        await (async () => {
          const c = (await second.credentials.list())[0]!;
          return c;
        })(),
      );
      const again = (await second.credentials.get(cred.id))!;
      expect(again.secret.apiKey).toBe("cx-1");
      expect(again.priority).toBe(5);
      expect(again.groups).toEqual(["vip"]);
      expect(again.state.errorCount).toBe(2);
      expect((await second.usage.list()).total).toBe(1);
      expect(await second.kv.get("n")).toBe("3");
      const next = await second.keys.create(fixtures.key());
      expect(next.id).toBe(key.id + 1);
    });
  });

  describe("an existing deployment's files", () => {
    const CONFIG = `# my CLIProxyAPI config
port: 8317
debug: false
request-retry: 2 # retries
api-keys:
  - "sk-client-1"
claude-api-key:
  - api-key: "sk-ant-hand"
    base-url: ""
openai-compatibility:
  - name: "openrouter"
    base-url: "https://openrouter.ai/api/v1"
    api-keys:
      - "sk-or-a"
    models:
      - name: "moonshot/kimi"
        alias: "kimi"
remote-management:
  allow-remote: false
  secret-key: ""
`;

    it("serves config.yaml, data/accounts.json and auths/*.json written by hand", async () => {
      writeFileSync(join(dir, "config.yaml"), CONFIG);
      mkdirSync(join(dir, "data"));
      writeFileSync(
        join(dir, "data/accounts.json"),
        JSON.stringify([
          {
            access_token: "ya29.x",
            refresh_token: "1//x",
            expires_in: 3599,
            timestamp: 1_700_000_000_000,
            enable: true,
            projectId: "p-1",
          },
        ]),
      );
      mkdirSync(join(dir, "auths"));
      writeFileSync(
        join(dir, "auths/codex-me.json"),
        JSON.stringify({ type: "codex", access_token: "cx-at", refresh_token: "cx-rt" }),
      );
      const store = open();
      expect(await store.settings.get("request-retry")).toBe(2);
      expect(await store.settings.get("port")).toBe(8317);
      const creds = await store.credentials.list();
      const by = (p: string, k: string) => creds.find((c) => c.provider === p && c.kind === k)!;
      expect(by("anthropic", "api-key").secret.apiKey).toBe("sk-ant-hand");
      expect(by("openai", "api-key")).toMatchObject({
        label: "openrouter",
        baseUrl: "https://openrouter.ai/api/v1",
        models: [{ name: "moonshot/kimi", alias: "kimi" }],
      });
      expect(by("antigravity", "oauth")).toMatchObject({
        projectIds: ["p-1"],
        secret: { accessToken: "ya29.x", refreshToken: "1//x", expiresAt: 1_700_003_599_000 },
      });
      expect(by("codex", "oauth")).toMatchObject({ id: "codex-me.json" });
      // The accounts got ids written back; the index now knows every credential.
      expect(readJson("data/accounts.json")[0].id).toMatch(/^acct_/);
      expect(readJson("credentials.json").credentials).toHaveLength(4);

      // A change through the API keeps the comments, the order and `api-keys`.
      await store.settings.set({ "request-retry": 5 });
      const text = read("config.yaml");
      expect(text).toContain("# my CLIProxyAPI config");
      expect(text).toContain("request-retry: 5 # retries");
      expect(text).toContain("sk-client-1");
      expect(text.indexOf("port:")).toBeLessThan(text.indexOf("claude-api-key:"));

      // Ids and health survive a restart.
      const ids = (await store.credentials.list()).map((c) => c.id);
      await store.close();
      stores.length = 0;
      const again = open();
      expect((await again.credentials.list()).map((c) => c.id)).toEqual(ids);
    });
  });

  describe("hand edits", () => {
    const changesOf = (store: Store) => {
      const changes: StoreChange[] = [];
      store.watch((c) => changes.push(c));
      return changes;
    };

    it("a hand edit of config.yaml reaches the store and watch() as remote within a second", async () => {
      const store = open();
      await store.settings.set({ "request-retry": 1 });
      const changes = changesOf(store);
      const started = Date.now();
      writeFileSync(
        join(dir, "config.yaml"),
        `# edited\nrequest-retry: 4\nclaude-api-key:\n  - api-key: sk-new\n`,
      );
      await waitUntil(() => changes.length >= 2, 1_000, "2 remote changes");
      expect(Date.now() - started).toBeLessThan(1_000);
      expect(await store.settings.get("request-retry")).toBe(4);
      const creds = await store.credentials.list();
      expect(creds.map((c) => c.secret.apiKey)).toEqual(["sk-new"]);
      expect(changes).toEqual(
        expect.arrayContaining([
          { collection: "settings", id: "request-retry", op: "upsert", origin: "remote" },
          { collection: "credentials", id: creds[0]!.id, op: "upsert", origin: "remote" },
        ]),
      );
      await sleep(300);
      expect(read("config.yaml")).toContain("# edited");
    });

    it("a hand edit of keys.json is merged record by record and delivered", async () => {
      const store = open();
      const a = await store.keys.create(fixtures.key({ name: "a" }));
      const b = await store.keys.create(fixtures.key({ name: "b" }));
      const changes = changesOf(store);
      const file = readJson("keys.json");
      file.keys[0].name = "renamed by hand";
      file.keys = file.keys.filter((k: { id: number }) => k.id !== b.id);
      writeFileSync(join(dir, "keys.json"), JSON.stringify(file));
      await waitUntil(() => changes.length >= 2, 1_000, "2 remote changes");
      expect((await store.keys.get(a.id))?.name).toBe("renamed by hand");
      expect(await store.keys.get(b.id)).toBeNull();
      expect(await store.keys.getByHash(b.keyHash)).toBeNull();
      expect(changes).toEqual([
        { collection: "keys", id: String(a.id), op: "upsert", origin: "remote" },
        { collection: "keys", id: String(b.id), op: "delete", origin: "remote" },
      ]);
    });

    it("a hand edit of data/accounts.json reaches the pool", async () => {
      const store = open();
      await store.credentials.create(
        fixtures.credential({
          id: "acc-1",
          provider: "antigravity",
          kind: "oauth",
          secret: {
            refreshToken: "1//r",
            accessToken: "old",
            expiresAt: 1,
            extra: { expiresIn: "1" },
          },
        }),
      );
      const changes = changesOf(store);
      const accounts = readJson("data/accounts.json");
      accounts[0].access_token = "new-token";
      accounts[0].enable = false;
      accounts.push({
        refresh_token: "1//added",
        access_token: "t2",
        expires_in: 3599,
        timestamp: 5,
      });
      writeFileSync(join(dir, "data/accounts.json"), JSON.stringify(accounts, null, 2));
      await waitUntil(() => changes.length >= 2, 1_000, "2 remote changes");
      const one = (await store.credentials.get("acc-1"))!;
      expect(one.secret.accessToken).toBe("new-token");
      expect(one.enabled).toBe(false);
      const all = await store.credentials.list();
      expect(all).toHaveLength(2);
      expect(all[1]).toMatchObject({
        provider: "antigravity",
        kind: "oauth",
        secret: { refreshToken: "1//added", expiresAt: 5 + 3_599_000 },
      });
      expect(all[1]!.createdAt).toBeGreaterThan(0);
    });

    it("does not report its own writes as changes", async () => {
      const store = open();
      const changes = changesOf(store);
      await store.settings.set({ x: 1 });
      await store.keys.create(fixtures.key());
      await sleep(400);
      expect(changes.map((c) => c.origin)).toEqual(["local", "local"]);
    });

    it("a broken file is reported, the last good state kept and the file never overwritten", async () => {
      const store = open();
      await store.settings.set({ "request-retry": 1 });
      const key = await store.keys.create(fixtures.key({ name: "kept" }));
      const brokenYaml = "request-retry: [unclosed\n";
      writeFileSync(join(dir, "config.yaml"), brokenYaml);
      writeFileSync(join(dir, "keys.json"), "{ not json");
      await waitUntil(() => errors.length >= 2, 1_000, "2 reported errors");
      expect(errors.map((e) => e.file).sort()).toEqual(["config.yaml", "keys.json"]);
      expect(await store.settings.get("request-retry")).toBe(1);
      expect((await store.keys.get(key.id))?.name).toBe("kept");
      // Changes through the API keep working in memory; the broken files are left alone.
      await store.settings.set({ "request-retry": 2 });
      await store.keys.update(key.id, { name: "changed while broken" });
      await sleep(300);
      expect(read("config.yaml")).toBe(brokenYaml);
      expect(read("keys.json")).toBe("{ not json");
      // Fixed: the file's state applies, and the held changes are written.
      writeFileSync(join(dir, "config.yaml"), "request-retry: 7\n");
      writeFileSync(join(dir, "keys.json"), JSON.stringify({ nextId: 1, keys: [] }));
      await waitUntil(
        async () => (await store.settings.get("request-retry")) === 7,
        1_000,
        "the fix",
      );
      await waitUntil(async () => (await store.keys.get(key.id)) === null, 1_000, "the keys fix");
      expect(readJson("keys.json").keys).toEqual([]);
    });

    it("a broken file at start-up fails the open with the file's name", () => {
      writeFileSync(join(dir, "users.json"), "[1,");
      expect(() => open()).toThrow(/users\.json is invalid/);
      // The lock was released: a fixed directory opens.
      writeFileSync(join(dir, "users.json"), JSON.stringify({ nextId: 1, users: [] }));
      expect(() => open()).not.toThrow();
    });
  });

  describe("the one-process lock", () => {
    it("refuses a second store on the same directory in this process", async () => {
      const store = open();
      expect(() => fileStore({ dir })).toThrow(/already open in this process/);
      await store.close();
      expect(existsSync(join(dir, ".lock"))).toBe(false);
      expect(() => open()).not.toThrow();
    });

    it("refuses a second process", async () => {
      open();
      const child = spawnSync(
        process.execPath,
        ["--conditions=source", "--import", "tsx", join(here, "fixtures", "open-store.ts"), dir],
        { cwd: join(here, ".."), encoding: "utf8", timeout: 30_000 },
      );
      expect(child.status).toBe(3);
      expect(child.stdout).toMatch(new RegExp(`in use by process ${process.pid}`));
    });

    it("takes over a stale lock left by a dead process", async () => {
      const dead = spawnSync(
        process.execPath,
        ["-e", "process.stdout.write(String(process.pid))"],
        {
          encoding: "utf8",
        },
      );
      writeFileSync(join(dir, ".lock"), `${dead.stdout}\n`);
      const store = open();
      await store.settings.set({ ok: true });
      expect(read(".lock").trim()).toBe(String(process.pid));
    });
  });

  describe("atomic writes", () => {
    it("leaves no temporary files and never shows a half-written file", async () => {
      const store = open();
      let reads = 0;
      let stop = false;
      const failures: string[] = [];
      const reader = (async () => {
        while (!stop) {
          for (const f of ["keys.json", "config.yaml"]) {
            try {
              const text = readFileSync(join(dir, f), "utf8");
              if (f.endsWith(".json")) JSON.parse(text);
              else parse(text);
              reads++;
            } catch (error) {
              if ((error as NodeJS.ErrnoException).code !== "ENOENT")
                failures.push((error as Error).message);
            }
          }
          await new Promise((r) => setImmediate(r));
        }
      })();
      for (let i = 0; i < 200; i++) {
        await Promise.all([
          store.keys.create(fixtures.key({ name: `k${i}`.repeat(20) })),
          store.settings.set({ [`s${i % 10}`]: "x".repeat(i) }),
        ]);
      }
      stop = true;
      await reader;
      expect(failures).toEqual([]);
      expect(reads).toBeGreaterThan(50);
      expect(readJson("keys.json").keys).toHaveLength(200);
      const leftovers = [
        ...readdirSync(dir),
        ...readdirSync(join(dir, "data")),
        ...readdirSync(join(dir, "auths")),
      ].filter((n) => n.endsWith(".tmp"));
      expect(leftovers).toEqual([]);
    });

    it("coalesces a burst of changes into few writes, each acknowledged on disk", async () => {
      const store = open();
      const key = await store.keys.create(fixtures.key({ remainQuota: 1000 }));
      const results = await Promise.all(
        Array.from({ length: 100 }, () => store.reserveQuota(key.id, 1)),
      );
      expect(results.every((r) => r.ok)).toBe(true);
      expect(readJson("keys.json").keys[0].remainQuota).toBe(900);
    });
  });

  describe("admission state", () => {
    it("keeps limit and refill fields in keys.json, users.json and credentials.json across a reopen", async () => {
      const first = open();
      const P = Date.UTC(2026, 11, 1);
      const user = await first.users.create(
        fixtures.user({ quota: 500, limits: { rpm: 600 }, quotaRefill: null }),
      );
      const key = await first.keys.create(
        fixtures.key({
          userId: user.id,
          remainQuota: 10,
          limits: { rpm: 60, tpm: 100_000, maxConcurrency: 2 },
          quotaRefill: { interval: "month", amount: 1_000 },
        }),
      );
      expect(await first.refillQuota("key", key.id, P, 1_000)).toBe(true);
      const res = await first.reserveQuota(key.id, 100);
      expect(res).toMatchObject({ ok: true, reservation: { keyPeriod: P, userPeriod: 0 } });
      const limits = { rpm: 30, maxConcurrency: 1, spendPerDay: 5_000 };
      // One credential in config.yaml, one in auths/, one kept whole in credentials.json.
      const listed = await first.credentials.create(
        fixtures.credential({ id: "listed", secret: { apiKey: "sk-1" }, limits }),
      );
      const oauth = await first.credentials.create(
        fixtures.credential({
          id: "claude-me.json",
          provider: "anthropic",
          kind: "oauth",
          label: "me@example.com",
          baseUrl: "https://api.anthropic.com",
          secret: { accessToken: "at", refreshToken: "rt", expiresAt: Date.UTC(2030, 0, 1) },
          limits: { rpm: 5 },
        }),
      );
      const whole = await first.credentials.create(
        fixtures.credential({ id: "q", provider: "qwen", secret: { apiKey: "q-1" }, limits }),
      );
      expect(readJson("keys.json").keys[0]).toMatchObject({
        limits: { rpm: 60, tpm: 100_000, maxConcurrency: 2 },
        quotaRefill: { interval: "month", amount: 1_000 },
        quotaPeriod: P,
        remainQuota: 900,
      });
      expect(readJson("users.json").users[0]).toMatchObject({
        limits: { rpm: 600 },
        quotaRefill: null,
      });
      const index = readJson("credentials.json").credentials as { id: string; limits?: unknown }[];
      expect(index.map((c) => [c.id, c.limits])).toEqual([
        ["listed", limits],
        ["claude-me.json", { rpm: 5 }],
        ["q", limits],
      ]);
      const keyBefore = (await first.keys.get(key.id))!;
      await first.close();
      stores.length = 0;

      const second = open();
      expect(await second.keys.get(key.id)).toEqual(keyBefore);
      expect(await second.users.get(user.id)).toEqual({ ...user, quota: 400 });
      for (const c of [listed, oauth, whole])
        expect((await second.credentials.get(c.id))?.limits).toEqual(c.limits);
      // The reservation row kept its period: after the next refill it leaves the balance alone.
      expect(await second.refillQuota("key", key.id, P + 1, 1_000)).toBe(true);
      if (!res.ok) throw new Error("unreachable");
      expect(await second.settleQuota(res.reservation, 30, 1)).toEqual({ charged: 30 });
      expect(await second.keys.get(key.id)).toMatchObject({ remainQuota: 1_000, usedQuota: 0 });
    });

    it("a hand-written limit or refill field of the wrong shape makes its file invalid", () => {
      const bad: [file: string, content: unknown, message: RegExp][] = [
        [
          "keys.json",
          {
            nextId: 2,
            keys: [{ id: 1, keyHash: "h", quotaRefill: { interval: "2d", amount: 1 } }],
          },
          /keys\.json is invalid.*quotaRefill/,
        ],
        [
          "keys.json",
          { nextId: 2, keys: [{ id: 1, keyHash: "h", quotaPeriod: "soon" }] },
          /keys\.json is invalid.*quotaPeriod/,
        ],
        [
          "users.json",
          { nextId: 2, users: [{ id: 1, username: "u", limits: { rpm: -1 } }] },
          /users\.json is invalid.*limits\.rpm/,
        ],
        [
          "credentials.json",
          { credentials: [{ id: "c", provider: "qwen", limits: { rpm: "many" } }] },
          /credentials\.json is invalid.*limits\.rpm/,
        ],
      ];
      for (const [file, content, message] of bad) {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir);
        writeFileSync(join(dir, file), JSON.stringify(content));
        expect(() => open(), file).toThrow(message);
      }
    });

    it("keeps windows and leases in memory: no file is written, a reopened store starts empty", async () => {
      const store = open();
      await store.settings.set({ a: 1 });
      const before = readdirSync(dir)
        .map((f) => `${f}:${statSync(join(dir, f)).mtimeMs}`)
        .sort();
      const now = Date.now();
      const hit = { key: "rpm:key:1", limit: 1, windowMs: 60_000, cost: 1 };
      expect((await store.hitWindows([hit], now)).ok).toBe(true);
      expect(
        (await store.acquireLeases([{ pool: "p", limit: 1 }], "l", now + 60_000, now)).ok,
      ).toBe(true);
      const after = readdirSync(dir)
        .map((f) => `${f}:${statSync(join(dir, f)).mtimeMs}`)
        .sort();
      expect(after).toEqual(before);
      await store.close();
      const again = open();
      expect((await again.hitWindows([hit], now)).ok).toBe(true);
      expect(
        (await again.acquireLeases([{ pool: "p", limit: 1 }], "m", now + 60_000, now)).ok,
      ).toBe(true);
    });
  });
});
