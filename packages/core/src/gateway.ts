import { randomUUID } from "node:crypto";
import bcrypt from "bcryptjs";
import { LeaseKeeper } from "./admission/leases.js";
import { WindowClaims } from "./admission/window-claims.js";
import { Billing } from "./billing/price.js";
import { OAuthRefresher, type RefreshFailureSink } from "./credentials/oauth.js";
import { type AddCredentialInput, CredentialPool, maskCredential } from "./credentials/pool.js";
import { modelsProbe } from "./credentials/probe.js";
import type { Dialect } from "./dialects/dialect.js";
import { openaiError } from "./dialects/openai/routes.js";
import { BUILTIN_DIALECTS, checkDialects, mountDialects } from "./dialects/registry.js";
import { GatewayError } from "./errors.js";
import { GatewayEmitter } from "./events.js";
import { type Exchange, header, type Reply } from "./exchange.js";
import { healthRoute, Router } from "./http/router.js";
import { fromRequest, toResponse } from "./http/web.js";
import { IpAllowList, resolveClientIp } from "./keys/ip.js";
import { createManagementGate } from "./keys/management-gate.js";
import { KeyService } from "./keys/service.js";
import { consoleLogger, type Logger, type LogLevel, silentLogger, toLogger } from "./logger.js";
import { requestLogCsv } from "./logs/export.js";
import { GatewayMetrics } from "./metrics/metrics.js";
import { UpstreamClient } from "./net/upstream.js";
import {
  DEFAULT_MAX_BATCH,
  type GatewayOptions,
  JOURNALED_MAX_BATCH,
  resolveOptions,
} from "./options.js";
import { LocalhostKey, QuotaHolds, QuotaLine } from "./proxy/index.js";
import { SettingsService } from "./settings/service.js";
import { sealedStore, sealPlaintextSecrets } from "./store/sealed.js";
import type {
  CredentialPatch,
  CredentialRecord,
  Page,
  RollupQuery,
  Store,
  UsageQuery,
  UsageRecord,
  UsageRollup,
  UsageStat,
} from "./store/types.js";
import { pruneUsage, USAGE_PRUNE_INTERVAL_MS } from "./usage/retention.js";
import { type UsageSummaryQuery, type UsageSummaryRow, usageSummary } from "./usage/summary.js";
import { UsageWriter } from "./usage/writer.js";
import { UserService } from "./users/service.js";
import { randomToken, SecretBox } from "./util/secrets.js";
import { WebhookService } from "./webhooks/service.js";

/** The settings name under which the management key's bcrypt hash is kept (seed layout). */
const MANAGEMENT_SETTING = "remote-management";

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
  /**
   * Prometheus metrics: `registry` (prom-client; `await registry.metrics()` is the exposition
   * text `GET /metrics` serves) and whether they are on. See docs/observability.md.
   */
  metrics: MetricsApi;
  /**
   * Webhook subscriptions (stored in the store's kv, secrets sealed), signed deliveries off the
   * request path, delivery attempts. See docs/webhooks.md.
   */
  webhooks: WebhookService;
  /**
   * The store this gateway runs on, as the gateway sees it: credential secrets read here are
   * opened and written here are sealed. The adapter object itself (the `store` option) holds
   * them sealed with the server secret (`secret: { sealed }`), unless its format is plaintext
   * by design (`capabilities.plaintextSecrets`, store-file).
   */
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
  /**
   * Adds a credential. Its `limits` (rpm, tpm, maxConcurrency, spendPerDay, spendPerMonth:
   * non-negative integers, 0 = none) are validated: a 400 `INVALID_REQUEST` names a bad or
   * unknown field.
   */
  add(input: AddCredentialInput): Promise<CredentialRecord>;
  get(id: string): CredentialRecord | null;
  /** Every credential with secrets masked. */
  list(): ReturnType<typeof maskCredential>[];
  /**
   * Applies a patch. `limits` are validated as in {@link CredentialsApi.add} and merged field by
   * field into the stored ones (a field left out keeps its value; 0 removes that limit).
   */
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
  /**
   * The request log: usage records newest first, filtered (key, user, model, key name,
   * username, credential, group, success, time), with the total they match.
   */
  list(query?: UsageQuery): Promise<Page<UsageRecord>>;
  /** Sums (requests, quota, tokens) over the records a query selects. */
  stat(query?: UsageQuery): Promise<UsageStat>;
  /** The records a query selects as CSV text chunks (header first; at most 100,000 records). */
  exportCsv(query?: UsageQuery): AsyncGenerator<string>;
  /** Usage and cost per key, user, model, credential or UTC day, from the roll-ups. */
  summary(query: UsageSummaryQuery): Promise<UsageSummaryRow[]>;
  rollups(query?: RollupQuery): Promise<UsageRollup[]>;
  /** Writes queued records to the store now. */
  flush(): Promise<void>;
  /**
   * Deletes details older than the `usage-retention-days` setting (roll-ups are kept); the
   * gateway does it hourly by itself. Resolves with how many were deleted.
   */
  prune(): Promise<number>;
}

/** Metrics API of a gateway. */
export interface MetricsApi {
  /** The prom-client registry holding the gateway's metrics (empty when they are off). */
  readonly registry: GatewayMetrics["registry"];
  /** Whether the gateway keeps metrics (the `metrics.enabled` option). */
  readonly enabled: boolean;
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
   * Checks a presented key against the stored hash (bcrypt, on a worker thread). A successful
   * check is remembered for a minute and a failed one for 15 s, under a keyed hash of the
   * presented key, and both are forgotten as soon as the stored hash changes (here or, through
   * the store's change notifications, on another instance). When too many checks are already
   * running it answers false at once. The address rules (loopback, bans) are not applied here:
   * they belong to the routes.
   */
  verify(plain: string | undefined): Promise<boolean>;
}

/**
 * The options of {@link createGateway}: {@link GatewayOptions} and the extra HTTP surfaces.
 */
export interface CreateGatewayOptions extends GatewayOptions {
  /**
   * More HTTP surfaces, mounted after the built-in dialects: each one a {@link Dialect} (a name,
   * the path prefixes it owns, its routes, its error format). `dashboard()` of
   * `@tokenpool/dashboard` is one. A name or a prefix that a built-in dialect (or an earlier one
   * of this list) already owns is a configuration error.
   * @default []
   */
  dialects?: readonly Dialect[];
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
export function createGateway(options: CreateGatewayOptions): Gateway {
  const opts = resolveOptions(options);
  const extraDialects = checkDialects(options.dialects ?? []);
  const logger: Logger =
    opts.logger === false
      ? silentLogger
      : typeof opts.logger === "string"
        ? consoleLogger(opts.logger)
        : toLogger(opts.logger);
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
  // Everything below runs on the sealing view: credential secrets reach the adapter sealed with
  // the server secret (unless its format is plaintext by design) and come back opened.
  const store = sealedStore(opts.store, box, logger);
  const settings = new SettingsService(store, events, opts.settings);
  const keys = new KeyService(store, box, {
    timeZone: () => settings.get("quota-refill-time-zone"),
    events,
  });
  const users = new UserService(
    store,
    box,
    keys,
    () => {
      const ratios = settings.get("group-ratio");
      return typeof ratios === "object" && ratios !== null ? Object.keys(ratios) : [];
    },
    { events },
  );
  const pool = new CredentialPool(store, events, logger, { settings });
  // Before anything that starts a timer or a worker: a taken metric name throws here.
  const metrics = new GatewayMetrics({ events, pool, options: opts.metrics });
  const journalDir =
    opts.usage.quotaBlocks && store.capabilities.quotaShares
      ? (store.capabilities.usageJournalDir ?? null)
      : null;
  const usageWriter = new UsageWriter(
    store,
    events,
    logger,
    opts.usage.flushIntervalMs,
    // With a usage journal a batch's records are on disk before it is written, so a larger
    // batch loses nothing to a kill, and each SQLite transaction's fixed part (the WAL header,
    // the locks, the last leaf page of each usage index) is shared by more requests.
    opts.usage.maxBatch ?? (journalDir ? JOURNALED_MAX_BATCH : DEFAULT_MAX_BATCH),
    {
      ttlMs: opts.usage.reservationTtlMs,
      owner: randomUUID(),
      waitMs: opts.usage.reserveWaitMs,
      journalDir,
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
    proxyUrl: () => settings.get("proxy-url"),
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
    const v = settings.get(MANAGEMENT_SETTING);
    return v?.["secret-key"] ?? "";
  };
  // The one gate of the management key: every route that accepts it asks this object.
  const gate = createManagementGate({
    store,
    hash: managementHash,
    keyedHash: (plain) => box.hash(plain),
    clientIp,
    allowRemote: opts.management.allowRemote,
  });

  const webhooks = new WebhookService({ store, box, events, logger, options: opts.webhooks });
  const leases = new LeaseKeeper(store, events);
  const claims = new WindowClaims(store, events);
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
    holds: new QuotaHolds(),
    waiting: new QuotaLine(),
    leases,
    claims,
    localhostKey: new LocalhostKey(keys),
    metrics: metrics.enabled ? metrics : null,
  };
  // Each dialect's routes, in the registry's order; its prefixes pick who renders a 404 or 405.
  const router = mountDialects(
    new Router(logger).add([healthRoute]),
    [...BUILTIN_DIALECTS, ...extraDialects],
    {
      options: opts,
      store,
      settings,
      events,
      logger,
      keys,
      users,
      pool,
      oauth,
      oauthHttp,
      usage: usageWriter,
      box,
      gate,
      proxy: proxyDeps,
      webhooks,
      metrics,
      settingChanged: (name) => {
        if (name === "debug") applyDebug();
      },
    },
  );

  const prune = () => pruneUsage(store, settings);
  let pruneTimer: NodeJS.Timeout | null = null;
  let loaded = false;
  // Plaintext secrets of an earlier version are sealed before the pool first loads them.
  const sealing = sealPlaintextSecrets(opts.store, box, logger).catch((error: unknown) =>
    logger.error("could not seal plaintext credential secrets", { error: String(error) }),
  );
  const ready = Promise.all([settings.load(), sealing.then(() => pool.load())]).then(async () => {
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
    if (!closed) await webhooks.start();
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
      stat: (q) => store.usage.stat(q),
      exportCsv: (q = {}) => requestLogCsv(store, q),
      summary: (q) => usageSummary(store, q),
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
        const current = settings.get(MANAGEMENT_SETTING);
        await settings.set({
          [MANAGEMENT_SETTING]: { ...current, "secret-key": await bcrypt.hash(plain, 10) },
        });
        gate.forget();
      },
      async generateKey() {
        const plain = randomToken("tp-mgmt-", 40);
        await this.setKey(plain);
        return plain;
      },
      verify: (plain) => gate.verify(plain),
    },
    events,
    metrics: { registry: metrics.registry, enabled: metrics.enabled },
    webhooks,
    store,
    ready,
    close() {
      closed ??= (async () => {
        await ready.catch(() => {});
        if (pruneTimer) clearInterval(pruneTimer);
        await webhooks.close();
        usageWriter.stop();
        await oauth.close();
        await pool.stop();
        await usageWriter.flush();
        usageWriter.closeJournal();
        await leases.close();
        await claims.close();
        metrics.close();
        unwatch();
        await upstream.close();
        await oauthHttp.close();
        await gate.close();
        await store.close();
      })();
      return closed;
    },
  };
}
