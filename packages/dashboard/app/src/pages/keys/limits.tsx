/**
 * The limit and refill fields a key and a user share: the form state, its fieldsets, its
 * validation, its body fields and the short summaries the tables show.
 */
import { formatNumber, formatTime, formatUsd, messages } from "../../i18n.ts";
import { NumberField, SelectField } from "../../ui.tsx";
import { type LimitView, type RefillInterval, UNITS_PER_USD } from "./types.ts";

const t = messages({
  en: {
    limits: "Limits",
    limitsHint: "0 or empty: no limit of its own (a group limit may still apply).",
    rpm: "Requests per minute (RPM)",
    tpm: "Tokens per minute (TPM)",
    rpd: "Requests per day (RPD)",
    concurrency: "Max concurrent requests",
    queue: "Queue wait (ms)",
    queueHint: "How long a request over the concurrency limit waits; 0 = refused at once.",
    refill: "Refill",
    refillNone: "No refill",
    refill1d: "Every day",
    refill7d: "Every 7 days",
    refill30d: "Every 30 days",
    refillMonth: "Every calendar month",
    refillAmount: "Refill to (USD)",
    refillAmountHint: "The balance each period starts with: {units} units.",
    badCount: "Enter a whole number of 0 or more.",
    badUsd: "Enter an amount of 0 or more.",
    needAmount: "Enter the amount each period starts with.",
    none: "none",
    concShort: "{n} at once",
    nextAt: "next {time}",
    short1d: "daily",
    short7d: "every 7 days",
    short30d: "every 30 days",
    shortMonth: "monthly",
  },
  zh: {
    limits: "限制",
    limitsHint: "0 或留空：不单独限制（分组限制仍可能生效）。",
    rpm: "每分钟请求数（RPM）",
    tpm: "每分钟 Token 数（TPM）",
    rpd: "每日请求数（RPD）",
    concurrency: "最大并发请求数",
    queue: "排队等待（毫秒）",
    queueHint: "超出并发限制的请求等待多久；0 表示立即拒绝。",
    refill: "额度重置",
    refillNone: "不重置",
    refill1d: "每天",
    refill7d: "每 7 天",
    refill30d: "每 30 天",
    refillMonth: "每自然月",
    refillAmount: "重置为（美元）",
    refillAmountHint: "每个周期开始时的额度：{units} 点。",
    badCount: "请输入不小于 0 的整数。",
    badUsd: "请输入不小于 0 的金额。",
    needAmount: "请输入每个周期开始时的额度。",
    none: "无",
    concShort: "并发 {n}",
    nextAt: "下次 {time}",
    short1d: "每天",
    short7d: "每 7 天",
    short30d: "每 30 天",
    shortMonth: "每月",
  },
});

/** The limit and refill fields as the form holds them (empty box = null). */
export interface LimitsForm {
  rpm: number | null;
  tpm: number | null;
  rpd: number | null;
  concurrency: number | null;
  queue: number | null;
  interval: RefillInterval;
  /** US dollars. */
  refillUsd: number | null;
}

/** Validation messages by field. */
export type FormErrors = Partial<Record<string, string>>;

/** The form state of a stored key or user (or of a new one). */
export function limitsForm(v?: LimitView): LimitsForm {
  return {
    rpm: v?.rpm_limit || null,
    tpm: v?.tpm_limit || null,
    rpd: v?.rpd_limit || null,
    concurrency: v?.max_concurrency || null,
    queue: v?.queue_timeout_ms || null,
    interval: v?.quota_refill_interval ?? "",
    refillUsd: v?.quota_refill_interval ? v.quota_refill_amount / UNITS_PER_USD : null,
  };
}

/** US dollars as whole quota units. */
export function usdToUnits(usd: number | null): number {
  return Math.round((usd ?? 0) * UNITS_PER_USD);
}

const isCount = (n: number | null) => n === null || (Number.isSafeInteger(n) && n >= 0);
/** Whether an amount in USD is valid (empty counts as 0). */
export const isUsd = (n: number | null) => n === null || (Number.isFinite(n) && n >= 0);

/** The validation messages of the limit fields (empty: valid). */
export function validateLimits(f: LimitsForm): FormErrors {
  const e: FormErrors = {};
  for (const k of ["rpm", "tpm", "rpd", "concurrency", "queue"] as const)
    if (!isCount(f[k])) e[k] = t("badCount");
  if (!isUsd(f.refillUsd)) e.refillUsd = t("badUsd");
  else if (f.interval && f.refillUsd === null) e.refillUsd = t("needAmount");
  return e;
}

/** The body fields of the limits (every one: 0 clears a limit, "" removes the refill). */
export function limitsBody(f: LimitsForm): Record<string, unknown> {
  return {
    rpm_limit: f.rpm ?? 0,
    tpm_limit: f.tpm ?? 0,
    rpd_limit: f.rpd ?? 0,
    max_concurrency: f.concurrency ?? 0,
    queue_timeout_ms: f.queue ?? 0,
    quota_refill_interval: f.interval,
    quota_refill_amount: f.interval ? usdToUnits(f.refillUsd) : 0,
  };
}

/** The "Limits" fieldset. */
export function LimitsFieldset(props: {
  value: LimitsForm;
  onChange: (v: LimitsForm) => void;
  errors: FormErrors;
}) {
  const { value: f, onChange, errors } = props;
  const num = (
    k: "rpm" | "tpm" | "rpd" | "concurrency" | "queue",
    label: string,
    hint?: string,
  ) => (
    <NumberField
      label={label}
      name={k}
      min={0}
      value={f[k]}
      error={errors[k]}
      {...(hint ? { hint } : {})}
      onInput={(v) => onChange({ ...f, [k]: v })}
    />
  );
  return (
    <fieldset>
      <legend>{t("limits")}</legend>
      <p class="hint">{t("limitsHint")}</p>
      <div class="form-grid">
        {num("rpm", t("rpm"))}
        {num("tpm", t("tpm"))}
        {num("rpd", t("rpd"))}
        {num("concurrency", t("concurrency"))}
        {num("queue", t("queue"), t("queueHint"))}
      </div>
    </fieldset>
  );
}

/** The refill fields (inside the caller's "Quota" fieldset). */
export function RefillFields(props: {
  value: LimitsForm;
  onChange: (v: LimitsForm) => void;
  errors: FormErrors;
}) {
  const { value: f, onChange, errors } = props;
  return (
    <div class="form-grid">
      <SelectField<RefillInterval>
        label={t("refill")}
        name="quota_refill_interval"
        value={f.interval}
        options={[
          { value: "", label: t("refillNone") },
          { value: "1d", label: t("refill1d") },
          { value: "7d", label: t("refill7d") },
          { value: "30d", label: t("refill30d") },
          { value: "month", label: t("refillMonth") },
        ]}
        onChange={(interval) => onChange({ ...f, interval })}
      />
      <NumberField
        label={t("refillAmount")}
        name="quota_refill_amount"
        min={0}
        step="any"
        value={f.refillUsd}
        disabled={!f.interval}
        error={errors.refillUsd}
        hint={t("refillAmountHint", {
          units: isUsd(f.refillUsd) ? formatNumber(usdToUnits(f.refillUsd)) : "—",
        })}
        onInput={(refillUsd) => onChange({ ...f, refillUsd })}
      />
    </div>
  );
}

/** "60 rpm · 10k tpm · 2 at once", or "none". */
export function limitsSummary(v: LimitView): string {
  const parts: string[] = [];
  if (v.rpm_limit) parts.push(`${formatNumber(v.rpm_limit)} rpm`);
  if (v.tpm_limit) parts.push(`${formatNumber(v.tpm_limit)} tpm`);
  if (v.rpd_limit) parts.push(`${formatNumber(v.rpd_limit)} rpd`);
  if (v.max_concurrency) parts.push(t("concShort", { n: v.max_concurrency }));
  return parts.length ? parts.join(" · ") : t("none");
}

/** The refill of a row: its period and amount, and when it is next. */
export function RefillCell(props: { v: LimitView }) {
  const { v } = props;
  if (!v.quota_refill_interval) return <span class="hint">{t("none")}</span>;
  const period = {
    "1d": t("short1d"),
    "7d": t("short7d"),
    "30d": t("short30d"),
    month: t("shortMonth"),
  }[v.quota_refill_interval];
  return (
    <span>
      {formatUsd(v.quota_refill_amount)} {period}
      {v.next_refill_time > 0 && (
        <>
          <br />
          <small class="hint">{t("nextAt", { time: formatTime(v.next_refill_time, true) })}</small>
        </>
      )}
    </span>
  );
}
