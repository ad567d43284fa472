import { readFile } from "node:fs/promises";
import type { Gateway } from "@tokenpool/core";
import { parse } from "yaml";

/**
 * The part of a CLIProxyAPI-style `config.yaml` the server understands today: where to listen,
 * the store, the secret, downstream `api-keys`, `openai-compatibility` providers and the scalar
 * runtime settings. Unknown fields are ignored (later issues read more of the seed's layout).
 */
export interface ServerConfig {
  port?: number;
  host?: string;
  store?: string;
  secret?: string;
  "api-keys"?: string[];
  "openai-compatibility"?: {
    name: string;
    "base-url": string;
    "api-keys"?: string[];
    models?: { name: string; alias?: string }[];
  }[];
  "remote-management"?: { "allow-remote"?: boolean; "secret-key"?: string };
  debug?: boolean;
  "proxy-url"?: string;
  "request-retry"?: number;
  "request-log"?: boolean;
}

const SCALAR_SETTINGS = ["debug", "proxy-url", "request-retry", "request-log"] as const;

/** Reads a YAML (or JSON) configuration file; throws a message naming the file on failure. */
export async function loadConfig(path: string): Promise<ServerConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`cannot read the configuration file ${path}: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = parse(text);
  } catch (error) {
    throw new Error(
      `the configuration file ${path} is not valid YAML: ${(error as Error).message}`,
    );
  }
  if (value === null || value === undefined) return {};
  if (typeof value !== "object" || Array.isArray(value))
    throw new Error(`the configuration file ${path} must hold a mapping`);
  return value as ServerConfig;
}

/**
 * Brings the configuration's keys, providers and settings into the gateway's store. Idempotent:
 * entries already present (same key, same credential id) are updated, not duplicated.
 */
export async function applyConfig(gateway: Gateway, config: ServerConfig): Promise<void> {
  const settings: Record<string, unknown> = {};
  for (const name of SCALAR_SETTINGS) if (config[name] !== undefined) settings[name] = config[name];
  if (Object.keys(settings).length > 0) await gateway.settings.set(settings);

  for (const [i, plain] of (config["api-keys"] ?? []).entries()) {
    if (typeof plain !== "string" || plain.length === 0) continue;
    if (await gateway.keys.findByPlain(plain)) continue;
    await gateway.keys.create({
      name: `config-api-key-${i + 1}`,
      key: plain,
      unlimitedQuota: true,
    });
  }

  for (const provider of config["openai-compatibility"] ?? []) {
    for (const [i, apiKey] of (provider["api-keys"] ?? [""]).entries()) {
      const id = `openai-compatibility:${provider.name}:${i}`;
      const fields = {
        provider: "openai",
        kind: "api-key" as const,
        label: provider.name,
        baseUrl: provider["base-url"],
        secret: { apiKey },
        models: provider.models ?? [],
      };
      if (gateway.credentials.get(id)) await gateway.credentials.update(id, fields);
      else await gateway.credentials.add({ id, ...fields });
    }
  }
}
