/**
 * `tokenpool rotate-secret`: moves everything a store keeps under the server secret to a new one
 * (see `rotateSecret` in @tokenpool/core), for the store and configuration `serve` would use.
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { chmod, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import {
  type LoggerLike,
  type RotateSecretReport,
  rotateSecret,
  silentLogger,
} from "@tokenpool/core";
import { loadConfig } from "./config.js";
import { DEFAULT_STORE, openStore, redactSpec } from "./serve.js";

/** Options of {@link rotateServerSecret}; the CLI flags map onto them. */
export interface RotateServerSecretOptions {
  /** As `serve --store`. @default the config's `store`, else "sqlite:./data/tokenpool.db" */
  store?: string;
  /** As `serve --config`: its `store` and `secret` are used. */
  config?: string;
  /**
   * The new secret (32+ characters). @default TOKENPOOL_NEW_SECRET, else (only when the current
   * secret lives in `secret.key`) a random one, written to `secret.key`
   */
  newSecret?: string;
  /** Where messages for the operator go (counts and ids, never a secret). @default stdout */
  print?: (line: string) => void;
  /** @default silentLogger */
  logger?: LoggerLike;
}

/** What {@link rotateServerSecret} did. */
export interface RotateServerSecretResult {
  report: RotateSecretReport;
  /** The `secret.key` that now holds the new secret, or null when the secret comes from elsewhere. */
  secretFile: string | null;
}

const MIN_SECRET = 32;

/**
 * Rotates the server secret of the store `serve` would open: takes the current secret from the
 * same source as `serve` (TOKENPOOL_SECRET, the config's `secret`, or `<data dir>/secret.key`)
 * and the new one from `newSecret` / TOKENPOOL_NEW_SECRET, or generates one when the current
 * one lives in `secret.key`. A generated secret is written to `secret.key.new` (mode 0600)
 * before anything is re-encrypted and renamed over `secret.key` once all is done, so a run that
 * stops half-way is finished by running the command again (it picks `secret.key.new` up).
 *
 * @example
 * ```ts
 * const { report } = await rotateServerSecret({ store: "sqlite:./data/tokenpool.db" });
 * ```
 */
export async function rotateServerSecret(
  options: RotateServerSecretOptions = {},
): Promise<RotateServerSecretResult> {
  const print = options.print ?? ((line: string) => process.stdout.write(`${line}\n`));
  const config = options.config ? await loadConfig(options.config) : {};
  const spec = options.store ?? config.store ?? DEFAULT_STORE;
  if (spec === "memory")
    throw new Error("a memory store keeps nothing: there is nothing to rotate");
  const explicit = options.newSecret ?? (process.env.TOKENPOOL_NEW_SECRET || undefined);
  if (explicit !== undefined && explicit.length < MIN_SECRET)
    throw new Error(
      `the new secret needs at least ${MIN_SECRET} characters (e.g. \`openssl rand -hex 32\`)`,
    );
  const { store, dataDir } = await openStore(spec);
  try {
    const fromEnv = process.env.TOKENPOOL_SECRET ?? config.secret;
    let from: string;
    let to: string;
    let file: string | null = null;
    let pending: string | null = null;
    if (fromEnv) {
      if (explicit === undefined)
        throw new Error(
          `the current secret comes from ${process.env.TOKENPOOL_SECRET ? "TOKENPOOL_SECRET" : "the config's `secret`"}: pass the new one with --new-secret or TOKENPOOL_NEW_SECRET, then put it there`,
        );
      from = fromEnv;
      to = explicit;
    } else {
      if (!dataDir) throw new Error(`the store ${redactSpec(spec)} needs TOKENPOOL_SECRET`);
      file = join(dataDir, "secret.key");
      pending = `${file}.new`;
      const current = await readSecretFile(file);
      if (current === null)
        throw new Error(`no server secret in ${file}: nothing was stored under one yet`);
      from = current;
      const interrupted = await readSecretFile(pending);
      if (interrupted !== null && explicit !== undefined && explicit !== interrupted)
        throw new Error(
          `a rotation to the secret in ${pending} was interrupted: finish it first (run the command again without a new secret)`,
        );
      if (interrupted !== null) print(`Resuming the interrupted rotation (${pending}).`);
      to = interrupted ?? explicit ?? randomBytes(32).toString("hex");
      // The new secret is on disk before anything is encrypted with it.
      if (interrupted === null) {
        await writeFile(pending, `${to}\n`, { mode: 0o600 });
        await chmod(pending, 0o600);
      }
    }
    const report = await rotateSecret({
      store,
      from,
      to,
      logger: options.logger ?? silentLogger,
    });
    if (file && pending) await rename(pending, file);
    const c = report.credentials;
    const k = report.keys;
    print(
      `Credentials: ${c.resealed} re-encrypted, ${c.sealed} plaintext sealed, ${c.current} already current, ${c.plaintext} plaintext by the store's format, ${c.unreadable.length} unreadable${c.unreadable.length ? ` (${c.unreadable.join(", ")})` : ""}.`,
    );
    print(
      `Downstream keys: ${k.rekeyed} re-encrypted and re-hashed, ${k.current} already current, ${k.unreadable.length} unreadable${k.unreadable.length ? ` (ids ${k.unreadable.join(", ")})` : ""}.`,
    );
    if (k.withoutCipher.length > 0)
      print(
        `Downstream keys without a stored cipher stop working (revoke or reissue them): ids ${k.withoutCipher.join(", ")}.`,
      );
    if (report.users.withAccessToken > 0)
      print(
        `${report.users.withAccessToken} user(s) hold an access token issued under the old secret: issue new ones.`,
      );
    print(
      file
        ? `The new secret is in ${file}. Restart every gateway on this store.`
        : "Now set the new secret (TOKENPOOL_SECRET or the config's `secret`) on every instance and restart them.",
    );
    return { report, secretFile: file };
  } finally {
    await store.close();
  }
}

/** A secret file's content (32+ characters), or null when it is missing or too short. */
async function readSecretFile(file: string): Promise<string | null> {
  try {
    const s = (await readFile(file, "utf8")).trim();
    return s.length >= MIN_SECRET ? s : null;
  } catch {
    return null;
  }
}
