import { messages } from "../i18n.ts";
import { PageHeader } from "../ui.tsx";

const t = messages({ en: { title: "Credentials" }, zh: { title: "Credentials" } });

/** The credentials page (to be built). */
export function CredentialsPage() {
  return <PageHeader title={t("title")} />;
}
