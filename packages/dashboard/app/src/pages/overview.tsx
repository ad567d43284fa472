/**
 * The overview: requests, tokens, cost, error rate and latency of the last 24 hours, 7 or 30
 * days, over time, with the top keys and models, refreshed live. The operator's numbers come from
 * the usage summary (`/v0/management/usage/summary`); a user's (no management access) from the
 * request log of its own requests (`/api/log/self`, `/api/log/self/stat`). Latency is always
 * computed from the latest request-log records.
 */
import { useMemo, useState } from "preact/hooks";
import { api, apiData, hasManagementKey, isAdmin } from "../api.ts";
import { type ChartSeries, TimeChart } from "../chart.tsx";
import { formatNumber, formatTime, formatUsd, messages } from "../i18n.ts";
import { href } from "../router.ts";
import {
  Button,
  type Column,
  DataTable,
  Notice,
  PageHeader,
  SelectField,
  Spinner,
  Stat,
  useAsync,
} from "../ui.tsx";
import { RecentRequests } from "./logs/recent.tsx";
import {
  details,
  formatMs,
  isError,
  type LogItem,
  type LogPage,
  type LogStat,
  latencyMs,
  mean,
  median,
} from "./logs/records.ts";
import { type Buckets, bucketId, bucketsOf, type RangeName } from "./overview/buckets.ts";

const t = messages({
  en: {
    title: "Overview",
    range: "Time range",
    r24h: "Last 24 hours",
    r7d: "Last 7 days",
    r30d: "Last 30 days",
    pause: "Pause live updates",
    resume: "Resume live updates",
    updatedAt: "Updated {time}",
    paused: "Paused · updated {time}",
    requests: "Requests",
    tokens: "Tokens",
    cost: "Cost",
    errorRate: "Error rate",
    avgLatency: "Avg latency",
    p50Latency: "p50 latency",
    errorsHint: "{n} failed",
    latencyHint: "Latest {n} requests",
    tokensHint: "In {input} · out {output}",
    tokensPartialHint: "Of the latest {n} requests",
    chartRequests: "Requests and errors",
    chartTokens: "Tokens",
    chartCost: "Cost (USD)",
    chartLatency: "Latency",
    latencyChartHint:
      "Latency is computed from the latest {n} request-log records, not from the summary.",
    seriesRequests: "Requests",
    seriesErrors: "Errors",
    seriesInput: "Input tokens",
    seriesOutput: "Output tokens",
    seriesCost: "Cost (USD)",
    seriesLatency: "Avg latency (ms)",
    seriesFirstToken: "Avg first token (ms)",
    summaryRequests: "Requests {requests}, errors {errors}, over the last {buckets} {unit}s.",
    summaryTokens: "{input} input and {output} output tokens.",
    summaryCost: "{cost} in all.",
    summaryLatency: "Average {avg}, median {p50}.",
    hour: "hour",
    day: "day",
    numbers: "The numbers of each {unit}",
    time: "Time",
    topKeys: "Top keys",
    topModels: "Top models",
    key: "Key",
    model: "Model",
    errors: "Errors",
    noKey: "(no key)",
    noModel: "(none)",
    latency: "Latency",
    allLogs: "All request logs",
    nothing: "No requests in this range yet.",
    partial: "Your numbers come from your request log (the latest {n} records).",
  },
  zh: {
    title: "概览",
    range: "时间范围",
    r24h: "最近 24 小时",
    r7d: "最近 7 天",
    r30d: "最近 30 天",
    pause: "暂停实时刷新",
    resume: "恢复实时刷新",
    updatedAt: "更新于 {time}",
    paused: "已暂停 · 更新于 {time}",
    requests: "请求数",
    tokens: "Token 数",
    cost: "费用",
    errorRate: "错误率",
    avgLatency: "平均延迟",
    p50Latency: "延迟中位数",
    errorsHint: "失败 {n} 次",
    latencyHint: "最近 {n} 次请求",
    tokensHint: "输入 {input} · 输出 {output}",
    tokensPartialHint: "最近 {n} 次请求",
    chartRequests: "请求与错误",
    chartTokens: "Token 用量",
    chartCost: "费用（美元）",
    chartLatency: "延迟",
    latencyChartHint: "延迟根据最近 {n} 条请求日志计算，而非来自用量汇总。",
    seriesRequests: "请求",
    seriesErrors: "错误",
    seriesInput: "输入 Token",
    seriesOutput: "输出 Token",
    seriesCost: "费用（美元）",
    seriesLatency: "平均延迟（毫秒）",
    seriesFirstToken: "平均首字延迟（毫秒）",
    summaryRequests: "最近 {buckets} {unit}：请求 {requests} 次，错误 {errors} 次。",
    summaryTokens: "输入 {input} Token，输出 {output} Token。",
    summaryCost: "合计 {cost}。",
    summaryLatency: "平均 {avg}，中位数 {p50}。",
    hour: "小时",
    day: "天",
    numbers: "每{unit}的数据",
    time: "时间",
    topKeys: "用量最多的令牌",
    topModels: "用量最多的模型",
    key: "令牌",
    model: "模型",
    errors: "错误",
    noKey: "（无令牌）",
    noModel: "（无）",
    latency: "延迟",
    allLogs: "全部请求日志",
    nothing: "此时间范围内还没有请求。",
    partial: "你的数据来自你的请求日志（最近 {n} 条记录）。",
  },
});

/** Live refresh period. */
const POLL_MS = 8000;
/** How many request-log records the latency (and a user's numbers) are computed from. */
const SAMPLE = 100;
const TOP = 10;

/** The cost axis: dollars with the digits small amounts need. */
const usdAxis = (v: number) => `$${formatNumber(v, v !== 0 && Math.abs(v) < 0.01 ? 4 : 2)}`;

/** A summary row (`/v0/management/usage/summary`). */
interface SummaryRow {
  id: number | string | null;
  requests: number;
  successes: number;
  failures: number;
  quota: number;
  costUsd: number;
  inputTokens: number;
  outputTokens: number;
  totalTokens: number;
}

/** One bucket or one group, the same numbers whatever the source. */
interface Sums {
  requests: number;
  failures: number;
  input: number;
  output: number;
  tokens: number;
  quota: number;
}

interface Group extends Sums {
  id: string;
  name: string;
  /** The value to filter the request logs by (none: no link). */
  filter?: string;
}

interface OverviewData {
  buckets: Buckets;
  perBucket: Sums[];
  totals: Sums;
  /** Latency per bucket (avg ms, avg first token ms) from the sample. */
  latency: { avg: (number | null)[]; firstToken: (number | null)[] };
  sample: LogItem[];
  topKeys: Group[];
  topModels: Group[];
  /** A user's view: the numbers come from the latest records only. */
  partialOf?: number;
  recent?: LogItem[];
  updatedAt: number;
}

const zero = (): Sums => ({ requests: 0, failures: 0, input: 0, output: 0, tokens: 0, quota: 0 });

function addRow(into: Sums, r: SummaryRow): void {
  into.requests += r.requests;
  into.failures += r.failures;
  into.input += r.inputTokens;
  into.output += r.outputTokens;
  into.tokens += r.totalTokens;
  into.quota += r.quota;
}

function addItem(into: Sums, i: LogItem): void {
  into.requests += 1;
  if (isError(i)) into.failures += 1;
  into.input += i.prompt_tokens;
  into.output += i.completion_tokens;
  into.tokens += i.prompt_tokens + i.completion_tokens;
  into.quota += i.quota;
}

function latencyPerBucket(b: Buckets, items: readonly LogItem[]): OverviewData["latency"] {
  const lat = b.ids.map(() => [] as number[]);
  const ftt = b.ids.map(() => [] as number[]);
  const index = new Map(b.ids.map((id, i) => [id, i]));
  for (const item of items) {
    const i = index.get(bucketId(item.created_at * 1000, b.unit));
    if (i === undefined) continue;
    lat[i]!.push(latencyMs(item));
    const f = details(item).first_token_ms;
    if (typeof f === "number") ftt[i]!.push(f);
  }
  const avg = (v: number[]) => (v.length ? Math.round(mean(v)) : null);
  return { avg: lat.map(avg), firstToken: ftt.map(avg) };
}

function groupItems(items: readonly LogItem[], of: (i: LogItem) => string, none: string): Group[] {
  const m = new Map<string, Group>();
  for (const item of items) {
    const id = of(item);
    let g = m.get(id);
    if (!g) {
      g = id ? { id, name: id, filter: id, ...zero() } : { id, name: none, ...zero() };
      m.set(id, g);
    }
    addItem(g, item);
  }
  return [...m.values()].sort((a, b) => b.quota - a.quota || b.requests - a.requests);
}

/** The operator's overview: the usage summary, key names, and the latest records for latency. */
async function loadOperator(range: RangeName, signal: AbortSignal): Promise<OverviewData> {
  const b = bucketsOf(range);
  const from = Math.floor(b.from / 1000);
  const summary = (by: string) =>
    api<{ rows: SummaryRow[] }>("/v0/management/usage/summary", {
      query: { by, from },
      signal,
    }).then((r) => r.rows);
  const [time, byKey, byModel, logs] = await Promise.all([
    summary(b.unit),
    summary("key"),
    summary("model"),
    apiData<LogPage>("/api/log/", {
      query: { p: 1, page_size: SAMPLE, start_timestamp: from },
      signal,
    }),
  ]);
  const perBucket = b.ids.map(zero);
  const index = new Map(b.ids.map((id, i) => [id, i]));
  const totals = zero();
  for (const r of time) {
    addRow(totals, r);
    const i = index.get(String(r.id));
    if (i !== undefined) addRow(perBucket[i]!, r);
  }
  const topKeyRows = byKey.slice(0, TOP);
  // Names of the keys shown only (one look-up each); a deleted key keeps its number.
  const names = await Promise.all(
    topKeyRows.map((r) =>
      r.id === null
        ? Promise.resolve(null)
        : apiData<{ name: string }>(`/api/token/${r.id}`, { signal }).then(
            (k) => k.name || null,
            () => null,
          ),
    ),
  );
  const toGroup = (r: SummaryRow, filter: string | null, fallback: string): Group => {
    const g: Group = { id: String(r.id), name: filter ?? fallback, ...zero() };
    if (filter) g.filter = filter;
    addRow(g, r);
    return g;
  };
  return {
    buckets: b,
    perBucket,
    totals,
    latency: latencyPerBucket(b, logs.items),
    sample: logs.items,
    topKeys: topKeyRows.map((r, i) =>
      toGroup(r, names[i] ?? null, r.id === null ? t("noKey") : `#${r.id}`),
    ),
    topModels: byModel
      .slice(0, TOP)
      .map((r) => toGroup(r, r.id === null || r.id === "" ? null : String(r.id), t("noModel"))),
    updatedAt: Date.now(),
  };
}

/** A user's overview (or an admin user's, without management access): from the request log. */
async function loadFromLogs(range: RangeName, signal: AbortSignal): Promise<OverviewData> {
  const b = bucketsOf(range);
  const from = Math.floor(b.from / 1000);
  const base = isAdmin() ? "/api/log" : "/api/log/self";
  const list = (query: Record<string, number>) =>
    apiData<LogPage>(base === "/api/log" ? "/api/log/" : base, {
      query: { p: 1, start_timestamp: from, ...query },
      signal,
    });
  const [logs, errors, stat] = await Promise.all([
    list({ page_size: SAMPLE }),
    list({ page_size: 1, type: 5 }),
    apiData<LogStat>(`${base}/stat`, { query: { start_timestamp: from }, signal }),
  ]);
  const perBucket = b.ids.map(zero);
  const index = new Map(b.ids.map((id, i) => [id, i]));
  const totals = zero();
  for (const item of logs.items) {
    addItem(totals, item);
    const i = index.get(bucketId(item.created_at * 1000, b.unit));
    if (i !== undefined) addItem(perBucket[i]!, item);
  }
  // The exact counts and cost of the whole range; tokens only of the records read.
  totals.requests = logs.total;
  totals.failures = errors.total;
  totals.quota = stat.quota;
  const data: OverviewData = {
    buckets: b,
    perBucket,
    totals,
    latency: latencyPerBucket(b, logs.items),
    sample: logs.items,
    topKeys: groupItems(logs.items, (i) => i.token_name, t("noKey")).slice(0, TOP),
    topModels: groupItems(logs.items, (i) => i.model_name, t("noModel")).slice(0, TOP),
    recent: logs.items.slice(0, 10),
    updatedAt: Date.now(),
  };
  if (logs.total > logs.items.length) data.partialOf = logs.items.length;
  return data;
}

/** The columns of a top table; a name links to the request logs filtered by it. */
function groupColumns(first: string, filter: "token_name" | "model_name"): Column<Group>[] {
  return [
    {
      key: "name",
      label: first,
      render: (g) =>
        g.filter ? (
          <a href={`${href("logs")}?${new URLSearchParams({ [filter]: g.filter })}`}>{g.name}</a>
        ) : (
          g.name
        ),
    },
    {
      key: "requests",
      label: t("requests"),
      numeric: true,
      render: (g) => formatNumber(g.requests),
    },
    {
      key: "errors",
      label: t("errors"),
      numeric: true,
      optional: true,
      render: (g) => formatNumber(g.failures),
    },
    { key: "tokens", label: t("tokens"), numeric: true, render: (g) => formatNumber(g.tokens) },
    { key: "cost", label: t("cost"), numeric: true, render: (g) => formatUsd(g.quota) },
  ];
}

function bucketLabel(start: number, unit: "hour" | "day"): string {
  const text = formatTime(start);
  return unit === "day" ? text.split(/[ ,]+/)[0]! : text.replace(/:\d\d$/, "");
}

function Charts({ data }: { data: OverviewData }) {
  const { buckets: b, perBucket, latency, totals } = data;
  // Rebuild the charts only when a number changed (a live refresh usually changes nothing).
  const sig = JSON.stringify([b.ids, perBucket, latency]);
  const charts = useMemo(() => {
    const x = b.starts.map((s) => s / 1000);
    const s = (label: string, values: (number | null)[]): ChartSeries => ({ label, values });
    return {
      x,
      requests: [
        s(
          t("seriesRequests"),
          perBucket.map((p) => p.requests),
        ),
        {
          ...s(
            t("seriesErrors"),
            perBucket.map((p) => p.failures),
          ),
          color: "#c23b4e",
        },
      ],
      tokens: [
        s(
          t("seriesInput"),
          perBucket.map((p) => p.input),
        ),
        s(
          t("seriesOutput"),
          perBucket.map((p) => p.output),
        ),
      ],
      cost: [
        s(
          t("seriesCost"),
          perBucket.map((p) => p.quota / 500_000),
        ),
      ],
      latency: [s(t("seriesLatency"), latency.avg), s(t("seriesFirstToken"), latency.firstToken)],
    };
  }, [sig]);
  const unit = t(b.unit);
  const lat = data.sample.map(latencyMs);
  const rows = b.ids.map((id, i) => ({ id, start: b.starts[i]!, ...perBucket[i]! }));
  return (
    <>
      <div class="grid">
        <div class="card">
          <TimeChart
            title={t("chartRequests")}
            x={charts.x}
            series={charts.requests}
            summary={t("summaryRequests", {
              requests: formatNumber(totals.requests),
              errors: formatNumber(totals.failures),
              buckets: b.ids.length,
              unit,
            })}
          />
        </div>
        <div class="card">
          <TimeChart
            title={t("chartTokens")}
            x={charts.x}
            series={charts.tokens}
            summary={t("summaryTokens", {
              input: formatNumber(totals.input),
              output: formatNumber(totals.output),
            })}
          />
        </div>
        <div class="card">
          <TimeChart
            title={t("chartCost")}
            x={charts.x}
            series={charts.cost}
            yFormat={usdAxis}
            summary={t("summaryCost", { cost: formatUsd(totals.quota) })}
          />
        </div>
        <div class="card">
          <TimeChart
            title={t("chartLatency")}
            x={charts.x}
            series={charts.latency}
            summary={t("summaryLatency", {
              avg: formatMs(mean(lat)),
              p50: formatMs(median(lat)),
            })}
          />
          <p class="hint">{t("latencyChartHint", { n: data.sample.length })}</p>
        </div>
      </div>
      <details class="card">
        <summary>{t("numbers", { unit })}</summary>
        <DataTable
          caption={t("numbers", { unit })}
          rows={rows}
          rowKey={(r) => r.id}
          columns={[
            { key: "time", label: t("time"), render: (r) => bucketLabel(r.start, b.unit) },
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
              key: "tokens",
              label: t("tokens"),
              numeric: true,
              render: (r) => formatNumber(r.tokens),
            },
            { key: "cost", label: t("cost"), numeric: true, render: (r) => formatUsd(r.quota) },
            {
              key: "latency",
              label: t("avgLatency"),
              numeric: true,
              optional: true,
              render: (r) => formatMs(data.latency.avg[b.ids.indexOf(r.id)]),
            },
          ]}
        />
      </details>
    </>
  );
}

/** The overview page. */
export function OverviewPage() {
  const [range, setRange] = useState<RangeName>("24h");
  const [paused, setPaused] = useState(false);
  const operator = hasManagementKey();
  const state = useAsync(
    (signal) => (operator ? loadOperator(range, signal) : loadFromLogs(range, signal)),
    [range, operator],
    paused ? undefined : POLL_MS,
  );
  const data = state.data;
  const lat = data ? data.sample.map(latencyMs) : [];
  const errorRate = data?.totals.requests ? data.totals.failures / data.totals.requests : 0;

  return (
    <>
      <PageHeader title={t("title")}>
        <SelectField
          label={t("range")}
          value={range}
          onChange={setRange}
          options={[
            { value: "24h", label: t("r24h") },
            { value: "7d", label: t("r7d") },
            { value: "30d", label: t("r30d") },
          ]}
        />
        <Button aria-pressed={paused} onClick={() => setPaused((p) => !p)}>
          {paused ? t("resume") : t("pause")}
        </Button>
      </PageHeader>
      {data && (
        <p class="hint" data-testid="updated-at">
          {t(paused ? "paused" : "updatedAt", { time: formatTime(data.updatedAt) })}
        </p>
      )}
      {state.error && (
        <Notice kind="error" onRetry={state.reload}>
          {state.error}
        </Notice>
      )}
      {!data && !state.error && <Spinner />}
      {data && (
        <>
          {data.partialOf !== undefined && (
            <Notice kind="info">{t("partial", { n: data.partialOf })}</Notice>
          )}
          <div class="stats" data-testid="overview-stats">
            <Stat
              label={t("requests")}
              value={<span data-testid="stat-requests">{formatNumber(data.totals.requests)}</span>}
              hint={t("errorsHint", { n: formatNumber(data.totals.failures) })}
            />
            <Stat
              label={t("tokens")}
              value={<span data-testid="stat-tokens">{formatNumber(data.totals.tokens)}</span>}
              hint={
                data.partialOf !== undefined
                  ? t("tokensPartialHint", { n: data.partialOf })
                  : t("tokensHint", {
                      input: formatNumber(data.totals.input),
                      output: formatNumber(data.totals.output),
                    })
              }
            />
            <Stat
              label={t("cost")}
              value={<span data-testid="stat-cost">{formatUsd(data.totals.quota)}</span>}
            />
            <Stat
              label={t("errorRate")}
              value={
                <span data-testid="stat-error-rate">{`${formatNumber(errorRate * 100, 1)}%`}</span>
              }
            />
            <Stat
              label={t("avgLatency")}
              value={formatMs(mean(lat))}
              hint={t("latencyHint", { n: lat.length })}
            />
            <Stat
              label={t("p50Latency")}
              value={formatMs(median(lat))}
              hint={t("latencyHint", { n: lat.length })}
            />
          </div>
          {data.totals.requests === 0 && <Notice kind="info">{t("nothing")}</Notice>}
          <Charts data={data} />
          <div class="grid">
            <section class="card">
              <h2>{t("topKeys")}</h2>
              <DataTable
                caption={t("topKeys")}
                rows={data.topKeys}
                rowKey={(g) => g.id}
                columns={groupColumns(t("key"), "token_name")}
              />
            </section>
            <section class="card">
              <h2>{t("topModels")}</h2>
              <DataTable
                caption={t("topModels")}
                rows={data.topModels}
                rowKey={(g) => g.id}
                columns={groupColumns(t("model"), "model_name")}
              />
            </section>
          </div>
          {data.recent && <RecentRequests withKey items={data.recent} />}
          <p>
            <a href={href("logs")}>{t("allLogs")}</a>
          </p>
        </>
      )}
    </>
  );
}
