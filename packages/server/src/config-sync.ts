import { createHash } from "node:crypto";
import { type FSWatcher, watch } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import type { Gateway, Logger } from "@tokenpool/core";
import {
  configLists,
  managementConfigView,
  mergeYaml,
  writeFileAtomic,
} from "@tokenpool/core/config-model";
import { type Document, parseDocument } from "yaml";
import { applyConfig, type ServerConfig } from "./config.js";

/** Options of {@link startConfigSync}. */
export interface ConfigSyncOptions {
  gateway: Gateway;
  /** The configuration file (the seed's `config.yaml` layout). */
  path: string;
  logger: Logger;
  /** Quiet time after a change through the API before the file is written. @default 100 */
  writeDelayMs?: number;
  /** Quiet time after a file event before the file is read again. @default 200 */
  reloadDelayMs?: number;
}

/** A running two-way sync between a gateway and its configuration file. */
export interface ConfigSync {
  /** The configuration as read at start-up (after the secret key was hashed). */
  config: ServerConfig;
  /** Stops watching, then writes any change still pending to the file. */
  close(): Promise<void>;
}

/** The gateway setting that holds the management key's bcrypt hash (the seed's layout). */
const MANAGEMENT_SETTING = "remote-management";
const BCRYPT_HASH = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;
const SECRET_PATH = ["remote-management", "secret-key"] as const;

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

function parse(text: string, path: string): { doc: Document; config: ServerConfig } {
  const doc = parseDocument(text, { prettyErrors: true });
  if (doc.errors.length > 0)
    throw new Error(`the configuration file ${path} is not valid YAML: ${doc.errors[0]!.message}`);
  const config = (doc.toJS() ?? {}) as unknown;
  if (typeof config !== "object" || config === null || Array.isArray(config))
    throw new Error(`the configuration file ${path} must hold a mapping`);
  return { doc, config: config as ServerConfig };
}

/**
 * Makes the gateway's management key follow `remote-management.secret-key`: a plaintext key
 * becomes the key and its bcrypt hash replaces it in `doc` (resolves true: the file must be
 * written); a bcrypt hash is taken as it is; an empty string disables the management API. A
 * missing field changes nothing.
 */
async function applySecretKey(gateway: Gateway, doc: Document): Promise<boolean> {
  const value = doc.getIn([...SECRET_PATH]);
  if (value === undefined || value === null) return false;
  const configured = String(value).trim();
  const current = gateway.settings.get(MANAGEMENT_SETTING);
  const stored = typeof current?.["secret-key"] === "string" ? current["secret-key"] : "";
  if (configured !== "" && !BCRYPT_HASH.test(configured)) {
    await gateway.management.setKey(configured);
    const hash = gateway.settings.get(MANAGEMENT_SETTING)["secret-key"]!;
    doc.setIn([...SECRET_PATH], hash);
    return true;
  }
  if (configured !== stored)
    await gateway.settings.set({ [MANAGEMENT_SETTING]: { ...current, "secret-key": configured } });
  return false;
}

/**
 * Reads the configuration file, applies it to the gateway (hashing a plaintext management key
 * and writing the hash back), then keeps both in step:
 *
 * - every change through the API (settings, `api-keys` keys, pool credentials: the store's
 *   change notifications) regenerates the `GET /config` view and, when it differs from what
 *   the file holds, writes the differences into the file (comments, order and the file-only
 *   fields such as `port` or `remote-management` survive), atomically and debounced;
 * - edits made to the file by hand are applied (only the differences) a moment later; a file
 *   that does not parse or holds an invalid field is reported and ignored, the last good state
 *   keeps serving, and the file is not written until it is fixed.
 *
 * Reloads and writes run one at a time; the file events of our own writes are recognised by
 * the content's hash and ignored.
 *
 * @example
 * ```ts
 * const sync = await startConfigSync({ gateway, path: "config.yaml", logger });
 * // ... on shutdown, before gateway.close():
 * await sync.close();
 * ```
 */
export async function startConfigSync(options: ConfigSyncOptions): Promise<ConfigSync> {
  const { gateway, logger } = options;
  const path = resolve(options.path);
  const writeDelay = options.writeDelayMs ?? 100;
  const reloadDelay = options.reloadDelayMs ?? 200;

  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    throw new Error(`cannot read the configuration file ${path}: ${(error as Error).message}`);
  }
  const first = parse(text, path);
  if (await applySecretKey(gateway, first.doc)) {
    text = first.doc.toString();
    await writeFileAtomic(path, text);
    logger.info(`hashed the plaintext management key in ${path}`);
  }
  await applyConfig(gateway, first.config);

  const view = async () =>
    managementConfigView({
      settings: gateway.settings,
      keys: gateway.keys,
      pool: gateway.credentials.pool,
      configLists: () => configLists({ pool: gateway.credentials.pool }),
    });

  /** The file as we last read or wrote it (a good one). */
  let good = text;
  /** Hash of the file content last seen on disk (good or not), to skip events without change. */
  let seen = sha256(text);
  /** The view the file reflects; a write happens when the domain's view differs from it. */
  let written = JSON.stringify(await view());
  /** The file on disk does not parse or apply: nothing is written until it is fixed. */
  let broken = false;
  let changedWhileBroken = false;
  let closed = false;

  // One operation at a time: a write never runs while a hand edit is being applied.
  let chain: Promise<void> = Promise.resolve();
  const run = (what: string, fn: () => Promise<void>) => {
    chain = chain
      .then(fn)
      .catch((error: unknown) =>
        logger.error(`configuration file ${path}: ${what} failed: ${(error as Error).message}`),
      );
    return chain;
  };

  const writeBack = async () => {
    if (broken) {
      changedWhileBroken = true;
      return;
    }
    const current = await view();
    const json = JSON.stringify(current);
    if (json === written) return;
    const onDisk = await readFile(path, "utf8").catch(() => null);
    if (onDisk !== null && sha256(onDisk) !== seen) {
      // A hand edit is waiting to be applied: it goes first, and this write is redone after it.
      await reload();
      if (broken) return;
      if (JSON.stringify(await view()) === written) return;
    }
    const next = mergeYaml(good, await view());
    await writeFileAtomic(path, next);
    good = next;
    seen = sha256(next);
    written = JSON.stringify(await view());
    logger.debug(`wrote the configuration back to ${path}`);
  };

  const reload = async () => {
    let next: string;
    try {
      next = await readFile(path, "utf8");
    } catch (error) {
      // Editors that replace the file may leave it missing for a moment; the next event retries.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT")
        logger.error(`cannot read the configuration file ${path}: ${(error as Error).message}`);
      return;
    }
    const hash = sha256(next);
    if (hash === seen) return;
    seen = hash;
    try {
      const { doc, config } = parse(next, path);
      if (await applySecretKey(gateway, doc)) {
        next = doc.toString();
        await writeFileAtomic(path, next);
        seen = sha256(next);
      }
      await applyConfig(gateway, config);
    } catch (error) {
      broken = true;
      logger.error(
        `${(error as Error).message.replace(/^invalid configuration/, `the configuration file ${path} is invalid`)}; keeping the last good configuration (the file is not written until it is fixed)`,
      );
      return;
    }
    good = next;
    if (broken) logger.info(`the configuration file ${path} is valid again`);
    broken = false;
    logger.info(`reloaded the configuration file ${path}`);
    if (changedWhileBroken) {
      // API changes made while the file was broken: write those the file does not override.
      changedWhileBroken = false;
      schedule("write");
    } else written = JSON.stringify(await view());
  };

  const timers: { write: NodeJS.Timeout | null; reload: NodeJS.Timeout | null } = {
    write: null,
    reload: null,
  };
  const schedule = (which: "write" | "reload") => {
    if (closed) return;
    if (timers[which]) clearTimeout(timers[which]);
    timers[which] = setTimeout(
      () => {
        timers[which] = null;
        void run(
          which === "write" ? "writing" : "reloading",
          which === "write" ? writeBack : reload,
        );
      },
      which === "write" ? writeDelay : reloadDelay,
    );
  };

  const unwatchStore = gateway.store.watch((change) => {
    if (change.collection !== "users") schedule("write");
  });
  const name = basename(path);
  let watcher: FSWatcher | null = null;
  try {
    // The directory, not the file: editors that save by rename replace the watched inode.
    watcher = watch(dirname(path), (_event, filename) => {
      if (filename === null || filename.toString() === name) schedule("reload");
    });
    watcher.on("error", (error) =>
      logger.error(`stopped watching ${path}: ${(error as Error).message}`),
    );
  } catch (error) {
    logger.warn(`cannot watch ${path}; hand edits need a restart: ${(error as Error).message}`);
  }

  return {
    config: first.config,
    async close() {
      if (closed) return chain;
      closed = true;
      watcher?.close();
      unwatchStore();
      for (const t of Object.values(timers)) if (t) clearTimeout(t);
      // A change made just before shutdown still reaches the file.
      void run("writing", writeBack);
      await chain;
    },
  };
}
