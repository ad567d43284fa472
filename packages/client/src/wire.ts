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
  KeyInfoData,
  KeyInfoResponse,
  LimitView,
  LimitWritableFields,
  ManagementConfigView,
  ManagementLoginName,
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
  TokenView,
  UsageSnapshot,
  UserCreateBody,
  UserCreatedData,
  UserUpdateBody,
} from "@tokenpool/core";
