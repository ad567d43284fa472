import { Ajv, type ErrorObject } from "ajv";
import {
  DEFAULT_OAUTH_PROVIDERS,
  type OAuthProviderConfig,
  type OAuthSettings,
} from "./credentials/oauth.js";
import { GatewayError } from "./errors.js";
import type { LoggerLike, LogLevel } from "./logger.js";
import {
  type MetricsOptions,
  type ResolvedMetricsOptions,
  resolveMetricsOptions,
} from "./metrics/metrics.js";
import { DEFAULT_RESERVATION_TTL_MS, type Store } from "./store/types.js";
import type { WebhookOptions } from "./webhooks/types.js";

/** `usage.maxBatch` by default. */
export const DEFAULT_MAX_BATCH = 64;
/** `usage.maxBatch` by default when the usage writer keeps a journal (SQLite, quota blocks). */
export const JOURNALED_MAX_BATCH = 256;

/** Options of {@link createGateway}. */
export interface GatewayOptions {
  /** Where everything is persisted. `memoryStore()` from core, or an adapter package. */
  store: Store;
  /**
   * The server secret (at least 32 characters): keys and access tokens are stored as HMACs
   * keyed by it, and encrypted with it for the reveal call. Changing it invalidates every
   * stored key. Falls back to the `TOKENPOOL_SECRET` environment variable.
   */
  secret?: string;
  /**
   * A logger, a level for the built-in stderr logger, or `false` for none. A logger is either
   * tokenpool's shape (`info(message, fields)`) or pino's (`info(fields, message)`: a pino
   * instance or Fastify's `app.log` is recognised and plugs in as it is).
   * @default "info"
   */
  logger?: LoggerLike | LogLevel | false;
  /** Largest request body accepted, in bytes. @default 20971520 (20 MiB) */
  maxBodyBytes?: number;
  /**
   * Proxies (IPs or CIDR ranges) whose `X-Forwarded-For` is believed. Without them the client
   * address is the direct peer. @default []
   */
  trustedProxies?: string[];
  /** Usage recording. */
  usage?: {
    /** Records are written to the store in batches at most this far apart. @default 200 */
    flushIntervalMs?: number;
    /**
     * A batch is written as soon as it reaches this size (on the next turn of the event loop, after
     * the answer of the request that filled it); bounds how long one write blocks.
     * @default 256 with a usage journal (SQLite with quota blocks), else 64
     */
    maxBatch?: number;
    /**
     * Lifetime of a quota reservation that is not renewed. The gateway renews its in-flight
     * reservations every third of it (one store write for all of them), so a long stream is
     * never cut short; a reservation left by a process that died (SIGKILL, crash, lost machine)
     * expires within this time and is then settled at its full units by the next start or by
     * another instance, with a usage record marked `recovered`. @default 300000 (5 minutes)
     */
    reservationTtlMs?: number;
    /**
     * How long a request refused for quota may wait for other requests' reservations still in
     * flight (whose settlement may give quota back) before it is refused; 0 = refuse at once.
     * @default 5000
     */
    reserveWaitMs?: number;
    /**
     * Quota blocks: a request of a key far from the end of its quota takes its share of one
     * reservation this instance holds for several requests of the key, instead of a store write
     * of its own; each share is kept in a journal file on this machine until its record is
     * written, so a killed process loses nothing (another gateway replays it). Used only with a
     * store that offers both (`capabilities.quotaShares` and `capabilities.usageJournalDir`: the
     * SQLite store); elsewhere, or with `false`, every request reserves alone. @default true
     */
    quotaBlocks?: boolean;
  };
  /** Quota estimation before a request is forwarded. */
  billing?: {
    /** Completion tokens reserved when a request sets no `max_tokens`. @default 1024 */
    defaultCompletionTokens?: number;
  };
  /** Upstream connection timeouts. */
  upstream?: {
    /** @default 10000 */
    connectTimeoutMs?: number;
    /** Time to the response headers (the first byte). @default 120000 */
    headersTimeoutMs?: number;
    /** Longest silence between two body chunks. @default 300000 */
    bodyTimeoutMs?: number;
  };
  /** Defaults for runtime settings that the store does not hold yet (see `gateway.settings`). */
  settings?: Record<string, unknown>;
  /**
   * OAuth credentials (`kind: "oauth"`): token endpoints and refresh timing. Access tokens are
   * refreshed before use when they expire within `refreshMarginMs`, once after an upstream
   * 401/403, and in the background; one refresh per credential at a time, across instances.
   */
  oauth?: {
    /**
     * Token endpoint, client id, client secret, scopes and body format per provider, merged
     * field by field over {@link DEFAULT_OAUTH_PROVIDERS} (antigravity, gemini, gemini-cli,
     * anthropic, claude, codex, qwen). A provider not in the defaults needs `tokenUrl` and
     * `clientId`. A credential can override them in `secret.extra` (`tokenUrl`, `clientId`,
     * `clientSecret`, `scopes`, `oauthProvider`). `authorizeUrl`, `redirectUri` and
     * `deviceCodeUrl` override the endpoints of the management logins (`/anthropic-auth-url` ...).
     * @default DEFAULT_OAUTH_PROVIDERS
     */
    providers?: Record<string, Partial<OAuthProviderConfig>>;
    /** Refresh access tokens expiring sooner than this (ms), before they are used. @default 300000 */
    refreshMarginMs?: number;
    /** Background refreshes running at once. @default 4 */
    concurrency?: number;
    /** How often credentials are scanned for background refresh (ms); 0 = never. @default 60000 */
    scanIntervalMs?: number;
    /** TTL of the cross-instance refresh lock (ms); a crashed holder's lock frees after it. @default 60000 */
    lockTtlMs?: number;
    /** Timeout of one token endpoint call (ms). @default 30000 */
    timeoutMs?: number;
    /** After a failed refresh, the same refresh token is not tried again for this long (ms). @default 30000 */
    failureBackoffMs?: number;
  };
  /**
   * The antigravity dialect (`/v1/tokens`, antigravity2api's token API): what credentials added
   * through it are. They are OAuth accounts of `provider` with base URL `baseUrl`.
   */
  antigravityDialect?: {
    /** @default "antigravity" */
    provider?: string;
    /** @default "https://daily-cloudcode-pa.sandbox.googleapis.com" (antigravity2api's endpoint) */
    baseUrl?: string;
  };
  /**
   * @deprecated Renamed {@link GatewayOptions.antigravityDialect}, which wins field by field
   * when both are given.
   */
  poolDialect?: GatewayOptions["antigravityDialect"];
  /**
   * Re-enable credentials the pool disabled by itself (not those an operator disabled) once they
   * work again: every `intervalMs`, each is probed with `GET {baseUrl}/models`. Off by default.
   * @default false
   */
  recoveryProbe?: { intervalMs: number; timeoutMs?: number } | false;
  /**
   * The cliproxy dialect (`/v0/management`, CLIProxyAPI's management API). Its key is set with `gateway.management.setKey`
   * (stored as a bcrypt hash); without a key every management route answers 404.
   */
  management?: {
    /**
     * Whether clients that are not loopback (after trusted proxies) may use the management API
     * (CLIProxyAPI's `allow-remote-management`). The only source of truth for it: no route can
     * change it. @default false
     */
    allowRemote?: boolean;
    /** Per-request details returned per route and model by `GET /usage`. @default 100 */
    usageDetailsPerModel?: number;
    /**
     * The origins whose pages may call `/v0/management` from a browser (CORS), e.g. a management
     * UI hosted elsewhere: `["https://panel.example.com"]`. `"*"` (CLIProxyAPI's behaviour)
     * allows any origin; an empty list allows none. Only the management API sends CORS headers.
     * @default ["*"]
     */
    corsOrigins?: string[];
    /**
     * A management UI file (CLIProxyAPI's management center, the `management.html` of one of its
     * releases) to serve at `GET /management.html`, same origin as the API. Read on every
     * request (replace the file to upgrade); it must exist when the gateway is created. Off by
     * default.
     */
    uiFile?: string;
  };
  /**
   * Webhook deliveries: queue bound, concurrency, timeout, retry delays, sampling. See
   * {@link WebhookOptions} and docs/webhooks.md.
   */
  webhooks?: WebhookOptions;
  /**
   * Prometheus metrics (prom-client): on by default, in a registry of this gateway's own
   * (`gateway.metrics.registry`), served at `GET /metrics` to the management key or
   * `metrics.token`. `false` turns them off. See {@link MetricsOptions} and docs/observability.md.
   * @default { enabled: true }
   */
  metrics?: MetricsOptions | false;
}

const positiveInt = { type: "integer", minimum: 1 } as const;
const nonNegativeInt = { type: "integer", minimum: 0 } as const;
const bucketList = { type: "array", minItems: 1, maxItems: 50, items: { type: "number" } } as const;
const httpUrl = { type: "string", pattern: "^https?://" } as const;
const antigravityDialectSchema = {
  type: "object",
  additionalProperties: false,
  properties: { provider: { type: "string", minLength: 1 }, baseUrl: httpUrl },
} as const;

const schema = {
  type: "object",
  required: ["store"],
  properties: {
    store: { type: "object" },
    secret: { type: "string", minLength: 32 },
    logger: {
      anyOf: [{ type: "object" }, { enum: ["debug", "info", "warn", "error", "silent", false] }],
    },
    maxBodyBytes: positiveInt,
    trustedProxies: { type: "array", items: { type: "string", minLength: 1 } },
    usage: {
      type: "object",
      additionalProperties: false,
      properties: {
        flushIntervalMs: positiveInt,
        maxBatch: positiveInt,
        reservationTtlMs: { type: "integer", minimum: 100 },
        reserveWaitMs: { type: "integer", minimum: 0 },
        quotaBlocks: { type: "boolean" },
      },
    },
    billing: {
      type: "object",
      additionalProperties: false,
      properties: { defaultCompletionTokens: { type: "integer", minimum: 0 } },
    },
    upstream: {
      type: "object",
      additionalProperties: false,
      properties: {
        connectTimeoutMs: positiveInt,
        headersTimeoutMs: positiveInt,
        bodyTimeoutMs: positiveInt,
      },
    },
    settings: { type: "object" },
    oauth: {
      type: "object",
      additionalProperties: false,
      properties: {
        providers: {
          type: "object",
          additionalProperties: {
            type: "object",
            additionalProperties: false,
            properties: {
              tokenUrl: httpUrl,
              clientId: { type: "string" },
              clientSecret: { type: "string" },
              scopes: { type: "array", items: { type: "string", minLength: 1 } },
              bodyFormat: { enum: ["form", "json"] },
              authorizeUrl: httpUrl,
              redirectUri: httpUrl,
              deviceCodeUrl: httpUrl,
            },
          },
        },
        refreshMarginMs: nonNegativeInt,
        concurrency: positiveInt,
        scanIntervalMs: nonNegativeInt,
        lockTtlMs: positiveInt,
        timeoutMs: positiveInt,
        failureBackoffMs: nonNegativeInt,
      },
    },
    antigravityDialect: antigravityDialectSchema,
    poolDialect: antigravityDialectSchema,
    management: {
      type: "object",
      additionalProperties: false,
      properties: {
        allowRemote: { type: "boolean" },
        usageDetailsPerModel: nonNegativeInt,
        corsOrigins: { type: "array", maxItems: 100, items: { type: "string", minLength: 1 } },
        uiFile: { type: "string", minLength: 1 },
      },
    },
    webhooks: {
      type: "object",
      additionalProperties: false,
      properties: {
        maxQueue: positiveInt,
        concurrency: positiveInt,
        timeoutMs: positiveInt,
        retryDelaysMs: { type: "array", maxItems: 20, items: nonNegativeInt },
        attemptsKept: positiveInt,
        refreshIntervalMs: positiveInt,
        limitSampleMs: nonNegativeInt,
        exhaustedRepeatMs: positiveInt,
        closeTimeoutMs: nonNegativeInt,
      },
    },
    // `metrics: false` is validated as `{ enabled: false }` (see resolveOptions).
    metrics: {
      type: "object",
      additionalProperties: false,
      properties: {
        enabled: { type: "boolean" },
        registry: { type: "object" },
        prefix: { type: "string", pattern: "^([a-zA-Z_:][a-zA-Z0-9_:]*)?$" },
        token: { type: "string", minLength: 16 },
        keyLabels: { type: "boolean" },
        maxLabelValues: positiveInt,
        buckets: {
          type: "object",
          additionalProperties: false,
          properties: {
            duration: bucketList,
            firstByte: bucketList,
            upstream: bucketList,
            queueWait: bucketList,
          },
        },
      },
    },
    // createGateway's extra surfaces; checked in full by the dialect registry (checkDialects).
    dialects: {
      type: "array",
      maxItems: 50,
      items: {
        type: "object",
        required: ["name", "prefixes"],
        properties: {
          name: { type: "string", pattern: "^[a-z][a-z0-9-]*$" },
          prefixes: {
            type: "array",
            minItems: 1,
            items: { type: "string", pattern: "^/" },
          },
        },
      },
    },
    recoveryProbe: {
      anyOf: [
        { const: false },
        {
          type: "object",
          required: ["intervalMs"],
          additionalProperties: false,
          properties: { intervalMs: positiveInt, timeoutMs: positiveInt },
        },
      ],
    },
  },
  additionalProperties: false,
} as const;

const ajv = new Ajv({ allErrors: false, strict: true });
const validate = ajv.compile(schema);

const FIXES: Record<string, string> = {
  secret:
    "Pass `secret` (at least 32 random characters, e.g. `openssl rand -hex 32`) or set the TOKENPOOL_SECRET environment variable",
  store:
    "Pass a store, e.g. `memoryStore()` from @tokenpool/core or `sqliteStore({ filename })` from @tokenpool/store-sqlite",
  dialects:
    "Pass dialect objects, e.g. `dialects: [dashboard()]` with `dashboard` from @tokenpool/dashboard",
  logger: 'Pass a logger object, a level ("debug" | "info" | "warn" | "error" | "silent") or false',
};

function describe(err: ErrorObject): string {
  const path = err.instancePath.replace(/^\//, "").replaceAll("/", ".");
  if (err.keyword === "additionalProperties") {
    const extra = (err.params as { additionalProperty: string }).additionalProperty;
    const where = path ? `${path}.${extra}` : extra;
    return `Unknown tokenpool option \`${where}\`. Remove it or check its spelling (see GatewayOptions).`;
  }
  if (err.keyword === "required") {
    const missing = (err.params as { missingProperty: string }).missingProperty;
    return `The tokenpool option \`${missing}\` is missing. ${FIXES[missing] ?? ""}`.trim();
  }
  const root = path.split(".")[0] ?? path;
  return `Invalid tokenpool option \`${path}\`: it ${err.message}. ${FIXES[root] ?? "See GatewayOptions for the expected type."}`;
}

/** Options with every default filled in. */
export interface ResolvedOptions {
  store: Store;
  secret: string;
  logger: LoggerLike | LogLevel | false;
  maxBodyBytes: number;
  trustedProxies: string[];
  usage: {
    flushIntervalMs: number;
    /** Undefined: 64, or 256 with a usage journal (SQLite with quota blocks). */
    maxBatch: number | undefined;
    reservationTtlMs: number;
    reserveWaitMs: number;
    quotaBlocks: boolean;
  };
  billing: { defaultCompletionTokens: number };
  upstream: { connectTimeoutMs: number; headersTimeoutMs: number; bodyTimeoutMs: number };
  settings: Record<string, unknown>;
  oauth: OAuthSettings;
  antigravityDialect: { provider: string; baseUrl: string };
  recoveryProbe: { intervalMs: number; timeoutMs?: number } | false;
  management: {
    allowRemote: boolean;
    usageDetailsPerModel: number;
    corsOrigins: string[];
    uiFile?: string;
  };
  /** As given (the webhook service fills in its defaults). */
  webhooks: WebhookOptions;
  metrics: ResolvedMetricsOptions;
}

const STORE_METHODS = [
  "reserveQuota",
  "renewReservations",
  "recoverReservations",
  "settleQuota",
  "commitUsage",
  "refillQuota",
  "hitWindows",
  "adjustWindow",
  "acquireLeases",
  "renewLeases",
  "releaseLeases",
  "acquireLock",
  "releaseLock",
  "watch",
  "close",
];

/**
 * Validates options once and fills in defaults. Throws a {@link GatewayError} with code
 * `INVALID_OPTIONS` whose message names the option and the fix.
 */
export function resolveOptions(input: GatewayOptions): ResolvedOptions {
  if (typeof input !== "object" || input === null) {
    throw new GatewayError(
      "INVALID_OPTIONS",
      "createGateway() needs an options object: createGateway({ store, secret }).",
    );
  }
  const secret = input.secret ?? process.env.TOKENPOOL_SECRET;
  const candidate = {
    ...input,
    ...(secret === undefined ? {} : { secret }),
    ...(input.metrics === false ? { metrics: { enabled: false } } : {}),
  };
  if (!validate(candidate))
    throw new GatewayError("INVALID_OPTIONS", describe(validate.errors![0]!));
  if (secret === undefined) {
    throw new GatewayError(
      "INVALID_OPTIONS",
      `The tokenpool option \`secret\` is missing. ${FIXES.secret}.`,
    );
  }
  const store = input.store;
  const missing = STORE_METHODS.filter(
    (m) => typeof (store as unknown as Record<string, unknown>)[m] !== "function",
  );
  if (missing.length > 0 || typeof store.keys !== "object") {
    throw new GatewayError(
      "INVALID_OPTIONS",
      `Invalid tokenpool option \`store\`: it does not implement the Store contract (missing ${missing.join(", ") || "keys"}). ${FIXES.store}.`,
    );
  }
  return {
    store,
    secret,
    logger: input.logger ?? "info",
    maxBodyBytes: input.maxBodyBytes ?? 20 * 1024 * 1024,
    trustedProxies: input.trustedProxies ?? [],
    usage: {
      flushIntervalMs: 200,
      maxBatch: undefined,
      reservationTtlMs: DEFAULT_RESERVATION_TTL_MS,
      reserveWaitMs: 5_000,
      quotaBlocks: true,
      ...input.usage,
    },
    billing: { defaultCompletionTokens: 1024, ...input.billing },
    upstream: {
      connectTimeoutMs: 10_000,
      headersTimeoutMs: 120_000,
      bodyTimeoutMs: 300_000,
      ...input.upstream,
    },
    settings: input.settings ?? {},
    oauth: resolveOAuth(input.oauth),
    antigravityDialect: {
      provider: "antigravity",
      baseUrl: "https://daily-cloudcode-pa.sandbox.googleapis.com",
      ...input.poolDialect,
      ...input.antigravityDialect,
    },
    recoveryProbe: input.recoveryProbe ?? false,
    management: {
      allowRemote: false,
      usageDetailsPerModel: 100,
      corsOrigins: ["*"],
      ...input.management,
    },
    webhooks: input.webhooks ?? {},
    metrics: resolveMetricsOptions(input.metrics),
  };
}

function resolveOAuth(input: GatewayOptions["oauth"]): OAuthSettings {
  const providers: Record<string, OAuthProviderConfig> = {};
  for (const [name, cfg] of Object.entries(DEFAULT_OAUTH_PROVIDERS)) providers[name] = { ...cfg };
  for (const [name, cfg] of Object.entries(input?.providers ?? {})) {
    const merged = { ...providers[name], ...cfg };
    if (!merged.tokenUrl || merged.clientId === undefined) {
      throw new GatewayError(
        "INVALID_OPTIONS",
        `Invalid tokenpool option \`oauth.providers.${name}\`: "${name}" has no default token endpoint, so it needs \`tokenUrl\` and \`clientId\`.`,
      );
    }
    providers[name] = merged as OAuthProviderConfig;
  }
  const { providers: _, ...timing } = input ?? {};
  return {
    refreshMarginMs: 5 * 60_000,
    concurrency: 4,
    scanIntervalMs: 60_000,
    lockTtlMs: 60_000,
    timeoutMs: 30_000,
    failureBackoffMs: 30_000,
    ...timing,
    providers,
  };
}
