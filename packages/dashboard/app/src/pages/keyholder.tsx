/**
 * The key holder's page (`#/mykey`, no login): someone with only an API key types it in and sees
 * its balance, limits, next refill, expiry, allowed models, usage by day and by model, and its
 * recent requests. The key stays in this component's memory (sent in the Authorization header
 * only): never in the URL, storage or a log, and "Forget" drops it.
 */
import { useMemo, useState } from "preact/hooks";
import { apiData, errorText } from "../api.ts";
import { TimeChart } from "../chart.tsx";
import { formatNumber, formatTime, formatUsd, messages } from "../i18n.ts";
import {
  Badge,
  Button,
  DataTable,
  Notice,
  PageHeader,
  Spinner,
  Stat,
  TextField,
  useAsync,
} from "../ui.tsx";
import { RecentRequests } from "./logs/recent.tsx";
import type { LogItem } from "./logs/records.ts";
import { bucketsOf } from "./overview/buckets.ts";

const t = messages({
  en: {
    title: "Check a key",
    intro:
      "Type an API key to see its balance, limits and recent usage. The key stays in this page's memory only and is sent in a request header, never in the address.",
    apiKey: "API key",
    apiKeyHint: "e.g. sk-… Nothing is stored: a reload or “Forget” drops it.",
    check: "Check",
    checking: "Checking…",
    forget: "Forget the key",
    keyName: "Key “{name}”",
    remaining: "Remaining",
    used: "Used",
    granted: "Granted in all",
    unlimited: "Unlimited",
    unlimitedHint: "This key has no quota limit",
    expires: "Expires",
    never: "Never",
    expired: "Expired",
    limits: "Rate limits",
    rpm: "Requests per minute",
    tpm: "Tokens per minute",
    rpd: "Requests per day",
    concurrency: "Requests at once",
    noLimit: "No limit",
    refill: "Quota refill",
    noRefill: "This key's quota does not refill.",
    refillEvery: "Every {interval}: the balance starts again at {amount}.",
    nextRefill: "Next refill",
    i1d: "day",
    i7d: "7 days",
    i30d: "30 days",
    imonth: "calendar month",
    models: "Allowed models",
    allModels: "Every model the gateway serves.",
    byDay: "Usage by day (last 30 days, UTC)",
    byDayChart: "Requests and errors per day",
    byDaySummary: "Last 30 days: requests {requests}, errors {errors}, cost {cost}.",
    byModel: "Usage by model (last 30 days)",
    day: "Day",
    model: "Model",
    requests: "Requests",
    errors: "Errors",
    inputTokens: "Input",
    outputTokens: "Output",
    cost: "Cost",
    error: "Error",
    summaryMissing: "Usage by day and model is not available: {message}",
    failedCheck: "The gateway refused this key: {message}",
    noModel: "(none)",
    units: "{n} quota units",
  },
  zh: {
    title: "查询令牌",
    intro:
      "输入 API 令牌即可查看余额、限制和近期用量。令牌只保存在本页面的内存中，并通过请求头发送，不会出现在地址栏中。",
    apiKey: "API 令牌",
    apiKeyHint: "例如 sk-…。不会保存：刷新页面或点击“忘记令牌”即清除。",
    check: "查询",
    checking: "查询中…",
    forget: "忘记令牌",
    keyName: "令牌“{name}”",
    remaining: "剩余额度",
    used: "已用额度",
    granted: "总额度",
    unlimited: "无限额度",
    unlimitedHint: "此令牌没有额度限制",
    expires: "过期时间",
    never: "永不过期",
    expired: "已过期",
    limits: "速率限制",
    rpm: "每分钟请求数",
    tpm: "每分钟 Token 数",
    rpd: "每天请求数",
    concurrency: "最大并发请求",
    noLimit: "不限",
    refill: "额度重置",
    noRefill: "此令牌的额度不会自动重置。",
    refillEvery: "每{interval}重置一次：余额恢复为 {amount}。",
    nextRefill: "下次重置",
    i1d: "天",
    i7d: " 7 天",
    i30d: " 30 天",
    imonth: "个自然月",
    models: "可用模型",
    allModels: "网关提供的所有模型。",
    byDay: "按天用量（最近 30 天，UTC）",
    byDayChart: "每天的请求与错误",
    byDaySummary: "最近 30 天共 {requests} 次请求，{errors} 次错误，费用 {cost}。",
    byModel: "按模型用量（最近 30 天）",
    day: "日期",
    model: "模型",
    requests: "请求数",
    errors: "错误",
    inputTokens: "输入",
    outputTokens: "输出",
    cost: "费用",
    error: "错误信息",
    summaryMissing: "无法获取按天和按模型的用量：{message}",
    failedCheck: "网关拒绝了此令牌：{message}",
    noModel: "（无）",
    units: "{n} 额度单位",
  },
});

/** `data` of `GET /api/usage/token/`. */
interface TokenUsage {
  name: string;
  total_granted: number;
  total_used: number;
  total_available: number;
  unlimited_quota: boolean;
  model_limits: Record<string, boolean>;
  model_limits_enabled: boolean;
  expires_at: number;
  rpm_limit: number;
  tpm_limit: number;
  rpd_limit: number;
  max_concurrency: number;
  quota_refill_interval: string;
  quota_refill_amount: number;
  next_refill_time: number;
}

/** A row of `GET /api/usage/token/summary`. */
interface SummaryRow {
  id: string | null;
  requests: number;
  successes: number;
  failures: number;
  quota: number;
  cost_usd: number;
  input_tokens: number;
  output_tokens: number;
  total_tokens: number;
}

interface KeyData {
  usage: TokenUsage;
  recent: LogItem[];
  byDay: SummaryRow[] | null;
  byModel: SummaryRow[] | null;
  summaryError?: string;
}

async function load(apiKey: string, signal: AbortSignal): Promise<KeyData> {
  const b = bucketsOf("30d");
  const query = (by: string) => ({ by, from: Math.floor(b.from / 1000) });
  const [usage, recent] = await Promise.all([
    apiData<TokenUsage>("/api/usage/token/", { apiKey, signal }),
    apiData<LogItem[]>("/api/log/token", { apiKey, signal }),
  ]);
  try {
    const [byDay, byModel] = await Promise.all([
      apiData<SummaryRow[]>("/api/usage/token/summary", { apiKey, signal, query: query("day") }),
      apiData<SummaryRow[]>("/api/usage/token/summary", {
        apiKey,
        signal,
        query: query("model"),
      }),
    ]);
    return { usage, recent, byDay, byModel };
  } catch (e) {
    return {
      usage,
      recent,
      byDay: null,
      byModel: null,
      summaryError: errorText(e),
    };
  }
}

const limitText = (n: number) => (n > 0 ? formatNumber(n) : t("noLimit"));

function intervalText(i: string): string {
  if (i === "1d" || i === "7d" || i === "30d" || i === "month")
    return t(`i${i}` as "i1d" | "i7d" | "i30d" | "imonth");
  return i;
}

function ByDay({ rows }: { rows: SummaryRow[] }) {
  const b = useMemo(() => bucketsOf("30d"), []);
  const sig = JSON.stringify(rows);
  const chart = useMemo(() => {
    const by = new Map(rows.map((r) => [r.id, r]));
    return {
      x: b.starts.map((s) => s / 1000),
      series: [
        { label: t("requests"), values: b.ids.map((id) => by.get(id)?.requests ?? 0) },
        {
          label: t("errors"),
          values: b.ids.map((id) => by.get(id)?.failures ?? 0),
          color: "#c23b4e",
        },
      ],
    };
  }, [sig, b]);
  const sum = (f: (r: SummaryRow) => number) => rows.reduce((a, r) => a + f(r), 0);
  return (
    <section class="card">
      <h2>{t("byDay")}</h2>
      <TimeChart
        title={t("byDayChart")}
        x={chart.x}
        series={chart.series}
        summary={t("byDaySummary", {
          requests: formatNumber(sum((r) => r.requests)),
          errors: formatNumber(sum((r) => r.failures)),
          cost: formatUsd(sum((r) => r.quota)),
        })}
      />
      <SummaryTable caption={t("byDay")} first={t("day")} rows={[...rows].reverse()} />
    </section>
  );
}

function SummaryTable(props: { caption: string; first: string; rows: SummaryRow[] }) {
  return (
    <DataTable
      caption={props.caption}
      rows={props.rows}
      rowKey={(r) => r.id ?? ""}
      columns={[
        { key: "id", label: props.first, render: (r) => r.id || t("noModel") },
        {
          key: "requests",
          label: t("requests"),
          numeric: true,
          render: (r) => formatNumber(r.requests),
        },
        {
          key: "errors",
          label: t("errors"),
          numeric: true,
          render: (r) => formatNumber(r.failures),
        },
        {
          key: "in",
          label: t("inputTokens"),
          numeric: true,
          optional: true,
          render: (r) => formatNumber(r.input_tokens),
        },
        {
          key: "out",
          label: t("outputTokens"),
          numeric: true,
          optional: true,
          render: (r) => formatNumber(r.output_tokens),
        },
        { key: "cost", label: t("cost"), numeric: true, render: (r) => formatUsd(r.quota) },
      ]}
    />
  );
}

function KeyReport({ data }: { data: KeyData }) {
  const u = data.usage;
  const now = Date.now() / 1000;
  const models = Object.keys(u.model_limits).filter((m) => u.model_limits[m]);
  return (
    <>
      <h2>{t("keyName", { name: u.name })}</h2>
      <div class="stats" data-testid="key-balance">
        <Stat
          label={t("remaining")}
          value={
            <span data-testid="key-remaining">
              {u.unlimited_quota ? t("unlimited") : formatUsd(u.total_available)}
            </span>
          }
          hint={
            u.unlimited_quota
              ? t("unlimitedHint")
              : t("units", { n: formatNumber(u.total_available) })
          }
        />
        <Stat
          label={t("used")}
          value={<span data-testid="key-used">{formatUsd(u.total_used)}</span>}
          hint={t("units", { n: formatNumber(u.total_used) })}
        />
        {!u.unlimited_quota && <Stat label={t("granted")} value={formatUsd(u.total_granted)} />}
        <Stat
          label={t("expires")}
          value={u.expires_at ? formatTime(u.expires_at, true) : t("never")}
          hint={u.expires_at && u.expires_at < now ? t("expired") : undefined}
        />
      </div>
      <div class="grid">
        <section class="card">
          <h2>{t("limits")}</h2>
          <dl class="kv">
            <dt>{t("rpm")}</dt>
            <dd>{limitText(u.rpm_limit)}</dd>
            <dt>{t("tpm")}</dt>
            <dd>{limitText(u.tpm_limit)}</dd>
            <dt>{t("rpd")}</dt>
            <dd>{limitText(u.rpd_limit)}</dd>
            <dt>{t("concurrency")}</dt>
            <dd>{limitText(u.max_concurrency)}</dd>
          </dl>
        </section>
        <section class="card">
          <h2>{t("refill")}</h2>
          {u.quota_refill_interval ? (
            <>
              <p>
                {t("refillEvery", {
                  interval: intervalText(u.quota_refill_interval),
                  amount: formatUsd(u.quota_refill_amount),
                })}
              </p>
              <dl class="kv">
                <dt>{t("nextRefill")}</dt>
                <dd>{formatTime(u.next_refill_time, true)}</dd>
              </dl>
            </>
          ) : (
            <p>{t("noRefill")}</p>
          )}
        </section>
        <section class="card">
          <h2>{t("models")}</h2>
          {u.model_limits_enabled && models.length ? (
            <ul class="chips">
              {models.map((m) => (
                <li key={m}>
                  <Badge>{m}</Badge>
                </li>
              ))}
            </ul>
          ) : (
            <p>{t("allModels")}</p>
          )}
        </section>
      </div>
      {data.summaryError && (
        <Notice kind="info">{t("summaryMissing", { message: data.summaryError })}</Notice>
      )}
      {data.byDay && <ByDay rows={data.byDay} />}
      {data.byModel && (
        <section class="card">
          <h2>{t("byModel")}</h2>
          <SummaryTable caption={t("byModel")} first={t("model")} rows={data.byModel} />
        </section>
      )}
      <RecentRequests items={data.recent.slice(0, 50)} withError />
    </>
  );
}

/** The key holder's page. */
export function KeyHolderPage() {
  const [input, setInput] = useState("");
  // The key being shown: in this component's state only.
  const [key, setKey] = useState("");
  const state = useAsync((signal) => (key ? load(key, signal) : Promise.resolve(null)), [key]);
  const forget = () => {
    setInput("");
    setKey("");
  };
  const data = key ? state.data : null;
  return (
    <>
      <PageHeader title={t("title")} />
      <p>{t("intro")}</p>
      <form
        class="card key-form"
        onSubmit={(e) => {
          e.preventDefault();
          const k = input.trim();
          if (k === key) state.reload();
          else setKey(k);
        }}
      >
        <TextField
          label={t("apiKey")}
          type="password"
          name="api-key"
          value={input}
          onInput={setInput}
          hint={t("apiKeyHint")}
          required
        />
        <div class="toolbar">
          <Button type="submit" variant="primary" disabled={state.loading && !!key}>
            {state.loading && key ? t("checking") : t("check")}
          </Button>
          {(input || key) && <Button onClick={forget}>{t("forget")}</Button>}
        </div>
      </form>
      {key && state.error && (
        <Notice kind="error">{t("failedCheck", { message: state.error })}</Notice>
      )}
      {key && state.loading && !data && <Spinner />}
      {data && !state.error && <KeyReport data={data} />}
    </>
  );
}
