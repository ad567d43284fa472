export * from "./errors.js";
export type * from "./store/types.js";
export { KeyStatus } from "./store/types.js";
export { memoryStore, type MemoryStoreOptions } from "./store/memory.js";
export {
  addToRollup,
  assertUnits,
  emptyCredentialState,
  emptyRollup,
  hourBucket,
  materializeCredential,
  newCredentialId,
  rollupKey,
} from "./store/util.js";
export {
  createGateway,
  type CredentialsApi,
  type Gateway,
  type HandlerContext,
  type ManagementApi,
  type UsageApi,
  type UsersApi,
} from "./gateway.js";
export type { GatewayOptions } from "./options.js";
export { GatewayEmitter, type GatewayEvents } from "./events.js";
export { consoleLogger, silentLogger, type Logger, type LogLevel } from "./logger.js";
export { DEFAULT_SETTINGS, SettingsService } from "./settings/service.js";
export { Billing, QUOTA_PER_USD, type TokenUsage } from "./billing/price.js";
export { KEY_PREFIX, KeyService, type AuthorizeContext, type AuthorizedKey, type CreateKeyInput } from "./keys/service.js";
export { IpAllowList, resolveClientIp, validateIpEntry } from "./keys/ip.js";
export {
  CredentialPool,
  maskCredential,
  type AddCredentialInput,
  type MaskedCredential,
  type PickOptions,
  type CredentialPick,
} from "./credentials/pool.js";
export type { Exchange, HeaderBag, Reply, ReplyBody } from "./http/exchange.js";
export { maskSecret, redactSecrets } from "./util/secrets.js";
