/**
 * `@tokenpool/client`: a typed client for a tokenpool gateway's HTTP surfaces.
 *
 * @module
 */
export { type Client, type ClientOptions, createClient } from "./client.js";
export { isTokenpoolError, TokenpoolError, type TokenpoolErrorInit } from "./error.js";
export type { LogQuery, LogsApi } from "./logs.js";
export type {
  AuthFilesApi,
  ConfigListApi,
  ManagementApi,
  ManagementCredentialsApi,
  SettingsApi,
  StringListApi,
} from "./management.js";
export type { PoolApi } from "./pool.js";
export type { ProviderJson, ProxyApi, ProxyCallOptions } from "./proxy.js";
export { parseSse, type SseEvent } from "./sse.js";
export type { TokensApi } from "./tokens.js";
export type { UsersApi } from "./users.js";
export type { WebhooksApi } from "./webhooks.js";
export type * from "./wire.js";
