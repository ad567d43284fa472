/**
 * CLIProxyAPI's HEAD UI calls `POST /vertex/import` (a service-account key file) and
 * `GET /model-definitions/:channel` (model pickers): answers and errors as CLIProxyAPI's, and the
 * service account's private key in no answer, no log line and no store record in the clear.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createGateway, type Gateway, memoryStore } from "../src/index.js";
import type { Logger } from "../src/logger.js";
import { toNodeHandler } from "../src/node.js";
import type { Store } from "../src/store/types.js";

const PRIVATE_KEY =
  "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC-test-only-0123456789\n-----END PRIVATE KEY-----\n";
const SA = {
  type: "service_account",
  project_id: "my-proj-1",
  private_key_id: "kid-0123",
  private_key: PRIVATE_KEY,
  client_email: "importer@my-proj-1.iam.gserviceaccount.com",
  client_id: "1234567890",
  token_uri: "https://oauth2.googleapis.com/token",
};
const KEY_MARK = "test-only-0123456789";

let gateway: Gateway;
let store: Store;
let server: Server;
let base: string;
let mgmt: string;
let logLines: string[];

beforeEach(async () => {
  logLines = [];
  const record =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      logLines.push(`${level} ${message} ${JSON.stringify(fields ?? {})}`);
    };
  const logger: Logger = {
    debug: record("debug"),
    info: record("info"),
    warn: record("warn"),
    error: record("error"),
  };
  store = memoryStore();
  gateway = createGateway({
    store,
    secret: "cpa-vertex-secret-0123456789-0123456789-abcdef",
    logger,
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

async function call(method: string, path: string, body?: RequestInit["body"]) {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${mgmt}` },
    ...(body === undefined ? {} : { body }),
  });
  const text = await res.text();
  const json = (res.headers.get("content-type") ?? "").includes("json");
  return {
    status: res.status,
    text,
    body: (json ? JSON.parse(text) : {}) as Record<string, unknown>,
  };
}

function form(file: string | null, location?: string): FormData {
  const f = new FormData();
  if (file !== null) f.append("file", new Blob([file], { type: "application/json" }), "sa.json");
  if (location !== undefined) f.append("location", location);
  return f;
}

describe("POST /vertex/import", () => {
  it("stores the key file as a vertex credential and answers CLIProxyAPI's shape", async () => {
    const r = await call("POST", "/vertex/import", form(JSON.stringify(SA), "europe-west4"));
    expect(r.status).toBe(200);
    expect(r.body).toEqual({
      status: "ok",
      "auth-file": "vertex-my-proj-1.json",
      project_id: "my-proj-1",
      email: SA.client_email,
      location: "europe-west4",
    });
    const c = gateway.credentials.pool.get("vertex-my-proj-1.json")!;
    expect(c).toMatchObject({
      provider: "vertex",
      kind: "oauth",
      label: SA.client_email,
      baseUrl: "https://europe-west4-aiplatform.googleapis.com",
      projectIds: ["my-proj-1"],
    });
    expect(JSON.parse(c.secret.extra!.serviceAccount!)).toEqual(SA);

    const files = await call("GET", "/auth-files");
    expect(files.body.files).toEqual([
      expect.objectContaining({
        name: "vertex-my-proj-1.json",
        type: "vertex",
        email: SA.client_email,
        project_id: "my-proj-1",
      }),
    ]);
    const answers = [
      r.text,
      files.text,
      (await call("GET", "/auth-files/download?name=vertex-my-proj-1.json")).text,
      (await call("GET", "/config")).text,
      (await call("GET", "/config.yaml")).text,
      (await call("GET", "/model-definitions/vertex")).text,
    ];
    for (const a of answers) expect(a).not.toContain(KEY_MARK);
    expect(logLines.join("\n")).not.toContain(KEY_MARK);
    // Sealed in the store adapter like every credential secret.
    const raw = await (store as unknown as { credentials: Store["credentials"] }).credentials.get(
      "vertex-my-proj-1.json",
    );
    expect(JSON.stringify(raw)).not.toContain(KEY_MARK);
    expect(raw!.secret.sealed).toEqual(expect.any(String));
  });

  it("location: the form field, else ?location=, else us-central1; a re-import replaces the key", async () => {
    expect(
      (await call("POST", "/vertex/import?location=asia-east1", form(JSON.stringify(SA)))).body
        .location,
    ).toBe("asia-east1");
    expect(gateway.credentials.pool.get("vertex-my-proj-1.json")!.baseUrl).toBe(
      "https://asia-east1-aiplatform.googleapis.com",
    );
    const again = { ...SA, private_key_id: "kid-2" };
    expect((await call("POST", "/vertex/import", form(JSON.stringify(again)))).body.location).toBe(
      "us-central1",
    );
    const vertex = gateway.credentials.pool.list().filter((c) => c.provider === "vertex");
    expect(vertex).toHaveLength(1);
    expect(JSON.parse(vertex[0]!.secret.extra!.serviceAccount!).private_key_id).toBe("kid-2");
  });

  it("answers CLIProxyAPI's 400s and stores nothing", async () => {
    const cases: [RequestInit["body"], Record<string, unknown>][] = [
      [form(null, "us-central1"), { error: "file required" }],
      [JSON.stringify(SA), { error: "file required" }],
      [form("{not json"), { error: "invalid json", message: expect.any(String) }],
      [form("[1]"), { error: "invalid service account", message: expect.any(String) }],
      [
        form(JSON.stringify({ ...SA, type: "authorized_user" })),
        { error: "invalid service account", message: expect.any(String) },
      ],
      [
        form(JSON.stringify({ ...SA, private_key: "" })),
        { error: "invalid service account", message: expect.any(String) },
      ],
      [
        form(JSON.stringify({ ...SA, client_email: undefined })),
        { error: "invalid service account", message: expect.any(String) },
      ],
      [form(JSON.stringify({ ...SA, project_id: "" })), { error: "project_id missing" }],
      [
        form(JSON.stringify(SA), "../evil"),
        { error: "invalid location", message: expect.any(String) },
      ],
    ];
    for (const [body, error] of cases) {
      const r = await call("POST", "/vertex/import", body);
      expect({ status: r.status, body: r.body }).toEqual({ status: 400, body: error });
      expect(r.text).not.toContain(KEY_MARK);
    }
    expect(gateway.credentials.pool.list()).toHaveLength(0);
  });
});

describe("GET /model-definitions/:channel", () => {
  it("answers the models the channel's credentials serve; unknown and empty channels are 400s", async () => {
    await gateway.credentials.add({
      provider: "anthropic",
      kind: "api-key",
      baseUrl: "https://api.anthropic.com",
      secret: { apiKey: "sk-ant-1" },
      models: [{ name: "claude-sonnet-4-5", alias: "sonnet" }, { name: "claude-opus-4-1" }],
      excludedModels: ["claude-opus-4-1"],
    });
    await gateway.credentials.add({
      provider: "openai",
      kind: "api-key",
      label: "OpenRouter",
      baseUrl: "https://openrouter.example/v1",
      secret: { apiKey: "sk-or-1" },
      models: [{ name: "deepseek/deepseek-r1" }],
    });
    expect((await call("GET", "/model-definitions/Claude")).body).toEqual({
      channel: "claude",
      models: [
        { id: "sonnet", display_name: "claude-sonnet-4-5", type: "claude", owned_by: "anthropic" },
      ],
    });
    expect((await call("GET", "/model-definitions?channel=openrouter")).body).toEqual({
      channel: "openrouter",
      models: [{ id: "deepseek/deepseek-r1", type: "openrouter", owned_by: "openai" }],
    });
    expect(await call("GET", "/model-definitions/gemini-cli")).toMatchObject({
      status: 200,
      body: { channel: "gemini-cli", models: [] },
    });
    expect(await call("GET", "/model-definitions/nope")).toMatchObject({
      status: 400,
      body: { error: "unknown channel", channel: "nope" },
    });
    expect(await call("GET", "/model-definitions?channel=")).toMatchObject({
      status: 400,
      body: { error: "channel is required" },
    });
    expect(await call("GET", "/model-definitions")).toMatchObject({
      status: 400,
      body: { error: "channel is required" },
    });
  });
});
