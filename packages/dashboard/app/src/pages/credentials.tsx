/**
 * Upstream credentials (渠道): every API key and OAuth account of the pool with its live state
 * (`GET /v0/management/credentials`): active, cooling until a time, disabled with its reason,
 * failing with its last error. API keys are added and edited in a dialog; OAuth accounts come
 * from a provider login (opened in a new tab, its status polled) or an uploaded auth file.
 * No secret is ever shown: the API answers masked keys only, and the key typed into the add
 * dialog leaves the page with the dialog.
 */
import { useEffect, useRef, useState } from "preact/hooks";
import { api, errorText } from "../api.ts";
import { formatNumber, formatTime, messages } from "../i18n.ts";
import {
  Badge,
  Button,
  CheckboxField,
  type Column,
  confirm,
  DataTable,
  Dialog,
  Notice,
  NumberField,
  PageHeader,
  SelectField,
  Spinner,
  TextAreaField,
  TextField,
  useAsync,
} from "../ui.tsx";

const t = messages({
  en: {
    title: "Upstream credentials",
    intro:
      "The API keys and OAuth accounts requests are sent upstream with. Higher priority tiers are used first; weight shares the load inside a tier.",
    add: "Add API key",
    upload: "Upload auth file",
    uploadHint: "CLIProxyAPI token files (.json); several at once.",
    refreshList: "Refresh",
    loginTitle: "Log in with an OAuth account",
    loginIntro:
      "Opens the provider's login in a new tab; the account is added when you finish there.",
    loginWith: "Log in with {provider}",
    waiting: "Waiting for the {provider} login to finish in the other tab…",
    openAgain: "Open the login page again",
    stopWaiting: "Stop waiting",
    loginOk: "{provider} account added.",
    loginFailed: "{provider} login failed: {message}",
    uploaded: "Uploaded: {files}.",
    uploadFailed: "Not uploaded: {message}",
    caption: "Upstream credentials",
    empty: "No credential matches.",
    loadFailed: "Could not load the credentials: {message}",
    filterProvider: "Provider",
    filterState: "State",
    filterText: "Search",
    filterTextHint: "Label, e-mail or id",
    all: "All",
    colName: "Credential",
    colProvider: "Provider",
    colState: "State",
    colKey: "Key",
    colPriority: "Priority / weight",
    colLimits: "Limits",
    colExpires: "Token expires",
    colActions: "Actions",
    "st.active": "Active",
    "st.cooling": "Cooling",
    "st.disabled": "Disabled",
    "st.error": "Error",
    coolingUntil: "Cooling until {time}",
    coolingModels: "Models: {models}",
    errors: "Errors: {n}",
    apiKey: "API key",
    oauth: "OAuth",
    noLimits: "None",
    lRpm: "{n} req/min",
    lTpm: "{n} tokens/min",
    lConc: "{n} at once",
    lDay: "{n}/day",
    lMonth: "{n}/month",
    expired: "Expired",
    edit: "Edit",
    enable: "Enable",
    disable: "Disable",
    refreshNow: "Refresh now",
    delete: "Delete",
    disableTitle: "Disable {name}?",
    disableBody: "No request uses it until it is enabled again.",
    deleteTitle: "Delete {name}?",
    deleteBody:
      "The credential is removed from the pool and its secret is deleted. This cannot be undone.",
    refreshed: "{name}: token refreshed.",
    failed: "Failed: {message}",
    addTitle: "Add an API key",
    editTitle: "Edit {name}",
    provider: "Provider",
    apiKeyField: "API key",
    apiKeyHint: "Stored sealed; shown masked from now on.",
    newApiKey: "Replace the API key",
    newApiKeyHint: "Leave empty to keep the current key.",
    baseUrl: "Base URL",
    baseUrlHint: "Empty: the provider's own API ({url}).",
    baseUrlRequired: "Required for this provider.",
    label: "Label",
    models: "Models",
    modelsHint: "Upstream model names, comma or line separated; empty = any model.",
    groups: "Groups",
    groupsHint: "Comma separated; empty = the default group.",
    priority: "Priority",
    priorityHint: "Higher tiers are tried first.",
    weight: "Weight",
    weightHint: "Share of the load inside its tier (1 or more).",
    limits: "Limits (empty or 0 = none)",
    rpm: "Requests per minute",
    tpm: "Tokens per minute",
    concurrency: "Concurrent requests",
    spendDay: "Spend per day",
    spendMonth: "Spend per month",
    spendHint: "Quota units (500,000 = $1).",
    enabled: "Enabled",
    save: "Save",
    create: "Add",
    cancel: "Cancel",
    needKey: "Enter the API key.",
    needUrl: "Enter the base URL.",
    badWeight: "Weight is a whole number, 1 or more.",
    badInt: "Enter a whole number.",
    "p.openai": "OpenAI or OpenAI-compatible",
    "p.anthropic": "Anthropic (Claude)",
    "p.gemini": "Google Gemini",
    "p.codex": "OpenAI Codex",
    "p.qwen": "Qwen (base URL required)",
  },
  zh: {
    title: "上游凭据",
    intro:
      "请求转发到上游时使用的 API 密钥和 OAuth 账号（渠道）。优先级高的一档先用；同一档内按权重分配。",
    add: "添加 API 密钥",
    upload: "上传认证文件",
    uploadHint: "CLIProxyAPI 的令牌文件（.json），可一次选择多个。",
    refreshList: "刷新",
    loginTitle: "通过 OAuth 账号登录",
    loginIntro: "在新标签页中打开服务商的登录页面；在那里完成登录后即添加账号。",
    loginWith: "使用 {provider} 登录",
    waiting: "正在等待另一个标签页中的 {provider} 登录完成…",
    openAgain: "重新打开登录页面",
    stopWaiting: "停止等待",
    loginOk: "已添加 {provider} 账号。",
    loginFailed: "{provider} 登录失败：{message}",
    uploaded: "已上传：{files}。",
    uploadFailed: "上传失败：{message}",
    caption: "上游凭据",
    empty: "没有匹配的凭据。",
    loadFailed: "无法加载凭据：{message}",
    filterProvider: "服务商",
    filterState: "状态",
    filterText: "搜索",
    filterTextHint: "名称、邮箱或 ID",
    all: "全部",
    colName: "凭据",
    colProvider: "服务商",
    colState: "状态",
    colKey: "密钥",
    colPriority: "优先级 / 权重",
    colLimits: "限额",
    colExpires: "令牌过期时间",
    colActions: "操作",
    "st.active": "正常",
    "st.cooling": "冷却中",
    "st.disabled": "已禁用",
    "st.error": "出错",
    coolingUntil: "冷却至 {time}",
    coolingModels: "模型：{models}",
    errors: "{n} 次错误",
    apiKey: "API 密钥",
    oauth: "OAuth",
    noLimits: "无",
    lRpm: "每分钟 {n} 次",
    lTpm: "每分钟 {n} tokens",
    lConc: "并发 {n}",
    lDay: "每天 {n}",
    lMonth: "每月 {n}",
    expired: "已过期",
    edit: "编辑",
    enable: "启用",
    disable: "禁用",
    refreshNow: "立即刷新",
    delete: "删除",
    disableTitle: "禁用 {name}？",
    disableBody: "重新启用之前，不会有请求使用它。",
    deleteTitle: "删除 {name}？",
    deleteBody: "该凭据将从池中移除，其密钥也会被删除。此操作无法撤销。",
    refreshed: "{name}：令牌已刷新。",
    failed: "操作失败：{message}",
    addTitle: "添加 API 密钥",
    editTitle: "编辑 {name}",
    provider: "服务商",
    apiKeyField: "API 密钥",
    apiKeyHint: "加密保存；之后只显示打码后的内容。",
    newApiKey: "更换 API 密钥",
    newApiKeyHint: "留空则保留当前密钥。",
    baseUrl: "Base URL",
    baseUrlHint: "留空：使用服务商自己的 API（{url}）。",
    baseUrlRequired: "此服务商必须填写。",
    label: "名称",
    models: "模型",
    modelsHint: "上游模型名，用逗号或换行分隔；留空表示任意模型。",
    groups: "分组",
    groupsHint: "用逗号分隔；留空表示默认分组。",
    priority: "优先级",
    priorityHint: "优先级高的一档先尝试。",
    weight: "权重",
    weightHint: "在同一档内分配的比例（1 或以上）。",
    limits: "限额（留空或 0 表示不限）",
    rpm: "每分钟请求数",
    tpm: "每分钟 tokens",
    concurrency: "并发请求数",
    spendDay: "每天花费",
    spendMonth: "每月花费",
    spendHint: "额度单位（500,000 = 1 美元）。",
    enabled: "启用",
    save: "保存",
    create: "添加",
    cancel: "取消",
    needKey: "请输入 API 密钥。",
    needUrl: "请输入 Base URL。",
    badWeight: "权重必须是 1 或以上的整数。",
    badInt: "请输入整数。",
    "p.openai": "OpenAI 或兼容 OpenAI 的服务",
    "p.anthropic": "Anthropic（Claude）",
    "p.gemini": "Google Gemini",
    "p.codex": "OpenAI Codex",
    "p.qwen": "通义千问（需填写 Base URL）",
  },
});

type Status = "active" | "cooling" | "disabled" | "error";

interface Limits {
  rpm_limit: number;
  tpm_limit: number;
  max_concurrency: number;
  spend_per_day: number;
  spend_per_month: number;
}

/** One credential as `GET /v0/management/credentials` shows it (no secret). */
interface Credential {
  id: string;
  provider: string;
  kind: "api-key" | "oauth";
  label: string;
  base_url: string;
  enabled: boolean;
  status: Status;
  disabled_reason: string | null;
  cooling_until: number | null;
  cooldowns: Record<string, number>;
  error_count: number;
  last_error: string | null;
  priority: number;
  weight: number;
  groups: string[];
  models: string[];
  masked_key: string | null;
  expires_at: number | null;
  email: string | null;
  limits: Limits;
  updated_at: number;
  created_at: number;
}

/** The providers `POST /credentials` takes, with their default base URL (null: required). */
const PROVIDERS = {
  openai: "https://api.openai.com/v1",
  anthropic: "https://api.anthropic.com",
  gemini: "https://generativelanguage.googleapis.com",
  codex: "https://chatgpt.com/backend-api/codex",
  qwen: null,
} as const satisfies Record<string, string | null>;
type Provider = keyof typeof PROVIDERS;

/** The OAuth logins the gateway runs: the route of each and its name. */
const LOGINS = [
  { id: "anthropic", route: "anthropic-auth-url", name: "Claude" },
  { id: "codex", route: "codex-auth-url", name: "Codex" },
  { id: "gemini-cli", route: "gemini-cli-auth-url", name: "Gemini CLI" },
  { id: "qwen", route: "qwen-auth-url", name: "Qwen" },
] as const;
type Login = (typeof LOGINS)[number];

const STATUSES: readonly Status[] = ["active", "cooling", "disabled", "error"];
const LIMIT_KEYS = [
  "rpm_limit",
  "tpm_limit",
  "max_concurrency",
  "spend_per_day",
  "spend_per_month",
] as const;

const path = (id: string, rest = "") =>
  `/v0/management/credentials/${encodeURIComponent(id)}${rest}`;
const nameOf = (c: Credential) => c.label || c.email || c.id;
const splitList = (s: string) =>
  s
    .split(/[,\n]/)
    .map((x) => x.trim())
    .filter(Boolean);

function StateCell(props: { c: Credential }) {
  const { c } = props;
  const cooledModels = Object.keys(c.cooldowns).filter((m) => m !== "*");
  return (
    <span class="cell-wrap">
      {c.status === "active" && <Badge tone="ok">{t("st.active")}</Badge>}
      {c.status === "cooling" && (
        <>
          <Badge tone="warn">{t("st.cooling")}</Badge>
          <span class="cell-sub">
            {t("coolingUntil", { time: formatTime(c.cooling_until ?? 0) })}
          </span>
          {cooledModels.length > 0 && (
            <span class="cell-sub">{t("coolingModels", { models: cooledModels.join(", ") })}</span>
          )}
        </>
      )}
      {c.status === "disabled" && (
        <>
          <Badge>{t("st.disabled")}</Badge>
          {c.disabled_reason && <span class="cell-sub">{c.disabled_reason}</span>}
        </>
      )}
      {c.status === "error" && <Badge tone="bad">{t("st.error")}</Badge>}
      {c.status !== "disabled" && c.error_count > 0 && (
        <span class="cell-sub">{t("errors", { n: c.error_count })}</span>
      )}
      {c.status !== "active" && c.last_error && (
        <span class="cell-sub" title={c.last_error}>
          {c.last_error.length > 160 ? `${c.last_error.slice(0, 160)}…` : c.last_error}
        </span>
      )}
    </span>
  );
}

function limitsText(l: Limits): string {
  const parts = [
    l.rpm_limit ? t("lRpm", { n: formatNumber(l.rpm_limit) }) : "",
    l.tpm_limit ? t("lTpm", { n: formatNumber(l.tpm_limit) }) : "",
    l.max_concurrency ? t("lConc", { n: formatNumber(l.max_concurrency) }) : "",
    l.spend_per_day ? t("lDay", { n: formatNumber(l.spend_per_day) }) : "",
    l.spend_per_month ? t("lMonth", { n: formatNumber(l.spend_per_month) }) : "",
  ].filter(Boolean);
  return parts.length ? parts.join(" · ") : t("noLimits");
}

/** The add (API key) and edit dialog. */
function CredentialForm(props: {
  initial: Credential | null;
  onClose: () => void;
  onSaved: () => void;
}) {
  const c = props.initial;
  const [provider, setProvider] = useState<Provider>("openai");
  const [apiKey, setApiKey] = useState("");
  const [baseUrl, setBaseUrl] = useState(c?.base_url ?? "");
  const [label, setLabel] = useState(c?.label ?? "");
  const [models, setModels] = useState(c?.models.join(", ") ?? "");
  const [groups, setGroups] = useState(c?.groups.join(", ") ?? "");
  const [priority, setPriority] = useState<number | null>(c?.priority ?? 0);
  const [weight, setWeight] = useState<number | null>(c?.weight ?? 1);
  const [limits, setLimits] = useState<Record<(typeof LIMIT_KEYS)[number], number | null>>(
    () =>
      Object.fromEntries(LIMIT_KEYS.map((k) => [k, c?.limits[k] || null])) as Record<
        (typeof LIMIT_KEYS)[number],
        number | null
      >,
  );
  const [enabled, setEnabled] = useState(true);
  const [errors, setErrors] = useState<Record<string, string>>({});
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const bad: Record<string, string> = {};
    if (!c && !apiKey.trim()) bad.apiKey = t("needKey");
    if (!c && PROVIDERS[provider] === null && !baseUrl.trim()) bad.baseUrl = t("needUrl");
    if (weight === null || !Number.isInteger(weight) || weight < 1) bad.weight = t("badWeight");
    if (priority !== null && !Number.isInteger(priority)) bad.priority = t("badInt");
    for (const k of LIMIT_KEYS) {
      const v = limits[k];
      if (v !== null && (!Number.isInteger(v) || v < 0)) bad[k] = t("badInt");
    }
    setErrors(bad);
    if (Object.keys(bad).length) return;
    const body: Record<string, unknown> = {
      label: label.trim(),
      models: splitList(models),
      groups: splitList(groups),
      priority: priority ?? 0,
      weight,
    };
    for (const k of LIMIT_KEYS) body[k] = limits[k] ?? 0;
    if (baseUrl.trim()) body.base_url = baseUrl.trim();
    if (apiKey.trim()) body.api_key = apiKey.trim();
    setBusy(true);
    setError(undefined);
    try {
      if (c) await api(path(c.id), { method: "PATCH", body });
      else
        await api("/v0/management/credentials", {
          method: "POST",
          body: { ...body, provider, enabled },
        });
      setApiKey("");
      props.onSaved();
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const defaultUrl = c ? null : PROVIDERS[provider];
  return (
    <Dialog
      open
      wide
      title={c ? t("editTitle", { name: nameOf(c) }) : t("addTitle")}
      onClose={props.onClose}
      actions={
        <>
          <Button onClick={props.onClose}>{t("cancel")}</Button>
          <Button variant="primary" onClick={submit} disabled={busy}>
            {c ? t("save") : t("create")}
          </Button>
        </>
      }
    >
      <form onSubmit={submit} noValidate>
        <div class="form-grid">
          {!c && (
            <SelectField
              label={t("provider")}
              name="provider"
              value={provider}
              onChange={setProvider}
              options={(Object.keys(PROVIDERS) as Provider[]).map((p) => ({
                value: p,
                label: t(`p.${p}`),
              }))}
            />
          )}
          {(!c || c.kind === "api-key") && (
            <TextField
              label={c ? t("newApiKey") : t("apiKeyField")}
              type="password"
              name="api-key"
              autocomplete="new-password"
              value={apiKey}
              onInput={setApiKey}
              hint={c ? t("newApiKeyHint") : t("apiKeyHint")}
              error={errors.apiKey}
              required={!c}
            />
          )}
          <TextField
            label={t("baseUrl")}
            type="url"
            name="base-url"
            value={baseUrl}
            onInput={setBaseUrl}
            placeholder={defaultUrl ?? "https://…"}
            hint={
              c
                ? undefined
                : defaultUrl
                  ? t("baseUrlHint", { url: defaultUrl })
                  : t("baseUrlRequired")
            }
            error={errors.baseUrl}
          />
          <TextField label={t("label")} name="label" value={label} onInput={setLabel} />
          <NumberField
            label={t("priority")}
            name="priority"
            value={priority}
            onInput={setPriority}
            hint={t("priorityHint")}
            error={errors.priority}
          />
          <NumberField
            label={t("weight")}
            name="weight"
            value={weight}
            min={1}
            onInput={setWeight}
            hint={t("weightHint")}
            error={errors.weight}
          />
        </div>
        <TextAreaField
          label={t("models")}
          name="models"
          rows={2}
          value={models}
          onInput={setModels}
          hint={t("modelsHint")}
          placeholder="gpt-4o-mini, gpt-4o"
        />
        <TextField
          label={t("groups")}
          name="groups"
          value={groups}
          onInput={setGroups}
          hint={t("groupsHint")}
        />
        <fieldset>
          <legend>{t("limits")}</legend>
          <div class="form-grid">
            {(
              [
                ["rpm_limit", t("rpm"), undefined],
                ["tpm_limit", t("tpm"), undefined],
                ["max_concurrency", t("concurrency"), undefined],
                ["spend_per_day", t("spendDay"), t("spendHint")],
                ["spend_per_month", t("spendMonth"), t("spendHint")],
              ] as const
            ).map(([k, label, hint]) => (
              <NumberField
                key={k}
                label={label}
                name={k}
                value={limits[k]}
                min={0}
                hint={hint}
                error={errors[k]}
                onInput={(v) => setLimits({ ...limits, [k]: v })}
              />
            ))}
          </div>
        </fieldset>
        {!c && <CheckboxField label={t("enabled")} checked={enabled} onChange={setEnabled} />}
        {error && <Notice kind="error">{error}</Notice>}
      </form>
    </Dialog>
  );
}

/** A provider login in progress: opened in a new tab, its status polled. */
function useLogin(onDone: () => void) {
  const [active, setActive] = useState<{ login: Login; url: string; state: string } | null>(null);
  const [result, setResult] = useState<{ kind: "success" | "error"; text: string }>();
  const timer = useRef<ReturnType<typeof setTimeout>>();
  // Which login the page follows: a status answer of a login left (stopped, replaced, unmounted)
  // while its request was under way is dropped, and its polling ends.
  const current = useRef(0);
  const stop = () => {
    current.current++;
    clearTimeout(timer.current);
    setActive(null);
  };
  useEffect(
    () => () => {
      current.current++;
      clearTimeout(timer.current);
    },
    [],
  );

  const poll = (login: Login, state: string, id: number) => {
    timer.current = setTimeout(async () => {
      try {
        const r = await api<{ status: string; error?: string }>("/v0/management/get-auth-status", {
          query: { state },
        });
        if (id !== current.current) return;
        if (r.status === "ok") {
          setActive(null);
          setResult({ kind: "success", text: t("loginOk", { provider: login.name }) });
          onDone();
          return;
        }
        if (r.status === "error") {
          setActive(null);
          setResult({
            kind: "error",
            text: t("loginFailed", { provider: login.name, message: r.error ?? "" }),
          });
          return;
        }
        poll(login, state, id);
      } catch (e) {
        if (id !== current.current) return;
        setActive(null);
        setResult({
          kind: "error",
          text: t("loginFailed", { provider: login.name, message: errorText(e) }),
        });
      }
    }, 2000);
  };

  const start = async (login: Login) => {
    const id = ++current.current;
    clearTimeout(timer.current);
    setResult(undefined);
    try {
      const r = await api<{ url: string; state: string }>(`/v0/management/${login.route}`);
      if (id !== current.current) return;
      window.open(r.url, "_blank", "noopener");
      setActive({ login, url: r.url, state: r.state });
      poll(login, r.state, id);
    } catch (e) {
      if (id !== current.current) return;
      setResult({
        kind: "error",
        text: t("loginFailed", { provider: login.name, message: errorText(e) }),
      });
    }
  };
  return { active, result, start, stop };
}

/** The upstream credentials page (management key only). */
export function CredentialsPage() {
  const list = useAsync(
    (signal) => api<{ credentials: Credential[] }>("/v0/management/credentials", { signal }),
    [],
    15_000,
  );
  const [provider, setProvider] = useState("");
  const [status, setStatus] = useState<"" | Status>("");
  const [text, setText] = useState("");
  const [editing, setEditing] = useState<Credential | "new" | null>(null);
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string }>();
  const [busy, setBusy] = useState<string | null>(null);
  const login = useLogin(list.reload);
  const fileRef = useRef<HTMLInputElement>(null);

  const all = list.data?.credentials ?? [];
  const providers = [...new Set(all.map((c) => c.provider))].sort();
  const q = text.trim().toLowerCase();
  const rows = all.filter(
    (c) =>
      (!provider || c.provider === provider) &&
      (!status || c.status === status) &&
      (!q || [c.label, c.email ?? "", c.id].some((s) => s.toLowerCase().includes(q))),
  );

  const run = async (id: string, fn: () => Promise<void>) => {
    setBusy(id);
    setNotice(undefined);
    try {
      await fn();
    } catch (e) {
      setNotice({ kind: "error", text: t("failed", { message: errorText(e) }) });
    } finally {
      setBusy(null);
    }
  };

  const toggle = (c: Credential) =>
    run(c.id, async () => {
      if (
        c.enabled &&
        !(await confirm({
          title: t("disableTitle", { name: nameOf(c) }),
          body: t("disableBody"),
          confirmLabel: t("disable"),
          danger: true,
        }))
      )
        return;
      await api(path(c.id), { method: "PATCH", body: { enabled: !c.enabled } });
      list.reload();
    });

  const remove = (c: Credential) =>
    run(c.id, async () => {
      if (
        !(await confirm({
          title: t("deleteTitle", { name: nameOf(c) }),
          body: t("deleteBody"),
          confirmLabel: t("delete"),
          danger: true,
        }))
      )
        return;
      await api(path(c.id), { method: "DELETE" });
      list.reload();
    });

  const refresh = (c: Credential) =>
    run(c.id, async () => {
      await api(path(c.id, "/refresh"), { method: "POST" });
      setNotice({ kind: "success", text: t("refreshed", { name: nameOf(c) }) });
      list.reload();
    });

  const upload = async (files: FileList | null) => {
    if (!files || files.length === 0) return;
    const form = new FormData();
    for (const f of Array.from(files)) form.append("file", f, f.name);
    setNotice(undefined);
    try {
      const r = await api<{ files?: string[]; failed?: { name: string; error: string }[] }>(
        "/v0/management/auth-files",
        { method: "POST", raw: form },
      );
      const failed = r.failed ?? [];
      setNotice(
        failed.length
          ? {
              kind: "error",
              text: t("uploadFailed", {
                message: failed.map((f) => `${f.name}: ${f.error}`).join("; "),
              }),
            }
          : {
              kind: "success",
              text: t("uploaded", {
                files: (r.files ?? Array.from(files, (f) => f.name)).join(", "),
              }),
            },
      );
    } catch (e) {
      setNotice({ kind: "error", text: t("uploadFailed", { message: errorText(e) }) });
    } finally {
      if (fileRef.current) fileRef.current.value = "";
      list.reload();
    }
  };

  const columns: Column<Credential>[] = [
    {
      key: "name",
      label: t("colName"),
      render: (c) => (
        <span class="cell-wrap">
          <strong>{c.label || c.email || c.id}</strong>
          {c.email && c.email !== c.label && <span class="cell-sub">{c.email}</span>}
          <span class="cell-sub mono">{c.id}</span>
        </span>
      ),
    },
    {
      key: "provider",
      label: t("colProvider"),
      render: (c) => (
        <>
          {c.provider}
          <span class="cell-sub">{c.kind === "oauth" ? t("oauth") : t("apiKey")}</span>
        </>
      ),
    },
    { key: "state", label: t("colState"), render: (c) => <StateCell c={c} /> },
    {
      key: "key",
      label: t("colKey"),
      optional: true,
      render: (c) => (
        <span class="cell-wrap">
          <code>{c.masked_key ?? "—"}</code>
          <span class="cell-sub">{c.base_url}</span>
        </span>
      ),
    },
    {
      key: "priority",
      label: t("colPriority"),
      numeric: true,
      render: (c) => `${c.priority} / ${c.weight}`,
    },
    {
      key: "limits",
      label: t("colLimits"),
      optional: true,
      render: (c) => <span class="cell-wrap">{limitsText(c.limits)}</span>,
    },
    {
      key: "expires",
      label: t("colExpires"),
      optional: true,
      render: (c) =>
        c.kind !== "oauth" || !c.expires_at ? (
          "—"
        ) : c.expires_at < Date.now() ? (
          <>
            <Badge tone="warn">{t("expired")}</Badge>
            <span class="cell-sub">{formatTime(c.expires_at)}</span>
          </>
        ) : (
          formatTime(c.expires_at)
        ),
    },
    {
      key: "actions",
      label: t("colActions"),
      render: (c) => (
        <div class="row-actions">
          <Button onClick={() => setEditing(c)}>
            {t("edit")}
            <span class="sr-only">: {nameOf(c)}</span>
          </Button>
          <Button onClick={() => toggle(c)} disabled={busy === c.id}>
            {c.enabled ? t("disable") : t("enable")}
            <span class="sr-only">: {nameOf(c)}</span>
          </Button>
          {c.kind === "oauth" && (
            <Button onClick={() => refresh(c)} disabled={busy === c.id}>
              {t("refreshNow")}
              <span class="sr-only">: {nameOf(c)}</span>
            </Button>
          )}
          <Button variant="danger" onClick={() => remove(c)} disabled={busy === c.id}>
            {t("delete")}
            <span class="sr-only">: {nameOf(c)}</span>
          </Button>
        </div>
      ),
    },
  ];

  return (
    <>
      <PageHeader title={t("title")}>
        <Button onClick={list.reload}>{t("refreshList")}</Button>
        <Button variant="primary" onClick={() => setEditing("new")}>
          {t("add")}
        </Button>
      </PageHeader>
      <p class="hint">{t("intro")}</p>

      <section class="card" aria-labelledby="oauth-login-title">
        <h2 id="oauth-login-title">{t("loginTitle")}</h2>
        <p class="hint">{t("loginIntro")}</p>
        <div class="inline-actions">
          {LOGINS.map((l) => (
            <Button key={l.id} onClick={() => login.start(l)} disabled={login.active !== null}>
              {t("loginWith", { provider: l.name })}
            </Button>
          ))}
        </div>
        {login.active && (
          <div class="notice notice-info" role="status">
            <span>{t("waiting", { provider: login.active.login.name })}</span>
            <span class="inline-actions">
              <Button onClick={() => window.open(login.active?.url, "_blank", "noopener")}>
                {t("openAgain")}
              </Button>
              <Button onClick={login.stop}>{t("stopWaiting")}</Button>
            </span>
          </div>
        )}
        {login.result && <Notice kind={login.result.kind}>{login.result.text}</Notice>}
        <div class="field">
          <label for="auth-file-upload">{t("upload")}</label>
          <input
            id="auth-file-upload"
            ref={fileRef}
            type="file"
            accept=".json,application/json"
            multiple
            aria-describedby="auth-file-upload-hint"
            onChange={(e) => upload((e.currentTarget as HTMLInputElement).files)}
          />
          <small id="auth-file-upload-hint" class="hint">
            {t("uploadHint")}
          </small>
        </div>
      </section>

      {notice && <Notice kind={notice.kind}>{notice.text}</Notice>}
      <div class="toolbar">
        <SelectField
          label={t("filterProvider")}
          value={provider}
          onChange={setProvider}
          options={[
            { value: "", label: t("all") },
            ...providers.map((p) => ({ value: p, label: p })),
          ]}
        />
        <SelectField
          label={t("filterState")}
          value={status}
          onChange={setStatus}
          options={[
            { value: "", label: t("all") },
            ...STATUSES.map((s) => ({ value: s, label: t(`st.${s}`) })),
          ]}
        />
        <TextField
          label={t("filterText")}
          type="search"
          value={text}
          onInput={setText}
          placeholder={t("filterTextHint")}
        />
      </div>
      {list.error && (
        <Notice kind="error" onRetry={list.reload}>
          {t("loadFailed", { message: list.error })}
        </Notice>
      )}
      {list.loading && !list.data && <Spinner />}
      {list.data && (
        <DataTable
          caption={t("caption")}
          columns={columns}
          rows={rows}
          rowKey={(c) => c.id}
          empty={t("empty")}
        />
      )}
      {editing && (
        <CredentialForm
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={() => {
            setEditing(null);
            list.reload();
          }}
        />
      )}
    </>
  );
}
