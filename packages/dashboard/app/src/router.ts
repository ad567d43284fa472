/**
 * Hash routing (`#/keys?q=abc`): the server serves one file, and nothing a page puts in its
 * address is a secret (the session is never in the URL).
 */
import { useEffect, useState } from "preact/hooks";

/** The current route: the page name and its query. */
export interface RouteState {
  page: string;
  query: URLSearchParams;
}

function read(): RouteState {
  const hash = location.hash.replace(/^#\/?/, "");
  const [page = "", search = ""] = hash.split("?");
  return { page, query: new URLSearchParams(search) };
}

/** The current route; re-renders on navigation. */
export function useRoute(): RouteState {
  const [route, setRoute] = useState(read);
  useEffect(() => {
    const on = () => setRoute(read());
    window.addEventListener("hashchange", on);
    return () => window.removeEventListener("hashchange", on);
  }, []);
  return route;
}

/** Goes to a page (`navigate("logs", { key_name: "a" })`). */
export function navigate(page: string, query?: Record<string, string | number | undefined>): void {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {}))
    if (v !== undefined && v !== "") q.set(k, String(v));
  const s = q.toString();
  location.hash = `#/${page}${s ? `?${s}` : ""}`;
}

/** The href of a page, for links. */
export function href(page: string): string {
  return `#/${page}`;
}
