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
  ConfigListName,
  ConfigLists,
  ConsolePage,
  ManagementConfigView,
  ManagementLoginName,
  ManagementSettingName,
  ManagementStringListName,
  OpenAICompatibilityItem,
  PoolTokenAddBody,
  PoolTokenUpdateBody,
  PoolTokenView,
  ProviderKeyItem,
  TokenCreateBody,
  TokenUpdateBody,
  TokenView,
  UsageSnapshot,
  UserCreateBody,
  UserCreatedData,
  UserUpdateBody,
  UserView,
} from "@tokenpool/core";
