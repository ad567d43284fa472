/**
 * Request logs: new-api's log API as a page. Filters (time range, model, key name, username for
 * admins, group, success or error, credential), a paged table, every field of a record in a
 * dialog (with the bodies when the gateway recorded them), CSV export of the same filters and
 * the stat line (quota, rpm, tpm). Admins read `/api/log/`, users their own `/api/log/self`.
 */
import type { ComponentChildren } from "preact";
import { useState } from "preact/hooks";
import { api, apiData, download, errorText, hasManagementKey, isAdmin } from "../api.ts";
import { formatNumber, formatTime, formatUsd, messages } from "../i18n.ts";
import { useRoute } from "../router.ts";
import {
  Badge,
  Button,
  type Column,
  CopyText,
  DataTable,
  Dialog,
  Notice,
  PageHeader,
  Pager,
  SelectField,
  Spinner,
  TextField,
  useAsync,
} from "../ui.tsx";
import {
  details,
  formatMs,
  isError,
  type LogItem,
  type LogPage,
  type LogStat,
  latencyMs,
} from "./logs/records.ts";

const t = messages({
  en: {
    title: "Request logs",
    filters: "Filters",
    from: "From",
    to: "To",
    model: "Model",
    key: "Key name",
    username: "Username",
    group: "Group",
    type: "Result",
    typeAll: "All",
    typeOk: "Successful",
    typeError: "Errors only",
    channel: "Credential",
    channelHint: "The upstream credential that served it",
    anyCredential: "Any",
    apply: "Apply",
    reset: "Reset",
    export: "Export CSV",
    exporting: "Exporting…",
    exportFailed: "The export failed: {message}",
    stat: "Stat of the selected records",
    statLine: "Cost {cost} · {rpm} requests and {tpm} tokens in the last minute",
    table: "Request log records",
    time: "Time",
    user: "User",
    status: "Status",
    ok: "OK",
    failed: "Error",
    tokensIn: "In",
    tokensOut: "Out",
    cost: "Cost",
    latency: "Latency",
    firstToken: "First token",
    retries: "Retries",
    errorType: "Error type",
    actions: "Details",
    detailsOf: "Details of request {id}",
    show: "Details",
    dialogTitle: "Request {id}",
    requestId: "Request id",
    copy: "Copy",
    recordId: "Record id",
    keyId: "Key id",
    userId: "User id",
    route: "Route",
    format: "API format",
    stream: "Streamed",
    yes: "Yes",
    no: "No",
    httpStatus: "HTTP status",
    quota: "Quota units",
    cachedTokens: "Cached tokens",
    reasoningTokens: "Reasoning tokens",
    error: "Error message",
    provider: "Provider",
    ip: "Client IP",
    recovered: "Recovered after a crash",
    requestBody: "Request body",
    responseBody: "Response body",
    noBodies: "The gateway did not record this request's bodies.",
    badRange: "“From” must be before “To”.",
  },
  zh: {
    title: "请求日志",
    filters: "筛选",
    from: "开始时间",
    to: "结束时间",
    model: "模型",
    key: "令牌名称",
    username: "用户名",
    group: "分组",
    type: "结果",
    typeAll: "全部",
    typeOk: "成功",
    typeError: "仅错误",
    channel: "凭据",
    channelHint: "处理该请求的上游凭据",
    anyCredential: "全部",
    apply: "应用",
    reset: "重置",
    export: "导出 CSV",
    exporting: "导出中…",
    exportFailed: "导出失败：{message}",
    stat: "所选记录的统计",
    statLine: "费用 {cost} · 最近一分钟 {rpm} 次请求、{tpm} 个 Token",
    table: "请求日志记录",
    time: "时间",
    user: "用户",
    status: "状态",
    ok: "成功",
    failed: "失败",
    tokensIn: "输入",
    tokensOut: "输出",
    cost: "费用",
    latency: "延迟",
    firstToken: "首字延迟",
    retries: "重试",
    errorType: "错误类型",
    actions: "详情",
    detailsOf: "请求 {id} 的详情",
    show: "详情",
    dialogTitle: "请求 {id}",
    requestId: "请求 ID",
    copy: "复制",
    recordId: "记录 ID",
    keyId: "令牌 ID",
    userId: "用户 ID",
    route: "路由",
    format: "API 格式",
    stream: "流式",
    yes: "是",
    no: "否",
    httpStatus: "HTTP 状态码",
    quota: "额度单位",
    cachedTokens: "缓存 Token",
    reasoningTokens: "推理 Token",
    error: "错误信息",
    provider: "提供商",
    ip: "客户端 IP",
    recovered: "崩溃后恢复的记录",
    requestBody: "请求体",
    responseBody: "响应体",
    noBodies: "网关未记录此请求的请求体和响应体。",
    badRange: "“开始时间”必须早于“结束时间”。",
  },
});

/** The filters of the form (the log API's names). */
interface Filters {
  from: string;
  to: string;
  model_name: string;
  token_name: string;
  username: string;
  group: string;
  type: "0" | "2" | "5";
  channel: string;
}

const EMPTY: Filters = {
  from: "",
  to: "",
  model_name: "",
  token_name: "",
  username: "",
  group: "",
  type: "0",
  channel: "",
};

/** Unix seconds of a `datetime-local` value (the browser's time zone); undefined when empty. */
function seconds(local: string): number | undefined {
  if (!local) return undefined;
  const ms = new Date(local).getTime();
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : undefined;
}

/** The log API's query of the filters. */
function toQuery(f: Filters, admin: boolean): Record<string, string | number | undefined> {
  return {
    start_timestamp: seconds(f.from),
    end_timestamp: seconds(f.to),
    model_name: f.model_name.trim(),
    token_name: f.token_name.trim(),
    username: admin ? f.username.trim() : undefined,
    group: f.group.trim(),
    type: f.type === "0" ? undefined : f.type,
    channel: f.channel.trim(),
  };
}

/** Filters given in the page's address (`#/logs?token_name=a`), e.g. from the overview. */
function fromRoute(q: URLSearchParams): Filters {
  const f = { ...EMPTY };
  for (const k of ["model_name", "token_name", "username", "group", "channel"] as const) {
    const v = q.get(k);
    if (v) f[k] = v;
  }
  const type = q.get("type");
  if (type === "2" || type === "5") f.type = type;
  return f;
}

function Field(props: { label: string; children: ComponentChildren }) {
  return (
    <>
      <dt>{props.label}</dt>
      <dd>{props.children}</dd>
    </>
  );
}

function RecordDialog({ item, onClose }: { item: LogItem; onClose: () => void }) {
  const d = details(item);
  const yesNo = (b: boolean | undefined) => (b ? t("yes") : t("no"));
  return (
    <Dialog open wide title={t("dialogTitle", { id: item.id })} onClose={onClose}>
      <dl class="kv" data-testid="log-detail">
        <Field label={t("requestId")}>
          {/* A button in the dialog's body also keeps its scrolling reachable by keyboard. */}
          <CopyText value={item.request_id} label={t("copy")} />
        </Field>
        <Field label={t("recordId")}>{item.id}</Field>
        <Field label={t("time")}>{formatTime(item.created_at, true)}</Field>
        <Field label={t("status")}>
          {isError(item) ? (
            <Badge tone="bad">{t("failed")}</Badge>
          ) : (
            <Badge tone="ok">{t("ok")}</Badge>
          )}
        </Field>
        <Field label={t("httpStatus")}>{d.status ?? "—"}</Field>
        <Field label={t("key")}>{item.token_name || "—"}</Field>
        <Field label={t("keyId")}>{item.token_id || "—"}</Field>
        <Field label={t("user")}>{item.username || "—"}</Field>
        <Field label={t("userId")}>{item.user_id || "—"}</Field>
        <Field label={t("group")}>{item.group || "—"}</Field>
        <Field label={t("model")}>{item.model_name || "—"}</Field>
        <Field label={t("route")}>{d.route ?? "—"}</Field>
        <Field label={t("format")}>{d.format ?? "—"}</Field>
        <Field label={t("stream")}>{yesNo(item.is_stream)}</Field>
        <Field label={t("tokensIn")}>{formatNumber(item.prompt_tokens)}</Field>
        <Field label={t("tokensOut")}>{formatNumber(item.completion_tokens)}</Field>
        <Field label={t("cachedTokens")}>{formatNumber(d.cached_tokens ?? 0)}</Field>
        <Field label={t("reasoningTokens")}>{formatNumber(d.reasoning_tokens ?? 0)}</Field>
        <Field label={t("cost")}>{formatUsd(item.quota)}</Field>
        <Field label={t("quota")}>{formatNumber(item.quota)}</Field>
        <Field label={t("latency")}>{formatMs(latencyMs(item))}</Field>
        <Field label={t("firstToken")}>{formatMs(d.first_token_ms)}</Field>
        <Field label={t("retries")}>{d.retries ?? 0}</Field>
        <Field label={t("errorType")}>{d.error_type ?? "—"}</Field>
        <Field label={t("error")}>{item.content || "—"}</Field>
        <Field label={t("channel")}>
          {item.channel ? <code class="mono">{item.channel}</code> : "—"}
        </Field>
        <Field label={t("provider")}>{item.channel_name || "—"}</Field>
        <Field label={t("ip")}>{item.ip || "—"}</Field>
        {d.recovered && <Field label={t("recovered")}>{t("yes")}</Field>}
      </dl>
      {d.bodies?.request !== undefined || d.bodies?.response !== undefined ? (
        <>
          {d.bodies.request !== undefined && (
            <>
              <h3>{t("requestBody")}</h3>
              {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling block must be reachable by keyboard */}
              <pre tabIndex={0}>{d.bodies.request}</pre>
            </>
          )}
          {d.bodies.response !== undefined && (
            <>
              <h3>{t("responseBody")}</h3>
              {/* biome-ignore lint/a11y/noNoninteractiveTabindex: a scrolling block must be reachable by keyboard */}
              <pre tabIndex={0}>{d.bodies.response}</pre>
            </>
          )}
        </>
      ) : (
        <p class="hint">{t("noBodies")}</p>
      )}
    </Dialog>
  );
}

/** The credentials (the management key only) as the options of the credential filter. */
function useCredentialOptions(current: string): { value: string; label: string }[] | null {
  const operator = hasManagementKey();
  const state = useAsync(
    (signal) =>
      operator
        ? api<{ credentials: { id: string; label: string; provider: string }[] }>(
            "/v0/management/credentials",
            { signal },
          ).then((r) => r.credentials)
        : Promise.resolve(null),
    [operator],
  );
  if (!state.data) return null;
  const options = [
    { value: "", label: t("anyCredential") },
    ...state.data.map((c) => ({ value: c.id, label: `${c.label || c.id} (${c.provider})` })),
  ];
  if (current && !state.data.some((c) => c.id === current))
    options.push({ value: current, label: current });
  return options;
}

/** The request logs page. */
export function LogsPage() {
  const admin = isAdmin();
  const route = useRoute();
  const [form, setForm] = useState<Filters>(() => fromRoute(route.query));
  const [applied, setApplied] = useState<Filters>(form);
  const [page, setPage] = useState(1);
  const [pageSize, setPageSize] = useState(20);
  const [open, setOpen] = useState<LogItem | null>(null);
  const [exporting, setExporting] = useState(false);
  const [exportError, setExportError] = useState<string>();
  const [formError, setFormError] = useState<string>();
  const base = admin ? "/api/log" : "/api/log/self";
  const credentials = useCredentialOptions(form.channel);
  const query = toQuery(applied, admin);

  const state = useAsync(
    async (signal) => {
      const [list, stat] = await Promise.all([
        apiData<LogPage>(admin ? "/api/log/" : base, {
          query: { ...query, p: page, page_size: pageSize },
          signal,
        }),
        apiData<LogStat>(`${base}/stat`, { query, signal }),
      ]);
      return { list, stat };
    },
    [JSON.stringify(query), page, pageSize, admin],
  );

  const set =
    <K extends keyof Filters>(k: K) =>
    (v: Filters[K]) =>
      setForm((f) => ({ ...f, [k]: v }));

  const apply = (e: Event) => {
    e.preventDefault();
    const s = seconds(form.from);
    const en = seconds(form.to);
    if (s !== undefined && en !== undefined && s > en) {
      setFormError(t("badRange"));
      return;
    }
    setFormError(undefined);
    setApplied(form);
    setPage(1);
  };

  const columns: Column<LogItem>[] = [
    { key: "time", label: t("time"), render: (i) => formatTime(i.created_at, true) },
    { key: "key", label: t("key"), render: (i) => i.token_name || "—" },
    ...(admin
      ? [
          {
            key: "user",
            label: t("user"),
            optional: true,
            render: (i: LogItem) => i.username || "—",
          },
        ]
      : []),
    { key: "model", label: t("model"), render: (i) => i.model_name || "—" },
    {
      key: "status",
      label: t("status"),
      render: (i) => {
        const s = details(i).status;
        return isError(i) ? (
          <Badge tone="bad">{s ? `${t("failed")} ${s}` : t("failed")}</Badge>
        ) : (
          <Badge tone="ok">{t("ok")}</Badge>
        );
      },
    },
    {
      key: "in",
      label: t("tokensIn"),
      numeric: true,
      render: (i) => formatNumber(i.prompt_tokens),
    },
    {
      key: "out",
      label: t("tokensOut"),
      numeric: true,
      render: (i) => formatNumber(i.completion_tokens),
    },
    { key: "cost", label: t("cost"), numeric: true, render: (i) => formatUsd(i.quota) },
    {
      key: "latency",
      label: t("latency"),
      numeric: true,
      optional: true,
      render: (i) => formatMs(latencyMs(i)),
    },
    {
      key: "ttft",
      label: t("firstToken"),
      numeric: true,
      optional: true,
      render: (i) => formatMs(details(i).first_token_ms),
    },
    {
      key: "retries",
      label: t("retries"),
      numeric: true,
      optional: true,
      render: (i) => details(i).retries ?? 0,
    },
    {
      key: "errorType",
      label: t("errorType"),
      optional: true,
      render: (i) => details(i).error_type ?? "",
    },
    {
      key: "actions",
      label: t("actions"),
      render: (i) => (
        <Button
          aria-label={t("detailsOf", { id: i.request_id || i.id })}
          onClick={() => setOpen(i)}
        >
          {t("show")}
        </Button>
      ),
    },
  ];

  const data = state.data;
  return (
    <>
      <PageHeader title={t("title")}>
        <Button
          disabled={exporting}
          onClick={async () => {
            setExporting(true);
            setExportError(undefined);
            try {
              await download(`${base}/export`, query, "request-log.csv");
            } catch (e) {
              setExportError(t("exportFailed", { message: errorText(e) }));
            } finally {
              setExporting(false);
            }
          }}
        >
          {exporting ? t("exporting") : t("export")}
        </Button>
      </PageHeader>
      <form class="card" onSubmit={apply} aria-label={t("filters")}>
        <div class="form-grid">
          <TextField
            label={t("from")}
            type="datetime-local"
            value={form.from}
            onInput={set("from")}
          />
          <TextField label={t("to")} type="datetime-local" value={form.to} onInput={set("to")} />
          <TextField
            label={t("model")}
            name="model_name"
            value={form.model_name}
            onInput={set("model_name")}
          />
          <TextField
            label={t("key")}
            name="token_name"
            value={form.token_name}
            onInput={set("token_name")}
          />
          {admin && (
            <TextField
              label={t("username")}
              name="username"
              value={form.username}
              onInput={set("username")}
            />
          )}
          <TextField label={t("group")} name="group" value={form.group} onInput={set("group")} />
          <SelectField
            label={t("type")}
            name="type"
            value={form.type}
            onChange={set("type")}
            options={[
              { value: "0", label: t("typeAll") },
              { value: "2", label: t("typeOk") },
              { value: "5", label: t("typeError") },
            ]}
          />
          {credentials ? (
            <SelectField
              label={t("channel")}
              name="channel"
              value={form.channel}
              onChange={set("channel")}
              options={credentials}
              hint={t("channelHint")}
            />
          ) : (
            <TextField
              label={t("channel")}
              name="channel"
              value={form.channel}
              onInput={set("channel")}
              hint={t("channelHint")}
            />
          )}
        </div>
        {formError && <Notice kind="error">{formError}</Notice>}
        <div class="toolbar">
          <Button type="submit" variant="primary">
            {t("apply")}
          </Button>
          <Button
            onClick={() => {
              setForm(EMPTY);
              setApplied(EMPTY);
              setPage(1);
              setFormError(undefined);
            }}
          >
            {t("reset")}
          </Button>
        </div>
      </form>
      {exportError && <Notice kind="error">{exportError}</Notice>}
      {state.error && (
        <Notice kind="error" onRetry={state.reload}>
          {state.error}
        </Notice>
      )}
      {!data && !state.error && <Spinner />}
      {data && (
        <>
          <p class="stat-line" data-testid="log-stat">
            <span class="sr-only">{t("stat")}: </span>
            {t("statLine", {
              cost: formatUsd(data.stat.quota),
              rpm: formatNumber(data.stat.rpm),
              tpm: formatNumber(data.stat.tpm),
            })}
          </p>
          <DataTable
            caption={t("table")}
            columns={columns}
            rows={data.list.items}
            rowKey={(i) => i.id}
          />
          <Pager
            page={page}
            pageSize={pageSize}
            total={data.list.total}
            onPage={setPage}
            onPageSize={(n) => {
              setPageSize(n);
              setPage(1);
            }}
          />
        </>
      )}
      {open && <RecordDialog item={open} onClose={() => setOpen(null)} />}
    </>
  );
}
