/**
 * A whole number of seconds in Go's duration format, which CLIProxyAPI prints and OpenAI's
 * `x-ratelimit-reset-*` headers use: `7s`, `6m0s`, `1h2m3s`.
 *
 * @example
 * ```ts
 * goDuration(3723); // "1h2m3s"
 * ```
 */
export function goDuration(totalSeconds: number): string {
  const h = Math.floor(totalSeconds / 3600);
  const m = Math.floor((totalSeconds % 3600) / 60);
  const s = totalSeconds % 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}
