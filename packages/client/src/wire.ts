/**
 * The gateway's request and reply types, re-exported from `@tokenpool/core` for convenience
 * (types only: the client does not load core at run time).
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
