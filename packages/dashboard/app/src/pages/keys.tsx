/**
 * The keys page: downstream API keys (new-api's tokens), paged and searched on the server, with
 * create / edit (every field, limits and refill included), enable / disable, reveal, and single
 * and batch delete. The management key and admin users see every user's keys; a user its own.
 */
import { useEffect, useState } from "preact/hooks";
import { apiData, errorText, hasManagementKey, isAdmin } from "../api.ts";
import { formatNumber, formatTime, formatUsd, messages } from "../i18n.ts";
import { navigate, useRoute } from "../router.ts";
import {
  Badge,
  Button,
  type Column,
  confirm,
  DataTable,
  Notice,
  PageHeader,
  Pager,
  SearchForm,
  Spinner,
  useAsync,
} from "../ui.tsx";
import { deleteKeys, KeyFormDialog, revealKey, setKeyStatus } from "./keys/form.tsx";
import { limitsSummary, RefillCell } from "./keys/limits.tsx";
import { SecretDialog, type ShownSecret } from "./keys/secret.tsx";
import type { ListPage, TokenView, UserView } from "./keys/types.ts";

const t = messages({
  en: {
    title: "Keys",
    create: "Create key",
    caption: "API keys",
    search: "Search by name",
    searchButton: "Search",
    clear: "Clear",
    colName: "Name",
    colStatus: "Status",
    colRemain: "Remaining",
    colUsed: "Used",
    colLimits: "Limits",
    colRefill: "Refill",
    colExpiry: "Expires",
    colGroup: "Group",
    colOwner: "Owner",
    colActions: "Actions",
    enabled: "Enabled",
    disabled: "Disabled",
    expired: "Expired",
    exhausted: "Exhausted",
    unlimited: "Unlimited",
    units: "{n} units",
    never: "Never",
    defaultGroup: "owner's",
    noOwner: "—",
    edit: "Edit",
    enable: "Enable",
    disable: "Disable",
    reveal: "Reveal",
    delete: "Delete",
    editLabel: "Edit key {name}",
    enableLabel: "Enable key {name}",
    disableLabel: "Disable key {name}",
    revealLabel: "Reveal key {name}",
    deleteLabel: "Delete key {name}",
    deleteSelected: "Delete selected ({n})",
    disableTitle: "Disable key {name}?",
    disableBody: "Requests with this key are refused until it is enabled again.",
    revealTitle: "Show the full key {name}?",
    revealBody: "The key is shown on screen. Make sure no one else can see it.",
    revealOk: "Show key",
    deleteTitle: "Delete key {name}?",
    deleteManyTitle: "Delete {n} keys?",
    deleteBody: "Clients using it stop working at once. This cannot be undone.",
    deleteManyBody: "Clients using them stop working at once. This cannot be undone.",
    createdTitle: "Key {name} created",
    revealedTitle: "Key {name}",
    keyLabel: "Key",
    done: "Key {name} saved.",
    disabledDone: "Key {name} disabled.",
    enabledDone: "Key {name} enabled.",
    deletedDone: "{n} key(s) deleted.",
    ownerFilter: "Keys of user {who}",
    showAll: "Show all keys",
    empty: "No keys yet. Create one to let a client call the gateway.",
    noMatch: "No key matches this search.",
    page: "Page {page}",
    previous: "Previous",
    next: "Next",
    pageSize: "Per page",
    searchPager: "search results pages",
  },
  zh: {
    title: "令牌",
    create: "创建令牌",
    caption: "API 令牌",
    search: "按名称搜索",
    searchButton: "搜索",
    clear: "清除",
    colName: "名称",
    colStatus: "状态",
    colRemain: "剩余额度",
    colUsed: "已用额度",
    colLimits: "限制",
    colRefill: "额度重置",
    colExpiry: "过期时间",
    colGroup: "分组",
    colOwner: "所属用户",
    colActions: "操作",
    enabled: "已启用",
    disabled: "已禁用",
    expired: "已过期",
    exhausted: "已耗尽",
    unlimited: "无限额度",
    units: "{n} 点",
    never: "永不过期",
    defaultGroup: "用户分组",
    noOwner: "—",
    edit: "编辑",
    enable: "启用",
    disable: "禁用",
    reveal: "查看",
    delete: "删除",
    editLabel: "编辑令牌 {name}",
    enableLabel: "启用令牌 {name}",
    disableLabel: "禁用令牌 {name}",
    revealLabel: "查看令牌 {name}",
    deleteLabel: "删除令牌 {name}",
    deleteSelected: "删除所选（{n}）",
    disableTitle: "禁用令牌 {name}？",
    disableBody: "重新启用之前，使用此令牌的请求都会被拒绝。",
    revealTitle: "显示令牌 {name} 的完整密钥？",
    revealBody: "密钥将显示在屏幕上，请确认旁边没有其他人。",
    revealOk: "显示密钥",
    deleteTitle: "删除令牌 {name}？",
    deleteManyTitle: "删除 {n} 个令牌？",
    deleteBody: "使用它的客户端将立即无法调用。此操作无法撤销。",
    deleteManyBody: "使用它们的客户端将立即无法调用。此操作无法撤销。",
    createdTitle: "令牌 {name} 已创建",
    revealedTitle: "令牌 {name}",
    keyLabel: "密钥",
    done: "令牌 {name} 已保存。",
    disabledDone: "令牌 {name} 已禁用。",
    enabledDone: "令牌 {name} 已启用。",
    deletedDone: "已删除 {n} 个令牌。",
    ownerFilter: "用户 {who} 的令牌",
    showAll: "显示全部令牌",
    empty: "还没有令牌。创建一个，客户端即可调用网关。",
    noMatch: "没有匹配的令牌。",
    page: "第 {page} 页",
    previous: "上一页",
    next: "下一页",
    pageSize: "每页",
    searchPager: "搜索结果分页",
  },
});

type KeyState = "enabled" | "disabled" | "expired" | "exhausted";

/** What a key's status means now (an enabled key past its time or out of quota cannot serve). */
function stateOf(k: TokenView, now: number): KeyState {
  if (k.status === 2) return "disabled";
  if (k.status === 3 || (k.expired_time !== -1 && k.expired_time <= now)) return "expired";
  if (k.status === 4 || (!k.unlimited_quota && k.remain_quota <= 0)) return "exhausted";
  return "enabled";
}

const TONE = { enabled: "ok", disabled: "muted", expired: "warn", exhausted: "bad" } as const;

/** One page of keys, whichever route answered it. */
interface KeysPage {
  items: TokenView[];
  /** Unknown for a search (its route answers a plain list). */
  total: number | null;
}

/** Previous / next through search results (the search route gives no total). */
function SearchPager(props: {
  page: number;
  size: number;
  count: number;
  onPage: (p: number) => void;
  onSize: (s: number) => void;
}) {
  return (
    <nav class="pager" aria-label={t("searchPager")}>
      <Button disabled={props.page <= 1} onClick={() => props.onPage(props.page - 1)}>
        {t("previous")}
      </Button>
      <span aria-live="polite">{t("page", { page: props.page })}</span>
      <Button disabled={props.count < props.size} onClick={() => props.onPage(props.page + 1)}>
        {t("next")}
      </Button>
      <label class="pager-size">
        {t("pageSize")}
        <select
          value={props.size}
          onChange={(e) => props.onSize(Number((e.currentTarget as HTMLSelectElement).value))}
        >
          {[10, 20, 50, 100].map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
      </label>
    </nav>
  );
}

/** The keys page. */
export function KeysPage() {
  const admin = isAdmin();
  const route = useRoute();
  const ownerFilter = admin ? Number(route.query.get("user_id")) || undefined : undefined;
  const [keyword, setKeyword] = useState("");
  const [page, setPage] = useState(1);
  const [size, setSize] = useState(20);
  const [selected, setSelected] = useState<Set<string | number>>(new Set());
  const [form, setForm] = useState<{ mode: "create" } | { mode: "edit"; key: TokenView } | null>(
    null,
  );
  const [secret, setSecret] = useState<ShownSecret | null>(null);
  const [notice, setNotice] = useState<{ kind: "error" | "success"; text: string } | null>(null);
  const [owners, setOwners] = useState<Map<number, string>>(new Map());

  const list = useAsync<KeysPage>(
    async (signal) => {
      const query = { p: page, size, user_id: ownerFilter };
      if (keyword) {
        const items = await apiData<TokenView[]>("/api/token/search", {
          query: { ...query, keyword },
          signal,
        });
        return { items, total: null };
      }
      const r = await apiData<ListPage<TokenView>>("/api/token/", { query, signal });
      return { items: r.items, total: r.total };
    },
    [page, size, keyword, ownerFilter],
  );

  // The selection belongs to the rows on screen.
  useEffect(() => setSelected(new Set()), [page, size, keyword, ownerFilter]);

  // Admins see whose key a row is: the usernames of the owners on this page.
  const items = list.data?.items;
  useEffect(() => {
    if (!admin || !items) return;
    const missing = [
      ...new Set(items.map((k) => k.user_id).filter((id) => id > 0 && !owners.has(id))),
    ];
    if (ownerFilter && !owners.has(ownerFilter)) missing.push(ownerFilter);
    if (missing.length === 0) return;
    void Promise.allSettled(missing.map((id) => apiData<UserView>(`/api/user/${id}`))).then(
      (rs) => {
        setOwners((old) => {
          const next = new Map(old);
          rs.forEach((r, i) => {
            next.set(missing[i]!, r.status === "fulfilled" ? r.value.username : `#${missing[i]}`);
          });
          return next;
        });
      },
    );
  }, [items, admin]);

  const fail = (e: unknown) => setNotice({ kind: "error", text: errorText(e) });

  const toggle = async (k: TokenView) => {
    setNotice(null);
    const disable = k.status === 1;
    if (
      disable &&
      !(await confirm({
        title: t("disableTitle", { name: k.name }),
        body: t("disableBody"),
        confirmLabel: t("disable"),
        danger: true,
      }))
    )
      return;
    try {
      await setKeyStatus(k.id, disable ? 2 : 1);
      setNotice({
        kind: "success",
        text: t(disable ? "disabledDone" : "enabledDone", { name: k.name }),
      });
      list.reload();
    } catch (e) {
      fail(e);
    }
  };

  const reveal = async (k: TokenView) => {
    setNotice(null);
    if (
      !(await confirm({
        title: t("revealTitle", { name: k.name }),
        body: t("revealBody"),
        confirmLabel: t("revealOk"),
      }))
    )
      return;
    try {
      const value = await revealKey(k.id);
      setSecret({
        title: t("revealedTitle", { name: k.name }),
        label: t("keyLabel"),
        value,
        once: false,
        apiKey: true,
      });
    } catch (e) {
      fail(e);
    }
  };

  const remove = async (ids: number[], name?: string) => {
    setNotice(null);
    const one = ids.length === 1 && name !== undefined;
    if (
      !(await confirm({
        title: one ? t("deleteTitle", { name }) : t("deleteManyTitle", { n: ids.length }),
        body: one ? t("deleteBody") : t("deleteManyBody"),
        confirmLabel: t("delete"),
        danger: true,
      }))
    )
      return;
    try {
      await deleteKeys(ids);
      setNotice({ kind: "success", text: t("deletedDone", { n: ids.length }) });
      setSelected(new Set());
      // Deleting the whole last page goes back one.
      if (page > 1 && items && ids.length >= items.length) setPage(page - 1);
      else list.reload();
    } catch (e) {
      fail(e);
    }
  };

  const now = Math.floor(Date.now() / 1000);
  const columns: Column<TokenView>[] = [
    {
      key: "name",
      label: t("colName"),
      render: (k) => (
        <>
          <strong>{k.name || `#${k.id}`}</strong>
          <br />
          <code class="hint key-hint">{k.key}</code>
        </>
      ),
    },
    {
      key: "status",
      label: t("colStatus"),
      render: (k) => {
        const s = stateOf(k, now);
        return <Badge tone={TONE[s]}>{t(s)}</Badge>;
      },
    },
    {
      key: "remain",
      label: t("colRemain"),
      numeric: true,
      render: (k) =>
        k.unlimited_quota ? (
          t("unlimited")
        ) : (
          <>
            {formatUsd(k.remain_quota)}
            <br />
            <small class="hint">{t("units", { n: formatNumber(k.remain_quota) })}</small>
          </>
        ),
    },
    {
      key: "used",
      label: t("colUsed"),
      numeric: true,
      optional: true,
      render: (k) => formatUsd(k.used_quota),
    },
    {
      key: "limits",
      label: t("colLimits"),
      optional: true,
      render: (k) => limitsSummary(k),
    },
    {
      key: "refill",
      label: t("colRefill"),
      optional: true,
      render: (k) => <RefillCell v={k} />,
    },
    {
      key: "expiry",
      label: t("colExpiry"),
      optional: true,
      render: (k) => (k.expired_time === -1 ? t("never") : formatTime(k.expired_time, true)),
    },
    {
      key: "group",
      label: t("colGroup"),
      optional: true,
      render: (k) => k.group || <span class="hint">{t("defaultGroup")}</span>,
    },
    ...(admin
      ? [
          {
            key: "owner",
            label: t("colOwner"),
            optional: true,
            render: (k: TokenView) =>
              k.user_id ? (owners.get(k.user_id) ?? `#${k.user_id}`) : t("noOwner"),
          },
        ]
      : []),
    {
      key: "actions",
      label: t("colActions"),
      render: (k) => {
        const name = k.name || `#${k.id}`;
        return (
          <div class="row-actions row-actions-inline">
            <Button
              aria-label={t("editLabel", { name })}
              onClick={() => {
                setNotice(null);
                setForm({ mode: "edit", key: k });
              }}
            >
              {t("edit")}
            </Button>
            <Button
              aria-label={t(k.status === 1 ? "disableLabel" : "enableLabel", { name })}
              onClick={() => toggle(k)}
            >
              {k.status === 1 ? t("disable") : t("enable")}
            </Button>
            <Button aria-label={t("revealLabel", { name })} onClick={() => reveal(k)}>
              {t("reveal")}
            </Button>
            <Button
              variant="danger"
              aria-label={t("deleteLabel", { name })}
              onClick={() => remove([k.id], name)}
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
            setForm({ mode: "create" });
          }}
        >
          {t("create")}
        </Button>
      </PageHeader>
      {ownerFilter && (
        <Notice kind="info">
          {t("ownerFilter", { who: owners.get(ownerFilter) ?? `#${ownerFilter}` })}{" "}
          <Button onClick={() => navigate("keys")}>{t("showAll")}</Button>
        </Notice>
      )}
      <SearchForm
        label={t("search")}
        searchLabel={t("searchButton")}
        clearLabel={t("clear")}
        applied={keyword}
        onSearch={(k) => {
          setKeyword(k);
          setPage(1);
        }}
      >
        {selected.size > 0 && (
          <div class="field">
            <Button variant="danger" onClick={() => remove([...selected].map(Number))}>
              {t("deleteSelected", { n: selected.size })}
            </Button>
          </div>
        )}
      </SearchForm>
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
            rowKey={(k) => k.id}
            rowLabel={(k) => k.name || `#${k.id}`}
            selected={selected}
            onSelect={setSelected}
            empty={keyword ? t("noMatch") : t("empty")}
          />
          {data.total === null ? (
            <SearchPager
              page={page}
              size={size}
              count={data.items.length}
              onPage={setPage}
              onSize={(s) => {
                setSize(s);
                setPage(1);
              }}
            />
          ) : (
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
          )}
        </>
      )}
      {form && (
        <KeyFormDialog
          mode={form.mode}
          {...(form.mode === "edit" ? { key: form.key } : {})}
          admin={admin}
          managementKey={hasManagementKey()}
          onClose={() => setForm(null)}
          onCreated={(k) => {
            setForm(null);
            setSecret({
              title: t("createdTitle", { name: k.name || `#${k.id}` }),
              label: t("keyLabel"),
              value: k.key,
              once: true,
              apiKey: true,
            });
            list.reload();
          }}
          onSaved={(k) => {
            setForm(null);
            setNotice({ kind: "success", text: t("done", { name: k.name || `#${k.id}` }) });
            list.reload();
          }}
        />
      )}
      <SecretDialog secret={secret} onClose={() => setSecret(null)} />
    </>
  );
}
