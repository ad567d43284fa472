import { readFile } from "node:fs/promises";
import type { Gateway } from "@tokenpool/core";
import {
  applyConfig as applyManagedConfig,
  type ConfigFileSettings,
  configProblems as managedConfigProblems,
} from "@tokenpool/core/config-model";
import { parse } from "yaml";

/**
 * A CLIProxyAPI-style `config.yaml` as the server reads it: where to listen, the store, the
 * secret, `remote-management`, the scalar settings and the key lists of the management API's
 * `GET /config`. Unknown fields are ignored (and kept in the file on write-back).
 */
export interface ServerConfig extends ConfigFileSettings {
  port?: number;
  host?: string;
  store?: string;
  secret?: string;
  /**
   * Addresses or CIDR ranges of reverse proxies / load balancers in front of the server: only
   * from these is `X-Forwarded-For` read for the client's address (key allowlists, management
   * remote check and bans). tokenpool's own field; empty = trust none.
   */
  "trusted-proxies"?: string[];
  "remote-management"?: { "allow-remote"?: boolean; "secret-key"?: string };
  /** CLIProxyAPI's older spelling of `remote-management.allow-remote` (either one allows). */
  "allow-remote-management"?: boolean;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses configuration text (YAML or JSON); throws a message naming `path` on failure. */
export function parseConfigText(text: string, path: string): ServerConfig {
  let value: unknown;
  try {
    value = parse(text);
  } catch (error) {
    throw new Error(
      `the configuration file ${path} is not valid YAML: ${(error as Error).message}`,
    );
  }
  if (value === null || value === undefined) return {};
  if (!isObject(value)) throw new Error(`the configuration file ${path} must hold a mapping`);
  return value as ServerConfig;
}

/** Reads a YAML (or JSON) configuration file; throws a message naming the file on failure. */
export async function loadConfig(path: string): Promise<ServerConfig> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`cannot read the configuration file ${path}: ${(error as Error).message}`);
  }
  return parseConfigText(text, path);
}

/**
 * The problems of a configuration's managed fields (settings and key lists), one message per
 * field; empty when it can be applied.
 */
export function configProblems(config: ServerConfig): string[] {
  return managedConfigProblems(config);
}

/**
 * Brings the configuration's settings and key lists into the gateway, through the same domain
 * models as the management API (see core's config model, `applyConfig`). Only fields present in
 * the file are applied, and only where they differ from the current state, so applying the same
 * file twice writes nothing. Validates everything first: throws (naming the fields) without
 * changing anything when a field is invalid. Resolves with whether anything was written.
 */
export function applyConfig(gateway: Gateway, config: ServerConfig): Promise<boolean> {
  return applyManagedConfig(gateway, config);
}
