import { randomBytes } from "node:crypto";
import { chmod, mkdir, readFile, stat, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join, resolve } from "node:path";
import {
  consoleLogger,
  createGateway,
  type Gateway,
  type LoggerLike,
  type LogLevel,
  memoryStore,
  type Store,
  toLogger,
} from "@tokenpool/core";
import { toNodeHandler } from "@tokenpool/core/node";
import { dashboard } from "@tokenpool/dashboard";
import { sqliteStore } from "@tokenpool/store-sqlite";
import { loadConfig, type ServerConfig } from "./config.js";
import { type ConfigSync, startConfigSync } from "./config-sync.js";
import { type DemoUpstream, startDemoUpstream } from "./demo-upstream.js";

/** Options of {@link startServer}; the CLI flags map onto them. */
export interface ServeOptions {
  /** @default 8317 */
  port?: number;
  /** @default "127.0.0.1" */
  host?: string;
  /** `sqlite:<path>`, `file:<dir>`, `redis://...`, `postgres://...` or `memory`. @default "sqlite:./data/tokenpool.db" */
  store?: string;
  /**
   * A YAML configuration file in the management seed's layout. It is applied at start-up (a
   * plaintext `remote-management.secret-key` is hashed and written back), changes made through
   * the management API are written back to it, and hand edits are picked up without a restart.
   */
  config?: string;
  /** Start a local mock upstream and a demo key, so a first request works offline. */
  demo?: boolean;
  /**
   * With `demo`: the loopback port of the demo upstream (0 = any free port).
   * @default 0
   */
  demoPort?: number;
  /**
   * A management UI file to serve at `GET /management.html` (the `management.html` of a release
   * of CLIProxyAPI's management center), read on every request. Off by default.
   */
  managementUi?: string;
  /**
   * Serve the web console (`@tokenpool/dashboard`) at `/dashboard/`; `false` (`--no-dashboard`)
   * leaves it out.
   * @default true
   */
  dashboard?: boolean;
  /** @default "info" */
  logLevel?: LogLevel;
  /** Where log lines go (tokenpool's Logger shape or a pino instance). @default a console logger at `logLevel` */
  logger?: LoggerLike;
  /** Where messages for the operator go (the management key, the demo key). @default stdout */
  print?: (line: string) => void;
}

/** A running standalone server. */
export interface RunningServer {
  url: string;
  gateway: Gateway;
  server: Server;
  /** The management key, when this start created it (shown once). */
  managementKey: string | null;
  /** The demo downstream key, with `demo`. */
  demoKey: string | null;
  close(): Promise<void>;
}

/** The default store of the standalone server. */
export const DEFAULT_STORE = "sqlite:./data/tokenpool.db";
const DEMO_UPSTREAM_KEY = "demo-upstream-key";
const DEMO_CREDENTIAL_ID = "demo-upstream";

/** The store specs the server understands, for error messages. */
const STORE_SPECS = `sqlite:<path> (the default is ${DEFAULT_STORE}), file:<dir>, redis://[:password@]host:port[/db][?prefix=<prefix>] (several host:port, comma-separated, or ?cluster=true: a Redis Cluster), postgres://user:password@host:5432/database[?schema=<name>] or memory`;

/**
 * What a `--store` spec names. A `redis://` or `postgres://` spec is split with string
 * operations, not `new URL`: a cluster's `redis://h1:p1,h2:p2` is no WHATWG URL. Only the
 * server's own parameter (`prefix`, `schema`) leaves the query; the rest (`cluster=true`,
 * `sslmode=require` ...) stays in the URL for the store's client.
 */
export type StoreSpec =
  | { kind: "memory" }
  | { kind: "sqlite"; filename: string }
  | { kind: "file"; dir: string }
  | { kind: "redis"; url: string; prefix?: string }
  | { kind: "postgres"; connectionString: string; schema?: string };

/**
 * `url` without the query parameter `name`, and that parameter's (last) value. The other
 * parameters stay as written, not re-encoded.
 */
function takeParam(url: string, name: string): { url: string; value: string | undefined } {
  const hash = url.indexOf("#");
  const rest = hash < 0 ? url : url.slice(0, hash);
  const q = rest.indexOf("?");
  if (q < 0) return { url, value: undefined };
  let value: string | undefined;
  const kept = rest
    .slice(q + 1)
    .split("&")
    .filter((pair) => {
      const [k = "", v = ""] = pair.split(/=(.*)/s);
      const decode = (x: string) => {
        try {
          return decodeURIComponent(x.replaceAll("+", " "));
        } catch {
          return x;
        }
      };
      if (decode(k) !== name) return pair !== "";
      value = decode(v);
      return false;
    });
  const fragment = hash < 0 ? "" : url.slice(hash);
  return { url: `${rest.slice(0, q)}${kept.length ? `?${kept.join("&")}` : ""}${fragment}`, value };
}

/** Parses a `--store` spec (see {@link STORE_SPECS}); throws on one it does not know. */
export function parseStoreSpec(spec: string): StoreSpec {
  if (spec === "memory") return { kind: "memory" };
  if (spec.startsWith("sqlite:")) return { kind: "sqlite", filename: spec.slice("sqlite:".length) };
  if (spec.startsWith("file:")) return { kind: "file", dir: spec.slice("file:".length) };
  if (/^rediss?:\/\//.test(spec)) {
    const { url, value } = takeParam(spec, "prefix");
    return { kind: "redis", url, ...(value ? { prefix: value } : {}) };
  }
  if (/^postgres(ql)?:\/\//.test(spec)) {
    const { url, value } = takeParam(spec, "schema");
    return { kind: "postgres", connectionString: url, ...(value ? { schema: value } : {}) };
  }
  throw new Error(`unknown --store "${redactSpec(spec)}": use ${STORE_SPECS}`);
}

/** A store spec fit to print: the password of a `scheme://user:password@host` spec is `***`. */
export function redactSpec(spec: string): string {
  return spec.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:@/?#]*:)[^@/?#]*@/i, "$1***@");
}

/**
 * Opens the store named by `spec`. `dataDir` is where the server may keep its own files (the
 * generated secret); `shared` = other processes may use the same store (they must then share
 * the secret).
 */
export async function openStore(
  spec: string,
): Promise<{ store: Store; dataDir: string | null; shared: boolean }> {
  const parsed = parseStoreSpec(spec);
  switch (parsed.kind) {
    case "memory":
      return { store: memoryStore(), dataDir: null, shared: false };
    case "sqlite": {
      // sqliteStore creates the file's folder (and names it when it cannot); secret.key goes beside.
      const filename = resolve(parsed.filename);
      return { store: sqliteStore({ filename }), dataDir: dirname(filename), shared: false };
    }
    case "file": {
      const dir = resolve(parsed.dir);
      await mkdir(dir, { recursive: true });
      const { fileStore } = await import("@tokenpool/store-file");
      return { store: fileStore({ dir }), dataDir: dir, shared: false };
    }
    case "redis": {
      const { redisStore } = await import("@tokenpool/store-redis");
      const store = redisStore({
        redis: parsed.url,
        ...(parsed.prefix ? { prefix: parsed.prefix } : {}),
      });
      return { store, dataDir: null, shared: true };
    }
    case "postgres": {
      const { postgresStore } = await import("@tokenpool/store-postgres");
      const store = postgresStore({
        connectionString: parsed.connectionString,
        ...(parsed.schema ? { schema: parsed.schema } : {}),
      });
      return { store, dataDir: null, shared: true };
    }
  }
}

/**
 * The server secret: TOKENPOOL_SECRET, the config's `secret`, or a random one kept in
 * `<data dir>/secret.key` (mode 0600) so that stored keys stay valid across restarts.
 */
async function resolveSecret(config: ServerConfig, dataDir: string | null): Promise<string> {
  const fromEnv = process.env.TOKENPOOL_SECRET ?? config.secret;
  if (fromEnv) return fromEnv;
  if (!dataDir) return randomBytes(32).toString("hex");
  const file = join(dataDir, "secret.key");
  try {
    const s = (await readFile(file, "utf8")).trim();
    if (s.length >= 32) return s;
  } catch {
    // first start
  }
  const s = randomBytes(32).toString("hex");
  await writeFile(file, `${s}\n`, { mode: 0o600 });
  await chmod(file, 0o600);
  return s;
}

/**
 * Creates the management key on a store's first start, once across instances starting together
 * on a shared store: under the store's lock, and only if no instance stored one meanwhile (then
 * null: the instance that created it printed it).
 */
async function firstStartKey(gateway: Gateway, store: Store): Promise<string | null> {
  for (let i = 0; i < 100; i++) {
    const token = await store.acquireLock("server:first-start", 30_000);
    if (!token) {
      await new Promise((r) => setTimeout(r, 100));
      continue;
    }
    try {
      const stored = (await store.settings.get("remote-management")) as
        | { "secret-key"?: unknown }
        | undefined;
      if (typeof stored?.["secret-key"] === "string" && stored["secret-key"] !== "") return null;
      return await gateway.management.generateKey();
    } finally {
      await store.releaseLock("server:first-start", token);
    }
  }
  throw new Error("could not take the first-start lock of the store within 10 s");
}

/** The absolute path of `--management-ui`, or an error naming the flag before anything starts. */
async function checkManagementUi(path: string): Promise<string> {
  const file = resolve(path);
  const st = await stat(file).catch((error: NodeJS.ErrnoException) => {
    throw new Error(
      `--management-ui ${file}: ${error.code === "ENOENT" ? "no such file" : error.message}; download management.html from a release of router-for-me/Cli-Proxy-API-Management-Center and pass its path`,
    );
  });
  if (!st.isFile()) throw new Error(`--management-ui ${file}: not a file`);
  return file;
}

/**
 * Starts the standalone gateway: opens the store, creates the management key on first start,
 * applies the configuration file, and listens.
 */
export async function startServer(options: ServeOptions = {}): Promise<RunningServer> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const managementUi =
    options.managementUi === undefined ? undefined : await checkManagementUi(options.managementUi);
  const config = options.config ? await loadConfig(options.config) : {};
  const storeSpec = options.store ?? config.store ?? DEFAULT_STORE;
  const { store, dataDir, shared } = await openStore(storeSpec);
  if (shared && !process.env.TOKENPOOL_SECRET && !config.secret) {
    await store.close();
    throw new Error(
      "a shared store (redis, postgres) needs the same secret on every instance: set TOKENPOOL_SECRET (32+ characters) or `secret` in the config file",
    );
  }
  const secret = await resolveSecret(config, dataDir);
  const logger = options.logger
    ? toLogger(options.logger)
    : consoleLogger(options.logLevel ?? "info");
  const gateway = createGateway({
    store,
    secret,
    logger,
    // Only the configuration file can allow remote management (never the management API).
    management: {
      allowRemote:
        config["remote-management"]?.["allow-remote"] === true ||
        config["allow-remote-management"] === true,
      ...(managementUi === undefined ? {} : { uiFile: managementUi }),
    },
    ...(Array.isArray(config["trusted-proxies"])
      ? { trustedProxies: config["trusted-proxies"].map(String) }
      : {}),
    // GET /metrics reads with the management key, or with this token from any address.
    ...(process.env.TOKENPOOL_METRICS_TOKEN
      ? { metrics: { token: process.env.TOKENPOOL_METRICS_TOKEN } }
      : {}),
    dialects: options.dashboard === false ? [] : [dashboard()],
  });
  let mock: DemoUpstream | null = null;
  let server: Server | null = null;
  let sync: ConfigSync | null = null;
  try {
    await gateway.ready;

    // The file, when there is one, is the source of the management key and the settings.
    // A file store keeps its own config.yaml: syncing that same file too would make two writers.
    const ownedByStore =
      storeSpec.startsWith("file:") &&
      options.config !== undefined &&
      resolve(options.config) === join(resolve(storeSpec.slice("file:".length)), "config.yaml");
    if (options.config && !ownedByStore)
      sync = await startConfigSync({ gateway, path: options.config, logger });
    let managementKey: string | null = null;
    // An explicit empty `secret-key` disables the management API (the seed); none at all → create one.
    const configured = config["remote-management"]?.["secret-key"];
    if ((configured === undefined || configured === null) && !gateway.management.hasKey()) {
      managementKey = await firstStartKey(gateway, store);
      if (managementKey)
        print(`Management key (shown once; only its bcrypt hash is stored): ${managementKey}`);
    }

    let demoKey: string | null = null;
    if (options.demo) {
      mock = await startDemoUpstream({
        apiKey: DEMO_UPSTREAM_KEY,
        ...(options.demoPort === undefined ? {} : { port: options.demoPort }),
      });
      const fields = {
        provider: "openai",
        kind: "api-key" as const,
        label: "demo mock upstream",
        baseUrl: mock.url,
        secret: { apiKey: DEMO_UPSTREAM_KEY },
        models: [{ name: "gpt-4o-mini" }, { name: "gpt-4o" }],
      };
      if (gateway.credentials.get(DEMO_CREDENTIAL_ID))
        await gateway.credentials.update(DEMO_CREDENTIAL_ID, fields);
      else await gateway.credentials.add({ id: DEMO_CREDENTIAL_ID, ...fields });
      const existing = (await gateway.keys.list({ keyword: "demo", limit: 100 })).items.find(
        (k) => k.name === "demo",
      );
      demoKey = existing ? await gateway.keys.reveal(existing.id) : null;
      if (!demoKey)
        demoKey = (await gateway.keys.create({ name: "demo", remainQuota: 500_000 })).key;
    }

    const srv = createServer(toNodeHandler(gateway));
    server = srv;
    const port = options.port ?? config.port ?? 8317;
    const host = options.host ?? config.host ?? "127.0.0.1";
    await new Promise<void>((ok, fail) => {
      srv.once("error", fail);
      srv.listen(port, host, () => ok());
    });
    const addr = srv.address() as AddressInfo;
    const url = `http://${addr.family === "IPv6" ? `[${addr.address}]` : addr.address}:${addr.port}`;
    // The listening line comes last but for the hint: scripts wait for it, then read what came before.
    if (mock) print(`Demo upstream: ${mock.url}`);
    if (demoKey) print(`Demo key: ${demoKey}`);
    if (managementUi) print(`Management UI: ${url}/management.html (${managementUi})`);
    if (options.dashboard !== false)
      print(`Console: ${url}/dashboard/ (log in with the management key)`);
    print(`tokenpool listening on ${url} (store: ${redactSpec(storeSpec)})`);
    if (demoKey) {
      print(
        `Try it: curl ${url}/v1/chat/completions -H "Authorization: Bearer ${demoKey}" -H "Content-Type: application/json" -d '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hello"}]}'`,
      );
    }

    let closing: Promise<void> | null = null;
    return {
      url,
      gateway,
      server: srv,
      managementKey,
      demoKey,
      close() {
        closing ??= (async () => {
          await new Promise<void>((ok) => {
            srv.close(() => ok());
            srv.closeIdleConnections();
          });
          await sync?.close();
          await gateway.close();
          await mock?.close();
        })();
        return closing;
      },
    };
  } catch (error) {
    server?.close();
    await sync?.close().catch(() => {});
    await gateway.close().catch(() => {});
    await mock?.close();
    throw error;
  }
}
