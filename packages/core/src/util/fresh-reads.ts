/**
 * Keeps a cache's full reload from undoing what the cache learnt one item at a time meanwhile.
 * A store answers a full read (every credential, every setting) as of when it was asked; an item
 * the cache read or wrote on its own after that (added, refreshed, removed, set) is newer than
 * that answer, and the reload keeps the cache's version of it.
 */
export class FreshReads {
  /** Counts the items read or written one at a time. */
  #changes = 0;
  /** Full reads under way. */
  #loading = 0;
  /** Items read or written one at a time while a full read was under way, with their count. */
  readonly #at = new Map<string, number>();

  /** The cache read or wrote `id` on its own (not as part of a full read). */
  note(id: string): void {
    const at = ++this.#changes;
    if (this.#loading > 0) this.#at.set(id, at);
  }

  /**
   * Runs a full read. Returns its answer and the ids read or written one at a time since it
   * was asked: for those the cache's own version is the newer one.
   */
  async full<T>(read: () => Promise<T>): Promise<{ value: T; fresher: ReadonlySet<string> }> {
    const asked = this.#changes;
    this.#loading++;
    let value: T;
    try {
      value = await read();
    } finally {
      this.#loading--;
    }
    const fresher = new Set<string>();
    for (const [id, at] of this.#at) if (at > asked) fresher.add(id);
    if (this.#loading === 0) this.#at.clear();
    return { value, fresher };
  }
}
