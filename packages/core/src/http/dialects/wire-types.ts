/**
 * The JSON bodies of the management dialects, in one place: what `/api/token/`, `/api/user/`,
 * `/v0/management/*` and `/v1/tokens` accept and answer. Types only; `@tokenpool/client` uses
 * them so that its requests and replies are the server's, not a copy.
 *
 * @module
 */

export type {
  ApiUsage,
  ModelUsage,
  UsageDetail,
  UsageSnapshot,
} from "../../usage/view.js";
export type {
  AuthFileContent,
  AuthFileDeleteAllResponse,
  AuthFileInfo,
  AuthFileListResponse,
} from "./management/auth-files.js";
export type { ManagementErrorResponse, ManagementOkResponse } from "./management/common.js";
export type {
  ConfigListDeleteQuery,
  ConfigListName,
  ConfigListPatchBody,
  ConfigListPutBody,
  ConfigListResponse,
  ConfigLists,
  OpenAICompatibilityItem,
  ProviderKeyItem,
} from "./management/lists.js";
export type {
  GeminiWebTokenBody,
  GeminiWebTokenResponse,
  ManagementAuthStatusResponse,
  ManagementAuthUrlResponse,
  ManagementLoginName,
} from "./management/oauth-login.js";
export type {
  ManagementConfigView,
  ManagementScalarSettings,
  ManagementSettingBody,
  ManagementSettingName,
  ManagementSettingResponse,
  ManagementSettingValue,
} from "./management/settings.js";
export type {
  ManagementStringListDeleteQuery,
  ManagementStringListName,
  ManagementStringListPatchBody,
  ManagementStringListPutBody,
  ManagementStringListResponse,
} from "./management/string-lists.js";
export type { ManagementUsageResponse } from "./management/usage.js";
export type {
  PoolErrorResponse,
  PoolMessageResponse,
  PoolTokenAddBody,
  PoolTokenAddedData,
  PoolTokenFields,
  PoolTokenListResponse,
  PoolTokenUpdateBody,
  PoolTokenView,
} from "./pool.js";
export type {
  ConsoleErrorResponse,
  ConsolePage,
  ConsolePageQuery,
  ConsoleResponse,
  ConsoleSuccessResponse,
  TokenBatchDeleteBody,
  TokenCreateBody,
  TokenListQuery,
  TokenRevealData,
  TokenSearchQuery,
  TokenUpdateBody,
  TokenView,
  TokenWritableFields,
} from "./token.js";
export type {
  UserAccessTokenData,
  UserCreateBody,
  UserCreatedData,
  UserSearchQuery,
  UserUpdateBody,
  UserView,
  UserWritableFields,
} from "./user.js";
