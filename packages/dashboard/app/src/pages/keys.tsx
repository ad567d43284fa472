import { messages } from "../i18n.ts";
import { PageHeader } from "../ui.tsx";

const t = messages({ en: { title: "Keys" }, zh: { title: "Keys" } });

/** The keys page (to be built). */
export function KeysPage() {
  return <PageHeader title={t("title")} />;
}
