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
export {
  type AddCredentialInput,
  type CredentialPick,
  CredentialPool,
  type CredentialPoolOptions,
  type MaskedCredential,
  maskCredential,
  type PickOptions,
  type ReportFailureOptions,
  type SettingsReader,
} from "./credentials/pool.js";
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
export * from "./errors.js";
export { type CredentialChangeSource, GatewayEmitter, type GatewayEvents } from "./events.js";
export type { ClientSignal, Exchange, HeaderBag, Reply, ReplyBody } from "./exchange.js";
export {
  type CredentialsApi,
  createGateway,
  type Gateway,
  type HandlerContext,
  type ManagementApi,
  type UsageApi,
  type UsersApi,
} from "./gateway.js";
export {
  authFileName,
  isValidAuthFileName,
  parseAuthFile,
  renderAuthFile,
} from "./http/dialects/management/auth-files.js";
export {
  CONFIG_LIST_NAMES,
  type ConfigListName,
  type ConfigLists,
  configLists,
  type ListCredentials,
  parseConfigList,
  replaceConfigList,
  replaceOpenAICompatibility,
} from "./http/dialects/management/lists.js";
export {
  type ConfigObjectLists,
  type ManagementConfigView,
  type ManagementSettingsDeps,
  managementConfigView,
} from "./http/dialects/management/settings.js";
export {
  API_KEYS_NAME_PREFIX,
  apiKeysModel,
  GL_API_KEY_LABEL,
  glApiKeysModel,
  type ListModel,
  type StringListDeps,
} from "./http/dialects/management/string-lists.js";
export {
  accessTokenSuffix,
  POOL_DEFAULT_EXPIRES_IN,
  POOL_MESSAGES,
  poolTokenView,
} from "./http/dialects/pool.js";
export { TOKEN_BATCH_CREATE_MAX, TOKEN_NAME_MAX } from "./http/dialects/token.js";
export type * from "./http/dialects/wire-types.js";
export {
  IpAllowList,
  normalizeIp,
  resolveClientIp,
  UNKNOWN_CLIENT_IP,
  validateIpEntry,
} from "./keys/ip.js";
export {
  type AuthorizeContext,
  type AuthorizedKey,
  type CreateKeyInput,
  KEY_PREFIX,
  KeyService,
} from "./keys/service.js";
export { consoleLogger, type Logger, type LogLevel, silentLogger } from "./logger.js";
export type { UpstreamClient, UpstreamTimeouts } from "./net/upstream.js";
export type { GatewayOptions } from "./options.js";
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
export { DEFAULT_RESERVATION_TTL_MS, KeyStatus } from "./store/types.js";
export {
  addToRollup,
  assertUnits,
  emptyCredentialState,
  emptyRollup,
  hourBucket,
  materializeCredential,
  newCredentialId,
  type ReservationRow,
  recoveredRecord,
  reservationRow,
  rollupKey,
} from "./store/util.js";
export type { ConsolePrincipal } from "./users/auth.js";
export {
  ACCESS_TOKEN_PREFIX,
  type CreateUserInput,
  type UserQuery,
  UserService,
} from "./users/service.js";
export { MAX_JSON_DEPTH } from "./util/json-depth.js";
export { maskSecret, redactSecrets, type SecretBox } from "./util/secrets.js";
