/**
 * The users page (management key only): owners of keys, with their own quota, group, role,
 * limits and refill (covering all their keys together) and the access token that logs them into
 * the console and the new-api routes. Create, edit, enable / disable, a new access token, delete.
 */
import { useEffect, useState } from "preact/hooks";
import { api, apiData, errorText } from "../api.ts";
import { formatNumber, formatTime, formatUsd, messages } from "../i18n.ts";
import { navigate } from "../router.ts";
import {
  Badge,
  Button,
  type Column,
  confirm,
  DataTable,
  Dialog,
  Notice,
  NumberField,
  PageHeader,
  Pager,
  SearchForm,
  SelectField,
  Spinner,
  TextField,
  useAsync,
} from "../ui.tsx";
import {
  type FormErrors,
  isUsd,
  LimitsFieldset,
  type LimitsForm,
  limitsBody,
  limitsForm,
  limitsSummary,
  RefillCell,
  RefillFields,
  usdToUnits,
  validateLimits,
} from "./keys/limits.tsx";
import { SecretDialog, type ShownSecret } from "./keys/secret.tsx";
import { changedFields, type ListPage, UNITS_PER_USD, type UserView } from "./keys/types.ts";

const t = messages({
  en: {
    title: "Users",
    create: "Create user",
    caption: "Users",
    search: "Search by username",
    searchButton: "Search",
    clear: "Clear",
    colUser: "User",
    colRole: "Role",
    colStatus: "Status",
    colGroup: "Group",
    colQuota: "Quota left",
    colUsed: "Used",
    colLimits: "Limits",
    colRefill: "Refill",
    colToken: "Access token",
    colCreated: "Created",
    colActions: "Actions",
    admin: "Admin",
    user: "User",
    enabled: "Enabled",
    disabled: "Disabled",
    issued: "Issued",
    noToken: "None",
    units: "{n} units",
    edit: "Edit",
    enable: "Enable",
    disable: "Disable",
    newToken: "New token",
    keys: "Keys",
    delete: "Delete",
    editLabel: "Edit user {name}",
    enableLabel: "Enable user {name}",
    disableLabel: "Disable user {name}",
    tokenLabel: "New token for {name}",
    keysLabel: "Keys of {name}",
    deleteLabel: "Delete user {name}",
    disableTitle: "Disable user {name}?",
    disableBody:
      "The user can no longer log in, and requests with the user's keys are refused until it is enabled again.",
    tokenTitle: "Issue a new access token for {name}?",
    tokenBody: "The current access token stops working at once.",
    tokenOk: "Issue token",
    deleteTitle: "Delete user {name}?",
    deleteBody:
      "The user's keys are deleted too, and clients using them stop working. This cannot be undone.",
    createdTitle: "User {name} created",
    tokenShownTitle: "Access token of {name}",
    tokenName: "Access token",
    loginNote: "User id {id}: log in to the console with this id and the access token.",
    saved: "User {name} saved.",
    disabledDone: "User {name} disabled.",
    enabledDone: "User {name} enabled.",
    deletedDone: "User {name} and its keys deleted.",
    empty: "No users yet.",
    noMatch: "No user matches this search.",
    // form
    createTitle: "Create user",
    editTitle: "Edit user {name}",
    cancel: "Cancel",
    createButton: "Create",
    save: "Save",
    saving: "Saving…",
    account: "Account",
    username: "Username",
    usernameHint: "No spaces.",
    usernameBad: "Enter a username without spaces.",
    displayName: "Display name",
    role: "Role",
    group: "Group",
    groupHint: "A group of the group-ratio setting (e.g. default).",
    groupBad: "Enter a group.",
    quota: "Quota",
    quotaUsd: "Quota (USD)",
    quotaHint: "{units} units (500,000 units = $1), for all the user's keys together.",
    badUsd: "Enter an amount of 0 or more.",
  },
  zh: {
    title: "用户",
    create: "创建用户",
    caption: "用户",
    search: "按用户名搜索",
    searchButton: "搜索",
    clear: "清除",
    colUser: "用户",
    colRole: "角色",
    colStatus: "状态",
    colGroup: "分组",
    colQuota: "剩余额度",
    colUsed: "已用额度",
    colLimits: "限制",
    colRefill: "额度重置",
    colToken: "访问令牌",
    colCreated: "创建时间",
    colActions: "操作",
    admin: "管理员",
    user: "普通用户",
    enabled: "已启用",
    disabled: "已禁用",
    issued: "已生成",
    noToken: "无",
    units: "{n} 点",
    edit: "编辑",
    enable: "启用",
    disable: "禁用",
    newToken: "新令牌",
    keys: "令牌",
    delete: "删除",
    editLabel: "编辑用户 {name}",
    enableLabel: "启用用户 {name}",
    disableLabel: "禁用用户 {name}",
    tokenLabel: "为 {name} 生成新令牌",
    keysLabel: "{name} 的令牌",
    deleteLabel: "删除用户 {name}",
    disableTitle: "禁用用户 {name}？",
    disableBody: "重新启用之前，该用户无法登录，使用其令牌的请求也会被拒绝。",
    tokenTitle: "为 {name} 生成新的访问令牌？",
    tokenBody: "当前的访问令牌将立即失效。",
    tokenOk: "生成令牌",
    deleteTitle: "删除用户 {name}？",
    deleteBody: "该用户的所有令牌也会被删除，使用它们的客户端将无法调用。此操作无法撤销。",
    createdTitle: "用户 {name} 已创建",
    tokenShownTitle: "{name} 的访问令牌",
    tokenName: "访问令牌",
    loginNote: "用户 ID {id}：使用此 ID 和访问令牌登录控制台。",
    saved: "用户 {name} 已保存。",
    disabledDone: "用户 {name} 已禁用。",
    enabledDone: "用户 {name} 已启用。",
    deletedDone: "用户 {name} 及其令牌已删除。",
    empty: "还没有用户。",
    noMatch: "没有匹配的用户。",
    createTitle: "创建用户",
    editTitle: "编辑用户 {name}",
    cancel: "取消",
    createButton: "创建",
    save: "保存",
    saving: "保存中…",
    account: "账户",
    username: "用户名",
    usernameHint: "不能包含空格。",
    usernameBad: "请输入不含空格的用户名。",
    displayName: "显示名称",
    role: "角色",
    group: "分组",
    groupHint: "group-ratio 设置中的分组（例如 default）。",
    groupBad: "请输入分组。",
    quota: "额度",
    quotaUsd: "额度（美元）",
    quotaHint: "{units} 点（500,000 点 = 1 美元），该用户所有令牌共用。",
    badUsd: "请输入不小于 0 的金额。",
  },
});

interface UserForm {
  username: string;
  displayName: string;
  role: "user" | "admin";
  group: string;
  quotaUsd: number | null;
  limits: LimitsForm;
}

function formOf(u?: UserView): UserForm {
  return {
    username: u?.username ?? "",
    displayName: u?.display_name ?? "",
    role: u?.role ?? "user",
    group: u?.group ?? "default",
    quotaUsd: u ? u.quota / UNITS_PER_USD : null,
    limits: limitsForm(u),
  };
}

function bodyOf(f: UserForm): Record<string, unknown> {
  return {
    username: f.username.trim(),
    display_name: f.displayName.trim() || f.username.trim(),
    role: f.role,
    group: f.group.trim(),
    quota: usdToUnits(f.quotaUsd),
    ...limitsBody(f.limits),
  };
}

function validate(f: UserForm): FormErrors {
  const e = validateLimits(f.limits);
  if (!f.username.trim() || /\s/.test(f.username.trim())) e.username = t("usernameBad");
  if (!f.group.trim()) e.group = t("groupBad");
  if (!isUsd(f.quotaUsd)) e.quotaUsd = t("badUsd");
  return e;
}

function UserFormDialog(props: {
  user?: UserView;
  onClose: () => void;
  onCreated: (u: UserView & { access_token: string }) => void;
  onSaved: (u: UserView) => void;
}) {
  const original = props.user;
  const [f, setF] = useState<UserForm>(() => formOf(original));
  const [errors, setErrors] = useState<FormErrors>({});
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<string>();
  const set = (patch: Partial<UserForm>) => setF((old) => ({ ...old, ...patch }));
  const formId = "user-form";

  // After a first submit, the messages follow the fields as they are corrected.
  useEffect(() => {
    if (tried) setErrors(validate(f));
  }, [f]);

  const submit = async (e: Event) => {
    e.preventDefault();
    const errs = validate(f);
    setErrors(errs);
    setTried(true);
    if (Object.keys(errs).length > 0) {
      requestAnimationFrame(() =>
        document.querySelector<HTMLElement>("dialog [aria-invalid='true']")?.focus(),
      );
      return;
    }
    setBusy(true);
    setFailure(undefined);
    try {
      if (!original) {
        props.onCreated(
          await apiData<UserView & { access_token: string }>("/api/user/", {
            method: "POST",
            body: bodyOf(f),
          }),
        );
      } else {
        const changed = changedFields(bodyOf(f), bodyOf(formOf(original)));
        if (Object.keys(changed).length === 0) {
          props.onClose();
          return;
        }
        props.onSaved(
          await apiData<UserView>("/api/user/", {
            method: "PUT",
            body: { id: original.id, ...changed },
          }),
        );
      }
    } catch (err) {
      setFailure(errorText(err));
      setBusy(false);
    }
  };

  return (
    <Dialog
      open
      wide
      title={original ? t("editTitle", { name: original.username }) : t("createTitle")}
      onClose={props.onClose}
      actions={
        <>
          <Button onClick={props.onClose}>{t("cancel")}</Button>
          <button type="submit" class="btn btn-primary" form={formId} disabled={busy}>
            {busy ? t("saving") : original ? t("save") : t("createButton")}
          </button>
        </>
      }
    >
      <form id={formId} onSubmit={submit} noValidate>
        <fieldset>
          <legend>{t("account")}</legend>
          <div class="form-grid">
            <TextField
              label={t("username")}
              name="username"
              value={f.username}
              hint={t("usernameHint")}
              error={errors.username}
              required
              onInput={(username) => set({ username })}
            />
            <TextField
              label={t("displayName")}
              name="display_name"
              value={f.displayName}
              onInput={(displayName) => set({ displayName })}
            />
            <SelectField<"user" | "admin">
              label={t("role")}
              name="role"
              value={f.role}
              options={[
                { value: "user", label: t("user") },
                { value: "admin", label: t("admin") },
              ]}
              onChange={(role) => set({ role })}
            />
            <TextField
              label={t("group")}
              name="group"
              value={f.group}
              hint={t("groupHint")}
              error={errors.group}
              onInput={(group) => set({ group })}
            />
          </div>
        </fieldset>
        <fieldset>
          <legend>{t("quota")}</legend>
          <div class="form-grid">
            <NumberField
              label={t("quotaUsd")}
              name="quota"
              min={0}
              step="any"
              value={f.quotaUsd}
              error={errors.quotaUsd}
              hint={t("quotaHint", {
                units: isUsd(f.quotaUsd) ? formatNumber(usdToUnits(f.quotaUsd)) : "—",
              })}
              onInput={(quotaUsd) => set({ quotaUsd })}
            />
          </div>
          <RefillFields value={f.limits} errors={errors} onChange={(limits) => set({ limits })} />
        </fieldset>
        <LimitsFieldset value={f.limits} errors={errors} onChange={(limits) => set({ limits })} />
        {failure && <Notice kind="error">{failure}</Notice>}
      </form>
    </Dialog>
  );
}

/** The users page. */
export function UsersPage() {
  const [keyword, setKeyword] = useState("");
  const [page, setPage] = useState(1);
  const [size, setSize] = useState(20);
  const [form, setForm] = useState<{ user?: UserView } | null>(null);
  const [secret, setSecret] = useState<ShownSecret | null>(null);
  const [notice, setNotice] = useState<{ kind: "error" | "success"; text: string } | null>(null);

  const list = useAsync(
    (signal) =>
      apiData<ListPage<UserView>>(keyword ? "/api/user/search" : "/api/user/", {
        query: { p: page, size, keyword },
        signal,
      }),
    [page, size, keyword],
  );

  const fail = (e: unknown) => setNotice({ kind: "error", text: errorText(e) });

  const toggle = async (u: UserView) => {
    setNotice(null);
    const disable = u.status === 1;
    if (
      disable &&
      !(await confirm({
        title: t("disableTitle", { name: u.username }),
        body: t("disableBody"),
        confirmLabel: t("disable"),
        danger: true,
      }))
    )
      return;
    try {
      await api("/api/user/", { method: "PUT", body: { id: u.id, status: disable ? 2 : 1 } });
      setNotice({
        kind: "success",
        text: t(disable ? "disabledDone" : "enabledDone", { name: u.username }),
      });
      list.reload();
    } catch (e) {
      fail(e);
    }
  };

  const newToken = async (u: UserView) => {
    setNotice(null);
    if (
      !(await confirm({
        title: t("tokenTitle", { name: u.username }),
        body: t("tokenBody"),
        confirmLabel: t("tokenOk"),
        danger: true,
      }))
    )
      return;
    try {
      const r = await apiData<{ access_token: string }>(`/api/user/${u.id}/token`, {
        method: "POST",
      });
      setSecret({
        title: t("tokenShownTitle", { name: u.username }),
        label: t("tokenName"),
        value: r.access_token,
        once: true,
        note: t("loginNote", { id: u.id }),
      });
      list.reload();
    } catch (e) {
      fail(e);
    }
  };

  const remove = async (u: UserView) => {
    setNotice(null);
    if (
      !(await confirm({
        title: t("deleteTitle", { name: u.username }),
        body: t("deleteBody"),
        confirmLabel: t("delete"),
        danger: true,
      }))
    )
      return;
    try {
      await api(`/api/user/${u.id}`, { method: "DELETE" });
      setNotice({ kind: "success", text: t("deletedDone", { name: u.username }) });
      if (page > 1 && list.data && list.data.items.length === 1) setPage(page - 1);
      else list.reload();
    } catch (e) {
      fail(e);
    }
  };

  const columns: Column<UserView>[] = [
    {
      key: "user",
      label: t("colUser"),
      render: (u) => (
        <>
          <strong>{u.username}</strong> <span class="hint">#{u.id}</span>
          {u.display_name && u.display_name !== u.username && (
            <>
              <br />
              <small class="hint">{u.display_name}</small>
            </>
          )}
        </>
      ),
    },
    {
      key: "role",
      label: t("colRole"),
      render: (u) => (
        <Badge tone={u.role === "admin" ? "warn" : "muted"}>
          {u.role === "admin" ? t("admin") : t("user")}
        </Badge>
      ),
    },
    {
      key: "status",
      label: t("colStatus"),
      render: (u) => (
        <Badge tone={u.status === 1 ? "ok" : "muted"}>
          {u.status === 1 ? t("enabled") : t("disabled")}
        </Badge>
      ),
    },
    {
      key: "quota",
      label: t("colQuota"),
      numeric: true,
      render: (u) => (
        <>
          {formatUsd(u.quota)}
          <br />
          <small class="hint">{t("units", { n: formatNumber(u.quota) })}</small>
        </>
      ),
    },
    {
      key: "used",
      label: t("colUsed"),
      numeric: true,
      optional: true,
      render: (u) => formatUsd(u.used_quota),
    },
    { key: "group", label: t("colGroup"), optional: true, render: (u) => u.group },
    { key: "limits", label: t("colLimits"), optional: true, render: (u) => limitsSummary(u) },
    { key: "refill", label: t("colRefill"), optional: true, render: (u) => <RefillCell v={u} /> },
    {
      key: "token",
      label: t("colToken"),
      optional: true,
      render: (u) => (u.has_access_token ? t("issued") : t("noToken")),
    },
    {
      key: "created",
      label: t("colCreated"),
      optional: true,
      render: (u) => formatTime(u.created_time, true),
    },
    {
      key: "actions",
      label: t("colActions"),
      render: (u) => {
        const name = u.username;
        return (
          <div class="row-actions row-actions-inline">
            <Button
              aria-label={t("editLabel", { name })}
              onClick={() => {
                setNotice(null);
                setForm({ user: u });
              }}
            >
              {t("edit")}
            </Button>
            <Button
              aria-label={t(u.status === 1 ? "disableLabel" : "enableLabel", { name })}
              onClick={() => toggle(u)}
            >
              {u.status === 1 ? t("disable") : t("enable")}
            </Button>
            <Button aria-label={t("tokenLabel", { name })} onClick={() => newToken(u)}>
              {t("newToken")}
            </Button>
            <Button
              aria-label={t("keysLabel", { name })}
              onClick={() => navigate("keys", { user_id: u.id })}
            >
              {t("keys")}
            </Button>
            <Button
              variant="danger"
              aria-label={t("deleteLabel", { name })}
              onClick={() => remove(u)}
            >
              {t("delete")}
            </Button>
          </div>
        );
      },
    },
  ];

  const data = list.data;
  return (
    <>
      <PageHeader title={t("title")}>
        <Button
          variant="primary"
          onClick={() => {
            setNotice(null);
            setForm({});
          }}
        >
          {t("create")}
        </Button>
      </PageHeader>
      <SearchForm
        label={t("search")}
        searchLabel={t("searchButton")}
        clearLabel={t("clear")}
        applied={keyword}
        onSearch={(k) => {
          setKeyword(k);
          setPage(1);
        }}
      />
      {notice && <Notice kind={notice.kind}>{notice.text}</Notice>}
      {list.error && (
        <Notice kind="error" onRetry={list.reload}>
          {list.error}
        </Notice>
      )}
      {!data && list.loading && <Spinner />}
      {data && (
        <>
          <DataTable
            caption={t("caption")}
            columns={columns}
            rows={data.items}
            rowKey={(u) => u.id}
            empty={keyword ? t("noMatch") : t("empty")}
          />
          <Pager
            page={page}
            pageSize={size}
            total={data.total}
            onPage={setPage}
            onPageSize={(s) => {
              setSize(s);
              setPage(1);
            }}
          />
        </>
      )}
      {form && (
        <UserFormDialog
          {...(form.user ? { user: form.user } : {})}
          onClose={() => setForm(null)}
          onCreated={(u) => {
            setForm(null);
            setSecret({
              title: t("createdTitle", { name: u.username }),
              label: t("tokenName"),
              value: u.access_token,
              once: true,
              note: t("loginNote", { id: u.id }),
            });
            list.reload();
          }}
          onSaved={(u) => {
            setForm(null);
            setNotice({ kind: "success", text: t("saved", { name: u.username }) });
            list.reload();
          }}
        />
      )}
      <SecretDialog secret={secret} onClose={() => setSecret(null)} />
    </>
  );
}
