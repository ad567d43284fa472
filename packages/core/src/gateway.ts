import { randomUUID } from "node:crypto";
import bcrypt from "bcryptjs";
import { Billing } from "./billing/price.js";
import { OAuthRefresher, type RefreshFailureSink } from "./credentials/oauth.js";
import { type AddCredentialInput, CredentialPool, maskCredential } from "./credentials/pool.js";
import { modelsProbe } from "./credentials/probe.js";
import { GatewayError } from "./errors.js";
import { GatewayEmitter } from "./events.js";
import { anthropicError, anthropicRoutes } from "./http/dialects/anthropic.js";
import { geminiError, geminiRoutes } from "./http/dialects/gemini.js";
import {
  MANAGEMENT_PREFIX,
  managementError,
  renderManagementError,
} from "./http/dialects/management/common.js";
import { managementRoutes } from "./http/dialects/management/index.js";
import { openaiError, openaiRoutes } from "./http/dialects/openai.js";
import { poolError, poolRoutes } from "./http/dialects/pool.js";
import { consoleError, tokenRoutes } from "./http/dialects/token.js";
import { userRoutes } from "./http/dialects/user.js";
import { type Exchange, header, type Reply } from "./http/exchange.js";
import { healthRoute, Router } from "./http/router.js";
import { fromRequest, toResponse } from "./http/web.js";
import { IpAllowList, resolveClientIp } from "./keys/ip.js";
import { KeyService } from "./keys/service.js";
import { consoleLogger, type Logger, type LogLevel, silentLogger } from "./logger.js";
import { type GatewayOptions, resolveOptions } from "./options.js";
import { UpstreamClient } from "./proxy/upstream.js";
import { SettingsService } from "./settings/service.js";
import type {
  CredentialPatch,
  CredentialRecord,
  Page,
  RollupQuery,
  Store,
  UsageQuery,
  UsageRecord,
  UsageRollup,
} from "./store/types.js";
import { pruneUsage, USAGE_PRUNE_INTERVAL_MS } from "./usage/retention.js";
import { UsageWriter } from "./usage/writer.js";
import { UserService } from "./users/service.js";
import { randomToken, SecretBox } from "./util/secrets.js";

/** The settings name under which the management key's bcrypt hash is kept (seed layout). */
const MANAGEMENT_SETTING = "remote-management";
/**
 * How long a successful management key check is remembered. bcrypt costs ~50 ms by design; the
 * token and user dialects check the key on every request, so a short cache keeps them usable.
 */
const MANAGEMENT_VERIFY_TTL_MS = 60_000;
/** Remembered management key checks before the cache is emptied (a cheap bound, not an LRU). */
const MANAGEMENT_VERIFY_MAX = 1_000;

/** Options of `gateway.handler` for fetch-style runtimes. */
export interface HandlerContext {
  /** The client's address; fetch-style runtimes do not expose the peer. @default "" */
  remoteAddress?: string;
}

/** A running gateway: the router and the domain services. */
export interface Gateway {
  /** Serves every route for fetch-style runtimes (Next.js, tests). */
  handler(request: Request, context?: HandlerContext): Promise<Response>;
  /** Alias of {@link Gateway.handler}, so a gateway can be passed where `{ fetch }` is expected. */
  fetch(request: Request, context?: HandlerContext): Promise<Response>;
  /** Serves one neutral exchange (used by the node:http adapter). */
  serve(exchange: Exchange): Promise<Reply>;
  /** Downstream API keys. */
  keys: KeyService;
  /** Owners of keys. */
  users: UsersApi;
  /** The upstream credential pool. */
  credentials: CredentialsApi;
  /** Usage records and roll-ups. */
  usage: UsageApi;
  /** Runtime settings. */
  settings: SettingsService;
  /** The management key (stored only as a bcrypt hash). */
  management: ManagementApi;
  /** Typed events. */
  events: GatewayEmitter;
  /** The store this gateway runs on. */
  store: Store;
  /** Resolves when the gateway has loaded its state from the store. */
  ready: Promise<void>;
  /** Flushes usage, waits for settlements in flight, stops watchers and closes the store. */
  close(): Promise<void>;
}

/**
 * Users API of a gateway: create (issues an access token, returned once and stored only as a
 * keyed hash), get, list, update, delete (with the user's keys), issueAccessToken,
 * findByAccessToken. Writes are validated (role, status, a known group, quotas) first.
 */
export type UsersApi = UserService;

/** Credentials API of a gateway. */
export interface CredentialsApi {
  add(input: AddCredentialInput): Promise<CredentialRecord>;
  get(id: string): CredentialRecord | null;
  /** Every credential with secrets masked. */
  list(): ReturnType<typeof maskCredential>[];
  update(id: string, patch: CredentialPatch): Promise<CredentialRecord | null>;
  remove(id: string): Promise<boolean>;
  /**
   * Refreshes an OAuth credential's access token now (single flight, under the store's lock)
   * and returns the stored record. Rejects with an `OAuthRefreshError` (message redacted).
   */
  refresh(id: string): Promise<CredentialRecord>;
  /**
   * Refreshes every enabled OAuth credential expiring within `oauth.refreshMarginMs` (what the
   * background scan does every `oauth.scanIntervalMs`); resolves with how many were due.
   */
  refreshExpiring(): Promise<number>;
  /** The pool itself (selection, health). */
  pool: CredentialPool;
}

/** Usage API of a gateway. */
export interface UsageApi {
  list(query?: UsageQuery): Promise<Page<UsageRecord>>;
  rollups(query?: RollupQuery): Promise<UsageRollup[]>;
  /** Writes queued records to the store now. */
  flush(): Promise<void>;
  /**
   * Deletes details older than the `usage-retention-days` setting (roll-ups are kept); the
   * gateway does it hourly by itself. Resolves with how many were deleted.
   */
  prune(): Promise<number>;
}

/** Management key API of a gateway. */
export interface ManagementApi {
  /** Whether a management key is set. */
  hasKey(): boolean;
  /** Sets a new management key (stores its bcrypt hash). */
  setKey(plain: string): Promise<void>;
  /** Generates, stores and returns a new management key (shown once). */
  generateKey(): Promise<string>;
  /**
   * Checks a presented key against the stored hash (bcrypt). A successful check is remembered
   * for a minute under a keyed hash of the presented key, and forgotten as soon as the stored
   * hash changes (here or, through the store's change notifications, on another instance).
   */
  verify(plain: string | undefined): Promise<boolean>;
}

/**
 * Creates a gateway on a store.
 *
 * @example
 * ```ts
 * import { createGateway, memoryStore } from "@tokenpool/core";
 * const gateway = createGateway({ store: memoryStore(), secret: process.env.TOKENPOOL_SECRET });
 * await gateway.credentials.add({ provider: "openai", baseUrl: "https://api.openai.com/v1", secret: { apiKey } });
 * const { key } = await gateway.keys.create({ name: "my app", remainQuota: 500_000 });
 * export default { fetch: gateway.handler };
 * ```
 */
export function createGateway(options: GatewayOptions): Gateway {
  const opts = resolveOptions(options);
  const store = opts.store;
  const logger: Logger =
    opts.logger === false
      ? silentLogger
      : typeof opts.logger === "string"
        ? consoleLogger(opts.logger)
        : opts.logger;
  // The `debug` setting raises the level of a logger that has a mutable `level` (consoleLogger,
  // pino ...) to "debug"; turning it off restores the level the logger started with.
  const leveled = logger as Logger & { level?: unknown };
  const baseLevel = typeof leveled.level === "string" ? (leveled.level as LogLevel) : null;
  const applyDebug = () => {
    if (baseLevel === null) return;
    leveled.level = settings.get("debug") === true ? "debug" : baseLevel;
  };
  const events = new GatewayEmitter();
  const box = new SecretBox(opts.secret);
  const settings = new SettingsService(store, events, opts.settings);
  const keys = new KeyService(store, box);
  const users = new UserService(store, box, keys, () => {
    const ratios = settings.get<unknown>("group-ratio");
    return typeof ratios === "object" && ratios !== null ? Object.keys(ratios) : [];
  });
  const pool = new CredentialPool(store, events, logger, { settings });
  const usageWriter = new UsageWriter(
    store,
    events,
    logger,
    opts.usage.flushIntervalMs,
    opts.usage.maxBatch,
    {
      ttlMs: opts.usage.reservationTtlMs,
      owner: randomUUID(),
      waitMs: opts.usage.reserveWaitMs,
    },
  );
  const upstream = new UpstreamClient(opts.upstream);
  // Token endpoints get their own connections and timeouts.
  const oauthHttp = new UpstreamClient({
    connectTimeoutMs: Math.min(opts.upstream.connectTimeoutMs, opts.oauth.timeoutMs),
    headersTimeoutMs: opts.oauth.timeoutMs,
    bodyTimeoutMs: opts.oauth.timeoutMs,
  });
  const onRefreshFailure: RefreshFailureSink = (credential, model, error, unusable) => {
    const message = `OAuth refresh failed: ${error.message}`;
    if (error.permanent) {
      // Refused by the token endpoint: an auth failure; the pool disables the credential once
      // its access token is unusable.
      pool.reportFailure(credential.id, model, 401, message, {
        kind: "auth",
        refreshFailed: unusable,
      });
    } else {
      // The endpoint was unreachable or failing: cool an unusable credential down for a while.
      pool.reportFailure(credential.id, model, error.status, message, {
        kind: error.status === 0 ? "network" : "server",
        ...(unusable ? { retryAfterMs: opts.oauth.failureBackoffMs } : {}),
      });
    }
  };
  const oauth = new OAuthRefresher({
    store,
    events,
    logger,
    http: oauthHttp,
    settings: opts.oauth,
    credentials: () => pool.list(),
    saveSecret: (id, secret) => pool.update(id, { secret }),
    onFailure: onRefreshFailure,
  });
  const billing = new Billing(settings, opts.billing.defaultCompletionTokens);
  const trusted = opts.trustedProxies.length > 0 ? new IpAllowList(opts.trustedProxies) : null;
  const clientIp = (ex: Exchange) =>
    resolveClientIp(ex.remoteAddress, header(ex.headers, "x-forwarded-for"), trusted);

  // Keep the in-memory views (settings, pool) in step with the store, including other instances.
  events.on("settings.changed", ({ name }) => {
    if (name === "debug") applyDebug();
  });
  const unwatch = store.watch((change) => {
    const task =
      change.collection === "settings"
        ? change.id === undefined
          ? settings.load()
          : settings.refresh(change.id)
        : change.collection === "credentials"
          ? pool.refresh(change.id)
          : undefined;
    if (change.collection === "keys")
      keys.invalidateKey(change.id === undefined ? undefined : Number(change.id));
    else if (change.collection === "users")
      keys.invalidateUser(change.id === undefined ? undefined : Number(change.id));
    task?.catch((error: unknown) =>
      logger.warn("could not apply a store change", { change, error: String(error) }),
    );
  });

  const managementHash = () => {
    const v = settings.get<{ "secret-key"?: string } | undefined>(MANAGEMENT_SETTING);
    return v?.["secret-key"] ?? "";
  };
  /** Successful management key checks: keyed hash of the presented key → the hash it matched, until when. */
  const verified = new Map<string, { against: string; until: number }>();
  /** Checks in flight, so that a burst of requests with one key costs one bcrypt. */
  const verifying = new Map<string, Promise<boolean>>();
  const verifyManagement = async (plain: string | undefined): Promise<boolean> => {
    const hash = managementHash();
    if (!plain || !hash) return false;
    const id = box.hash(plain);
    const hit = verified.get(id);
    if (hit && hit.against === hash && hit.until > Date.now()) return true;
    const flight = `${id}|${hash}`;
    let check = verifying.get(flight);
    if (!check) {
      check = bcrypt.compare(plain, hash).finally(() => verifying.delete(flight));
      verifying.set(flight, check);
    }
    const ok = await check;
    if (ok && managementHash() === hash) {
      if (verified.size >= MANAGEMENT_VERIFY_MAX) verified.clear();
      verified.set(id, { against: hash, until: Date.now() + MANAGEMENT_VERIFY_TTL_MS });
    } else verified.delete(id);
    return ok;
  };

  // Paths under /api/ belong to the token and user dialects: their 404s and 405s use that format too.
  const router = new Router(logger, (ex, err) =>
    ex.path === "/api" || ex.path.startsWith("/api/")
      ? consoleError(err)
      : ex.path === "/v1/tokens" || ex.path.startsWith("/v1/tokens/")
        ? poolError(err)
        : ex.path === MANAGEMENT_PREFIX || ex.path.startsWith(`${MANAGEMENT_PREFIX}/`)
          ? // A disabled management API (no key) is 404 on every path and method.
            renderManagementError(
              err.status === 405 && managementHash() !== ""
                ? managementError(405, "method not allowed")
                : managementError(404, "not found"),
            )
          : ex.path.startsWith("/v1beta/")
            ? geminiError(err)
            : ex.path.startsWith("/v1/messages")
              ? anthropicError(err)
              : openaiError(err),
  );
  const proxyDeps = {
    store,
    pool,
    oauth,
    upstream,
    billing,
    usage: usageWriter,
    settings,
    events,
    logger,
    keys,
    maxBodyBytes: opts.maxBodyBytes,
    clientIp,
  };
  const consoleDeps = { keys, users, verifyManagement, maxBodyBytes: opts.maxBodyBytes };
  router.add([
    healthRoute,
    ...tokenRoutes(consoleDeps),
    ...userRoutes(consoleDeps),
    ...poolRoutes({
      pool,
      users,
      verifyManagement,
      provider: opts.poolDialect.provider,
      baseUrl: opts.poolDialect.baseUrl,
      idFor: (refreshToken) => `tok_${box.hash(`pool-dialect:${refreshToken}`).slice(0, 24)}`,
      setEnabled: (id, enabled) => pool.setEnabled(id, enabled),
      secretChanged: (id) => oauth.forgetFailure(id),
      exists: async (id) => (await store.credentials.get(id)) !== null,
      reload: () => pool.load(),
      maxBodyBytes: opts.maxBodyBytes,
      logger,
    }),
    ...managementRoutes({
      store,
      hasKey: () => managementHash() !== "",
      verify: verifyManagement,
      clientIp,
      allowRemote: opts.management.allowRemote,
      settings,
      settingChanged: (name) => {
        if (name === "debug") applyDebug();
      },
      keys,
      pool,
      maxBodyBytes: opts.maxBodyBytes,
      flushUsage: () => usageWriter.flush(),
      usageView: { detailsPerModel: opts.management.usageDetailsPerModel },
      secretChanged: (id) => oauth.forgetFailure(id),
      oauthLogin: { providers: opts.oauth.providers, logger, timeoutMs: opts.oauth.timeoutMs },
    }),
    ...openaiRoutes(proxyDeps),
    ...anthropicRoutes(proxyDeps),
    ...geminiRoutes(proxyDeps),
  ]);

  const prune = () => pruneUsage(store, settings);
  let pruneTimer: NodeJS.Timeout | null = null;
  let loaded = false;
  const ready = Promise.all([settings.load(), pool.load()]).then(async () => {
    // Reservations left by a process that died are settled before this one serves.
    if (!closed) await usageWriter.start();
    loaded = true;
    applyDebug();
    if (!closed) {
      const runPrune = () =>
        void prune().catch((error: unknown) =>
          logger.warn("could not prune usage details", { error: String(error) }),
        );
      runPrune();
      pruneTimer = setInterval(runPrune, USAGE_PRUNE_INTERVAL_MS);
      pruneTimer.unref();
    }
    if (!closed) oauth.start();
    if (!closed && opts.recoveryProbe) {
      const { intervalMs, timeoutMs } = opts.recoveryProbe;
      pool.startRecoveryProbe(modelsProbe(upstream, timeoutMs === undefined ? {} : { timeoutMs }), {
        intervalMs,
      });
    }
  });
  // Surface load failures on the first request, not as an unhandled rejection.
  ready.catch(() => {});

  const serve = async (ex: Exchange): Promise<Reply> => {
    if (!loaded) {
      try {
        await ready;
      } catch (error) {
        return openaiError(
          new GatewayError(
            "STORE_ERROR",
            `the store could not be read: ${(error as Error).message}`,
          ),
        );
      }
    }
    return router.handle(ex);
  };

  const handler = async (request: Request, context?: HandlerContext) =>
    toResponse(await serve(fromRequest(request, context?.remoteAddress ?? "")));

  let closed: Promise<void> | null = null;

  return {
    handler,
    fetch: handler,
    serve,
    keys,
    users,
    credentials: {
      add: (input) => pool.add(input),
      get: (id) => pool.get(id),
      list: () => pool.list().map(maskCredential),
      update: (id, patch) => pool.update(id, patch),
      remove: (id) => pool.remove(id),
      async refresh(id) {
        await ready;
        const c = pool.get(id);
        if (!c) throw new GatewayError("NOT_FOUND", `No credential has the id ${id}.`);
        if (c.kind !== "oauth")
          throw new GatewayError(
            "INVALID_REQUEST",
            `The credential ${id} is not an OAuth account.`,
          );
        return oauth.refresh(c, { reason: "manual" });
      },
      async refreshExpiring() {
        await ready;
        return oauth.scan();
      },
      pool,
    },
    usage: {
      list: (q) => store.usage.list(q),
      rollups: (q) => store.usage.rollups(q),
      flush: () => usageWriter.flush(),
      prune,
    },
    settings,
    management: {
      hasKey: () => managementHash() !== "",
      async setKey(plain) {
        if (plain.length < 16)
          throw new GatewayError(
            "INVALID_REQUEST",
            "a management key needs at least 16 characters",
          );
        const current = settings.get<Record<string, unknown> | undefined>(MANAGEMENT_SETTING) ?? {};
        await settings.set({
          [MANAGEMENT_SETTING]: { ...current, "secret-key": await bcrypt.hash(plain, 10) },
        });
        verified.clear();
      },
      async generateKey() {
        const plain = randomToken("tp-mgmt-", 40);
        await this.setKey(plain);
        return plain;
      },
      verify: verifyManagement,
    },
    events,
    store,
    ready,
    close() {
      closed ??= (async () => {
        await ready.catch(() => {});
        if (pruneTimer) clearInterval(pruneTimer);
        usageWriter.stop();
        await oauth.close();
        await pool.stop();
        await usageWriter.flush();
        unwatch();
        await upstream.close();
        await oauthHttp.close();
        await store.close();
      })();
      return closed;
    },
  };
}
