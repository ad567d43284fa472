/**
 * Prometheus metrics of one gateway, in a prom-client `Registry` (`gateway.metrics.registry`,
 * served by the metrics dialect at `GET /metrics`). See docs/observability.md for every metric.
 *
 * Label cardinality is bounded by design: no key, user or credential ids unless `keyLabels` is
 * on (and then in families of their own, capped too); models, groups and providers each keep at
 * most {@link MetricsOptions.maxLabelValues} distinct values, the rest are counted as `other`.
 * A model becomes a label value only once a request for it succeeded, so that a client sending
 * made-up model names cannot fill the table.
 *
 * @module
 */
import { Registry, type RegistryContentType } from "prom-client";
import type { CredentialPool } from "../credentials/pool.js";
import { GatewayError } from "../errors.js";
import type { GatewayEmitter, GatewayEvents } from "../events.js";
import type { NewUsageRecord } from "../store/types.js";
import {
  CounterFamily,
  type CounterSeries,
  type Family,
  GaugeFamily,
  HistogramFamily,
  type HistogramSeries,
  type Labels,
} from "./families.js";

/** Options of a gateway's metrics (`createGateway({ metrics })`). */
export interface MetricsOptions {
  /** Whether the gateway keeps metrics and serves `GET /metrics`. @default true */
  enabled?: boolean;
  /**
   * The prom-client registry to register in, e.g. prom-client's global `register` beside your
   * application's own metrics. Its metric names must be free: a second gateway on the same
   * registry needs its own `prefix` (or close the first one: a gateway unregisters its metrics
   * when it closes). @default a new `Registry` per gateway
   */
  registry?: Registry<RegistryContentType>;
  /** Prefix of every metric name. @default "tokenpool_" */
  prefix?: string;
  /**
   * A bearer token that may read `GET /metrics` besides the management key (which is subject
   * to the management rules: loopback only unless `management.allowRemote`). Compared in
   * constant time; at least 16 characters. @default none
   */
  token?: string;
  /**
   * Per-key series (`{prefix}key_requests_total`, `key_tokens_total`, `key_cost_quota_units_total`,
   * labelled with the key's id). Off by default: one series per key is unbounded cardinality
   * for a gateway with many keys. @default false
   */
  keyLabels?: boolean;
  /**
   * Distinct values kept per label (models, groups, providers; keys with `keyLabels`); later
   * values are counted under `other`. @default 100
   */
  maxLabelValues?: number;
  /** Histogram bucket upper bounds (seconds), each list strictly increasing. */
  buckets?: {
    /** `request_duration_seconds`. @default DEFAULT_BUCKETS.duration */
    duration?: number[];
    /** `time_to_first_byte_seconds`. @default DEFAULT_BUCKETS.firstByte */
    firstByte?: number[];
    /** `upstream_duration_seconds`. @default DEFAULT_BUCKETS.upstream */
    upstream?: number[];
    /** `queue_wait_seconds`. @default DEFAULT_BUCKETS.queueWait */
    queueWait?: number[];
  };
}

/** The default histogram buckets (seconds): LLM calls take from milliseconds to minutes. */
export const DEFAULT_BUCKETS = {
  duration: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300],
  firstByte: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
  upstream: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120],
  queueWait: [0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
} as const;

/** {@link MetricsOptions} with the defaults filled in. */
export interface ResolvedMetricsOptions {
  enabled: boolean;
  registry: Registry<RegistryContentType> | null;
  prefix: string;
  token: string | null;
  keyLabels: boolean;
  maxLabelValues: number;
  buckets: { duration: number[]; firstByte: number[]; upstream: number[]; queueWait: number[] };
}

/**
 * Fills in the defaults of {@link MetricsOptions} and checks what a schema cannot (buckets
 * increasing, a registry that is one). Throws `INVALID_OPTIONS` naming the option.
 */
export function resolveMetricsOptions(
  input: MetricsOptions | false | undefined,
): ResolvedMetricsOptions {
  const o = input === false ? { enabled: false } : (input ?? {});
  const buckets = {
    duration: [...(o.buckets?.duration ?? DEFAULT_BUCKETS.duration)],
    firstByte: [...(o.buckets?.firstByte ?? DEFAULT_BUCKETS.firstByte)],
    upstream: [...(o.buckets?.upstream ?? DEFAULT_BUCKETS.upstream)],
    queueWait: [...(o.buckets?.queueWait ?? DEFAULT_BUCKETS.queueWait)],
  };
  for (const [name, list] of Object.entries(buckets)) {
    if (list.some((v, i) => !(v > 0) || !Number.isFinite(v) || (i > 0 && v <= list[i - 1]!)))
      throw new GatewayError(
        "INVALID_OPTIONS",
        `Invalid tokenpool option \`metrics.buckets.${name}\`: bucket bounds must be positive, finite and strictly increasing (seconds), e.g. [0.1, 0.5, 1, 5].`,
      );
  }
  const registry = o.registry ?? null;
  if (
    registry !== null &&
    (typeof registry.registerMetric !== "function" || typeof registry.metrics !== "function")
  )
    throw new GatewayError(
      "INVALID_OPTIONS",
      "Invalid tokenpool option `metrics.registry`: it is not a prom-client Registry. Pass `new Registry()` or `register` from prom-client.",
    );
  return {
    enabled: o.enabled ?? true,
    registry,
    prefix: o.prefix ?? "tokenpool_",
    token: o.token ?? null,
    keyLabels: o.keyLabels ?? false,
    maxLabelValues: o.maxLabelValues ?? 100,
    buckets,
  };
}

/** The value counted for a label value past the cap (or a model never served). */
export const OTHER = "other";

/**
 * The values of one label: at most `max` distinct ones, the rest `other`. A lookup of a known
 * value is one Map get and allocates nothing.
 */
class LabelCap {
  readonly #values = new Map<string, string>();
  constructor(private readonly max: number) {}

  /** The label value for `raw`; a new value is admitted only when `admit` and under the cap. */
  of(raw: string, admit: boolean): string {
    const known = this.#values.get(raw);
    if (known !== undefined) return known;
    if (!admit || this.#values.size >= this.max) return OTHER;
    this.#values.set(raw, raw);
    return raw;
  }
}

/** Status classes, indexed by {@link classIndex}: 0 = no answer (connection failed). */
const STATUS_CLASSES = ["error", "1xx", "2xx", "3xx", "4xx", "5xx", OTHER] as const;
function classIndex(status: number): number {
  if (status >= 100 && status < 600) return (status / 100) | 0;
  return status === 0 ? 0 : 6;
}

const TOKEN_TYPES = ["input", "output", "cached", "reasoning"] as const;

/** The series one request of a (format, model, group, status class) adds to, found once. */
interface RequestEntry {
  requests: CounterSeries;
  /** input, output, cached, reasoning: of the model. */
  tokens: readonly [CounterSeries, CounterSeries, CounterSeries, CounterSeries];
  /** Of the model and group. */
  cost: CounterSeries;
  /** Of the format and model. */
  duration: HistogramSeries;
  firstByte: HistogramSeries;
}

/** The per-key series (`keyLabels`). */
interface KeyEntry {
  key: string;
  /** By status class, created on first use. */
  requests: (CounterSeries | undefined)[];
  tokens: readonly [CounterSeries, CounterSeries, CounterSeries, CounterSeries];
  cost: CounterSeries;
}

/** What {@link GatewayMetrics} reads: the events it counts and the pool it reports on. */
export interface GatewayMetricsDeps {
  events: GatewayEmitter;
  pool: CredentialPool;
  options: ResolvedMetricsOptions;
  /** ms clock (cooldowns). @default Date.now */
  now?: () => number;
}

/**
 * A gateway's metrics: built once by `createGateway`, fed by the proxy engine (one call per
 * settled or refused request, one per upstream attempt, one per queued admission) and by the
 * gateway's events (OAuth refreshes, limit and quota refusals); the credential gauge is read
 * from the pool at scrape time.
 *
 * @example
 * ```ts
 * const metrics = new GatewayMetrics({ events, pool, options: resolveMetricsOptions({}) });
 * metrics.settled(record, true);
 * const text = await metrics.registry.metrics();
 * ```
 */
export class GatewayMetrics {
  /** The registry the metrics are in (the option's, else one of this gateway's own). */
  readonly registry: Registry<RegistryContentType>;
  readonly enabled: boolean;
  /** The `metrics.token` option (null: only the management key reads `/metrics`). */
  readonly token: string | null;
  readonly #families: Family[] = [];
  /** The names the families were registered under. */
  #names: string[] = [];
  readonly #ownRegistry: boolean;
  readonly #unsubscribe: (() => void)[] = [];
  readonly #now: () => number;

  readonly #models: LabelCap;
  readonly #groups: LabelCap;
  readonly #providers: LabelCap;
  readonly #keys: LabelCap;

  #requests!: CounterFamily;
  #tokens!: CounterFamily;
  #cost!: CounterFamily;
  #errors!: CounterFamily;
  #duration!: HistogramFamily;
  #firstByte!: HistogramFamily;
  #upstream!: HistogramFamily;
  #retries!: CounterSeries;
  #failovers!: [CounterSeries, CounterSeries];
  #refreshes!: CounterFamily;
  #limitRefusals!: CounterFamily;
  #quotaRefusals!: CounterFamily;
  #queueWait!: [HistogramSeries, HistogramSeries];
  #keyRequests: CounterFamily | null = null;
  #keyTokens: CounterFamily | null = null;
  #keyCost: CounterFamily | null = null;

  /** format → model → group → entries by status class. */
  readonly #entries = new Map<string, Map<string, Map<string, (RequestEntry | undefined)[]>>>();
  /** format → error type → series. */
  readonly #errorSeries = new Map<string, Map<string, CounterSeries>>();
  /** provider → series by status class. */
  readonly #upstreamSeries = new Map<string, (HistogramSeries | undefined)[]>();
  readonly #keyEntries = new Map<number, KeyEntry>();

  constructor(deps: GatewayMetricsDeps) {
    const { options } = deps;
    this.enabled = options.enabled;
    this.token = options.token;
    this.#ownRegistry = options.registry === null;
    this.registry = options.registry ?? new Registry();
    this.#now = deps.now ?? Date.now;
    const cap = options.maxLabelValues;
    this.#models = new LabelCap(cap);
    this.#groups = new LabelCap(cap);
    this.#providers = new LabelCap(cap);
    this.#keys = new LabelCap(cap);
    if (!this.enabled) return;
    this.#define(deps);
    const taken = this.#families.filter((f) => this.registry.getSingleMetric(f.name) !== undefined);
    if (taken.length > 0)
      throw new GatewayError(
        "INVALID_OPTIONS",
        `Invalid tokenpool option \`metrics.registry\`: it already has a metric named ${taken[0]!.name} (another gateway on the same registry?). Give each gateway its own registry (the default), or its own \`metrics.prefix\`, or close the other gateway first.`,
      );
    // prom-client's registry takes any object with a name and `get()`; its types want its classes.
    this.#names = this.#families.map((f) => f.name);
    for (const f of this.#families)
      this.registry.registerMetric(f as unknown as Parameters<Registry["registerMetric"]>[0]);
    this.#listen(deps.events);
  }

  #define(deps: GatewayMetricsDeps): void {
    const { prefix, buckets, keyLabels } = deps.options;
    const add = <F extends Family>(f: F): F => {
      this.#families.push(f);
      return f;
    };
    const counter = (name: string, help: string, labels: readonly string[] = []) =>
      add(new CounterFamily(`${prefix}${name}`, help, labels));
    this.#requests = counter(
      "requests_total",
      "Proxied requests, by client format, model, status class and group (refusals included).",
      ["format", "model", "status_class", "group"],
    );
    this.#errors = counter(
      "request_errors_total",
      "Failed proxied requests, by client format and failure type (the request log's error type).",
      ["format", "type"],
    );
    this.#tokens = counter("tokens_total", "Tokens used, by type and model.", ["type", "model"]);
    this.#cost = counter(
      "cost_quota_units_total",
      "Quota units charged (500000 = 1 USD), by model and group.",
      ["model", "group"],
    );
    this.#duration = add(
      new HistogramFamily(
        `${prefix}request_duration_seconds`,
        "Duration of proxied requests that passed admission and quota, to the last byte of the answer.",
        ["format", "model"],
        buckets.duration,
      ),
    );
    this.#firstByte = add(
      new HistogramFamily(
        `${prefix}time_to_first_byte_seconds`,
        "Time from a request's arrival to the upstream answer's first byte (a stream's first chunk).",
        ["format", "model"],
        buckets.firstByte,
      ),
    );
    this.#upstream = add(
      new HistogramFamily(
        `${prefix}upstream_duration_seconds`,
        "Upstream calls, from sending to the answer's headers, by provider and status class (error = no answer).",
        ["provider", "status_class"],
        buckets.upstream,
      ),
    );
    this.#retries = counter(
      "upstream_retries_total",
      "Upstream attempts after a request's first (another credential after a 429, 5xx, auth or network failure).",
    ).series();
    const failovers = counter(
      "failovers_total",
      "Requests that tried more than one credential, by whether one served them.",
      ["result"],
    );
    this.#failovers = [
      failovers.series({ result: "served" }),
      failovers.series({ result: "failed" }),
    ];
    const pool = deps.pool;
    const now = this.#now;
    add(
      new GaugeFamily(
        `${prefix}credentials`,
        "Upstream credentials by provider and state: active, cooling (a cooldown running for some model) or disabled.",
        ["provider", "state"],
        () => credentialStates(pool, now(), this.#providers),
      ),
    );
    this.#refreshes = counter(
      "oauth_refreshes_total",
      "OAuth access token refreshes, by provider and result (success, failure).",
      ["provider", "result"],
    );
    this.#limitRefusals = counter(
      "limit_refusals_total",
      "Refusals for a rate limit or concurrency cap, by scope (key, user; credential = skipped in selection) and limit.",
      ["scope", "limit"],
    );
    this.#quotaRefusals = counter(
      "quota_refusals_total",
      "Requests refused because the key's or its owner's quota was used up, by reason (key_quota, user_quota).",
      ["reason"],
    );
    const queue = add(
      new HistogramFamily(
        `${prefix}queue_wait_seconds`,
        "Time requests of queued concurrency limits (queueTimeoutMs) waited for admission, by result (admitted, refused).",
        ["result"],
        buckets.queueWait,
      ),
    );
    this.#queueWait = [queue.series({ result: "admitted" }), queue.series({ result: "refused" })];
    if (keyLabels) {
      this.#keyRequests = counter(
        "key_requests_total",
        "Proxied requests by downstream key id and status class (metrics.keyLabels).",
        ["key", "status_class"],
      );
      this.#keyTokens = counter(
        "key_tokens_total",
        "Tokens used by downstream key id and type (metrics.keyLabels).",
        ["key", "type"],
      );
      this.#keyCost = counter(
        "key_cost_quota_units_total",
        "Quota units charged by downstream key id (metrics.keyLabels).",
        ["key"],
      );
    }
  }

  #listen(events: GatewayEmitter): void {
    const on = <E extends keyof GatewayEvents>(name: E, fn: GatewayEvents[E]) => {
      events.on(name, fn as never);
      this.#unsubscribe.push(() => events.off(name, fn as never));
    };
    on("credential.refreshed", ({ provider }) => {
      this.#refreshes.series({ provider: this.#providers.of(provider, true), result: "success" })
        .value++;
    });
    on("credential.refresh_failed", ({ provider }) => {
      this.#refreshes.series({ provider: this.#providers.of(provider, true), result: "failure" })
        .value++;
    });
    on("limit.refused", ({ scope, limit }) => {
      this.#limitRefusals.series({ scope, limit }).value++;
    });
    on("key.exhausted", ({ reason }) => {
      this.#quotaRefusals.series({ reason }).value++;
    });
  }

  /**
   * Counts one request from its usage record, once, when it ends: settled after it was
   * forwarded (or failed on the way: `forwarded` true, durations observed too), or refused
   * before (admission, quota: `forwarded` false).
   */
  settled(r: NewUsageRecord, forwarded: boolean): void {
    const format = r.format || "openai";
    const e = this.#entry(
      format,
      this.#models.of(r.model || "unknown", r.success),
      r.group,
      r.status,
    );
    e.requests.value++;
    const t = e.tokens;
    t[0].value += r.inputTokens;
    t[1].value += r.outputTokens;
    t[2].value += r.cachedTokens;
    t[3].value += r.reasoningTokens;
    e.cost.value += r.quota;
    if (forwarded) {
      e.duration.observe(r.durationMs / 1000);
      if (r.firstTokenMs != null) e.firstByte.observe(r.firstTokenMs / 1000);
    }
    const retries = r.retries ?? 0;
    if (retries > 0) {
      this.#retries.value += retries;
      this.#failovers[r.success ? 0 : 1].value++;
    }
    if (!r.success) this.#error(format, r.errorType ?? "internal").value++;
    if (this.#keyRequests !== null && r.keyId !== null) this.#keyed(r);
  }

  /** One upstream call: its provider, the status it answered (0: none) and how long it took (ms). */
  upstream(provider: string, status: number, ms: number): void {
    const label = this.#providers.of(provider, true);
    let byClass = this.#upstreamSeries.get(label);
    if (!byClass) {
      byClass = [];
      this.#upstreamSeries.set(label, byClass);
    }
    const i = classIndex(status);
    let s = byClass[i];
    if (!s) {
      s = this.#upstream.series({ provider: label, status_class: STATUS_CLASSES[i]! });
      byClass[i] = s;
    }
    s.observe(ms / 1000);
  }

  /** A request of a queued concurrency limit was admitted or refused after `ms` in admission. */
  queueWait(ms: number, admitted: boolean): void {
    this.#queueWait[admitted ? 0 : 1].observe(ms / 1000);
  }

  /** Stops counting events and, on a registry passed in the options, unregisters the metrics. */
  close(): void {
    for (const off of this.#unsubscribe.splice(0)) off();
    if (this.#ownRegistry) return;
    // By the names registered under: an OpenMetrics registry renames counters as it scrapes.
    for (const [i, f] of this.#families.entries()) {
      const name = this.#names[i]!;
      if ((this.registry.getSingleMetric(name) as unknown) === f)
        this.registry.removeSingleMetric(name);
    }
  }

  #entry(
    format: string,
    model: string,
    rawGroup: string | undefined,
    status: number,
  ): RequestEntry {
    let byModel = this.#entries.get(format);
    if (!byModel) {
      byModel = new Map();
      this.#entries.set(format, byModel);
    }
    let byGroup = byModel.get(model);
    if (!byGroup) {
      byGroup = new Map();
      byModel.set(model, byGroup);
    }
    const group = this.#groups.of(rawGroup || "default", true);
    let byClass = byGroup.get(group);
    if (!byClass) {
      byClass = [];
      byGroup.set(group, byClass);
    }
    const i = classIndex(status);
    const found = byClass[i];
    if (found) return found;
    const tokens = TOKEN_TYPES.map((type) => this.#tokens.series({ type, model }));
    const entry: RequestEntry = {
      requests: this.#requests.series({ format, model, status_class: STATUS_CLASSES[i]!, group }),
      tokens: tokens as unknown as RequestEntry["tokens"],
      cost: this.#cost.series({ model, group }),
      duration: this.#duration.series({ format, model }),
      firstByte: this.#firstByte.series({ format, model }),
    };
    byClass[i] = entry;
    return entry;
  }

  #error(format: string, type: string): CounterSeries {
    let byType = this.#errorSeries.get(format);
    if (!byType) {
      byType = new Map();
      this.#errorSeries.set(format, byType);
    }
    let s = byType.get(type);
    if (!s) {
      s = this.#errors.series({ format, type });
      byType.set(type, s);
    }
    return s;
  }

  #keyed(r: NewUsageRecord): void {
    const id = r.keyId as number;
    let e = this.#keyEntries.get(id);
    if (!e) {
      const key = this.#keys.of(String(id), true);
      e = key === OTHER ? this.#keyEntry(OTHER) : this.#keyEntry(key);
      // Keys past the cap are not remembered by id: the map stays bounded by the cap.
      if (key !== OTHER) this.#keyEntries.set(id, e);
    }
    const i = classIndex(r.status);
    let requests = e.requests[i];
    if (!requests) {
      requests = this.#keyRequests!.series({ key: e.key, status_class: STATUS_CLASSES[i]! });
      e.requests[i] = requests;
    }
    requests.value++;
    e.tokens[0].value += r.inputTokens;
    e.tokens[1].value += r.outputTokens;
    e.tokens[2].value += r.cachedTokens;
    e.tokens[3].value += r.reasoningTokens;
    e.cost.value += r.quota;
  }

  #otherKey: KeyEntry | null = null;

  #keyEntry(key: string): KeyEntry {
    if (key === OTHER && this.#otherKey) return this.#otherKey;
    const tokens = TOKEN_TYPES.map((type) => this.#keyTokens!.series({ key, type }));
    const e: KeyEntry = {
      key,
      requests: [],
      tokens: tokens as unknown as KeyEntry["tokens"],
      cost: this.#keyCost!.series({ key }),
    };
    if (key === OTHER) this.#otherKey = e;
    return e;
  }
}

/** The credential gauge's values: every provider's count in each state (zeros included). */
function credentialStates(
  pool: CredentialPool,
  now: number,
  providers: LabelCap,
): { labels: Labels; value: number }[] {
  const counts = new Map<string, [number, number, number]>();
  for (const c of pool.list()) {
    const provider = providers.of(c.provider, true);
    let n = counts.get(provider);
    if (!n) {
      n = [0, 0, 0];
      counts.set(provider, n);
    }
    if (!c.enabled) n[2]++;
    else if (Object.values(c.state.cooldowns).some((until) => until > now)) n[1]++;
    else n[0]++;
  }
  const out: { labels: Labels; value: number }[] = [];
  for (const [provider, [active, cooling, disabled]] of counts) {
    out.push({ labels: { provider, state: "active" }, value: active });
    out.push({ labels: { provider, state: "cooling" }, value: cooling });
    out.push({ labels: { provider, state: "disabled" }, value: disabled });
  }
  return out;
}
