/**
 * English and Simplified Chinese. Each page registers its own messages with {@link messages}
 * (both languages, the same keys: the type checks it), so pages never edit a shared table.
 * The language follows the browser until the person picks one; the pick is not a secret, so
 * it may stay in localStorage.
 */
import { useEffect, useState } from "preact/hooks";

export type Lang = "en" | "zh";

const LANG_KEY = "tokenpool.lang";
const listeners = new Set<() => void>();

function initialLang(): Lang {
  try {
    const saved = localStorage.getItem(LANG_KEY);
    if (saved === "en" || saved === "zh") return saved;
  } catch {
    // storage may be off; the browser's language decides
  }
  const langs = navigator.languages?.length ? navigator.languages : [navigator.language];
  for (const l of langs) {
    const lower = l.toLowerCase();
    if (lower.startsWith("zh")) return "zh";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

let lang: Lang = initialLang();
document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";

/** The current language. */
export function getLang(): Lang {
  return lang;
}

/** Switches the language (and remembers the pick). */
export function setLang(next: Lang): void {
  lang = next;
  document.documentElement.lang = next === "zh" ? "zh-CN" : "en";
  try {
    localStorage.setItem(LANG_KEY, next);
  } catch {
    // not remembered; fine
  }
  for (const l of listeners) l();
}

/** Re-renders the calling component when the language changes; returns the language. */
export function useLang(): Lang {
  const [, bump] = useState(0);
  useEffect(() => {
    const l = () => bump((n) => n + 1);
    listeners.add(l);
    return () => {
      listeners.delete(l);
    };
  }, []);
  return lang;
}

type Vars = Record<string, string | number>;

function fill(text: string, vars?: Vars): string {
  if (!vars) return text;
  return text.replace(/\{(\w+)\}/g, (m, k: string) => (k in vars ? String(vars[k]) : m));
}

/**
 * A page's messages in both languages; returns its `t(key, vars?)`. `{name}` in a message is
 * filled from `vars`.
 *
 * @example
 * const t = messages({ en: { title: "Keys", count: "{n} keys" }, zh: { title: "令牌", count: "{n} 个令牌" } });
 * t("count", { n: 3 });
 */
export function messages<K extends string>(table: {
  en: Record<K, string>;
  zh: Record<K, string>;
}): (key: K, vars?: Vars) => string {
  return (key, vars) => fill(table[lang][key] ?? table.en[key] ?? key, vars);
}

/** Formats a number for the current language. */
export function formatNumber(n: number, digits = 0): string {
  return n.toLocaleString(lang === "zh" ? "zh-CN" : "en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: 0,
  });
}

/** Formats a time (ms since the epoch, or seconds when `seconds`) for the current language. */
export function formatTime(t: number, seconds = false): string {
  if (!t || t < 0) return "—";
  return new Date(seconds ? t * 1000 : t).toLocaleString(lang === "zh" ? "zh-CN" : "en-US", {
    hour12: false,
  });
}

/** Quota units as US dollars (500,000 units = 1 USD, new-api's rate). */
export function formatUsd(quota: number): string {
  return `$${formatNumber(quota / 500_000, quota !== 0 && Math.abs(quota) < 5000 ? 4 : 2)}`;
}
