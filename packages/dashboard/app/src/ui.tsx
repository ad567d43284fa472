/**
 * The console's building blocks. Every input has a visible label, every dialog is a native
 * `<dialog>` (focus moves in and back, Escape closes), every destructive action goes through
 * {@link confirm}. Pages build from these so that they look and behave alike.
 */
import type { ComponentChildren, JSX } from "preact";
import { render } from "preact";
import { useCallback, useEffect, useId, useRef, useState } from "preact/hooks";
import { errorText } from "./api.ts";
import { formatNumber, messages } from "./i18n.ts";

const t = messages({
  en: {
    loading: "Loading…",
    cancel: "Cancel",
    confirm: "Confirm",
    close: "Close",
    previous: "Previous",
    next: "Next",
    page: "Page {page} of {pages}",
    total: "{total} in all",
    empty: "Nothing here yet.",
    retry: "Retry",
    pageSize: "Per page",
    selectAll: "Select all on this page",
    selectRow: "Select {name}",
  },
  zh: {
    loading: "加载中…",
    cancel: "取消",
    confirm: "确认",
    close: "关闭",
    previous: "上一页",
    next: "下一页",
    page: "第 {page} / {pages} 页",
    total: "共 {total} 条",
    empty: "暂无数据。",
    retry: "重试",
    pageSize: "每页",
    selectAll: "全选本页",
    selectRow: "选择 {name}",
  },
});

type ButtonProps = JSX.HTMLAttributes<HTMLButtonElement> & {
  variant?: "primary" | "danger" | "plain";
  type?: "button" | "submit";
  disabled?: boolean;
};

/** A button; `type="button"` unless said otherwise. */
export function Button({ variant = "plain", type = "button", class: cls, ...rest }: ButtonProps) {
  return <button type={type} class={`btn btn-${variant} ${cls ?? ""}`} {...rest} />;
}

/** Props shared by the labelled fields. */
interface FieldBase {
  label: string;
  /** A hint under the field (what the value means, its unit). */
  hint?: string;
  /** A validation message (shown, and set as the field's accessible error). */
  error?: string | undefined;
  name?: string;
  required?: boolean;
  disabled?: boolean;
}

function FieldShell(props: {
  id: string;
  label: string;
  hint?: string | undefined;
  error?: string | undefined;
  children: ComponentChildren;
}) {
  return (
    <div class={`field ${props.error ? "field-invalid" : ""}`}>
      <label for={props.id}>{props.label}</label>
      {props.children}
      {props.hint && (
        <small id={`${props.id}-hint`} class="hint">
          {props.hint}
        </small>
      )}
      {props.error && (
        <small id={`${props.id}-error`} class="error-text" role="alert">
          {props.error}
        </small>
      )}
    </div>
  );
}

function describedBy(id: string, hint?: string, error?: string): string | undefined {
  const ids = [hint ? `${id}-hint` : "", error ? `${id}-error` : ""].filter(Boolean);
  return ids.length ? ids.join(" ") : undefined;
}

/** A labelled text input. */
export function TextField(
  props: FieldBase & {
    value: string;
    onInput: (v: string) => void;
    type?: "text" | "password" | "url" | "email" | "search" | "datetime-local";
    placeholder?: string;
    autocomplete?: string;
  },
) {
  const id = useId();
  return (
    <FieldShell id={id} label={props.label} hint={props.hint} error={props.error}>
      <input
        id={id}
        name={props.name}
        type={props.type ?? "text"}
        value={props.value}
        placeholder={props.placeholder}
        required={props.required}
        disabled={props.disabled}
        autocomplete={props.autocomplete ?? "off"}
        spellcheck={false}
        aria-invalid={props.error ? true : undefined}
        aria-describedby={describedBy(id, props.hint, props.error)}
        onInput={(e) => props.onInput((e.currentTarget as HTMLInputElement).value)}
      />
    </FieldShell>
  );
}

/** A labelled number input; an empty box is `null`. */
export function NumberField(
  props: FieldBase & {
    value: number | null;
    onInput: (v: number | null) => void;
    min?: number;
    max?: number;
    step?: number | "any";
  },
) {
  const id = useId();
  return (
    <FieldShell id={id} label={props.label} hint={props.hint} error={props.error}>
      <input
        id={id}
        name={props.name}
        type="number"
        inputMode="decimal"
        value={props.value ?? ""}
        min={props.min}
        max={props.max}
        step={props.step ?? 1}
        required={props.required}
        disabled={props.disabled}
        aria-invalid={props.error ? true : undefined}
        aria-describedby={describedBy(id, props.hint, props.error)}
        onInput={(e) => {
          const raw = (e.currentTarget as HTMLInputElement).value;
          props.onInput(raw === "" ? null : Number(raw));
        }}
      />
    </FieldShell>
  );
}

/** A labelled select. */
export function SelectField<V extends string>(
  props: FieldBase & {
    value: V;
    onChange: (v: V) => void;
    options: readonly { value: V; label: string }[];
  },
) {
  const id = useId();
  return (
    <FieldShell id={id} label={props.label} hint={props.hint} error={props.error}>
      <select
        id={id}
        name={props.name}
        value={props.value}
        disabled={props.disabled}
        aria-describedby={describedBy(id, props.hint, props.error)}
        onChange={(e) => props.onChange((e.currentTarget as HTMLSelectElement).value as V)}
      >
        {props.options.map((o) => (
          <option key={o.value} value={o.value}>
            {o.label}
          </option>
        ))}
      </select>
    </FieldShell>
  );
}

/** A labelled multi-line text box. */
export function TextAreaField(
  props: FieldBase & {
    value: string;
    onInput: (v: string) => void;
    rows?: number;
    placeholder?: string;
    mono?: boolean;
  },
) {
  const id = useId();
  return (
    <FieldShell id={id} label={props.label} hint={props.hint} error={props.error}>
      <textarea
        id={id}
        name={props.name}
        rows={props.rows ?? 3}
        value={props.value}
        placeholder={props.placeholder}
        disabled={props.disabled}
        spellcheck={false}
        class={props.mono ? "mono" : undefined}
        aria-invalid={props.error ? true : undefined}
        aria-describedby={describedBy(id, props.hint, props.error)}
        onInput={(e) => props.onInput((e.currentTarget as HTMLTextAreaElement).value)}
      />
    </FieldShell>
  );
}

/** A labelled checkbox. */
export function CheckboxField(props: {
  label: string;
  checked: boolean;
  onChange: (v: boolean) => void;
  hint?: string;
  disabled?: boolean;
  name?: string;
}) {
  const id = useId();
  return (
    <div class="field field-check">
      <input
        id={id}
        name={props.name}
        type="checkbox"
        checked={props.checked}
        disabled={props.disabled}
        aria-describedby={props.hint ? `${id}-hint` : undefined}
        onChange={(e) => props.onChange((e.currentTarget as HTMLInputElement).checked)}
      />
      <label for={id}>{props.label}</label>
      {props.hint && (
        <small id={`${id}-hint`} class="hint">
          {props.hint}
        </small>
      )}
    </div>
  );
}

/**
 * A modal dialog (native `<dialog>`: focus moves into it and back, Escape closes). Rendered
 * while `open`; `onClose` is called on Escape, the close button and a click outside.
 */
export function Dialog(props: {
  open: boolean;
  title: string;
  onClose: () => void;
  children: ComponentChildren;
  /** The dialog's buttons, at its foot. */
  actions?: ComponentChildren;
  wide?: boolean;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  const titleId = useId();
  useEffect(() => {
    const d = ref.current;
    if (!d || !props.open) return;
    // The element that opened the dialog gets focus back when it closes (the dialog leaves the
    // DOM instead of closing, so the browser would not restore it by itself).
    const opener = document.activeElement as HTMLElement | null;
    if (!d.open) d.showModal();
    return () => {
      if (d.open) d.close();
      if (opener?.isConnected) opener.focus();
    };
  }, [props.open]);
  if (!props.open) return null;
  return (
    <dialog
      ref={ref}
      class={`dialog ${props.wide ? "dialog-wide" : ""}`}
      aria-labelledby={titleId}
      onCancel={(e) => {
        e.preventDefault();
        props.onClose();
      }}
    >
      <header class="dialog-head">
        <h2 id={titleId}>{props.title}</h2>
        <button
          type="button"
          class="btn btn-plain icon"
          aria-label={t("close")}
          onClick={props.onClose}
        >
          ×
        </button>
      </header>
      <div class="dialog-body">{props.children}</div>
      {props.actions && <footer class="dialog-actions">{props.actions}</footer>}
    </dialog>
  );
}

/**
 * Asks before a destructive action; resolves true when confirmed. Opens its own dialog (no
 * `window.confirm`, which cannot be styled, translated or tested alike).
 *
 * @example
 * if (await confirm({ title: "Delete 3 keys?", body: "This cannot be undone.", danger: true })) ...
 */
export function confirm(opts: {
  title: string;
  body?: string;
  confirmLabel?: string;
  danger?: boolean;
}): Promise<boolean> {
  return new Promise((resolve) => {
    const host = document.createElement("div");
    document.body.append(host);
    const previous = document.activeElement as HTMLElement | null;
    const done = (ok: boolean) => {
      render(null, host);
      host.remove();
      previous?.focus?.();
      resolve(ok);
    };
    render(
      <Dialog
        open
        title={opts.title}
        onClose={() => done(false)}
        actions={
          <>
            <Button onClick={() => done(false)}>{t("cancel")}</Button>
            <Button
              variant={opts.danger ? "danger" : "primary"}
              data-testid="confirm-ok"
              onClick={() => done(true)}
            >
              {opts.confirmLabel ?? t("confirm")}
            </Button>
          </>
        }
      >
        {opts.body && <p>{opts.body}</p>}
      </Dialog>,
      host,
    );
  });
}

/** A message box: `error` (role alert), `success` or `info` (role status). */
export function Notice(props: {
  kind?: "error" | "success" | "info";
  children: ComponentChildren;
  onRetry?: () => void;
}) {
  const kind = props.kind ?? "info";
  return (
    <div class={`notice notice-${kind}`} role={kind === "error" ? "alert" : "status"}>
      <span>{props.children}</span>
      {props.onRetry && (
        <Button variant="plain" onClick={props.onRetry}>
          {t("retry")}
        </Button>
      )}
    </div>
  );
}

/** A busy indicator. */
export function Spinner(props: { label?: string }) {
  return (
    <p class="spinner" role="status" aria-live="polite">
      {props.label ?? t("loading")}
    </p>
  );
}

/** A small coloured label (a state). */
export function Badge(props: {
  tone?: "ok" | "warn" | "bad" | "muted";
  children: ComponentChildren;
  title?: string;
}) {
  return (
    <span class={`badge badge-${props.tone ?? "muted"}`} title={props.title}>
      {props.children}
    </span>
  );
}

/** A page's title and its main actions. */
export function PageHeader(props: { title: string; children?: ComponentChildren }) {
  return (
    <div class="page-head">
      <h1 tabIndex={-1} id="page-title">
        {props.title}
      </h1>
      {props.children && <div class="page-actions">{props.children}</div>}
    </div>
  );
}

/** The state of one async load. */
export interface AsyncState<T> {
  data: T | undefined;
  error: string | undefined;
  loading: boolean;
  /** Loads again (keeps the old data while loading). */
  reload: () => void;
}

/**
 * Runs `load` now and whenever `deps` change (and on `reload()`); the last answer wins. With
 * `pollMs`, loads again on that period while the page is visible.
 */
export function useAsync<T>(
  load: (signal: AbortSignal) => Promise<T>,
  deps: readonly unknown[],
  pollMs?: number,
): AsyncState<T> {
  const [state, setState] = useState<{ data?: T; error?: string; loading: boolean }>({
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  useEffect(() => {
    const ctrl = new AbortController();
    setState((s) => ({ ...s, loading: true }));
    load(ctrl.signal).then(
      (data) => {
        if (!ctrl.signal.aborted) setState({ data, loading: false });
      },
      (e: unknown) => {
        if (!ctrl.signal.aborted)
          setState((s) => ({
            ...s,
            error: errorText(e),
            loading: false,
          }));
      },
    );
    return () => ctrl.abort();
  }, [...deps, tick]);
  useEffect(() => {
    if (!pollMs) return;
    const id = setInterval(() => {
      if (document.visibilityState === "visible") reload();
    }, pollMs);
    return () => clearInterval(id);
  }, [pollMs, reload]);
  return { data: state.data, error: state.error, loading: state.loading, reload };
}

/** One column of a {@link DataTable}. */
export interface Column<R> {
  key: string;
  label: string;
  render: (row: R) => ComponentChildren;
  /** Right-aligned numbers. */
  numeric?: boolean;
  /** Hidden on narrow screens. */
  optional?: boolean;
}

/**
 * A table of rows, with optional row selection (checkboxes with labels). Scrolls sideways on a
 * narrow screen instead of overflowing the page.
 */
export function DataTable<R>(props: {
  caption: string;
  columns: readonly Column<R>[];
  rows: readonly R[];
  rowKey: (row: R) => string | number;
  /** Row selection: the selected keys and the setter. */
  selected?: ReadonlySet<string | number>;
  onSelect?: (next: Set<string | number>) => void;
  /** A short name of a row for the selection checkbox's label. */
  rowLabel?: (row: R) => string;
  empty?: string;
}) {
  const { rows, selected, onSelect } = props;
  const allOn = rows.length > 0 && rows.every((r) => selected?.has(props.rowKey(r)));
  return (
    // A scrolling region must be reachable by keyboard (WCAG 2.1.1): it takes focus.
    // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region is focusable so keyboard users can scroll it
    // biome-ignore lint/a11y/useSemanticElements: a section here would add a landmark per table
    <div class="table-wrap" role="region" aria-label={props.caption} tabIndex={0}>
      <table>
        <caption class="sr-only">{props.caption}</caption>
        <thead>
          <tr>
            {onSelect && (
              <th scope="col" class="col-check">
                <input
                  type="checkbox"
                  aria-label={t("selectAll")}
                  checked={allOn}
                  onChange={() => {
                    const next = new Set(selected);
                    for (const r of rows) {
                      if (allOn) next.delete(props.rowKey(r));
                      else next.add(props.rowKey(r));
                    }
                    onSelect(next);
                  }}
                />
              </th>
            )}
            {props.columns.map((c) => (
              <th
                key={c.key}
                scope="col"
                class={`${c.numeric ? "num" : ""} ${c.optional ? "optional" : ""}`}
              >
                {c.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.length === 0 && (
            <tr>
              <td colSpan={props.columns.length + (onSelect ? 1 : 0)} class="empty">
                {props.empty ?? t("empty")}
              </td>
            </tr>
          )}
          {rows.map((r) => {
            const k = props.rowKey(r);
            return (
              <tr key={k}>
                {onSelect && (
                  <td class="col-check">
                    <input
                      type="checkbox"
                      aria-label={t("selectRow", { name: props.rowLabel?.(r) ?? String(k) })}
                      checked={selected?.has(k) ?? false}
                      onChange={() => {
                        const next = new Set(selected);
                        if (next.has(k)) next.delete(k);
                        else next.add(k);
                        onSelect(next);
                      }}
                    />
                  </td>
                )}
                {props.columns.map((c) => (
                  <td
                    key={c.key}
                    class={`${c.numeric ? "num" : ""} ${c.optional ? "optional" : ""}`}
                    data-label={c.label}
                  >
                    {c.render(r)}
                  </td>
                ))}
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

/** Pages through a server-side list (`page` from 1). */
export function Pager(props: {
  page: number;
  pageSize: number;
  total: number;
  onPage: (page: number) => void;
  onPageSize?: (size: number) => void;
}) {
  const pages = Math.max(1, Math.ceil(props.total / props.pageSize));
  const id = useId();
  return (
    <nav class="pager" aria-label="pagination">
      <Button disabled={props.page <= 1} onClick={() => props.onPage(props.page - 1)}>
        {t("previous")}
      </Button>
      <span aria-live="polite">
        {t("page", { page: formatNumber(props.page), pages: formatNumber(pages) })} ·{" "}
        {t("total", { total: formatNumber(props.total) })}
      </span>
      <Button disabled={props.page >= pages} onClick={() => props.onPage(props.page + 1)}>
        {t("next")}
      </Button>
      {props.onPageSize && (
        <span class="pager-size">
          <label for={id}>{t("pageSize")}</label>
          <select
            id={id}
            value={props.pageSize}
            onChange={(e) =>
              props.onPageSize?.(Number((e.currentTarget as HTMLSelectElement).value))
            }
          >
            {[10, 20, 50, 100].map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </span>
      )}
    </nav>
  );
}

/** A value that copies itself to the clipboard on a button press. */
export function CopyText(props: { value: string; label: string }) {
  const [done, setDone] = useState(false);
  return (
    <span class="copy">
      <code class="mono">{props.value}</code>
      <Button
        onClick={async () => {
          try {
            await navigator.clipboard.writeText(props.value);
            setDone(true);
            setTimeout(() => setDone(false), 1500);
          } catch {
            // no clipboard permission: the value is shown, the person can select it
          }
        }}
      >
        {done ? "✓" : props.label}
      </Button>
    </span>
  );
}

/** A number with a label, for the top of the overview and the key holder's page. */
export function Stat(props: { label: string; value: ComponentChildren; hint?: string }) {
  return (
    <div class="stat">
      <div class="stat-label">{props.label}</div>
      <div class="stat-value">{props.value}</div>
      {props.hint && <div class="stat-hint">{props.hint}</div>}
    </div>
  );
}

/**
 * A search box with its button, and a Clear button while a search is applied: the toolbar of the
 * paged lists. `onSearch` gets the trimmed text ("" on Clear); `children` are more toolbar items
 * (a batch action).
 */
export function SearchForm(props: {
  label: string;
  searchLabel: string;
  clearLabel: string;
  /** The search applied now ("" = none). */
  applied: string;
  onSearch: (keyword: string) => void;
  children?: ComponentChildren;
}) {
  const [draft, setDraft] = useState(props.applied);
  return (
    <form
      class="toolbar"
      onSubmit={(e) => {
        e.preventDefault();
        props.onSearch(draft.trim());
      }}
    >
      <TextField
        label={props.label}
        type="search"
        name="keyword"
        value={draft}
        onInput={setDraft}
      />
      <div class="field">
        <Button type="submit">{props.searchLabel}</Button>
      </div>
      {props.applied && (
        <div class="field">
          <Button
            onClick={() => {
              setDraft("");
              props.onSearch("");
            }}
          >
            {props.clearLabel}
          </Button>
        </div>
      )}
      {props.children}
    </form>
  );
}
