/**
 * Settings: every runtime setting of the gateway, rendered from its declaration
 * (`GET /v0/management/settings`): a checkbox for a boolean, a number box for an integer or a
 * number, a text box for a string, a JSON box (or one control per declared field) for an
 * object. Each row saves on its own (`PUT /v0/management/settings/:name`); the API's 400
 * message is shown under the field and nothing changes. Below, `config.yaml`: shown on demand
 * (it holds keys), and editable with a confirm before the PUT.
 */
import type { JSX } from "preact";
import { useState } from "preact/hooks";
import { ApiError, api, errorText } from "../api.ts";
import { messages } from "../i18n.ts";
import {
  Badge,
  Button,
  CheckboxField,
  confirm,
  Notice,
  NumberField,
  PageHeader,
  Spinner,
  TextAreaField,
  TextField,
  useAsync,
} from "../ui.tsx";

const t = messages({
  en: {
    title: "Settings",
    intro:
      "Runtime settings of the gateway. Each one is saved on its own and applies at once, on every instance sharing the store.",
    filter: "Find a setting",
    filterHint: "By name or description",
    none: "No setting matches.",
    loadFailed: "Could not load the settings: {message}",
    save: "Save",
    saving: "Saving…",
    saved: "Saved.",
    reset: "Reset to default",
    resetTitle: "Reset {name} to its default?",
    resetBody: "The stored value is removed and the default applies.",
    defaultIs: "Default: {value}",
    defaultNone: "No default",
    showDefault: "Show the default",
    changed: "Changed",
    readOnly: "Read-only here",
    masked: "The value may hold a password and is shown masked; saving the masked form keeps it.",
    badInteger: "Enter a whole number.",
    badNumber: "Enter a number.",
    badJson: "Not valid JSON: {message}",
    notObject: "Enter a JSON object ({ … }).",
    enabled: "On",
    yamlTitle: "config.yaml",
    yamlIntro:
      "The whole configuration as YAML. It holds keys in plain text: it is loaded only when you ask.",
    yamlShow: "Show config.yaml",
    yamlHide: "Hide",
    yamlEdit: "Edit",
    yamlCancel: "Cancel editing",
    yamlSave: "Save config.yaml",
    yamlLabel: "config.yaml",
    yamlEditHint:
      "Fields in the YAML replace the current values (a list replaces the whole list); fields left out are kept.",
    yamlConfirmTitle: "Apply this config.yaml?",
    yamlConfirmBody:
      "Every field it holds replaces the current value at once, lists included. Fields it leaves out are kept.",
    yamlApply: "Apply",
    yamlSaved: "Applied. Changed: {fields}.",
    yamlUnchanged: "Applied. Nothing changed.",
    yamlFailed: "Not applied: {message}",
    yamlView: "config.yaml (read-only)",
  },
  zh: {
    title: "设置",
    intro: "网关的运行时设置。每一项单独保存、立即生效，共享同一存储的所有实例都会应用。",
    filter: "查找设置",
    filterHint: "按名称或说明",
    none: "没有匹配的设置。",
    loadFailed: "无法加载设置：{message}",
    save: "保存",
    saving: "保存中…",
    saved: "已保存。",
    reset: "恢复默认",
    resetTitle: "将 {name} 恢复为默认值？",
    resetBody: "将删除已保存的值，改用默认值。",
    defaultIs: "默认值：{value}",
    defaultNone: "无默认值",
    showDefault: "查看默认值",
    changed: "已修改",
    readOnly: "此处只读",
    masked: "该值可能包含密码，已打码显示；按打码后的内容保存会保留原值。",
    badInteger: "请输入整数。",
    badNumber: "请输入数字。",
    badJson: "不是有效的 JSON：{message}",
    notObject: "请输入 JSON 对象（{ … }）。",
    enabled: "开启",
    yamlTitle: "config.yaml",
    yamlIntro: "以 YAML 表示的完整配置。其中包含明文密钥，只在你要求时加载。",
    yamlShow: "显示 config.yaml",
    yamlHide: "隐藏",
    yamlEdit: "编辑",
    yamlCancel: "取消编辑",
    yamlSave: "保存 config.yaml",
    yamlLabel: "config.yaml",
    yamlEditHint: "YAML 中出现的字段会替换当前值（列表整体替换）；未出现的字段保持不变。",
    yamlConfirmTitle: "应用此 config.yaml？",
    yamlConfirmBody: "其中的每个字段都会立即替换当前值，包括列表。未出现的字段保持不变。",
    yamlApply: "应用",
    yamlSaved: "已应用。变更的字段：{fields}。",
    yamlUnchanged: "已应用，没有变化。",
    yamlFailed: "未应用：{message}",
    yamlView: "config.yaml（只读）",
  },
});

type SettingType = "boolean" | "integer" | "number" | "string" | "object";

/** One row of `GET /v0/management/settings`. */
interface Setting {
  name: string;
  type: SettingType;
  description: string;
  default: unknown;
  value: unknown;
  fields?: Record<string, SettingType>;
  masked?: boolean;
  writable?: boolean;
}

/** A value as short text (the default shown in a hint). */
function show(v: unknown): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "string") return v === "" ? '""' : v;
  return JSON.stringify(v);
}

/** The form's draft of a setting: what its control holds. */
type Draft = boolean | number | null | string | Record<string, unknown>;

function draftOf(s: Setting): Draft {
  switch (s.type) {
    case "boolean":
      return s.value === true;
    case "integer":
    case "number":
      return typeof s.value === "number" ? s.value : null;
    case "string":
      return typeof s.value === "string" ? s.value : "";
    case "object":
      if (s.fields)
        return { ...((s.value as Record<string, unknown> | null) ?? {}) } as Record<
          string,
          unknown
        >;
      return JSON.stringify(s.value ?? {}, null, 2);
  }
}

/** The value to PUT from a draft, or the message of why it is not one. */
function putValue(s: Setting, d: Draft): { value: unknown } | { error: string } {
  if (s.type === "integer" || s.type === "number") {
    if (typeof d !== "number" || !Number.isFinite(d))
      return { error: s.type === "integer" ? t("badInteger") : t("badNumber") };
    if (s.type === "integer" && !Number.isInteger(d)) return { error: t("badInteger") };
    return { value: d };
  }
  if (s.type === "object" && !s.fields) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(String(d));
    } catch (e) {
      return { error: t("badJson", { message: errorText(e) }) };
    }
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
      return { error: t("notObject") };
    return { value: parsed };
  }
  return { value: d };
}

function same(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** Whether a draft differs from the stored value. */
function isDirty(s: Setting, d: Draft): boolean {
  if (s.type === "object" && !s.fields) {
    try {
      return !same(JSON.parse(String(d)), s.value ?? {});
    } catch {
      return true;
    }
  }
  return !same(d, draftOf(s));
}

function SettingRow(props: { setting: Setting; onChange: (s: Setting) => void }) {
  const s = props.setting;
  const [draft, setDraft] = useState<Draft>(() => draftOf(s));
  const [error, setError] = useState<string>();
  const [saved, setSaved] = useState(false);
  const [busy, setBusy] = useState(false);
  const writable = s.writable !== false;
  const dirty = isDirty(s, draft);
  const isDefault = same(s.value, s.default);

  const edit = (d: Draft) => {
    setDraft(d);
    setError(undefined);
    setSaved(false);
  };

  const apply = (next: Setting) => {
    props.onChange(next);
    setDraft(draftOf(next));
    setSaved(true);
  };

  const save = async (e: Event) => {
    e.preventDefault();
    const v = putValue(s, draft);
    if ("error" in v) {
      setError(v.error);
      return;
    }
    setBusy(true);
    setError(undefined);
    try {
      const r = await api<{ setting: Setting }>(
        `/v0/management/settings/${encodeURIComponent(s.name)}`,
        { method: "PUT", body: { value: v.value } },
      );
      apply(r.setting);
    } catch (err) {
      setError(err instanceof ApiError ? err.message : errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const reset = async () => {
    if (
      !(await confirm({
        title: t("resetTitle", { name: s.name }),
        body: t("resetBody"),
        confirmLabel: t("reset"),
      }))
    )
      return;
    setBusy(true);
    setError(undefined);
    try {
      const r = await api<{ setting: Setting }>(
        `/v0/management/settings/${encodeURIComponent(s.name)}`,
        { method: "DELETE" },
      );
      apply(r.setting);
    } catch (err) {
      setError(errorText(err));
    } finally {
      setBusy(false);
    }
  };

  const scalarDefault =
    s.type !== "object" ? t("defaultIs", { value: show(s.default) }) : undefined;
  const hint = [s.description, scalarDefault, s.masked ? t("masked") : undefined]
    .filter(Boolean)
    .join(" ");

  let control: JSX.Element;
  if (s.type === "boolean") {
    control = (
      <CheckboxField
        label={s.name}
        name={s.name}
        checked={draft === true}
        disabled={!writable}
        hint={hint}
        onChange={edit}
      />
    );
  } else if (s.type === "integer" || s.type === "number") {
    control = (
      <NumberField
        label={s.name}
        name={s.name}
        value={typeof draft === "number" ? draft : null}
        step={s.type === "integer" ? 1 : "any"}
        disabled={!writable}
        hint={hint}
        error={error}
        onInput={edit}
      />
    );
  } else if (s.type === "string") {
    control = (
      <TextField
        label={s.name}
        name={s.name}
        value={String(draft)}
        disabled={!writable}
        hint={hint}
        error={error}
        onInput={edit}
      />
    );
  } else if (s.fields) {
    const obj = (draft ?? {}) as Record<string, unknown>;
    control = (
      <fieldset class="setting-fields">
        <legend>{s.name}</legend>
        <p class="hint">{s.description}</p>
        {Object.entries(s.fields).map(([f, type]) =>
          type === "boolean" ? (
            <CheckboxField
              key={f}
              label={f}
              checked={obj[f] === true}
              disabled={!writable}
              hint={t("defaultIs", { value: show((s.default as Record<string, unknown>)?.[f]) })}
              onChange={(v) => edit({ ...obj, [f]: v })}
            />
          ) : type === "integer" || type === "number" ? (
            <NumberField
              key={f}
              label={f}
              value={typeof obj[f] === "number" ? (obj[f] as number) : null}
              step={type === "integer" ? 1 : "any"}
              disabled={!writable}
              onInput={(v) => edit({ ...obj, [f]: v })}
            />
          ) : (
            <TextField
              key={f}
              label={f}
              value={typeof obj[f] === "string" ? (obj[f] as string) : ""}
              disabled={!writable}
              onInput={(v) => edit({ ...obj, [f]: v })}
            />
          ),
        )}
      </fieldset>
    );
  } else {
    control = (
      <TextAreaField
        label={s.name}
        name={s.name}
        mono
        rows={Math.min(12, Math.max(3, String(draft).split("\n").length))}
        value={String(draft)}
        disabled={!writable}
        hint={s.description}
        error={error}
        onInput={edit}
      />
    );
  }

  // Errors of the controls that show no error of their own.
  const ownError = s.type === "boolean" || (s.type === "object" && s.fields !== undefined);

  return (
    <li class="card setting" data-setting={s.name}>
      <form onSubmit={save}>
        {control}
        {s.type === "object" && !s.fields && (
          <details class="setting-default">
            <summary>{t("showDefault")}</summary>
            <pre>{s.default === null ? t("defaultNone") : JSON.stringify(s.default, null, 2)}</pre>
          </details>
        )}
        {ownError && error && (
          <p class="error-text" role="alert">
            {error}
          </p>
        )}
        <div class="setting-actions">
          {writable ? (
            <>
              <Button type="submit" variant="primary" disabled={!dirty || busy}>
                {busy ? t("saving") : t("save")}
                <span class="sr-only"> {s.name}</span>
              </Button>
              <Button disabled={busy || isDefault} onClick={reset}>
                {t("reset")}
                <span class="sr-only">: {s.name}</span>
              </Button>
              {dirty && <Badge tone="warn">{t("changed")}</Badge>}
              {saved && !dirty && (
                <span class="saved" role="status">
                  {t("saved")}
                </span>
              )}
            </>
          ) : (
            <Badge>{t("readOnly")}</Badge>
          )}
        </div>
      </form>
    </li>
  );
}

function ConfigYaml(props: { onApplied: () => void }) {
  const [text, setText] = useState<string | null>(null);
  const [draft, setDraft] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();
  const [result, setResult] = useState<string>();

  const load = async () => {
    setBusy(true);
    setError(undefined);
    try {
      setText(await api<string>("/v0/management/config.yaml", { text: true }));
    } catch (e) {
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  const save = async () => {
    if (draft === null) return;
    if (
      !(await confirm({
        title: t("yamlConfirmTitle"),
        body: t("yamlConfirmBody"),
        confirmLabel: t("yamlApply"),
        danger: true,
      }))
    )
      return;
    setBusy(true);
    setError(undefined);
    setResult(undefined);
    try {
      const r = await api<{ changed?: string[] }>("/v0/management/config.yaml", {
        method: "PUT",
        raw: draft,
      });
      const changed = r.changed ?? [];
      setResult(
        changed.length ? t("yamlSaved", { fields: changed.join(", ") }) : t("yamlUnchanged"),
      );
      setDraft(null);
      await load();
      props.onApplied();
    } catch (e) {
      setError(t("yamlFailed", { message: errorText(e) }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section class="card" aria-labelledby="config-yaml-title">
      <h2 id="config-yaml-title">{t("yamlTitle")}</h2>
      <p class="hint">{t("yamlIntro")}</p>
      {error && <Notice kind="error">{error}</Notice>}
      {result && <Notice kind="success">{result}</Notice>}
      <div class="toolbar">
        {text === null ? (
          <Button onClick={load} disabled={busy}>
            {t("yamlShow")}
          </Button>
        ) : (
          <>
            <Button
              onClick={() => {
                setText(null);
                setDraft(null);
                setResult(undefined);
              }}
            >
              {t("yamlHide")}
            </Button>
            {draft === null ? (
              <Button onClick={() => setDraft(text)}>{t("yamlEdit")}</Button>
            ) : (
              <>
                <Button onClick={() => setDraft(null)}>{t("yamlCancel")}</Button>
                <Button variant="primary" disabled={busy || draft === text} onClick={save}>
                  {t("yamlSave")}
                </Button>
              </>
            )}
          </>
        )}
      </div>
      {busy && <Spinner />}
      {text !== null && draft === null && (
        // A scrolling region must be reachable by keyboard (WCAG 2.1.1): it takes focus.
        // biome-ignore lint/a11y/noNoninteractiveTabindex: a scrollable region is focusable so keyboard users can scroll it
        // biome-ignore lint/a11y/useSemanticElements: a section here would add a landmark
        <div class="yaml-wrap" role="region" aria-label={t("yamlView")} tabIndex={0}>
          <pre class="yaml">{text}</pre>
        </div>
      )}
      {draft !== null && (
        <TextAreaField
          label={t("yamlLabel")}
          mono
          rows={20}
          value={draft}
          hint={t("yamlEditHint")}
          onInput={setDraft}
        />
      )}
    </section>
  );
}

/** The settings page (management key only). */
export function SettingsPage() {
  const [filter, setFilter] = useState("");
  const list = useAsync(
    (signal) => api<{ settings: Setting[] }>("/v0/management/settings", { signal }),
    [],
  );
  const [local, setLocal] = useState<Record<string, Setting>>({});
  const settings = (list.data?.settings ?? []).map((s) => local[s.name] ?? s);
  const q = filter.trim().toLowerCase();
  const shown = q
    ? settings.filter(
        (s) => s.name.toLowerCase().includes(q) || s.description.toLowerCase().includes(q),
      )
    : settings;

  return (
    <>
      <PageHeader title={t("title")} />
      <p class="hint">{t("intro")}</p>
      <div class="toolbar">
        <TextField
          label={t("filter")}
          type="search"
          value={filter}
          onInput={setFilter}
          hint={t("filterHint")}
        />
      </div>
      {list.error && (
        <Notice kind="error" onRetry={list.reload}>
          {t("loadFailed", { message: list.error })}
        </Notice>
      )}
      {list.loading && !list.data && <Spinner />}
      {list.data && shown.length === 0 && <p class="empty">{t("none")}</p>}
      <ul class="settings-list">
        {shown.map((s) => (
          <SettingRow
            key={`${s.name}:${JSON.stringify(list.data?.settings.find((x) => x.name === s.name)?.value)}`}
            setting={s}
            onChange={(next) => setLocal((m) => ({ ...m, [next.name]: next }))}
          />
        ))}
      </ul>
      <ConfigYaml
        onApplied={() => {
          setLocal({});
          list.reload();
        }}
      />
    </>
  );
}
