import { createHash, randomBytes } from "node:crypto";
import { linkSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { writeFileAtomic as writeFileAtomicWith } from "@tokenpool/core/config-model";

/** SHA-256 of a text, hex: how the store recognises its own writes among file events. */
export const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

/** Whether a path is one of this store's temporary files (ignored by the watcher). */
export const isTempName = (name: string) => name.startsWith(".") && name.endsWith(".tmp");

/**
 * Writes `text` to `path` atomically (core's config-file writer: temporary file in the same
 * directory, fsync, rename), with `mode` (0600: the store's files hold secrets).
 */
export function writeFileAtomic(path: string, text: string, mode = 0o600): Promise<void> {
  return writeFileAtomicWith(path, text, { mode });
}

/** Thrown when another live process (or another store in this one) holds the directory. */
export class DirectoryLockedError extends Error {
  override readonly name = "DirectoryLockedError";
  readonly code = "STORE_DIR_LOCKED";
  constructor(
    readonly dir: string,
    readonly pid: number,
  ) {
    super(
      pid === process.pid
        ? `the file store directory ${dir} is already open in this process: close the other fileStore first (one store object per directory)`
        : `the file store directory ${dir} is in use by process ${pid} (lock file ${join(dir, ".lock")}): the file store serves one process; stop that process, or use @tokenpool/store-sqlite or @tokenpool/store-redis to share state between processes`,
    );
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: the process exists but belongs to another user.
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * Takes `<dir>/.lock` (holding our pid; made by hard-linking a complete temporary file, so that
 * it is created exclusively and never seen empty). A lock of a live process is
 * refused with {@link DirectoryLockedError}; a lock left by a dead process is taken over.
 * Returns the function that releases it.
 */
export function acquireDirLock(dir: string): () => void {
  const path = join(dir, ".lock");
  for (let attempt = 0; attempt < 3; attempt++) {
    const tmp = join(dir, `.lock.${process.pid}.${randomBytes(4).toString("hex")}.tmp`);
    writeFileSync(tmp, `${process.pid}\n`, { mode: 0o600 });
    try {
      linkSync(tmp, path);
      return () => {
        try {
          if (readFileSync(path, "utf8").trim() === String(process.pid)) rmSync(path);
        } catch {
          // Already gone.
        }
      };
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    } finally {
      rmSync(tmp, { force: true });
    }
    let pid = Number.NaN;
    try {
      pid = Number.parseInt(readFileSync(path, "utf8").trim(), 10);
    } catch {
      continue; // Removed meanwhile: try again.
    }
    if (Number.isInteger(pid) && pid > 0 && alive(pid)) throw new DirectoryLockedError(dir, pid);
    // Stale (its process is gone): take it over.
    rmSync(path, { force: true });
  }
  throw new Error(`cannot take the lock file ${path}: it keeps reappearing`);
}
