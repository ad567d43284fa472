/**
 * Webhooks: the subscriptions (`/v0/management/webhooks`), created and edited in a dialog
 * (URL, events as checkboxes, threshold, enabled), enabled or disabled, deleted after a
 * confirm, pinged with a test delivery, their signing secret rotated (after a confirm) and
 * shown once, and their recent delivery attempts in a dialog.
 */
import { useState } from "preact/hooks";
import { api, errorText } from "../api.ts";
import { formatTime, messages } from "../i18n.ts";
import {
  Badge,
  Button,
  CheckboxField,
  type Column,
  CopyText,
  confirm,
  DataTable,
  Dialog,
  Notice,
  NumberField,
  PageHeader,
  Spinner,
  TextField,
  useAsync,
} from "../ui.tsx";

const t = messages({
  en: {
    title: "Webhooks",
    intro:
      "Signed POSTs to your systems when something needs attention (Standard Webhooks signatures, retried with backoff).",
    add: "Add webhook",
    caption: "Webhook subscriptions",
    empty: "No webhook yet.",
    loadFailed: "Could not load the webhooks: {message}",
    colUrl: "URL",
    colEvents: "Events",
    colState: "State",
    colSecret: "Secret",
    colUpdated: "Updated",
    colActions: "Actions",
    enabled: "Enabled",
    disabled: "Disabled",
    allEvents: "All events",
    edit: "Edit",
    enable: "Enable",
    disable: "Disable",
    test: "Send test",
    testing: "Sending…",
    deliveries: "Deliveries",
    rotate: "Rotate secret",
    delete: "Delete",
    createTitle: "Add a webhook",
    editTitle: "Edit webhook",
    url: "URL",
    urlHint: "Where deliveries are POSTed (http or https).",
    description: "Description",
    events: "Events",
    eventsHint: "Pick at least one.",
    allEventsHint: "Every event type, including those added later.",
    threshold: "Low-quota threshold",
    thresholdHint:
      "key.quota_low fires when a key's remaining quota falls below this (quota units; 500,000 = $1).",
    enabledLabel: "Enabled",
    enabledHint: "A disabled webhook receives nothing.",
    save: "Save",
    create: "Create",
    cancel: "Cancel",
    needUrl: "Enter the URL.",
    needEvents: "Pick at least one event.",
    secretTitle: "Signing secret",
    secretOnce:
      "This is the only time the secret is shown. Store it in the receiver's configuration now; it verifies the webhook-signature header.",
    copy: "Copy",
    done: "Done",
    deleteTitle: "Delete this webhook?",
    deleteBody: "{url} receives nothing more and its delivery history is deleted.",
    disableTitle: "Disable this webhook?",
    disableBody: "{url} receives nothing until it is enabled again; pending retries stop.",
    rotateTitle: "Rotate the signing secret?",
    rotateBody:
      "The old secret stops working at once: deliveries are signed with the new one, which is shown once.",
    testOk: "Test delivered to {url}: HTTP {status} in {ms} ms.",
    testFailed: "Test to {url} failed: {error}",
    failed: "Failed: {message}",
    deliveriesTitle: "Recent deliveries",
    deliveriesCaption: "Delivery attempts, newest first",
    noDeliveries: "No delivery yet.",
    colTime: "Time",
    colEvent: "Event",
    colAttempt: "Attempt",
    colStatus: "HTTP status",
    colResult: "Result",
    colDuration: "Duration",
    colNext: "Next attempt",
    ok: "Delivered",
    error: "Failed",
    noAnswer: "no answer",
    refresh: "Refresh",
    close: "Close",
    "ev.key.quota_low": "A key's quota is low (needs a threshold)",
    "ev.key.exhausted": "A key's quota is used up",
    "ev.quota.refilled": "A quota refilled",
    "ev.credential.disabled": "An upstream credential was disabled",
    "ev.credential.enabled": "An upstream credential is back",
    "ev.credential.refresh_failed": "An OAuth refresh failed",
    "ev.limit.refused": "A request was refused by a rate limit",
  },
  zh: {
    title: "Webhooks",
    intro:
      "在需要关注时向你的系统发送签名的 POST 请求（Standard Webhooks 签名，失败自动退避重试）。",
    add: "添加 Webhook",
    caption: "Webhook 订阅",
    empty: "还没有 Webhook。",
    loadFailed: "无法加载 Webhook：{message}",
    colUrl: "URL",
    colEvents: "事件",
    colState: "状态",
    colSecret: "密钥",
    colUpdated: "更新时间",
    colActions: "操作",
    enabled: "已启用",
    disabled: "已禁用",
    allEvents: "全部事件",
    edit: "编辑",
    enable: "启用",
    disable: "禁用",
    test: "发送测试",
    testing: "发送中…",
    deliveries: "投递记录",
    rotate: "轮换密钥",
    delete: "删除",
    createTitle: "添加 Webhook",
    editTitle: "编辑 Webhook",
    url: "URL",
    urlHint: "接收投递的地址（http 或 https）。",
    description: "说明",
    events: "事件",
    eventsHint: "至少选择一个。",
    allEventsHint: "所有事件类型，包括以后新增的。",
    threshold: "额度不足阈值",
    thresholdHint: "令牌剩余额度低于此值时触发 key.quota_low（额度单位；500,000 = 1 美元）。",
    enabledLabel: "启用",
    enabledHint: "禁用的 Webhook 不会收到任何投递。",
    save: "保存",
    create: "创建",
    cancel: "取消",
    needUrl: "请输入 URL。",
    needEvents: "请至少选择一个事件。",
    secretTitle: "签名密钥",
    secretOnce: "密钥只显示这一次。请立即保存到接收端的配置中，用于校验 webhook-signature 请求头。",
    copy: "复制",
    done: "完成",
    deleteTitle: "删除此 Webhook？",
    deleteBody: "{url} 将不再收到任何投递，其投递记录也会被删除。",
    disableTitle: "禁用此 Webhook？",
    disableBody: "在重新启用之前，{url} 不会收到任何投递；待重试的投递也会停止。",
    rotateTitle: "轮换签名密钥？",
    rotateBody: "旧密钥立即失效：之后的投递使用新密钥签名，新密钥只显示一次。",
    testOk: "测试已投递到 {url}：HTTP {status}，耗时 {ms} 毫秒。",
    testFailed: "向 {url} 发送测试失败：{error}",
    failed: "操作失败：{message}",
    deliveriesTitle: "最近的投递",
    deliveriesCaption: "投递记录，最新的在前",
    noDeliveries: "还没有投递。",
    colTime: "时间",
    colEvent: "事件",
    colAttempt: "第几次",
    colStatus: "HTTP 状态",
    colResult: "结果",
    colDuration: "耗时",
    colNext: "下次重试",
    ok: "成功",
    error: "失败",
    noAnswer: "无响应",
    refresh: "刷新",
    close: "关闭",
    "ev.key.quota_low": "令牌额度不足（需设置阈值）",
    "ev.key.exhausted": "令牌额度用尽",
    "ev.quota.refilled": "额度已重置",
    "ev.credential.disabled": "上游凭据被禁用",
    "ev.credential.enabled": "上游凭据已恢复",
    "ev.credential.refresh_failed": "OAuth 刷新失败",
    "ev.limit.refused": "请求因限流被拒绝",
  },
});

/** The event types a subscription can name (`webhook.test` goes to one subscription only). */
const EVENTS = [
  "key.quota_low",
  "key.exhausted",
  "quota.refilled",
  "credential.disabled",
  "credential.enabled",
  "credential.refresh_failed",
  "limit.refused",
] as const;

/** A subscription as the API shows it (the secret masked). */
interface Webhook {
  id: string;
  url: string;
  events: string[];
  enabled: boolean;
  description?: string;
  threshold?: number;
  secret: string;
  createdAt: number;
  updatedAt: number;
}

/** One delivery attempt. */
interface Delivery {
  id: string;
  messageId: string;
  eventType: string;
  attempt: number;
  status: number | null;
  error: string | null;
  success: boolean;
  nextAttemptAt: number | null;
  durationMs: number;
  timestamp: number;
}

const path = (id: string, rest = "") => `/v0/management/webhooks/${encodeURIComponent(id)}${rest}`;

function eventLabel(e: string): string {
  return (EVENTS as readonly string[]).includes(e) ? t(`ev.${e as (typeof EVENTS)[number]}`) : e;
}

function WebhookForm(props: {
  initial: Webhook | null;
  onClose: () => void;
  onSaved: (w: Webhook, secret?: string) => void;
}) {
  const w = props.initial;
  const [url, setUrl] = useState(w?.url ?? "");
  const [description, setDescription] = useState(w?.description ?? "");
  const [all, setAll] = useState(w ? w.events.includes("*") : false);
  const [events, setEvents] = useState<Set<string>>(
    new Set(w ? w.events.filter((e) => e !== "*") : []),
  );
  const [threshold, setThreshold] = useState<number | null>(w?.threshold ?? null);
  const [enabled, setEnabled] = useState(w?.enabled ?? true);
  const [errors, setErrors] = useState<{ url?: string; events?: string }>({});
  const [error, setError] = useState<string>();
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    const next: typeof errors = {};
    if (!url.trim()) next.url = t("needUrl");
    if (!all && events.size === 0) next.events = t("needEvents");
    setErrors(next);
    if (next.url || next.events) return;
    setBusy(true);
    setError(undefined);
    const list = all ? ["*"] : EVENTS.filter((x) => events.has(x));
    try {
      if (w) {
        const r = await api<{ webhook: Webhook }>(path(w.id), {
          method: "PATCH",
          body: {
            url: url.trim(),
            events: list,
            enabled,
            description: description.trim() || null,
            threshold,
          },
        });
        props.onSaved(r.webhook);
      } else {
        const r = await api<{ webhook: Webhook; secret: string }>("/v0/management/webhooks", {
          method: "POST",
          body: {
            url: url.trim(),
            events: list,
            enabled,
            ...(description.trim() ? { description: description.trim() } : {}),
            ...(threshold !== null ? { threshold } : {}),
          },
        });
        props.onSaved(r.webhook, r.secret);
      }
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const formId = "webhook-form";
  return (
    <Dialog
      open
      title={w ? t("editTitle") : t("createTitle")}
      onClose={props.onClose}
      actions={
        <>
          <Button onClick={props.onClose}>{t("cancel")}</Button>
          <Button variant="primary" onClick={submit} disabled={busy}>
            {w ? t("save") : t("create")}
          </Button>
        </>
      }
    >
      <form id={formId} onSubmit={submit} noValidate>
        <TextField
          label={t("url")}
          type="url"
          name="url"
          value={url}
          onInput={setUrl}
          hint={t("urlHint")}
          error={errors.url}
          placeholder="https://example.com/hooks/tokenpool"
          required
        />
        <TextField
          label={t("description")}
          name="description"
          value={description}
          onInput={setDescription}
        />
        <fieldset aria-describedby="webhook-events-hint">
          <legend>{t("events")}</legend>
          <small id="webhook-events-hint" class="hint">
            {t("eventsHint")}
          </small>
          <CheckboxField
            label={`${t("allEvents")} (*)`}
            checked={all}
            onChange={setAll}
            hint={t("allEventsHint")}
          />
          <div class="check-grid">
            {EVENTS.map((ev) => (
              <CheckboxField
                key={ev}
                label={ev}
                hint={eventLabel(ev)}
                checked={all || events.has(ev)}
                disabled={all}
                onChange={(on) => {
                  const next = new Set(events);
                  if (on) next.add(ev);
                  else next.delete(ev);
                  setEvents(next);
                }}
              />
            ))}
          </div>
          {errors.events && (
            <p class="error-text" role="alert">
              {errors.events}
            </p>
          )}
        </fieldset>
        <NumberField
          label={t("threshold")}
          name="threshold"
          value={threshold}
          min={0}
          onInput={setThreshold}
          hint={t("thresholdHint")}
        />
        <CheckboxField
          label={t("enabledLabel")}
          checked={enabled}
          onChange={setEnabled}
          hint={t("enabledHint")}
        />
        {error && <Notice kind="error">{error}</Notice>}
      </form>
    </Dialog>
  );
}

function SecretDialog(props: { secret: string; onClose: () => void }) {
  return (
    <Dialog
      open
      title={t("secretTitle")}
      onClose={props.onClose}
      actions={
        <Button variant="primary" onClick={props.onClose}>
          {t("done")}
        </Button>
      }
    >
      <div class="secret-once">
        <Notice kind="info">{t("secretOnce")}</Notice>
        <CopyText value={props.secret} label={t("copy")} />
      </div>
    </Dialog>
  );
}

function DeliveriesDialog(props: { webhook: Webhook; onClose: () => void }) {
  const list = useAsync(
    (signal) => api<{ deliveries: Delivery[] }>(path(props.webhook.id, "/deliveries"), { signal }),
    [props.webhook.id],
  );
  const columns: Column<Delivery>[] = [
    { key: "time", label: t("colTime"), render: (d) => formatTime(d.timestamp) },
    { key: "event", label: t("colEvent"), render: (d) => <code>{d.eventType}</code> },
    { key: "attempt", label: t("colAttempt"), numeric: true, render: (d) => d.attempt },
    {
      key: "status",
      label: t("colStatus"),
      numeric: true,
      render: (d) => (d.status === null ? t("noAnswer") : d.status),
    },
    {
      key: "result",
      label: t("colResult"),
      render: (d) =>
        d.success ? (
          <Badge tone="ok">{t("ok")}</Badge>
        ) : (
          <>
            <Badge tone="bad">{t("error")}</Badge>
            {d.error && <span class="cell-sub cell-wrap">{d.error}</span>}
          </>
        ),
    },
    {
      key: "duration",
      label: t("colDuration"),
      numeric: true,
      optional: true,
      render: (d) => `${d.durationMs} ms`,
    },
    {
      key: "next",
      label: t("colNext"),
      optional: true,
      render: (d) => (d.nextAttemptAt ? formatTime(d.nextAttemptAt) : "—"),
    },
  ];
  return (
    <Dialog
      open
      wide
      title={`${t("deliveriesTitle")} · ${props.webhook.url}`}
      onClose={props.onClose}
      actions={
        <>
          <Button onClick={list.reload}>{t("refresh")}</Button>
          <Button variant="primary" onClick={props.onClose}>
            {t("close")}
          </Button>
        </>
      }
    >
      {list.error && <Notice kind="error">{t("failed", { message: list.error })}</Notice>}
      {list.loading && !list.data && <Spinner />}
      {list.data && (
        <DataTable
          caption={t("deliveriesCaption")}
          columns={columns}
          rows={list.data.deliveries}
          rowKey={(d) => d.id}
          empty={t("noDeliveries")}
        />
      )}
    </Dialog>
  );
}

/** The webhooks page (management key only). */
export function WebhooksPage() {
  const list = useAsync(
    (signal) => api<{ webhooks: Webhook[] }>("/v0/management/webhooks", { signal }),
    [],
  );
  const [editing, setEditing] = useState<Webhook | "new" | null>(null);
  const [secret, setSecret] = useState<string | null>(null);
  const [history, setHistory] = useState<Webhook | null>(null);
  const [notice, setNotice] = useState<{ kind: "success" | "error"; text: string }>();
  const [busy, setBusy] = useState<string | null>(null);

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

  const toggle = (w: Webhook) =>
    run(w.id, async () => {
      if (
        w.enabled &&
        !(await confirm({
          title: t("disableTitle"),
          body: t("disableBody", { url: w.url }),
          confirmLabel: t("disable"),
          danger: true,
        }))
      )
        return;
      await api(path(w.id), { method: "PATCH", body: { enabled: !w.enabled } });
      list.reload();
    });

  const remove = (w: Webhook) =>
    run(w.id, async () => {
      if (
        !(await confirm({
          title: t("deleteTitle"),
          body: t("deleteBody", { url: w.url }),
          confirmLabel: t("delete"),
          danger: true,
        }))
      )
        return;
      await api(path(w.id), { method: "DELETE" });
      list.reload();
    });

  const rotate = (w: Webhook) =>
    run(w.id, async () => {
      if (
        !(await confirm({
          title: t("rotateTitle"),
          body: t("rotateBody"),
          confirmLabel: t("rotate"),
          danger: true,
        }))
      )
        return;
      const r = await api<{ secret: string }>(path(w.id, "/rotate-secret"), { method: "POST" });
      setSecret(r.secret);
      list.reload();
    });

  const test = (w: Webhook) =>
    run(w.id, async () => {
      const r = await api<{ delivery: Delivery }>(path(w.id, "/test"), { method: "POST" });
      const d = r.delivery;
      setNotice(
        d.success
          ? {
              kind: "success",
              text: t("testOk", { url: w.url, status: d.status ?? "", ms: d.durationMs }),
            }
          : {
              kind: "error",
              text: t("testFailed", {
                url: w.url,
                error: d.error ?? (d.status === null ? t("noAnswer") : `HTTP ${d.status}`),
              }),
            },
      );
    });

  const columns: Column<Webhook>[] = [
    {
      key: "url",
      label: t("colUrl"),
      render: (w) => (
        <span class="cell-wrap">
          <code>{w.url}</code>
          {w.description && <span class="cell-sub">{w.description}</span>}
        </span>
      ),
    },
    {
      key: "events",
      label: t("colEvents"),
      render: (w) =>
        w.events.includes("*") ? (
          <Badge>{t("allEvents")}</Badge>
        ) : (
          <span class="cell-wrap">
            {w.events.map((e) => (
              <span key={e} class="cell-sub" title={eventLabel(e)}>
                {e}
              </span>
            ))}
          </span>
        ),
    },
    {
      key: "state",
      label: t("colState"),
      render: (w) =>
        w.enabled ? <Badge tone="ok">{t("enabled")}</Badge> : <Badge>{t("disabled")}</Badge>,
    },
    {
      key: "secret",
      label: t("colSecret"),
      optional: true,
      render: (w) => <code>{w.secret}</code>,
    },
    {
      key: "updated",
      label: t("colUpdated"),
      optional: true,
      render: (w) => formatTime(w.updatedAt),
    },
    {
      key: "actions",
      label: t("colActions"),
      render: (w) => (
        <div class="row-actions">
          <Button onClick={() => test(w)} disabled={busy === w.id || !w.enabled}>
            {busy === w.id ? t("testing") : t("test")}
            <span class="sr-only">: {w.url}</span>
          </Button>
          <Button onClick={() => setHistory(w)}>
            {t("deliveries")}
            <span class="sr-only">: {w.url}</span>
          </Button>
          <Button onClick={() => setEditing(w)}>
            {t("edit")}
            <span class="sr-only">: {w.url}</span>
          </Button>
          <Button onClick={() => toggle(w)} disabled={busy === w.id}>
            {w.enabled ? t("disable") : t("enable")}
            <span class="sr-only">: {w.url}</span>
          </Button>
          <Button onClick={() => rotate(w)} disabled={busy === w.id}>
            {t("rotate")}
            <span class="sr-only">: {w.url}</span>
          </Button>
          <Button variant="danger" onClick={() => remove(w)} disabled={busy === w.id}>
            {t("delete")}
            <span class="sr-only">: {w.url}</span>
          </Button>
        </div>
      ),
    },
  ];

  return (
    <>
      <PageHeader title={t("title")}>
        <Button variant="primary" onClick={() => setEditing("new")}>
          {t("add")}
        </Button>
      </PageHeader>
      <p class="hint">{t("intro")}</p>
      {notice && <Notice kind={notice.kind}>{notice.text}</Notice>}
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
          rows={list.data.webhooks}
          rowKey={(w) => w.id}
          empty={t("empty")}
        />
      )}
      {editing && (
        <WebhookForm
          initial={editing === "new" ? null : editing}
          onClose={() => setEditing(null)}
          onSaved={(_w, s) => {
            setEditing(null);
            if (s) setSecret(s);
            list.reload();
          }}
        />
      )}
      {secret && <SecretDialog secret={secret} onClose={() => setSecret(null)} />}
      {history && <DeliveriesDialog webhook={history} onClose={() => setHistory(null)} />}
    </>
  );
}
