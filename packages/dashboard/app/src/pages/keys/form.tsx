/**
 * The create / edit dialog of a key: grouped fieldsets "Quota", "Limits" and "Access". An edit
 * sends only the fields the person changed (the API keeps the others).
 */
import { useEffect, useId, useState } from "preact/hooks";
import { api, apiData, errorText } from "../../api.ts";
import { formatNumber, messages } from "../../i18n.ts";
import {
  Button,
  CheckboxField,
  Dialog,
  Notice,
  NumberField,
  TextAreaField,
  TextField,
} from "../../ui.tsx";
import {
  type FormErrors,
  isUsd,
  LimitsFieldset,
  type LimitsForm,
  limitsBody,
  limitsForm,
  RefillFields,
  usdToUnits,
  validateLimits,
} from "./limits.tsx";
import { changedFields, type TokenView, UNITS_PER_USD } from "./types.ts";

const t = messages({
  en: {
    createTitle: "Create key",
    editTitle: "Edit key {name}",
    create: "Create",
    save: "Save",
    saving: "Saving…",
    cancel: "Cancel",
    name: "Name",
    nameHint: "Up to 30 characters.",
    nameTooLong: "At most 30 characters.",
    quota: "Quota",
    unlimited: "Unlimited quota",
    remain: "Remaining quota (USD)",
    remainHint: "{units} units (500,000 units = $1).",
    access: "Access",
    owner: "Owner (user id)",
    ownerHintAdmin: "Empty: no owner.",
    ownerHintUser: "Empty: you.",
    ownerBad: "Enter a user id (a whole number above 0).",
    modelLimitsEnabled: "Limit models",
    models: "Allowed models",
    modelsHint: "One per line or separated by commas.",
    ips: "IP allowlist",
    ipsHint: "One address or CIDR range per line; empty: any address.",
    group: "Group",
    groupHint: "Empty: the owner's group.",
    never: "Never expires",
    expires: "Expires at",
    expiresBad: "Pick a date and time.",
    badUsd: "Enter an amount of 0 or more.",
  },
  zh: {
    createTitle: "创建令牌",
    editTitle: "编辑令牌 {name}",
    create: "创建",
    save: "保存",
    saving: "保存中…",
    cancel: "取消",
    name: "名称",
    nameHint: "最多 30 个字符。",
    nameTooLong: "最多 30 个字符。",
    quota: "额度",
    unlimited: "无限额度",
    remain: "剩余额度（美元）",
    remainHint: "{units} 点（500,000 点 = 1 美元）。",
    access: "访问",
    owner: "所属用户（用户 ID）",
    ownerHintAdmin: "留空：不属于任何用户。",
    ownerHintUser: "留空：你自己。",
    ownerBad: "请输入用户 ID（大于 0 的整数）。",
    modelLimitsEnabled: "启用模型限制",
    models: "允许的模型",
    modelsHint: "每行一个，或用逗号分隔。",
    ips: "IP 白名单",
    ipsHint: "每行一个地址或 CIDR 网段；留空：不限制。",
    group: "分组",
    groupHint: "留空：使用所属用户的分组。",
    never: "永不过期",
    expires: "过期时间",
    expiresBad: "请选择日期和时间。",
    badUsd: "请输入不小于 0 的金额。",
  },
});

interface KeyForm {
  name: string;
  unlimited: boolean;
  /** US dollars. */
  quotaUsd: number | null;
  limits: LimitsForm;
  never: boolean;
  /** `datetime-local` value. */
  expires: string;
  modelLimitsEnabled: boolean;
  models: string;
  ips: string;
  group: string;
  /** Create only, admins: the owner's id. */
  owner: number | null;
}

const pad = (n: number) => String(n).padStart(2, "0");

/** Unix seconds as a `datetime-local` value (local time). */
function toLocalInput(seconds: number): string {
  const d = new Date(seconds * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function formOf(k?: TokenView): KeyForm {
  return {
    name: k?.name ?? "",
    unlimited: k?.unlimited_quota ?? false,
    quotaUsd: k ? k.remain_quota / UNITS_PER_USD : null,
    limits: limitsForm(k),
    never: !k || k.expired_time === -1,
    expires: k && k.expired_time > 0 ? toLocalInput(k.expired_time) : "",
    modelLimitsEnabled: k?.model_limits_enabled ?? false,
    models: (k?.model_limits ?? "").split(",").filter(Boolean).join("\n"),
    ips: k?.allow_ips ?? "",
    group: k?.group ?? "",
    owner: null,
  };
}

const list = (s: string, sep: RegExp) =>
  s
    .split(sep)
    .map((x) => x.trim())
    .filter(Boolean);

function bodyOf(f: KeyForm): Record<string, unknown> {
  return {
    name: f.name.trim(),
    unlimited_quota: f.unlimited,
    remain_quota: usdToUnits(f.quotaUsd),
    expired_time: f.never || !f.expires ? -1 : Math.floor(new Date(f.expires).getTime() / 1000),
    model_limits_enabled: f.modelLimitsEnabled,
    model_limits: list(f.models, /[\n,]/).join(","),
    allow_ips: list(f.ips, /[\s,]+/).join("\n"),
    group: f.group.trim(),
    ...limitsBody(f.limits),
  };
}

function validate(f: KeyForm, ownerAllowed: boolean): FormErrors {
  const e: FormErrors = validateLimits(f.limits);
  if ([...f.name.trim()].length > 30) e.name = t("nameTooLong");
  if (!isUsd(f.quotaUsd)) e.quotaUsd = t("badUsd");
  if (!f.never && (!f.expires || Number.isNaN(new Date(f.expires).getTime())))
    e.expires = t("expiresBad");
  if (ownerAllowed && f.owner !== null && !(Number.isSafeInteger(f.owner) && f.owner > 0))
    e.owner = t("ownerBad");
  return e;
}

/**
 * The key dialog: `key` undefined creates (then `onCreated` gets the answer with the plain
 * key), a key edits it (then `onSaved`).
 */
export function KeyFormDialog(props: {
  mode: "create" | "edit";
  key?: TokenView;
  /** The session may name an owner (the management key or an admin user). */
  admin: boolean;
  /** The management key (no user of its own): an empty owner means none. */
  managementKey: boolean;
  onClose: () => void;
  onCreated: (k: TokenView) => void;
  onSaved: (k: TokenView) => void;
}) {
  const original = props.key;
  const [f, setF] = useState<KeyForm>(() => formOf(original));
  const [errors, setErrors] = useState<FormErrors>({});
  const [tried, setTried] = useState(false);
  const [busy, setBusy] = useState(false);
  const [failure, setFailure] = useState<string>();
  const formId = useId();
  const creating = props.mode === "create";
  const set = (patch: Partial<KeyForm>) => setF((old) => ({ ...old, ...patch }));

  // After a first submit, the messages follow the fields as they are corrected.
  useEffect(() => {
    if (tried) setErrors(validate(f, creating && props.admin));
  }, [f]);

  const submit = async (e: Event) => {
    e.preventDefault();
    const errs = validate(f, creating && props.admin);
    setErrors(errs);
    setTried(true);
    if (Object.keys(errs).length > 0) {
      // Focus the first invalid field so that keyboard and screen-reader users find it.
      requestAnimationFrame(() =>
        document.querySelector<HTMLElement>("dialog [aria-invalid='true']")?.focus(),
      );
      return;
    }
    setBusy(true);
    setFailure(undefined);
    try {
      if (creating) {
        const body = bodyOf(f);
        if (props.admin && f.owner !== null) body.user_id = f.owner;
        props.onCreated(await apiData<TokenView>("/api/token/", { method: "POST", body }));
      } else if (original) {
        const changed = changedFields(bodyOf(f), bodyOf(formOf(original)));
        if (Object.keys(changed).length === 0) {
          props.onClose();
          return;
        }
        const saved = await apiData<TokenView>("/api/token/", {
          method: "PUT",
          body: { id: original.id, ...changed },
        });
        props.onSaved(saved);
      }
    } catch (err) {
      setFailure(errorText(err));
      setBusy(false);
    }
  };

  return (
    <Dialog
      open
      wide
      title={creating ? t("createTitle") : t("editTitle", { name: original?.name ?? "" })}
      onClose={props.onClose}
      actions={
        <>
          <Button onClick={props.onClose}>{t("cancel")}</Button>
          <button type="submit" class="btn btn-primary" form={formId} disabled={busy}>
            {busy ? t("saving") : creating ? t("create") : t("save")}
          </button>
        </>
      }
    >
      <form id={formId} onSubmit={submit} noValidate>
        <div class="form-grid">
          <TextField
            label={t("name")}
            name="name"
            value={f.name}
            hint={t("nameHint")}
            error={errors.name}
            onInput={(name) => set({ name })}
          />
          {creating && props.admin && (
            <NumberField
              label={t("owner")}
              name="user_id"
              min={1}
              value={f.owner}
              hint={props.managementKey ? t("ownerHintAdmin") : t("ownerHintUser")}
              error={errors.owner}
              onInput={(owner) => set({ owner })}
            />
          )}
        </div>
        <fieldset>
          <legend>{t("quota")}</legend>
          <CheckboxField
            label={t("unlimited")}
            name="unlimited_quota"
            checked={f.unlimited}
            onChange={(unlimited) => set({ unlimited })}
          />
          <div class="form-grid">
            <NumberField
              label={t("remain")}
              name="remain_quota"
              min={0}
              step="any"
              value={f.quotaUsd}
              disabled={f.unlimited}
              error={errors.quotaUsd}
              hint={t("remainHint", {
                units: isUsd(f.quotaUsd) ? formatNumber(usdToUnits(f.quotaUsd)) : "—",
              })}
              onInput={(quotaUsd) => set({ quotaUsd })}
            />
          </div>
          <RefillFields value={f.limits} errors={errors} onChange={(limits) => set({ limits })} />
        </fieldset>
        <LimitsFieldset value={f.limits} errors={errors} onChange={(limits) => set({ limits })} />
        <fieldset>
          <legend>{t("access")}</legend>
          <CheckboxField
            label={t("modelLimitsEnabled")}
            name="model_limits_enabled"
            checked={f.modelLimitsEnabled}
            onChange={(modelLimitsEnabled) => set({ modelLimitsEnabled })}
          />
          <div class="form-grid">
            <TextAreaField
              label={t("models")}
              name="model_limits"
              mono
              value={f.models}
              hint={t("modelsHint")}
              disabled={!f.modelLimitsEnabled}
              onInput={(models) => set({ models })}
            />
            <TextAreaField
              label={t("ips")}
              name="allow_ips"
              mono
              value={f.ips}
              hint={t("ipsHint")}
              onInput={(ips) => set({ ips })}
            />
            <TextField
              label={t("group")}
              name="group"
              value={f.group}
              hint={t("groupHint")}
              onInput={(group) => set({ group })}
            />
            <div>
              <CheckboxField
                label={t("never")}
                name="never_expires"
                checked={f.never}
                onChange={(never) => set({ never })}
              />
              {!f.never && (
                <TextField
                  label={t("expires")}
                  name="expired_time"
                  type="datetime-local"
                  value={f.expires}
                  error={errors.expires}
                  onInput={(expires) => set({ expires })}
                />
              )}
            </div>
          </div>
        </fieldset>
        {failure && <Notice kind="error">{failure}</Notice>}
      </form>
    </Dialog>
  );
}

/** Asks the API for a key's full value. */
export async function revealKey(id: number): Promise<string> {
  const r = await apiData<{ key: string }>(`/api/token/${id}/key`, { method: "POST" });
  return r.key;
}

/** Sets a key's status: 1 enables, 2 disables. */
export async function setKeyStatus(id: number, status: 1 | 2): Promise<TokenView> {
  return apiData<TokenView>("/api/token/", {
    method: "PUT",
    query: { status_only: "true" },
    body: { id, status },
  });
}

/** Deletes keys (one with its route, several with the batch route). */
export async function deleteKeys(ids: number[]): Promise<void> {
  if (ids.length === 1) await api(`/api/token/${ids[0]}`, { method: "DELETE" });
  else await api("/api/token/batch", { method: "POST", body: { ids } });
}
