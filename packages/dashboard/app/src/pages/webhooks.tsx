import { messages } from "../i18n.ts";
import { PageHeader } from "../ui.tsx";

const t = messages({ en: { title: "Webhooks" }, zh: { title: "Webhooks" } });

/** The webhooks page (to be built). */
export function WebhooksPage() {
  return <PageHeader title={t("title")} />;
}
