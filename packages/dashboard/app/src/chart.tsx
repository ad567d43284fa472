/**
 * A time-series chart on uPlot (small, canvas, no inline styles that the CSP would block: it
 * sets styles through the DOM, which CSP allows). Follows the container's width and the theme.
 */
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

/** One line of a {@link TimeChart}. */
export interface ChartSeries {
  label: string;
  /** One value per x (null: no value there). */
  values: readonly (number | null)[];
  /** A CSS colour; defaults by position. */
  color?: string;
}

const PALETTE = ["#2f6fde", "#e0702f", "#2a9d5c", "#c23b4e", "#7c4dcc", "#8a7a1f"];

/**
 * Lines over time. `x` is seconds since the epoch. The chart has an accessible name and a text
 * summary (`summary`) for screen readers; the numbers are also in the page's tables.
 */
export function TimeChart(props: {
  title: string;
  x: readonly number[];
  series: readonly ChartSeries[];
  summary?: string;
  height?: number;
  /** Formats the y axis values. */
  yFormat?: (v: number) => string;
}) {
  const box = useRef<HTMLDivElement>(null);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const css = getComputedStyle(document.documentElement);
    const axisColor = css.getPropertyValue("--muted").trim() || "#888";
    const gridColor = css.getPropertyValue("--border").trim() || "#ddd";
    const axis: uPlot.Axis = {
      stroke: axisColor,
      grid: { stroke: gridColor, width: 1 },
      ticks: { stroke: gridColor, width: 1 },
    };
    const fmt = props.yFormat;
    const opts: uPlot.Options = {
      width: Math.max(240, el.clientWidth),
      height: props.height ?? 200,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      axes: [
        axis,
        {
          ...axis,
          ...(fmt ? { values: (_u, vals) => vals.map((v) => fmt(v)) } : {}),
          // Wide enough for the longest label (uPlot's default 50 px clips "$0.0002").
          size: (_u, values) =>
            Math.max(50, 24 + 7 * Math.max(0, ...(values ?? []).map((v) => String(v).length))),
        },
      ],
      series: [
        {},
        ...props.series.map((s, i) => ({
          label: s.label,
          stroke: s.color ?? PALETTE[i % PALETTE.length],
          width: 2,
          points: { show: props.x.length < 40 },
        })),
      ],
    };
    const data = [props.x, ...props.series.map((s) => s.values)] as uPlot.AlignedData;
    const plot = new uPlot(opts, data, el);
    const ro = new ResizeObserver(() =>
      plot.setSize({ width: Math.max(240, el.clientWidth), height: opts.height }),
    );
    ro.observe(el);
    return () => {
      ro.disconnect();
      plot.destroy();
    };
  }, [props.x, props.series, props.height, props.yFormat]);
  return (
    <figure class="chart">
      <figcaption>{props.title}</figcaption>
      <div ref={box} role="img" aria-label={props.summary ?? props.title} />
    </figure>
  );
}
