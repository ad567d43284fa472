import { messages } from "../i18n.ts";
import { PageHeader } from "../ui.tsx";

const t = messages({ en: { title: "KeyHolder" }, zh: { title: "KeyHolder" } });

/** The keyholder page (to be built). */
export function KeyHolderPage() {
  return <PageHeader title={t("title")} />;
}
