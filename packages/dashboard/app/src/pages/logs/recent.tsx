/**
 * The "recent requests" table of the overview (a user's) and the key holder's page: time, key
 * (when asked), model, result, tokens, cost, latency, error (when asked).
 */
import { formatNumber, formatTime, formatUsd, messages } from "../../i18n.ts";
import { Badge, type Column, DataTable } from "../../ui.tsx";
import { formatMs, isError, type LogItem, latencyMs } from "./records.ts";

const t = messages({
  en: {
    recent: "Recent requests",
    time: "Time",
    key: "Key",
    noKey: "(no key)",
    model: "Model",
    status: "Status",
    ok: "OK",
    failed: "Error",
    tokens: "Tokens",
    cost: "Cost",
    latency: "Latency",
    error: "Error",
  },
  zh: {
    recent: "最近请求",
    time: "时间",
    key: "令牌",
    noKey: "（无令牌）",
    model: "模型",
    status: "状态",
    ok: "成功",
    failed: "失败",
    tokens: "Token 数",
    cost: "费用",
    latency: "延迟",
    error: "错误信息",
  },
});

/** A card with the latest requests, newest first as given. */
export function RecentRequests(props: {
  items: readonly LogItem[];
  /** Show the key's name (a user's several keys). */
  withKey?: boolean;
  /** Show the error text of failed requests. */
  withError?: boolean;
}) {
  const columns: Column<LogItem>[] = [
    { key: "time", label: t("time"), render: (i) => formatTime(i.created_at, true) },
    ...(props.withKey
      ? [{ key: "key", label: t("key"), render: (i: LogItem) => i.token_name || t("noKey") }]
      : []),
    { key: "model", label: t("model"), render: (i) => i.model_name },
    {
      key: "status",
      label: t("status"),
      render: (i) =>
        isError(i) ? <Badge tone="bad">{t("failed")}</Badge> : <Badge tone="ok">{t("ok")}</Badge>,
    },
    {
      key: "tokens",
      label: t("tokens"),
      numeric: true,
      render: (i) => formatNumber(i.prompt_tokens + i.completion_tokens),
    },
    { key: "cost", label: t("cost"), numeric: true, render: (i) => formatUsd(i.quota) },
    {
      key: "latency",
      label: t("latency"),
      numeric: true,
      optional: true,
      render: (i) => formatMs(latencyMs(i)),
    },
    ...(props.withError
      ? [{ key: "error", label: t("error"), optional: true, render: (i: LogItem) => i.content }]
      : []),
  ];
  return (
    <section class="card">
      <h2>{t("recent")}</h2>
      <DataTable caption={t("recent")} rows={props.items} rowKey={(i) => i.id} columns={columns} />
    </section>
  );
}
