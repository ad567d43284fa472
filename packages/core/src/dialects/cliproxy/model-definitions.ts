/**
 * `GET /model-definitions/:channel` (also `?channel=`) of the cliproxy dialect: the models a
 * channel (CLIProxyAPI's name for a provider) offers, for the model pickers of CLIProxyAPI's
 * HEAD UI (OAuth model aliases, excluded models).
 *
 * CLIProxyAPI answers a static catalogue compiled into its server. tokenpool has none: its
 * providers module serves whatever model a client names. The answer is what the pool knows:
 * the models the credentials of that channel list (their client-facing names: the alias, else
 * the name), without their excluded models, in pool order. A channel whose credentials serve
 * any model (an empty `models` list) answers `[]`.
 *
 * Channels: CLIProxyAPI's names ({@link MODEL_CHANNELS}), every provider the pool holds
 * credentials of, and every `openai-compatibility` entry's `name` (its credentials' label),
 * case-insensitive. Empty → 400 `channel is required`; anything else →
 * 400 `{ "error": "unknown channel", "channel": "<c>" }`, as CLIProxyAPI.
 *
 * @module
 */
import { json } from "../../exchange.js";
import type { Route } from "../../http/router.js";
import type { CredentialRecord } from "../../store/types.js";
import { type ManagementGuard, managementError, managementRoute } from "./common.js";

/** One model of `GET /model-definitions/:channel` (CLIProxyAPI's `ModelInfo` subset the UI reads). */
export interface ModelDefinition {
  id: string;
  /** The upstream model name, when the credential serves it under an alias (`id`). */
  display_name?: string;
  /** The channel's CLIProxyAPI type (`claude`, `gemini`, `codex` ...). */
  type?: string;
  /** tokenpool's provider of the credential that lists it. */
  owned_by?: string;
}

/** Reply of `GET /v0/management/model-definitions/:channel`. */
export interface ModelDefinitionsResponse {
  /** The channel, lower case. */
  channel: string;
  models: ModelDefinition[];
}

/** Which credentials make up a channel. */
type ChannelMatch = (c: CredentialRecord) => boolean;

const byProvider =
  (provider: string, kind?: CredentialRecord["kind"]): ChannelMatch =>
  (c) =>
    c.provider === provider && (kind === undefined || c.kind === kind);

/**
 * CLIProxyAPI's channel names and the credentials of each (a channel with no credentials in the
 * pool is known and answers `[]`).
 */
export const MODEL_CHANNELS: Readonly<Record<string, ChannelMatch>> = {
  claude: byProvider("anthropic"),
  anthropic: byProvider("anthropic"),
  codex: byProvider("codex"),
  gemini: byProvider("gemini", "api-key"),
  aistudio: byProvider("gemini", "api-key"),
  "gemini-cli": (c) =>
    (c.provider === "gemini" && c.kind === "oauth") || c.provider === "gemini-cli",
  interactions: byProvider("gemini-interactions"),
  vertex: byProvider("vertex"),
  antigravity: byProvider("antigravity"),
  qwen: byProvider("qwen"),
  iflow: byProvider("iflow"),
  kimi: byProvider("kimi"),
  xai: byProvider("xai"),
  openai: byProvider("openai"),
  "openai-compatibility": byProvider("openai", "api-key"),
};

/** The credentials of `channel` (lower case), or null when tokenpool knows no such channel. */
function channelCredentials(creds: CredentialRecord[], channel: string): CredentialRecord[] | null {
  const known = MODEL_CHANNELS[channel];
  if (known) return creds.filter(known);
  const ofProvider = creds.filter((c) => c.provider.toLowerCase() === channel);
  if (ofProvider.length > 0) return ofProvider;
  const compat = creds.filter(
    (c) => c.provider === "openai" && c.kind === "api-key" && c.label.toLowerCase() === channel,
  );
  return compat.length > 0 ? compat : null;
}

/** The models of a channel's credentials, first listing first, each id once. */
export function channelModels(
  creds: CredentialRecord[],
  channel: string,
): ModelDefinition[] | null {
  const of = channelCredentials(creds, channel);
  if (of === null) return null;
  const seen = new Set<string>();
  const out: ModelDefinition[] = [];
  for (const c of of) {
    for (const m of c.models) {
      const id = m.alias || m.name;
      if (seen.has(id) || c.excludedModels.includes(id)) continue;
      seen.add(id);
      const def: ModelDefinition = { id, type: channel, owned_by: c.provider };
      if (m.alias && m.alias !== m.name) def.display_name = m.name;
      out.push(def);
    }
  }
  return out;
}

/**
 * The model-definitions routes.
 *
 * @example
 * ```ts
 * router.add(modelDefinitionRoutes(guard, { pool: gateway.credentials.pool }));
 * ```
 */
export function modelDefinitionRoutes(
  guard: ManagementGuard,
  deps: { pool: { list(): CredentialRecord[] } },
): Route[] {
  const answer = (raw: string) => {
    const channel = raw.trim().toLowerCase();
    if (channel === "") throw managementError(400, "channel is required");
    const models = channelModels(deps.pool.list(), channel);
    if (models === null) return json(400, { error: "unknown channel", channel: raw.trim() });
    const reply: ModelDefinitionsResponse = { channel, models };
    return json(200, reply);
  };
  return [
    managementRoute(guard, "GET", "/model-definitions/:channel", async (_ex, params) =>
      answer(params.channel ?? ""),
    ),
    managementRoute(guard, "GET", "/model-definitions", async (ex) =>
      answer(new URLSearchParams(ex.search).get("channel") ?? ""),
    ),
  ];
}
