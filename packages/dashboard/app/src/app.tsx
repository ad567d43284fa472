/**
 * The console's shell: login, the navigation, the language and theme switches, and the page of
 * the current route. Which pages a session sees: the management key all; a user (access token +
 * id) the overview of its own usage, its keys and its logs; anyone the key holder's page.
 */
import type { FunctionComponent, JSX } from "preact";
import { useEffect, useState } from "preact/hooks";
import {
  api,
  apiData,
  errorText,
  getSession,
  hasManagementKey,
  onSession,
  type Session,
  setSession,
} from "./api.ts";
import { type Lang, messages, setLang, useLang } from "./i18n.ts";
import { CredentialsPage } from "./pages/credentials.tsx";
import { KeyHolderPage } from "./pages/keyholder.tsx";
import { KeysPage } from "./pages/keys.tsx";
import { LogsPage } from "./pages/logs.tsx";
import { OverviewPage } from "./pages/overview.tsx";
import { SettingsPage } from "./pages/settings.tsx";
import { UsersPage } from "./pages/users.tsx";
import { WebhooksPage } from "./pages/webhooks.tsx";
import { href, navigate, useRoute } from "./router.ts";
import { toggleTheme, useTheme } from "./theme.ts";
import { Button, Notice, TextField } from "./ui.tsx";

const t = messages({
  en: {
    brand: "tokenpool",
    overview: "Overview",
    keys: "Keys",
    users: "Users",
    credentials: "Upstream credentials",
    logs: "Request logs",
    settings: "Settings",
    webhooks: "Webhooks",
    mykey: "Check a key",
    logout: "Log out",
    language: "Language",
    theme: "Theme",
    dark: "Dark theme",
    light: "Light theme",
    skip: "Skip to content",
    mainNav: "Main",
    loginTitle: "Log in to the console",
    loginAdmin: "Management key",
    loginUser: "User access token",
    managementKey: "Management key",
    managementKeyHint:
      "The gateway's management key. Kept in this tab's memory only: a reload logs you out.",
    accessToken: "Access token",
    userId: "User id",
    userIdHint: "Your user's number (new-api's New-Api-User)",
    login: "Log in",
    loggingIn: "Logging in…",
    checkKey: "Only have an API key? Check its balance and usage",
    badLogin: "That did not work: {message}",
    notFound: "There is no such page.",
    loggedInAs: "Logged in as {who}",
    operator: "operator",
  },
  zh: {
    brand: "tokenpool",
    overview: "概览",
    keys: "令牌",
    users: "用户",
    credentials: "上游凭据",
    logs: "请求日志",
    settings: "设置",
    webhooks: "Webhooks",
    mykey: "查询令牌",
    logout: "退出登录",
    language: "语言",
    theme: "主题",
    dark: "深色主题",
    light: "浅色主题",
    skip: "跳到正文",
    mainNav: "主导航",
    loginTitle: "登录控制台",
    loginAdmin: "管理密钥",
    loginUser: "用户访问令牌",
    managementKey: "管理密钥",
    managementKeyHint: "网关的管理密钥。只保存在此标签页的内存中：刷新页面即退出登录。",
    accessToken: "访问令牌",
    userId: "用户 ID",
    userIdHint: "你的用户编号（new-api 的 New-Api-User）",
    login: "登录",
    loggingIn: "登录中…",
    checkKey: "只有 API 令牌？查询余额和用量",
    badLogin: "登录失败：{message}",
    notFound: "没有这个页面。",
    loggedInAs: "当前登录：{who}",
    operator: "管理员",
  },
});

type PageName =
  | "overview"
  | "keys"
  | "users"
  | "credentials"
  | "logs"
  | "settings"
  | "webhooks"
  | "mykey";

interface PageDef {
  name: PageName;
  component: FunctionComponent;
  /** Who sees it: `admin` = the management key, `user` = any logged-in session. */
  access: "admin" | "user" | "public";
}

const PAGES: readonly PageDef[] = [
  { name: "overview", component: OverviewPage, access: "user" },
  { name: "keys", component: KeysPage, access: "user" },
  { name: "users", component: UsersPage, access: "admin" },
  { name: "credentials", component: CredentialsPage, access: "admin" },
  { name: "logs", component: LogsPage, access: "user" },
  { name: "settings", component: SettingsPage, access: "admin" },
  { name: "webhooks", component: WebhooksPage, access: "admin" },
  { name: "mykey", component: KeyHolderPage, access: "public" },
];

function visible(p: PageDef, session: Session | null): boolean {
  if (p.access === "public") return true;
  if (!session) return false;
  return p.access === "user" || hasManagementKey();
}

function useSession(): Session | null {
  const [s, set] = useState(getSession);
  useEffect(() => onSession(() => set(getSession())), []);
  return s;
}

function Login() {
  const [mode, setMode] = useState<"admin" | "user">("admin");
  const [key, setKey] = useState("");
  const [token, setToken] = useState("");
  const [userId, setUserId] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>();

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setError(undefined);
    try {
      if (mode === "admin") {
        // Any management route checks the key; /config is small.
        const next: Session = { kind: "admin", key: key.trim() };
        await api("/v0/management/config", { as: next });
        setSession(next);
      } else {
        const id = Number(userId);
        const probe: Session = {
          kind: "user",
          token: token.trim(),
          userId: id,
          username: "",
          role: "user",
        };
        const me = await apiData<{ username: string; role: string }>("/api/user/self", {
          as: probe,
        });
        setSession({ ...probe, username: me.username, role: me.role });
      }
      setKey("");
      setToken("");
      if (!location.hash || location.hash === "#/" || location.hash === "#/mykey")
        navigate("overview");
    } catch (err) {
      setError(t("badLogin", { message: errorText(err) }));
    } finally {
      setBusy(false);
    }
  };

  return (
    <div class="login">
      <h1 tabIndex={-1} id="page-title">
        {t("loginTitle")}
      </h1>
      <fieldset class="tabs">
        <legend class="sr-only">{t("loginTitle")}</legend>
        {(["admin", "user"] as const).map((m) => (
          <button
            key={m}
            type="button"
            aria-pressed={mode === m}
            class={`tab ${mode === m ? "tab-on" : ""}`}
            onClick={() => setMode(m)}
          >
            {m === "admin" ? t("loginAdmin") : t("loginUser")}
          </button>
        ))}
      </fieldset>
      <form onSubmit={submit} class="card">
        {mode === "admin" ? (
          <TextField
            label={t("managementKey")}
            type="password"
            name="management-key"
            autocomplete="off"
            value={key}
            onInput={setKey}
            hint={t("managementKeyHint")}
            required
          />
        ) : (
          <>
            <TextField
              label={t("accessToken")}
              type="password"
              name="access-token"
              value={token}
              onInput={setToken}
              required
            />
            <TextField
              label={t("userId")}
              name="user-id"
              value={userId}
              onInput={setUserId}
              hint={t("userIdHint")}
              required
            />
          </>
        )}
        {error && <Notice kind="error">{error}</Notice>}
        <Button type="submit" variant="primary" disabled={busy}>
          {busy ? t("loggingIn") : t("login")}
        </Button>
      </form>
      <p>
        <a href={href("mykey")}>{t("checkKey")}</a>
      </p>
    </div>
  );
}

function Switches() {
  const lang = useLang();
  const theme = useTheme();
  return (
    <div class="switches">
      <label class="sr-only" for="lang-switch">
        {t("language")}
      </label>
      <select
        id="lang-switch"
        value={lang}
        onChange={(e) => setLang((e.currentTarget as HTMLSelectElement).value as Lang)}
      >
        <option value="en">English</option>
        <option value="zh">简体中文</option>
      </select>
      <Button
        onClick={toggleTheme}
        aria-label={theme === "dark" ? t("light") : t("dark")}
        title={t("theme")}
      >
        {theme === "dark" ? "☀" : "☾"}
      </Button>
    </div>
  );
}

/** The whole console. */
export function App() {
  useLang();
  const session = useSession();
  const route = useRoute();
  const page = route.page || (session ? "overview" : "");
  const def = PAGES.find((p) => p.name === page);

  // Moves focus to the new page's heading, so that keyboard and screen-reader users land there.
  useEffect(() => {
    document.getElementById("page-title")?.focus({ preventScroll: true });
  }, [page, session === null]);

  let main: JSX.Element;
  if (def && def.access === "public") main = <def.component />;
  else if (!session) main = <Login />;
  else if (!def || !visible(def, session)) main = <Notice kind="error">{t("notFound")}</Notice>;
  else main = <def.component />;

  const who = session
    ? session.kind === "admin"
      ? t("operator")
      : session.username || `#${session.userId}`
    : null;

  return (
    <>
      <button
        type="button"
        class="skip"
        onClick={() => {
          // The hash is the route: focus the content instead of navigating to an anchor.
          document.getElementById("main")?.focus();
        }}
      >
        {t("skip")}
      </button>
      <header class="top">
        <a class="brand" href={href(session ? "overview" : "")}>
          {t("brand")}
        </a>
        <nav aria-label={t("mainNav")} class="nav">
          <ul>
            {PAGES.filter((p) => visible(p, session)).map((p) => (
              <li key={p.name}>
                <a href={href(p.name)} aria-current={p.name === page ? "page" : undefined}>
                  {t(p.name)}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <Switches />
        {session && (
          <div class="who">
            <span class="sr-only">{t("loggedInAs", { who: who ?? "" })}</span>
            <span aria-hidden="true">{who}</span>
            <Button
              onClick={() => {
                setSession(null);
                navigate("");
              }}
            >
              {t("logout")}
            </Button>
          </div>
        )}
      </header>
      <main id="main" key={page} tabIndex={-1}>
        {main}
      </main>
    </>
  );
}
