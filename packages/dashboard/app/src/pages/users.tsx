import { messages } from "../i18n.ts";
import { PageHeader } from "../ui.tsx";

const t = messages({ en: { title: "Users" }, zh: { title: "Users" } });

/** The users page (to be built). */
export function UsersPage() {
  return <PageHeader title={t("title")} />;
}
