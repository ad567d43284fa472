import type {
  AuthFileContent,
  AuthFileDeleteAllResponse,
  AuthFileInfo,
  AuthFileListResponse,
  ConfigListDeleteQuery,
  ConfigListName,
  ConfigListPatchBody,
  ConfigListResponse,
  ConfigLists,
  CredentialCreateBody,
  CredentialInfo,
  CredentialListResponse,
  CredentialPatchBody,
  CredentialResponse,
  GeminiWebTokenBody,
  GeminiWebTokenResponse,
  ManagementAuthStatusResponse,
  ManagementAuthUrlResponse,
  ManagementConfigView,
  ManagementLoginName,
  ManagementOkResponse,
  ManagementScalarSettings,
  ManagementSettingEntry,
  ManagementSettingName,
  ManagementSettingPutResponse,
  ManagementSettingsTableResponse,
  ManagementSettingValue,
  ManagementStringListDeleteQuery,
  ManagementStringListName,
  ManagementStringListPatchBody,
  ManagementStringListResponse,
  ManagementUsageResponse,
  ManagementUsageSummaryResponse,
  UsageGroupBy,
  UsageSnapshot,
} from "@tokenpool/core";
import type { Transport } from "./http.js";
import { type WebhooksApi, webhooksApi } from "./webhooks.js";

const P = "v0/management";

/** One string list of the management API (`api-keys`, `generative-language-api-key`). */
export interface StringListApi {
  /** `GET`: the values, in order. */
  get(): Promise<string[]>;
  /** `PUT`: replaces the whole list. */
  put(values: string[]): Promise<ManagementOkResponse>;
  /** `PATCH`: replaces one value, found by value (`{ old, new }`) or position (`{ index, value }`). */
  patch(body: ManagementStringListPatchBody): Promise<ManagementOkResponse>;
  /** `DELETE ?value=` or `?index=`. */
  delete(query: ManagementStringListDeleteQuery): Promise<ManagementOkResponse>;
}

/** One provider key list of the management API (`claude-api-key`, `codex-api-key`, `openai-compatibility`). */
export interface ConfigListApi<N extends ConfigListName> {
  /** `GET`: the items, in order. */
  get(): Promise<ConfigLists[N]>;
  /** `PUT`: replaces the whole list. */
  put(items: ConfigLists[N]): Promise<ManagementOkResponse>;
  /** `PATCH`: replaces one item, found by `index` or by its key (`match` / `name`). */
  patch(body: ConfigListPatchBody<N>): Promise<ManagementOkResponse>;
  /** `DELETE ?index=` or `?api-key=` / `?name=`. */
  delete(query: ConfigListDeleteQuery<N>): Promise<ManagementOkResponse>;
}

/** `client.management.settings`: the scalar settings, each with GET and PUT. */
export interface SettingsApi {
  /**
   * `GET /v0/management/<name>`: the value.
   * @example `await client.management.settings.get("request-retry") // 3`
   */
  get<N extends ManagementSettingName>(name: N): Promise<ManagementSettingValue<N>>;
  /**
   * `PUT /v0/management/<name>` `{ value }`.
   * @example `await client.management.settings.set("debug", true)`
   */
  set<N extends ManagementSettingName>(
    name: N,
    value: ManagementSettingValue<N>,
  ): Promise<ManagementOkResponse>;
  /** `DELETE /v0/management/proxy-url`: no upstream proxy. */
  deleteProxyUrl(): Promise<ManagementOkResponse>;
}

/** `client.management.authFiles`: the pool's OAuth accounts as CLIProxyAPI token files. */
export interface AuthFilesApi {
  /** `GET /auth-files`. */
  list(): Promise<AuthFileInfo[]>;
  /** `POST /auth-files?name=` with the file as JSON: creates or replaces that account. */
  upload(name: string, content: AuthFileContent | string): Promise<ManagementOkResponse>;
  /** `GET /auth-files/download?name=`: the file, tokens included. */
  download(name: string): Promise<AuthFileContent>;
  /** `DELETE /auth-files?name=`. */
  delete(name: string): Promise<ManagementOkResponse>;
  /** `DELETE /auth-files?all=true`: every OAuth account; resolves with how many. */
  deleteAll(): Promise<AuthFileDeleteAllResponse>;
}

/** `client.management.credentials` (tokenpool's): every pool credential with its live state, no secret. */
export interface ManagementCredentialsApi {
  /** `GET /credentials[?provider=]`: API-key and OAuth credentials alike. */
  list(query?: { provider?: string }): Promise<CredentialInfo[]>;
  /**
   * `POST /credentials`: a new API-key credential (OAuth accounts come from the login routes
   * and auth files).
   * @example `await client.management.credentials.create({ provider: "openai", api_key })`
   */
  create(body: CredentialCreateBody): Promise<CredentialInfo>;
  /** `PATCH /credentials/:id`: the fields sent change, every other is kept. */
  update(id: string, body: CredentialPatchBody): Promise<CredentialInfo>;
  /** `DELETE /credentials/:id`. */
  remove(id: string): Promise<ManagementOkResponse>;
  /** `POST /credentials/:id/refresh`: refreshes an OAuth account's access token now. */
  refresh(id: string): Promise<CredentialInfo>;
}

/** `client.management`: CLIProxyAPI's management API under `/v0/management` (the management key). */
export interface ManagementApi {
  /** `GET /usage`: request and token statistics. */
  usage(): Promise<UsageSnapshot>;
  /**
   * `GET /usage/summary` (tokenpool's): usage and cost per key, user, model, credential, UTC
   * day or UTC hour; `from` / `to` as RFC 3339 or Unix seconds (whole UTC hours overlapping them count).
   */
  usageSummary(query: {
    by: UsageGroupBy;
    from?: string | number;
    to?: string | number;
    key_id?: number;
    user_id?: number;
    credential_id?: string;
  }): Promise<ManagementUsageSummaryResponse>;
  /** `GET /config`: every setting and list in `config.yaml`'s layout. */
  config(): Promise<ManagementConfigView>;
  settings: SettingsApi;
  /**
   * `GET /settings` (tokenpool's): every runtime setting with its type, description, default
   * and current value (secrets masked), sorted by name: what a settings form renders.
   */
  settingsTable(): Promise<ManagementSettingEntry[]>;
  /**
   * `PUT /settings/:name` `{ value }` (tokenpool's): any runtime setting, validated by its
   * declaration; resolves with the setting's new entry.
   * @example `await client.management.setSetting("routing-strategy", "fill-first")`
   */
  setSetting(name: string, value: unknown): Promise<ManagementSettingEntry>;
  /** `DELETE /settings/:name` (tokenpool's): the stored value is removed, the default applies. */
  resetSetting(name: string): Promise<ManagementSettingEntry>;
  /** `/credentials` (tokenpool's): the pool's credentials with their state. */
  credentials: ManagementCredentialsApi;
  /** `/api-keys`: downstream keys with unlimited quota and no owner. */
  apiKeys: StringListApi;
  /** `/generative-language-api-key`: Gemini API keys of the pool. */
  generativeLanguageApiKeys: StringListApi;
  /** `/claude-api-key`. */
  claudeApiKeys: ConfigListApi<"claude-api-key">;
  /** `/codex-api-key`. */
  codexApiKeys: ConfigListApi<"codex-api-key">;
  /** `/openai-compatibility`. */
  openaiCompatibility: ConfigListApi<"openai-compatibility">;
  /** Any string list by name. */
  stringList(name: ManagementStringListName): StringListApi;
  /** Any provider key list by name. */
  configList<N extends ConfigListName>(name: N): ConfigListApi<N>;
  authFiles: AuthFilesApi;
  /**
   * `GET /<login>-auth-url`: starts an OAuth login; send the user to `url`, then poll
   * {@link ManagementApi.getAuthStatus} with `state`.
   */
  authUrl(
    login: ManagementLoginName,
    options?: { projectId?: string },
  ): Promise<ManagementAuthUrlResponse>;
  /** `GET /get-auth-status?state=`: `wait`, `ok` or `error`. */
  getAuthStatus(state: string): Promise<ManagementAuthStatusResponse>;
  /** `POST /gemini-web-token`: Gemini web cookies become an account. */
  geminiWebToken(body: GeminiWebTokenBody): Promise<GeminiWebTokenResponse>;
  /** `/webhooks`: webhook subscriptions, their delivery attempts and test pings. */
  webhooks: WebhooksApi;
}

export function managementApi(t: Transport): ManagementApi {
  const auth = "management" as const;
  const stringList = (name: ManagementStringListName): StringListApi => ({
    get: async () =>
      (await t.request<ManagementStringListResponse<typeof name>>("GET", `${P}/${name}`, { auth }))[
        name
      ],
    put: (values) => t.request("PUT", `${P}/${name}`, { auth, json: values }),
    patch: (body) => t.request("PATCH", `${P}/${name}`, { auth, json: body }),
    delete: (query) => t.request("DELETE", `${P}/${name}`, { auth, query: { ...query } }),
  });
  const configList = <N extends ConfigListName>(name: N): ConfigListApi<N> => ({
    get: async () =>
      (await t.request<ConfigListResponse<N>>("GET", `${P}/${name}`, { auth }))[name],
    put: (items) => t.request("PUT", `${P}/${name}`, { auth, json: items }),
    patch: (body) => t.request("PATCH", `${P}/${name}`, { auth, json: body }),
    delete: (query) => t.request("DELETE", `${P}/${name}`, { auth, query: { ...query } }),
  });
  /** The reply field of each setting (the seed's `gpt-5-codex` for `/force-gpt-5-codex`). */
  const fieldOf = (name: ManagementSettingName): string =>
    name === "force-gpt-5-codex" ? "gpt-5-codex" : (name.split("/").pop() ?? name);

  return {
    usage: async () =>
      (await t.request<ManagementUsageResponse>("GET", `${P}/usage`, { auth })).usage,
    usageSummary: (query) => t.request("GET", `${P}/usage/summary`, { auth, query }),
    config: () => t.request("GET", `${P}/config`, { auth }),
    settings: {
      get: async <N extends ManagementSettingName>(name: N) =>
        (
          await t.request<Record<string, ManagementScalarSettings[N]["value"]>>(
            "GET",
            `${P}/${name}`,
            { auth },
          )
        )[fieldOf(name)] as ManagementSettingValue<N>,
      set: (name, value) => t.request("PUT", `${P}/${name}`, { auth, json: { value } }),
      deleteProxyUrl: () => t.request("DELETE", `${P}/proxy-url`, { auth }),
    },
    settingsTable: async () =>
      (await t.request<ManagementSettingsTableResponse>("GET", `${P}/settings`, { auth })).settings,
    setSetting: async (name, value) =>
      (
        await t.request<ManagementSettingPutResponse>(
          "PUT",
          `${P}/settings/${encodeURIComponent(name)}`,
          { auth, json: { value } },
        )
      ).setting,
    resetSetting: async (name) =>
      (
        await t.request<ManagementSettingPutResponse>(
          "DELETE",
          `${P}/settings/${encodeURIComponent(name)}`,
          { auth },
        )
      ).setting,
    credentials: {
      list: async (query) =>
        (
          await t.request<CredentialListResponse>("GET", `${P}/credentials`, {
            auth,
            query: { ...query },
          })
        ).credentials,
      create: async (body) =>
        (await t.request<CredentialResponse>("POST", `${P}/credentials`, { auth, json: body }))
          .credential,
      update: async (id, body) =>
        (
          await t.request<CredentialResponse>(
            "PATCH",
            `${P}/credentials/${encodeURIComponent(id)}`,
            { auth, json: body },
          )
        ).credential,
      remove: (id) => t.request("DELETE", `${P}/credentials/${encodeURIComponent(id)}`, { auth }),
      refresh: async (id) =>
        (
          await t.request<CredentialResponse>(
            "POST",
            `${P}/credentials/${encodeURIComponent(id)}/refresh`,
            { auth },
          )
        ).credential,
    },
    apiKeys: stringList("api-keys"),
    generativeLanguageApiKeys: stringList("generative-language-api-key"),
    claudeApiKeys: configList("claude-api-key"),
    codexApiKeys: configList("codex-api-key"),
    openaiCompatibility: configList("openai-compatibility"),
    stringList,
    configList,
    authFiles: {
      list: async () =>
        (await t.request<AuthFileListResponse>("GET", `${P}/auth-files`, { auth })).files,
      upload: (name, content) =>
        t.request("POST", `${P}/auth-files`, {
          auth,
          query: { name },
          body: typeof content === "string" ? content : JSON.stringify(content),
          headers: { "content-type": "application/json" },
        }),
      download: (name) => t.request("GET", `${P}/auth-files/download`, { auth, query: { name } }),
      delete: (name) => t.request("DELETE", `${P}/auth-files`, { auth, query: { name } }),
      deleteAll: () => t.request("DELETE", `${P}/auth-files`, { auth, query: { all: "true" } }),
    },
    authUrl: (login, options) =>
      t.request("GET", `${P}/${login}-auth-url`, {
        auth,
        query: { project_id: options?.projectId },
      }),
    getAuthStatus: (state) => t.request("GET", `${P}/get-auth-status`, { auth, query: { state } }),
    geminiWebToken: (body) => t.request("POST", `${P}/gemini-web-token`, { auth, json: body }),
    webhooks: webhooksApi(t),
  };
}
