import type { Reservation, Store, UsageCommit, UsageRecord } from "../store/types.js";
import { recoveredRecord } from "../store/util.js";
import type { JournalEntry } from "./quota-blocks.js";

/** What replaying a dead gateway's journal wrote. */
export interface Replayed {
  /** The usage records appended (finished requests and recovered ones). */
  records: UsageRecord[];
  /** Blocks whose rows were still in the store and are settled now. */
  blocks: number;
}

/** One block of a journal, with its requests. */
interface JournalBlock {
  reservation: Reservation;
  /** Shares taken, by request id, in order. */
  takes: Map<string, Extract<JournalEntry, { t: "T" }>>;
  /** Requests finished, in order. */
  done: Extract<JournalEntry, { t: "D" }>[];
}

/**
 * Replays the journal of a gateway process that died (`QuotaBlocks`): for each of its quota
 * blocks whose row is still in the store, what the live writer had not written yet.
 *
 * The settlements of a block's requests, in order — the finished ones as journaled, then the
 * ones cut by the kill — are the same sequence the writer would have written; the store holds a
 * prefix of it, since batches are written in order and each atomically (the writer's, or an
 * earlier replay's, cut short). The row says how long that prefix is: the block's units less
 * what it holds now. So the replay skips that prefix, commits the rest in one `commitUsage`
 * (each finished request's real record; each request cut short a recovered record charged at
 * its share, as a per-request reservation would have been recovered), then gives back what no
 * request took and removes the row. Replaying the same journal again (a replayer that died
 * half-way) writes nothing twice.
 */
export async function replayJournal(
  store: Pick<Store, "commitUsage" | "settleQuota" | "reservationUnits">,
  entries: readonly unknown[],
  nowSeconds: number,
): Promise<Replayed> {
  const blocks = new Map<string, JournalBlock>();
  for (const e of entries as JournalEntry[]) {
    if (!e || typeof e !== "object") continue;
    if (e.t === "B") blocks.set(e.r.id, { reservation: e.r, takes: new Map(), done: [] });
    else if (e.t === "T") blocks.get(e.b)?.takes.set(e.q, e);
    else if (e.t === "D") blocks.get(e.b)?.done.push(e);
  }
  const out: Replayed = { records: [], blocks: 0 };
  if (!store.reservationUnits) return out;
  for (const block of blocks.values()) {
    const res = block.reservation;
    const left = await store.reservationUnits(res.id);
    // Settled by the writer before the kill, or recovered whole by a gateway of an older version.
    if (left === null) continue;
    const finished = new Set(block.done.map((d) => d.q));
    const sequence: UsageCommit[] = [];
    const shares: number[] = [];
    for (const d of block.done) {
      sequence.push({ reservation: res, share: d.u, actualUnits: d.a, record: d.rec });
      shares.push(d.u);
    }
    let taken = 0;
    for (const t of block.takes.values()) {
      taken += t.u;
      if (finished.has(t.q)) continue;
      const record = recoveredRecord({
        ...res,
        units: t.u,
        keyPeriod: res.keyPeriod ?? 0,
        userPeriod: res.userPeriod ?? 0,
        expiresAt: 0,
        owner: "",
        requestId: t.q,
        route: t.ro,
        model: t.m,
        timestamp: t.ts,
      });
      sequence.push({ reservation: res, share: t.u, actualUnits: t.u, record });
      shares.push(t.u);
    }
    // Skip the prefix the store holds already.
    let written = res.units - left;
    let i = 0;
    while (i < shares.length && written >= shares[i]! && shares[i]! > 0) {
      written -= shares[i]!;
      i++;
    }
    const rest = sequence.slice(i);
    if (rest.length > 0) out.records.push(...(await store.commitUsage(rest, nowSeconds)));
    const untaken = res.units - taken;
    if (untaken > 0) await store.settleQuota({ ...res, units: untaken }, 0, nowSeconds);
    out.blocks++;
  }
  return out;
}
