/**
 * Metric families that a prom-client `Registry` exposes like its own metrics (it asks each
 * registered metric for `get()` at scrape time), but whose hot path is a plain number field.
 *
 * Why not prom-client's `Counter` and `Histogram`: every `inc()` or `observe()` of theirs, even
 * on a child from `labels()`, validates the labels and joins them into a hash string, about 1 µs
 * per call on a small shared machine; a request bumps about ten series, which would cost more
 * than the whole budget of metrics (5 % of a request's CPU). Here the label set of a series is
 * fixed when the series is created, the gateway keeps the series objects it needs, and a request
 * only adds to their fields; the label objects and the text are built when Prometheus scrapes.
 *
 * @module
 */

/** Label names to values of one series. */
export type Labels = Readonly<Record<string, string>>;

/** One value of a family as prom-client's `Registry` prints it. */
interface ExportedValue {
  value: number;
  labels: Labels;
  metricName?: string;
}

/** What prom-client's `Registry` reads of a metric: name, help, type, and `get()`. */
interface ExportedFamily {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  values: ExportedValue[];
  aggregator: "sum";
}

/** The part shared by every family: what the registry calls. */
export abstract class Family {
  /** How prom-client's cluster aggregator merges workers' values. */
  readonly aggregator = "sum";
  /** The label names, in the order series are keyed by. */
  readonly labelNames: readonly string[];

  constructor(
    /** The full metric name (the prefix included). Mutable: prom-client renames counters for OpenMetrics. */
    public name: string,
    readonly help: string,
    readonly type: "counter" | "gauge" | "histogram",
    labelNames: readonly string[],
  ) {
    this.labelNames = labelNames;
  }

  /** The family's current values (called by the registry at scrape time). */
  async get(): Promise<ExportedFamily> {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      values: this.values(),
      aggregator: this.aggregator,
    };
  }

  protected abstract values(): ExportedValue[];

  /** Forgets every series (prom-client's `registry.resetMetrics()`). */
  abstract reset(): void;

  /** The key of a label set (label values in name order; only on series creation). */
  protected keyOf(labels: Labels): string {
    let key = "";
    for (const name of this.labelNames) key += `${labels[name] ?? ""}\u0000`;
    return key;
  }
}

/** One series of a counter: add to `value`. */
export interface CounterSeries {
  readonly labels: Labels;
  value: number;
}

/** A counter family (monotonic sums). */
export class CounterFamily extends Family {
  #series = new Map<string, CounterSeries>();

  constructor(name: string, help: string, labelNames: readonly string[] = []) {
    super(name, help, "counter", labelNames);
  }

  /** The series of a label set, created at 0 on first use. */
  series(labels: Labels = {}): CounterSeries {
    const key = this.keyOf(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = { labels: { ...labels }, value: 0 };
      this.#series.set(key, s);
    }
    return s;
  }

  protected values(): ExportedValue[] {
    const out: ExportedValue[] = [];
    for (const s of this.#series.values()) out.push({ value: s.value, labels: s.labels });
    return out;
  }

  reset(): void {
    // Series objects are held by the gateway's caches: zero them rather than drop them.
    for (const s of this.#series.values()) s.value = 0;
  }
}

/** A gauge family whose values are computed at scrape time. */
export class GaugeFamily extends Family {
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    private readonly collect: () => { labels: Labels; value: number }[],
  ) {
    super(name, help, "gauge", labelNames);
  }

  protected values(): ExportedValue[] {
    return this.collect();
  }

  reset(): void {}
}

/** One series of a histogram: {@link HistogramSeries.observe} a value. */
export class HistogramSeries {
  /** Observations per bucket (not cumulative); the last one is `+Inf`. */
  readonly counts: Float64Array;
  sum = 0;
  count = 0;

  constructor(
    readonly labels: Labels,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(value: number): void {
    const { bounds } = this;
    let i = 0;
    while (i < bounds.length && value > bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
    this.count++;
  }

  clear(): void {
    this.counts.fill(0);
    this.sum = 0;
    this.count = 0;
  }
}

/** A histogram family: buckets (upper bounds, `le`), `_sum` and `_count` per series. */
export class HistogramFamily extends Family {
  #series = new Map<string, HistogramSeries>();
  /** The `le` label values, formatted once. */
  readonly #le: string[];

  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    readonly bounds: readonly number[],
  ) {
    super(name, help, "histogram", labelNames);
    this.#le = [...bounds.map(String), "+Inf"];
  }

  /** The series of a label set, created empty on first use. */
  series(labels: Labels = {}): HistogramSeries {
    const key = this.keyOf(labels);
    let s = this.#series.get(key);
    if (!s) {
      s = new HistogramSeries({ ...labels }, this.bounds);
      this.#series.set(key, s);
    }
    return s;
  }

  protected values(): ExportedValue[] {
    const out: ExportedValue[] = [];
    const bucket = `${this.name}_bucket`;
    for (const s of this.#series.values()) {
      let acc = 0;
      for (let i = 0; i < this.#le.length; i++) {
        acc += s.counts[i]!;
        out.push({ value: acc, labels: { ...s.labels, le: this.#le[i]! }, metricName: bucket });
      }
      out.push({ value: s.sum, labels: s.labels, metricName: `${this.name}_sum` });
      out.push({ value: s.count, labels: s.labels, metricName: `${this.name}_count` });
    }
    return out;
  }

  reset(): void {
    for (const s of this.#series.values()) s.clear();
  }
}
