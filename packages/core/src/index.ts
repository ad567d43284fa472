export {
  DEFAULT_CACHE_RATIO,
  DEFAULT_COMPLETION_RATIO,
  DEFAULT_MODEL_RATIO,
} from "./billing/defaults.js";
export {
  Billing,
  type Prices,
  type PriceTableName,
  type PriceTableReader,
  QUOTA_PER_USD,
  type TokenUsage,
} from "./billing/price.js";
export {
  countPromptTokens,
  countTokens,
  type EncodingName,
  encodingFor,
} from "./billing/tokens.js";
export {
  AUTO_DISABLED_PREFIX,
  DEFAULT_POOL_SETTINGS,
  type FailureKind,
  failureKind,
  isAutoDisabled,
  POOL_SETTINGS,
} from "./credentials/health.js";
export {
  DEFAULT_OAUTH_PROVIDERS,
  isOAuthRefreshError,
  type OAuthProviderConfig,
  OAuthRefreshError,
  OAuthRefresher,
  type OAuthRefresherDeps,
  type OAuthSettings,
  type RefreshFailureSink,
  type RefreshOptions,
  type RefreshReason,
} from "./credentials/oauth.js";
export { CredentialPool } from "./credentials/pool.js";
export {
  type AddCredentialInput,
  type CredentialPick,
  type CredentialPoolOptions,
  type MaskedCredential,
  maskCredential,
  type PickOptions,
  type ReportFailureOptions,
  type SettingsReader,
} from "./credentials/pool-options.js";
export {
  type CredentialProbe,
  type ModelsProbeOptions,
  modelsProbe,
  type RecoveryProbeHandle,
  type RecoveryProbeOptions,
} from "./credentials/probe.js";
export {
  DEFAULT_ROUTING_STRATEGY,
  parseRoutingStrategy,
  ROUTING_STRATEGIES,
  type RoutingStrategy,
} from "./credentials/strategies.js";
export { CREDENTIAL_PROVIDERS } from "./dialects/cliproxy/credentials.js";
export type {
  ManagementWebhookCreateBody,
  ManagementWebhookCreatedResponse,
  ManagementWebhookDeliveriesResponse,
  ManagementWebhookListResponse,
  ManagementWebhookPatchBody,
  ManagementWebhookResponse,
  ManagementWebhookTestResponse,
  ManagementWebhookUpdatedResponse,
} from "./dialects/cliproxy/webhooks.js";
export type {
  ConsoleErrorResponse,
  ConsolePage,
  ConsolePageQuery,
  ConsolePrincipal,
  ConsoleResponse,
  ConsoleSuccessResponse,
  PoolErrorResponse,
  PoolMessageResponse,
  PoolTokenAddBody,
  PoolTokenAddedData,
  PoolTokenFields,
  PoolTokenListResponse,
  PoolTokenUpdateBody,
  PoolTokenView,
} from "./dialects/deprecated-names.js";
export { type Dialect, type DialectContext, plainDialect } from "./dialects/dialect.js";
export type { NewApiPrincipal } from "./dialects/new-api/auth.js";
export {
  LOG_TYPE,
  type NewApiLogItem,
  type NewApiLogPage,
  type NewApiLogStat,
} from "./dialects/new-api/logs.js";
export { TOKEN_BATCH_CREATE_MAX, TOKEN_NAME_MAX } from "./dialects/new-api/tokens.js";
export { TOKEN_USAGE_SUMMARY_GROUP_BY } from "./dialects/new-api/usage.js";
export type * from "./dialects/wire-types.js";
export * from "./errors.js";
export { type CredentialChangeSource, GatewayEmitter, type GatewayEvents } from "./events.js";
export type { ClientSignal, Exchange, HeaderBag, Reply, ReplyBody } from "./exchange.js";
export { header, json } from "./exchange.js";
export {
  type CreateGatewayOptions,
  type CredentialsApi,
  createGateway,
  type Gateway,
  type HandlerContext,
  type ManagementApi,
  type MetricsApi,
  type UsageApi,
  type UsersApi,
} from "./gateway.js";
export type { Route, ScopeMiddleware } from "./http/router.js";
export {
  IpAllowList,
  normalizeIp,
  resolveClientIp,
  UNKNOWN_CLIENT_IP,
  validateIpEntry,
} from "./keys/ip.js";
export type { LimitViewFields } from "./keys/limits.js";
export {
  type ApiKeyView,
  type AuthorizeContext,
  type AuthorizedKey,
  type CreateKeyInput,
  KEY_PREFIX,
  KeyService,
  type KeyServiceOptions,
  type UserView,
} from "./keys/service.js";
export {
  consoleLogger,
  isPinoLogger,
  type Logger,
  type LoggerLike,
  type LogLevel,
  type PinoLogFn,
  type PinoStyleLogger,
  pinoLogger,
  silentLogger,
  toLogger,
} from "./logger.js";
export { CSV_HEADER, csvCell, LOG_EXPORT_MAX, requestLogCsv } from "./logs/export.js";
export {
  DEFAULT_BUCKETS as DEFAULT_METRICS_BUCKETS,
  type MetricsOptions,
  OTHER as METRICS_OTHER_LABEL,
  type ResolvedMetricsOptions,
} from "./metrics/metrics.js";
export type { UpstreamClient, UpstreamTimeouts } from "./net/upstream.js";
export type { GatewayOptions, ResolvedOptions } from "./options.js";
export { PREVIEW_FALLBACKS } from "./proxy/forward.js";
export { SettingsService } from "./settings/service.js";
export {
  acceptsSetting,
  acceptsSettingField,
  DEFAULT_SETTINGS,
  type RemoteManagementSetting,
  RUNTIME_SETTINGS,
  type SettingDefinition,
  type SettingName,
  type SettingType,
  type SettingValue,
} from "./settings/table.js";
export { type MemoryStoreOptions, memoryStore } from "./store/memory.js";
export {
  type RotateSecretOptions,
  type RotateSecretReport,
  rotateSecret,
} from "./store/rotate-secret.js";
export {
  hasPlaintextSecret,
  isSealedSecret,
  UNREADABLE_SECRET_REASON,
} from "./store/sealed.js";
export type * from "./store/types.js";
export { DEFAULT_RESERVATION_TTL_MS, KeyStatus, WINDOW_BUCKETS } from "./store/types.js";
export { recordUsage } from "./store/util.js";
export {
  USAGE_GROUP_BY,
  type UsageGroupBy,
  type UsageSummaryQuery,
  type UsageSummaryRow,
  usageSummary,
} from "./usage/summary.js";
export {
  ACCESS_TOKEN_PREFIX,
  type CreateUserInput,
  type UserQuery,
  UserService,
} from "./users/service.js";
export { MAX_JSON_DEPTH } from "./util/json-depth.js";
export { maskSecret, redactSecrets, type SecretBox } from "./util/secrets.js";
export {
  type ResolvedWebhookOptions,
  resolveWebhookOptions,
  WebhookService,
  type WebhookServiceDeps,
} from "./webhooks/service.js";
export {
  generateWebhookSecret,
  maskWebhookSecret,
  signWebhook,
  WEBHOOK_SECRET_PREFIX,
  webhookHeaders,
} from "./webhooks/signing.js";
export {
  WEBHOOK_EVENT_TYPES,
  type WebhookCreated,
  type WebhookCreateInput,
  type WebhookDeliveryAttempt,
  type WebhookEventType,
  type WebhookOptions,
  type WebhookPatch,
  type WebhookPayload,
  type WebhookStats,
  type WebhookSubscription,
} from "./webhooks/types.js";
