/**
 * The gateway's request and reply types, those of `@tokenpool/core` (types only). The build
 * inlines them into the client's declarations: the published client depends on core neither at
 * run time nor for its types.
 *
 * @module
 */
export type {
  AuthFileContent,
  AuthFileInfo,
  BillingSubscriptionResponse,
  BillingUsageResponse,
  ConfigListName,
  ConfigLists,
  ConsolePage,
  CredentialCreateBody,
  CredentialInfo,
  CredentialLimitFields,
  CredentialLimitsView,
  CredentialPatchBody,
  CredentialStatus,
  KeyInfoData,
  KeyInfoResponse,
  LimitView,
  LimitWritableFields,
  ManagementConfigView,
  ManagementLoginName,
  ManagementSettingEntry,
  ManagementSettingName,
  ManagementStringListName,
  // `/api/user/`'s user (snake_case); the core package's own `UserView` is its library view.
  NewApiUserView as UserView,
  OpenAICompatibilityItem,
  PoolTokenAddBody,
  PoolTokenUpdateBody,
  PoolTokenView,
  ProviderKeyItem,
  TokenCreateBody,
  TokenUpdateBody,
  TokenUsageData,
  TokenUsageResponse,
  TokenUsageSummaryGroupBy,
  TokenUsageSummaryQuery,
  TokenUsageSummaryResponse,
  TokenUsageSummaryRow,
  TokenView,
  UsageSnapshot,
  UserCreateBody,
  UserCreatedData,
  UserUpdateBody,
} from "@tokenpool/core";
