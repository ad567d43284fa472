/**
 * The one writer of CLIProxyAPI-style configuration files (`config.yaml`), shared by the
 * standalone server's config sync and the file store: an atomic replace of the file, and a YAML
 * merge that changes only what differs so that comments, order and unknown fields survive.
 * Node only (`node:fs`).
 *
 * @module
 */
import { randomBytes } from "node:crypto";
import { chmod, open, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { Document, parseDocument } from "yaml";

/** Options of {@link writeFileAtomic}. */
export interface WriteFileAtomicOptions {
  /**
   * The file's mode. Absent: the mode of the file being replaced, or 0600 for a new file
   * (configuration files hold keys).
   */
  mode?: number;
}

/**
 * Writes `text` to `path` atomically: a temporary file in the same directory (so that the
 * rename stays on one file system), fsync, rename over the target. A reader or a crash sees
 * the old file or the new one, never half of one. The temporary file is removed on failure.
 *
 * @example
 * ```ts
 * await writeFileAtomic("config.yaml", text); // keeps the file's mode
 * await writeFileAtomic("keys.json", json, { mode: 0o600 });
 * ```
 */
export async function writeFileAtomic(
  path: string,
  text: string,
  options: WriteFileAtomicOptions = {},
): Promise<void> {
  const tmp = join(
    dirname(path),
    `.${basename(path)}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`,
  );
  const mode =
    options.mode ??
    (await stat(path).then(
      (s) => s.mode & 0o777,
      () => 0o600,
    ));
  const fh = await open(tmp, "w", mode);
  try {
    await fh.writeFile(text, "utf8");
    await fh.sync();
  } catch (error) {
    await fh.close().catch(() => {});
    await rm(tmp, { force: true });
    throw error;
  }
  await fh.close();
  try {
    // open() applies the umask; the mode must not depend on it.
    await chmod(tmp, mode);
    await rename(tmp, path);
  } catch (error) {
    await rm(tmp, { force: true });
    throw error;
  }
}

/** Options of {@link mergeYaml}. */
export interface MergeYamlOptions {
  /**
   * Whether a key the file holds but the view's mapping lacks is deleted (`path` is the key's
   * path from the top). Absent: nothing is deleted.
   */
  prune?(path: readonly string[]): boolean;
}

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * A stable text of a JSON value with sorted object keys: equal values give equal texts. Used to
 * tell whether a value changed (the YAML merge here, the file store's change detection).
 */
export function canonicalJson(v: unknown): string {
  return JSON.stringify(v, (_k, val: unknown) =>
    isMap(val)
      ? Object.fromEntries(
          Object.keys(val)
            .sort()
            .map((k) => [k, val[k]]),
        )
      : val,
  );
}

/**
 * Writes `view` into the YAML text `previous` (a new document when it is absent or blank),
 * touching only what differs: mappings are merged key by key so that the comments and order
 * of unchanged entries survive; anything else (scalars, lists) is replaced whole when it
 * differs. Keys of the file absent from the view stay, unless `options.prune` says otherwise.
 * Returns the new text.
 *
 * @example
 * ```ts
 * const next = mergeYaml(await readFile("config.yaml", "utf8"), { debug: true });
 * await writeFileAtomic("config.yaml", next);
 * ```
 */
export function mergeYaml(
  previous: string | undefined,
  view: object,
  options: MergeYamlOptions = {},
): string {
  const doc = previous?.trim() ? parseDocument(previous) : new Document({});
  const current = (doc.toJS() ?? {}) as Record<string, unknown>;
  const merge = (path: string[], value: unknown, cur: unknown) => {
    if (isMap(value) && isMap(cur)) {
      for (const k of Object.keys(cur))
        if (!(k in value) && options.prune?.([...path, k])) doc.deleteIn([...path, k]);
      for (const [k, v] of Object.entries(value)) merge([...path, k], v, cur[k]);
      return;
    }
    if (canonicalJson(value) !== canonicalJson(cur)) doc.setIn(path, value);
  };
  for (const k of Object.keys(current)) if (!(k in view) && options.prune?.([k])) doc.delete(k);
  for (const [k, v] of Object.entries(view) as [string, unknown][]) merge([k], v, current[k]);
  return doc.toString();
}
