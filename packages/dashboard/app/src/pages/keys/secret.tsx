/**
 * Shows a secret (a new key, a revealed key, a user's access token) in a dialog with a copy
 * button. The secret lives only in the caller's state while the dialog is open: closing it
 * drops it. It never goes into the URL, storage or a log.
 */
import { apiBase } from "../../api.ts";
import { messages } from "../../i18n.ts";
import { Button, CopyText, Dialog, Notice } from "../../ui.tsx";

const t = messages({
  en: {
    copy: "Copy",
    done: "Done",
    once: "Copy it now: it will not be shown again.",
    baseUrl: "Base URL for OpenAI-compatible clients:",
  },
  zh: {
    copy: "复制",
    done: "完成",
    once: "请立即复制：关闭后将不再显示。",
    baseUrl: "OpenAI 兼容客户端的 Base URL：",
  },
});

/** A secret to show, or null (no dialog). */
export interface ShownSecret {
  title: string;
  /** What the secret is ("Key", "Access token"), the copy button's accessible name. */
  label: string;
  value: string;
  /** Shown this once (a new key or access token): warn. */
  once: boolean;
  /** An API key: show the base URL to use it with. */
  apiKey?: boolean;
  /** A line under the secret (e.g. the user id to log in with). */
  note?: string;
}

/** The dialog of a {@link ShownSecret}. */
export function SecretDialog(props: { secret: ShownSecret | null; onClose: () => void }) {
  const s = props.secret;
  if (!s) return null;
  return (
    <Dialog
      open
      title={s.title}
      onClose={props.onClose}
      actions={
        <Button variant="primary" onClick={props.onClose}>
          {t("done")}
        </Button>
      }
    >
      {s.once && <Notice kind="info">{t("once")}</Notice>}
      <p class="secret-value" data-testid="secret-value">
        <span class="sr-only">{s.label}: </span>
        <CopyText value={s.value} label={t("copy")} />
      </p>
      {s.note && <p>{s.note}</p>}
      {s.apiKey && (
        <p class="hint">
          {t("baseUrl")} <code>{`${location.origin}${apiBase()}/v1`}</code>
        </p>
      )}
    </Dialog>
  );
}
