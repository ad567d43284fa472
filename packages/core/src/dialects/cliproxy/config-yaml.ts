/**
 * `GET /config.yaml` and `PUT /config.yaml` of the cliproxy dialect (CLIProxyAPI's raw config
 * editor, used by its management UIs from v0.1.15 on).
 *
 * - `GET` answers the `GET /config` view as YAML (`application/yaml; charset=utf-8`). It is
 *   built from the domain, not read from a file: comments and the file-only fields (`port`,
 *   `remote-management` ...) of a server's own `config.yaml` are not in it.
 * - `PUT` takes raw YAML and applies it with the config model's `applyConfig`, the code the
 *   standalone server's `config.yaml` hot reload runs, so settings, `api-keys` and the provider
 *   lists behave exactly as when the file is edited by hand. That means: **a field the YAML
 *   holds replaces the current value (a list replaces the whole list: `codex-api-key: []`
 *   removes every Codex key); a field the YAML omits is left as it is**. CLIProxyAPI replaces
 *   its whole config with the body; tokenpool does not, so a YAML that lacks a section never
 *   wipes its credentials. Fields the config model does not manage (file-only and unknown ones,
 *   `remote-management` included) are ignored: no route changes the management key.
 *   Everything is validated before anything is written: YAML that does not parse or is not a
 *   mapping → 400 `{ error: "invalid_yaml", message }`; a field with a bad value → 422
 *   `{ error: "invalid_config", message }` (naming every bad field), and nothing changes.
 *   Success → `{ ok: true, changed: [<top-level fields whose view changed>] }`.
 *
 * @module
 */
import { parseDocument, stringify } from "yaml";
import { applyConfig, configProblems } from "../../config-model/config-apply.js";
import { type ConfigViewDeps, managementConfigView } from "../../config-model/config-view.js";
import type { CredentialPool } from "../../credentials/pool.js";
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { KeyService } from "../../keys/service.js";
import type { SettingsService } from "../../settings/service.js";
import { RUNTIME_SETTINGS } from "../../settings/table.js";
import { type ManagementGuard, managementRoute } from "./common.js";

/** What the config.yaml routes need. */
export interface ConfigYamlDeps {
  settings: SettingsService;
  keys: KeyService;
  pool: CredentialPool;
  maxBodyBytes: number;
  /** The object lists of the view (as `GET /config`). */
  configLists?: ConfigViewDeps["configLists"];
  /** Called after a setting was written (e.g. `debug` changes the log level at once). */
  settingChanged?(name: string): void;
}

/** Reply of `PUT /v0/management/config.yaml`. */
export interface ManagementConfigYamlResponse {
  ok: true;
  /** Top-level fields of the `GET /config` view that the YAML changed. */
  changed: string[];
}

/** A failed `PUT /config.yaml`: CLIProxyAPI's `{ error, message }`. */
export interface ManagementConfigYamlError {
  error: "invalid_yaml" | "invalid_config";
  message: string;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** The `config.yaml` routes. */
export function configYamlRoutes(guard: ManagementGuard, deps: ConfigYamlDeps): Route[] {
  const view = () => managementConfigView(deps);
  return [
    managementRoute(guard, "GET", "/config.yaml", async () => ({
      status: 200,
      headers: {
        "content-type": "application/yaml; charset=utf-8",
        "cache-control": "no-store",
        "x-content-type-options": "nosniff",
      },
      body: stringify(await view()),
    })),
    managementRoute(guard, "PUT", "/config.yaml", async (ex) => {
      const text = (await ex.body(deps.maxBodyBytes)).toString("utf8");
      const doc = parseDocument(text);
      if (doc.errors.length > 0)
        return json(400, { error: "invalid_yaml", message: doc.errors[0]!.message });
      const config = doc.toJS() ?? {};
      if (!isMap(config))
        return json(400, { error: "invalid_yaml", message: "the YAML must hold a mapping" });
      const problems = configProblems(config);
      if (problems.length > 0)
        return json(422, { error: "invalid_config", message: problems.join("; ") });
      const before = await view();
      await applyConfig({ settings: deps.settings, keys: deps.keys, credentials: deps }, config);
      const after = await view();
      const changed = Object.keys(after).filter(
        (k) =>
          JSON.stringify((before as unknown as Record<string, unknown>)[k]) !==
          JSON.stringify((after as unknown as Record<string, unknown>)[k]),
      );
      for (const name of changed)
        if (Object.hasOwn(RUNTIME_SETTINGS, name)) deps.settingChanged?.(name);
      const body: ManagementConfigYamlResponse = { ok: true, changed };
      return json(200, body);
    }),
  ];
}
