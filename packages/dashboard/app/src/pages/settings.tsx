import { messages } from "../i18n.ts";
import { PageHeader } from "../ui.tsx";

const t = messages({ en: { title: "Settings" }, zh: { title: "Settings" } });

/** The settings page (to be built). */
export function SettingsPage() {
  return <PageHeader title={t("title")} />;
}
