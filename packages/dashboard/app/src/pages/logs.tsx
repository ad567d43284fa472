import { messages } from "../i18n.ts";
import { PageHeader } from "../ui.tsx";

const t = messages({ en: { title: "Logs" }, zh: { title: "Logs" } });

/** The logs page (to be built). */
export function LogsPage() {
  return <PageHeader title={t("title")} />;
}
