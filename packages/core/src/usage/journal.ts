import { randomBytes } from "node:crypto";
import {
  closeSync,
  constants,
  type Dirent,
  fstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { join, resolve } from "node:path";

/** A segment of more than this many bytes is followed by a new one. */
const SEGMENT_BYTES = 4 * 1024 * 1024;
/** How long a lazy line may wait for a write that another line or a batch makes anyway (ms). */
const LAZY_MS = 20;
/** The names of journal segments, claimed (`.claimed-<pid>`) or not. Anything else is left alone. */
const NAME = /^(\d+)\.([0-9a-f]+)\.(\d+)\.journal(?:\.claimed-(\d+))?$/;
const APPEND_FLAGS =
  constants.O_WRONLY |
  constants.O_CREAT |
  constants.O_EXCL |
  constants.O_APPEND |
  constants.O_NOFOLLOW;
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/**
 * What this process holds, shared by every copy of this module loaded in it: the instances of the
 * journals it opened (so that a journal named with this process's pid but another instance is
 * known to be a dead process's that had the same pid, such as pid 1 in a container) and the
 * claimed files it has not released.
 */
interface Held {
  instances: Set<string>;
  claimed: Set<string>;
}
const HELD_KEY = Symbol.for("tokenpool.usageJournal.held");
const shared = globalThis as { [HELD_KEY]?: Held };
shared[HELD_KEY] ??= { instances: new Set(), claimed: new Set() };
const held: Held = shared[HELD_KEY];

/** One file of a journal, with the tags of its entries that are not done. */
interface Segment {
  readonly path: string;
  readonly pending: Set<string>;
}

/** Options of {@link UsageJournal.open}. */
export interface UsageJournalOptions {
  /** A segment that has grown past this many bytes is followed by a new one (default 4 MiB). */
  segmentBytes?: number;
  /** Told of a failed write (appends throw from then on). */
  onError?: (error: Error) => void;
}

/**
 * A per-process, append-only journal file that lets an in-memory write-behind (the usage
 * writer's quota blocks) survive the death of its process: each event is appended as one JSON
 * line, and the lines of one event-loop turn are written with one `writeSync` on an `O_APPEND`
 * file descriptor at the end of that turn (or at {@link UsageJournal.flush}), so from then on
 * they are in the kernel's page cache, and a later process on the same machine gets them back
 * with {@link claimDeadJournals} even if this one was killed with SIGKILL (or crashed, or ran
 * out of memory) right after. A kill within the turn that appended a line loses it.
 *
 * What it does not guarantee: nothing is fsynced, so a power loss or a kernel crash can lose
 * the last seconds of entries (or leave a torn line, which replay skips). Replay is at least
 * once: the current segment keeps the entries of tags already {@link UsageJournal.done}, and a
 * replayer that dies before {@link ClaimedJournal.release} has its claim replayed again, so
 * whatever applies the entries must tolerate seeing them twice. Liveness is decided by pid
 * (`process.kill(pid, 0)`), which holds for processes of one machine in one pid namespace; a
 * dead process's journal whose pid was reused by a live process waits until that one exits.
 *
 * Layout: files `<pid>.<instance>.<seq>.journal` in {@link UsageJournal.dir} (mode 0o700,
 * files 0o600), `instance` a random hex id per {@link UsageJournal.open} and `seq` counting
 * segments from 1. A segment that has grown past `segmentBytes` (4 MiB) is followed by the next
 * one; an old segment is unlinked as soon as every tag appended to it is done.
 */
export class UsageJournal {
  /** The directory of the journal files (absolute). */
  readonly dir: string;
  readonly #prefix: string;
  readonly #segmentBytes: number;
  #fd: number;
  #seq = 1;
  /** Bytes written to the current segment; Infinity after a short write (rotate first). */
  #bytes = 0;
  #current: Segment;
  /** Segments that are no longer written to (every segment once closed), oldest first. */
  readonly #old: Segment[] = [];
  /** Lines appended and not written yet, and their tags. */
  #buffer: string[] = [];
  #tags = new Set<string>();
  /** Whether a write at the end of this turn is scheduled (an eager line is waiting). */
  #soon = false;
  /** The write that lazy lines wait for when no eager line comes. */
  #lazyTimer: NodeJS.Timeout | null = null;
  /** The first failed write: appends throw it from then on. */
  #failed: Error | null = null;
  readonly #onError: ((error: Error) => void) | undefined;

  private constructor(
    dir: string,
    instance: string,
    segmentBytes: number,
    onError: ((error: Error) => void) | undefined,
  ) {
    this.dir = dir;
    this.#onError = onError;
    this.#prefix = join(dir, `${process.pid}.${instance}.`);
    this.#segmentBytes = segmentBytes;
    const path = `${this.#prefix}1.journal`;
    this.#fd = openSync(path, APPEND_FLAGS, 0o600);
    this.#current = { path, pending: new Set() };
  }

  /**
   * Creates `dir` (recursively, mode 0o700; an existing directory is left as it is) and opens
   * this process's first segment in it, under a new random instance id (so several gateways of
   * one process each have their own journal). Throws when the directory or the file cannot be
   * created.
   */
  static open(dir: string, options: UsageJournalOptions = {}): UsageJournal {
    const segmentBytes = options.segmentBytes ?? SEGMENT_BYTES;
    if (!(segmentBytes > 0)) throw new RangeError("segmentBytes must be positive");
    const abs = resolve(dir);
    mkdirSync(abs, { recursive: true, mode: 0o700 });
    const instance = randomBytes(8).toString("hex");
    const journal = new UsageJournal(abs, instance, segmentBytes, options.onError);
    held.instances.add(instance);
    return journal;
  }

  /**
   * Appends one entry: `JSON.stringify(entry)` and a newline. The lines appended during one
   * turn of the event loop are written together, with one `writeSync` (no fsync), when the turn
   * ends (`setImmediate`) or at {@link UsageJournal.flush}, whichever comes first: a request's
   * line appended before it is forwarded is in the file before its upstream can answer (that
   * takes a later turn), at one write per turn instead of one per request. `tag` is what the
   * caller groups entries by (a quota block's id), see {@link UsageJournal.done}.
   *
   * A `lazy` line does not ask for a write of its own: it goes out with the next eager line's
   * write, at {@link UsageJournal.flush}, or after 20 ms, whichever comes
   * first. The usage writer's request-finished lines are lazy: each only makes a kill's
   * recovery exact (rather than at the request's estimate, which its share line already
   * guarantees), so one request at a time costs one write (its share line, with the previous
   * request's finished line) instead of two.
   *
   * Throws when the entry cannot be serialized, when the journal is closed, and once a write
   * has failed (disk full, `EBADF`, a short write, a segment that cannot be created): the
   * caller then takes its slower durable path. A failed write is reported by `onError` (given
   * to {@link UsageJournal.open}); the lines of that write are lost to a replay.
   */
  append(entry: unknown, tag: string, lazy = false): void {
    if (this.#fd < 0) throw new Error("the usage journal is closed");
    if (this.#failed) throw this.#failed;
    const json = JSON.stringify(entry);
    if (json === undefined) throw new TypeError("a journal entry must be serializable to JSON");
    if (!lazy) {
      if (!this.#soon) {
        this.#soon = true;
        setImmediate(this.#flushSoon);
      }
    } else if (!this.#soon && this.#lazyTimer === null) {
      this.#lazyTimer = setTimeout(this.#flushLazy, LAZY_MS);
      this.#lazyTimer.unref();
    }
    this.#buffer.push(json);
    this.#tags.add(tag);
  }

  readonly #flushSoon = (): void => {
    this.#soon = false;
    try {
      this.flush();
    } catch {
      // Reported through onError; later appends throw.
    }
  };

  readonly #flushLazy = (): void => {
    this.#lazyTimer = null;
    try {
      this.flush();
    } catch {
      // Reported through onError; later appends throw.
    }
  };

  /**
   * Writes the lines appended since the last write, now (one `writeSync`). The usage writer
   * calls it before it writes a batch to the store, so the file never lags the store. Throws
   * (and reports to `onError`) when the write fails.
   */
  flush(): void {
    // A pending lazy timer is left to run (a no-op when nothing waits): it fires sooner than
    // 20 ms after any lazy line appended later, so it still bounds their wait, and requests
    // one at a time do not each start and clear a timer.
    if (this.#buffer.length === 0 || this.#fd < 0) return;
    const text = `${this.#buffer.join("\n")}\n`;
    const tags = this.#tags;
    this.#buffer = [];
    this.#tags = new Set();
    try {
      if (this.#bytes >= this.#segmentBytes) this.#rotate();
      for (const tag of tags) this.#current.pending.add(tag);
      const length = Buffer.byteLength(text);
      const written = writeSync(this.#fd, text);
      this.#bytes += written;
      if (written !== length) {
        this.#bytes = Number.POSITIVE_INFINITY;
        throw new Error(`short write to the usage journal (${written} of ${length} bytes)`);
      }
    } catch (error) {
      this.#failed = error as Error;
      this.#onError?.(error as Error);
      throw error;
    }
  }

  /**
   * Declares that no entry tagged `tag` is needed any more (its block was settled in the
   * store). Every segment but the current one whose tags are all done is unlinked; an append
   * with the same tag afterwards needs it again. Does not throw (a segment that cannot be
   * unlinked is tried again at the next call).
   */
  done(tag: string): void {
    this.#current.pending.delete(tag);
    for (let i = 0; i < this.#old.length; i++) {
      const segment = this.#old[i]!;
      segment.pending.delete(tag);
      if (segment.pending.size === 0 && unlinkQuietly(segment.path)) this.#old.splice(i--, 1);
    }
  }

  /**
   * Closes the file descriptor and unlinks the segments whose tags are all done. With
   * `{ remove: true }` every segment of this journal is unlinked (a clean shutdown, after
   * everything was written to the store); without it the rest stays for a replay once this
   * process has exited. Calling it again is harmless (`remove` still applies).
   */
  close(options: { remove?: boolean } = {}): void {
    if (this.#lazyTimer !== null) {
      clearTimeout(this.#lazyTimer);
      this.#lazyTimer = null;
    }
    try {
      this.flush();
    } catch {
      // Reported; what could not be written is lost to a replay, as the caller was told.
    }
    if (this.#fd >= 0) {
      const fd = this.#fd;
      this.#fd = -1;
      this.#old.push(this.#current);
      try {
        closeSync(fd);
      } catch {
        // A descriptor that fails to close (EBADF after a failed write) holds nothing buffered.
      }
    }
    for (let i = 0; i < this.#old.length; i++) {
      const segment = this.#old[i]!;
      if ((options.remove || segment.pending.size === 0) && unlinkQuietly(segment.path))
        this.#old.splice(i--, 1);
    }
  }

  /** Starts the next segment; throws (keeping the current one) when it cannot be created. */
  #rotate(): void {
    const path = `${this.#prefix}${this.#seq + 1}.journal`;
    const fd = openSync(path, APPEND_FLAGS, 0o600);
    const previous = this.#current;
    const previousFd = this.#fd;
    this.#fd = fd;
    this.#seq++;
    this.#bytes = 0;
    this.#current = { path, pending: new Set() };
    try {
      closeSync(previousFd);
    } catch {
      // Nothing was buffered: whatever close reports, the lines are written.
    }
    if (previous.pending.size > 0 || !unlinkQuietly(previous.path)) this.#old.push(previous);
  }
}

/** Unlinks `path`; true when it is gone (`ENOENT` included). */
function unlinkQuietly(path: string): boolean {
  try {
    unlinkSync(path);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "ENOENT";
  }
}

/** A dead process's journal claimed for replay. */
export interface ClaimedJournal {
  /** The dead process's pid. */
  readonly pid: number;
  /** The dead process's journal instance id. */
  readonly instance: string;
  /**
   * Every complete entry of all its segments, in append order (segments by seq, lines in
   * order). A torn last line (no trailing newline) and lines that are not valid JSON are
   * skipped.
   */
  readonly entries: unknown[];
  /**
   * Unlinks the claimed files, once the entries are replayed. Until then they stay claimed by
   * this process: no other process claims them while it lives, nor does this one again.
   */
  release(): void;
  /**
   * Gives the claim up without removing the files (the replay failed, e.g. the store was
   * unreachable): this process may claim them again later; other processes still see them held
   * (renamed for this process) while it lives.
   */
  abandon(): void;
}

/** A journal file found in the directory. */
interface Found {
  readonly name: string;
  /** The name without its `.claimed-<pid>` suffix. */
  readonly base: string;
  readonly seq: number;
  /** The pid of the process that claimed it, or null. */
  readonly claimer: number | null;
}

/**
 * Claims the journals in `dir` of processes that are no longer alive, for replay. A journal
 * (all segments of one pid and instance) is claimed when its writer is dead, that is when its
 * pid is another process's and `process.kill(pid, 0)` fails with `ESRCH` (`EPERM` means alive),
 * or when its pid is this process's but its instance was not opened here (a previous process
 * that had the same pid, like pid 1 in a container). Segments already claimed
 * (`.claimed-<pid>`) by a process that is dead too are claimed again, so the journals of a
 * replayer that died mid-replay are replayed by the next; a journal any of whose segments is
 * held by a live process is skipped.
 *
 * Claiming renames each segment, in seq order, to `<name>.claimed-<this pid>` (`renameSync`,
 * atomic): a rename that fails with `ENOENT` means another process claimed the journal first,
 * and the journal is skipped (the segments this call had renamed are renamed back), so of
 * several processes claiming at once exactly one gets each journal. Only regular files named
 * exactly like segments are considered; symbolic links, directories and other names are left
 * alone. A missing `dir` gives `[]`. Throws on other file system errors, after renaming back
 * what this call had claimed.
 */
export function claimDeadJournals(dir: string): ClaimedJournal[] {
  const abs = resolve(dir);
  let dirents: Dirent[];
  try {
    dirents = readdirSync(abs, { withFileTypes: true });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw error;
  }
  const groups = new Map<string, { pid: number; instance: string; files: Found[] }>();
  for (const d of dirents) {
    const m = NAME.exec(d.name);
    if (!m || !d.isFile()) continue;
    const key = `${m[1]}.${m[2]}`;
    let group = groups.get(key);
    if (!group) {
      group = { pid: Number(m[1]), instance: m[2]!, files: [] };
      groups.set(key, group);
    }
    group.files.push({
      name: d.name,
      base: d.name.slice(0, d.name.length - (m[4] === undefined ? 0 : m[4].length + 9)),
      seq: Number(m[3]),
      claimer: m[4] === undefined ? null : Number(m[4]),
    });
  }

  const alive = new Map<number, boolean>();
  const isAlive = (pid: number): boolean => {
    let known = alive.get(pid);
    if (known === undefined) {
      known = pidAlive(pid);
      alive.set(pid, known);
    }
    return known;
  };
  const me = process.pid;
  const claimedHere: { from: string; to: string }[] = [];
  const result: ClaimedJournal[] = [];
  try {
    for (const group of groups.values()) {
      const writerDead =
        group.pid === me ? !held.instances.has(group.instance) : !isAlive(group.pid);
      const free = group.files.every((f) =>
        f.claimer === null
          ? writerDead
          : f.claimer === me
            ? !held.claimed.has(join(abs, f.name))
            : !isAlive(f.claimer),
      );
      if (!free) continue;
      group.files.sort((a, b) => a.seq - b.seq);
      // Two files of one seq cannot come from this module; renaming both would lose one.
      if (group.files.some((f, i) => i > 0 && group.files[i - 1]!.seq === f.seq)) continue;
      const renamed: { from: string; to: string }[] = [];
      let lost = false;
      for (const f of group.files) {
        const from = join(abs, f.name);
        const to = join(abs, `${f.base}.claimed-${me}`);
        try {
          renameSync(from, to);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
            renameBack(renamed);
            throw error;
          }
          lost = true;
          break;
        }
        renamed.push({ from, to });
      }
      if (lost) {
        renameBack(renamed);
        continue;
      }
      claimedHere.push(...renamed);
      const paths = renamed.map((r) => r.to);
      const entries: unknown[] = [];
      for (const path of paths) readEntries(path, entries);
      for (const path of paths) held.claimed.add(path);
      result.push(claimed(group.pid, group.instance, paths, entries));
    }
  } catch (error) {
    renameBack(claimedHere);
    for (const r of claimedHere) held.claimed.delete(r.to);
    throw error;
  }
  return result;
}

/** A claimed journal whose files are `paths`. */
function claimed(pid: number, instance: string, paths: string[], entries: unknown[]) {
  return {
    pid,
    instance,
    entries,
    release(): void {
      let failure: unknown = null;
      for (const path of paths) {
        try {
          unlinkSync(path);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== "ENOENT") {
            failure ??= error;
            continue;
          }
        }
        held.claimed.delete(path);
      }
      if (failure) throw failure;
    },
    abandon(): void {
      for (const path of paths) held.claimed.delete(path);
    },
  } satisfies ClaimedJournal;
}

/** Undoes renames made by this process (best effort: each file is claimed by this process). */
function renameBack(renamed: { from: string; to: string }[]): void {
  for (let i = renamed.length - 1; i >= 0; i--) {
    try {
      renameSync(renamed[i]!.to, renamed[i]!.from);
    } catch {
      // Left claimed by this process: the next process claims it once this one is gone.
    }
  }
}

/** Appends the complete, valid JSON lines of the file at `path` to `into`. */
function readEntries(path: string, into: unknown[]): void {
  const fd = openSync(path, READ_FLAGS);
  let text: string;
  try {
    if (!fstatSync(fd).isFile()) return;
    text = readFileSync(fd, "utf8");
  } finally {
    closeSync(fd);
  }
  const end = text.lastIndexOf("\n");
  let start = 0;
  while (start <= end) {
    const next = text.indexOf("\n", start);
    if (next > start) {
      try {
        into.push(JSON.parse(text.slice(start, next)));
      } catch {
        // A line torn by a failed write: skipped.
      }
    }
    start = next + 1;
  }
}

/** Whether a process with this pid exists (`EPERM`: it does, owned by another user). */
function pidAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid > 0x7fffffff) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== "ESRCH";
  }
}
