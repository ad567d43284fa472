/**
 * `POST /vertex/import` of the cliproxy dialect: a Google Cloud service-account key (the JSON
 * file the Cloud console downloads) becomes a Vertex AI credential, as CLIProxyAPI's HEAD UI
 * imports one (multipart `file`, optional `location` field, else `?location=`, else
 * `us-central1`).
 *
 * The credential: id (and auth file name) `vertex-<project_id>.json`, provider `vertex`, kind
 * `oauth` (an account, listed by `GET /auth-files` with its `email` and `project_id`), label the
 * service account's `client_email`, base URL the location's Vertex AI endpoint
 * (`https://<location>-aiplatform.googleapis.com`; `global`: `https://aiplatform.googleapis.com`).
 * The whole key file is its secret (`secret.extra.serviceAccount`), sealed with the server secret
 * like every credential secret: no answer shows it (`GET /auth-files/download` renders only the
 * file's `type`, `email` and `project_id`), nothing logs it. Importing the same project again
 * replaces the key. No upstream adapter serves `vertex` credentials yet: they are stored and
 * listed, never used for requests.
 *
 * Answers as CLIProxyAPI's: 200 `{ status: "ok", "auth-file", project_id, email, location }`;
 * 400 `file required`, `invalid json` (with `message`), `invalid service account` (with
 * `message`), `project_id missing`, `invalid location`.
 *
 * @module
 */
import { header, json, type Reply } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { CredentialSecret } from "../../store/types.js";
import { emptyCredentialState } from "../../store/util.js";
import { type AuthFileCredentials, parseMultipartParts } from "./auth-files.js";
import { type ManagementGuard, managementError, managementRoute } from "./common.js";

/** Reply of `POST /v0/management/vertex/import`. */
export interface VertexImportResponse {
  status: "ok";
  /** The credential's auth file name, `vertex-<project_id>.json`. */
  "auth-file": string;
  project_id: string;
  email: string;
  location: string;
}

/** Dependencies of {@link vertexImportRoutes}. */
export interface VertexImportDeps {
  pool: AuthFileCredentials;
  /** Largest accepted upload (the whole multipart request). @default 1048576 (1 MiB) */
  maxFileBytes?: number;
  /** Called after an import replaced a credential's secret. */
  secretChanged?: (id: string) => void;
}

/** The default Vertex AI location, as CLIProxyAPI's. */
export const VERTEX_DEFAULT_LOCATION = "us-central1";

const LOCATION_RE = /^[a-z][a-z0-9-]{0,62}$/;
const PROJECT_RE = /^[a-z0-9][a-z0-9.:-]{0,100}$/i;

/** The Vertex AI endpoint of a location. */
export function vertexBaseUrl(location: string): string {
  return location === "global"
    ? "https://aiplatform.googleapis.com"
    : `https://${location}-aiplatform.googleapis.com`;
}

const str = (v: unknown): string => (typeof v === "string" ? v.trim() : "");

/** A 400 with CLIProxyAPI's `error` and a `message` (never a piece of the key file). */
const bad = (error: string, message?: string): Reply =>
  json(400, message === undefined ? { error } : { error, message });

/**
 * The `POST /vertex/import` route.
 *
 * @example
 * ```ts
 * router.add(vertexImportRoutes(guard, { pool: gateway.credentials.pool }));
 * ```
 */
export function vertexImportRoutes(guard: ManagementGuard, deps: VertexImportDeps): Route[] {
  const { pool } = deps;
  const maxFileBytes = deps.maxFileBytes ?? 1 << 20;
  return [
    managementRoute(guard, "POST", "/vertex/import", async (ex) => {
      const type = header(ex.headers, "content-type") ?? "";
      const body = await ex.body(maxFileBytes);
      const parts = /^multipart\/form-data/i.test(type) ? parseMultipartParts(body, type) : null;
      const file = parts?.find((p) => p.field === "file" && p.filename !== undefined);
      if (!file) return bad("file required");
      const formLocation = parts?.find((p) => p.field === "location" && p.filename === undefined);
      const location =
        str(formLocation?.data.toString("utf8")) ||
        str(new URLSearchParams(ex.search).get("location")) ||
        VERTEX_DEFAULT_LOCATION;
      if (!LOCATION_RE.test(location))
        return bad("invalid location", "location must be a Vertex AI region such as us-central1");

      let sa: unknown;
      try {
        sa = JSON.parse(file.data.toString("utf8"));
      } catch {
        // The parser's message may quote the file: say only what is wrong.
        return bad("invalid json", "the file is not valid JSON");
      }
      if (typeof sa !== "object" || sa === null || Array.isArray(sa))
        return bad("invalid service account", "the file must be a JSON object");
      const f = sa as Record<string, unknown>;
      if (str(f.type) !== "service_account")
        return bad("invalid service account", 'type must be "service_account"');
      const email = str(f.client_email);
      if (!email) return bad("invalid service account", "client_email missing");
      const privateKey = str(f.private_key);
      if (!privateKey) return bad("invalid service account", "private_key missing");
      if (!/-----BEGIN (RSA )?PRIVATE KEY-----/.test(privateKey))
        return bad("invalid service account", "private_key is not a PEM private key");
      const project = str(f.project_id);
      if (!project) return bad("project_id missing");
      if (!PROJECT_RE.test(project))
        return bad("invalid service account", "project_id is not a Google Cloud project id");

      const name = `vertex-${project.replace(/[^A-Za-z0-9.-]/g, "_")}.json`;
      const secret: CredentialSecret = { extra: { serviceAccount: JSON.stringify(f) } };
      const fields = {
        provider: "vertex",
        kind: "oauth" as const,
        label: email,
        baseUrl: vertexBaseUrl(location),
        secret,
        projectIds: [project],
      };
      const existing = pool.get(name);
      if (existing && (existing.kind !== "oauth" || existing.provider !== "vertex"))
        throw managementError(409, `a credential named ${name} exists and is not a Vertex import`);
      if (existing) {
        await pool.update(existing.id, { ...fields, state: emptyCredentialState() });
        deps.secretChanged?.(existing.id);
      } else await pool.add({ id: name, ...fields });
      const reply: VertexImportResponse = {
        status: "ok",
        "auth-file": name,
        project_id: project,
        email,
        location,
      };
      return json(200, reply);
    }),
  ];
}
