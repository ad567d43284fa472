/**
 * The JSON bodies of the new-api, cliproxy and antigravity dialects, in one place: what `/api/token/`, `/api/user/`,
 * `/v0/management/*` and `/v1/tokens` accept and answer. Types only; `@tokenpool/client` uses
 * them so that its requests and replies are the server's, not a copy.
 *
 * @module
 */

export type { ManagementConfigView } from "../config-model/config-view.js";
export type {
  ConfigListName,
  ConfigLists,
  ItemLimits,
  OpenAICompatibilityItem,
  OpenAICompatibilityKeyEntry,
  ProviderKeyItem,
} from "../config-model/list-items.js";
export type { OAuthModelAlias } from "../settings/table.js";
export type {
  ApiUsage,
  ModelUsage,
  UsageDetail,
  UsageSnapshot,
} from "../usage/view.js";
export type {
  AntigravityErrorResponse,
  AntigravityLimitFields,
  AntigravityMessageResponse,
  AntigravityTokenAddBody,
  AntigravityTokenAddedData,
  AntigravityTokenFields,
  AntigravityTokenListResponse,
  AntigravityTokenUpdateBody,
  AntigravityTokenView,
} from "./antigravity/routes.js";
export type {
  BillingSubscriptionResponse,
  BillingUsageResponse,
  KeyInfoData,
  KeyInfoResponse,
  TokenUsageData,
  TokenUsageResponse,
} from "./balance.js";
export type { CredentialActivity, RecentRequestsBucket } from "./cliproxy/activity.js";
export type {
  AuthFileContent,
  AuthFileDeleteAllResponse,
  AuthFileInfo,
  AuthFileListResponse,
} from "./cliproxy/auth-files.js";
export type { ManagementErrorResponse, ManagementOkResponse } from "./cliproxy/common.js";
export type {
  CredentialCreateBody,
  CredentialDeleteResponse,
  CredentialInfo,
  CredentialLimitFields,
  CredentialLimitsView,
  CredentialListResponse,
  CredentialPatchBody,
  CredentialResponse,
  CredentialStatus,
} from "./cliproxy/credentials.js";
export type {
  ConfigListDeleteQuery,
  ConfigListPatchBody,
  ConfigListPutBody,
  ConfigListResponse,
} from "./cliproxy/lists.js";
export type { ModelDefinition, ModelDefinitionsResponse } from "./cliproxy/model-definitions.js";
export type {
  GeminiWebTokenBody,
  GeminiWebTokenResponse,
  ManagementAuthStatusResponse,
  ManagementAuthUrlResponse,
  ManagementLoginName,
} from "./cliproxy/oauth-login.js";
export type {
  ManagementScalarSettings,
  ManagementSettingBody,
  ManagementSettingName,
  ManagementSettingResponse,
  ManagementSettingValue,
} from "./cliproxy/settings.js";
export type {
  ManagementSettingEntry,
  ManagementSettingPutBody,
  ManagementSettingPutResponse,
  ManagementSettingsTableResponse,
} from "./cliproxy/settings-table.js";
export type {
  ManagementStringListDeleteQuery,
  ManagementStringListName,
  ManagementStringListPatchBody,
  ManagementStringListPutBody,
  ManagementStringListResponse,
} from "./cliproxy/string-lists.js";
export type {
  ManagementUsageResponse,
  ManagementUsageSummaryResponse,
} from "./cliproxy/usage.js";
export type { VertexImportResponse } from "./cliproxy/vertex-import.js";
export type {
  TokenUsageSummaryGroupBy,
  TokenUsageSummaryQuery,
  TokenUsageSummaryResponse,
  TokenUsageSummaryRow,
} from "./new-api/usage.js";
export type * from "./new-api/wire.js";
// The package index exports the library's `UserView` (keys/service); the wire one under this name.
export type { UserView as NewApiUserView } from "./new-api/wire.js";
