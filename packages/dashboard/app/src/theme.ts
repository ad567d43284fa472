/**
 * Light and dark themes: CSS variables switched by `data-theme` on `<html>`. Follows the
 * system until the person picks one (the pick, not a secret, stays in localStorage).
 */
import { useEffect, useState } from "preact/hooks";

export type Theme = "light" | "dark";
const THEME_KEY = "tokenpool.theme";
const listeners = new Set<() => void>();

function initialTheme(): Theme {
  try {
    const saved = localStorage.getItem(THEME_KEY);
    if (saved === "light" || saved === "dark") return saved;
  } catch {
    // storage off: follow the system
  }
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

let theme: Theme = initialTheme();
document.documentElement.dataset.theme = theme;

/** Switches between light and dark. */
export function toggleTheme(): void {
  theme = theme === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem(THEME_KEY, theme);
  } catch {
    // not remembered
  }
  for (const l of listeners) l();
}

/** The current theme; re-renders on a switch. */
export function useTheme(): Theme {
  const [, bump] = useState(0);
  useEffect(() => {
    const l = () => bump((n) => n + 1);
    listeners.add(l);
    return () => {
      listeners.delete(l);
    };
  }, []);
  return theme;
}
