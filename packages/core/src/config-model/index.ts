/**
 * CLIProxyAPI's configuration model (`@tokenpool/core/config-model`): the object and string
 * lists as views over the domain, the `GET /config` view, and the configuration file writer
 * (atomic write, YAML merge that keeps comments), and the auth files (`auths/*.json`). Used by the management dialect, the standalone
 * server and the file store; not part of the gateway's root API.
 * @packageDocumentation
 */

export {
  authFileName,
  isValidAuthFileName,
  parseAuthFile,
  renderAuthFile,
} from "./auth-file.js";
export {
  applyConfig,
  type ConfigFileSettings,
  type ConfigTarget,
  configProblems,
} from "./config-apply.js";
export {
  canonicalJson,
  type MergeYamlOptions,
  mergeYaml,
  type WriteFileAtomicOptions,
  writeFileAtomic,
} from "./config-file.js";
export {
  type ConfigObjectLists,
  type ConfigViewDeps,
  type ManagementConfigView,
  managementConfigView,
  objectSetting,
} from "./config-view.js";
export {
  CONFIG_LIST_NAMES,
  type ConfigListName,
  type ConfigLists,
  ITEM_LIMIT_FIELDS,
  type ItemLimits,
  type OpenAICompatibilityItem,
  PROVIDER_KEY_DEFAULT_BASE_URLS,
  type ProviderKeyItem,
} from "./list-items.js";
export {
  type ConfigListEditor,
  type ConfigListTarget,
  configListEditor,
  configLists,
  type ListCredentials,
  parseConfigList,
  replaceConfigList,
  replaceOpenAICompatibility,
} from "./list-writer.js";
export {
  API_KEYS_NAME_PREFIX,
  apiKeysModel,
  GL_API_BASE_URL,
  GL_API_KEY_LABEL,
  glApiKeysModel,
  type ListModel,
} from "./string-lists.js";
