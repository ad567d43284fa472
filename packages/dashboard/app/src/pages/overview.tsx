import { messages } from "../i18n.ts";
import { PageHeader } from "../ui.tsx";

const t = messages({ en: { title: "Overview" }, zh: { title: "Overview" } });

/** The overview page (to be built). */
export function OverviewPage() {
  return <PageHeader title={t("title")} />;
}
