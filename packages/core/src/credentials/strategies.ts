import type { CredentialRecord } from "../store/types.js";

/** Every selection strategy of the credential pool, by its setting value. */
export const ROUTING_STRATEGIES = [
  "round-robin",
  "weighted",
  "fill-first",
  "least-recently-used",
] as const;

/**
 * How the pool chooses among the available credentials of the best priority tier:
 * - `round-robin`: each credential in turn, in stable (creation) order;
 * - `weighted`: in proportion to `weight`, spread out (smooth weighted round-robin, as nginx
 *   does), so that over any run of `sum(weights)` picks each credential is chosen exactly
 *   `weight` times while the set of available credentials stays the same;
 * - `fill-first`: always the first available credential in stable order, until it cools down
 *   or is disabled;
 * - `least-recently-used`: the credential whose last selection is the oldest.
 */
export type RoutingStrategy = (typeof ROUTING_STRATEGIES)[number];

/** The strategy used when neither the setting nor the pool options name one. */
export const DEFAULT_ROUTING_STRATEGY: RoutingStrategy = "round-robin";

/** A setting value as a strategy (`lru` is accepted for `least-recently-used`), or null. */
export function parseRoutingStrategy(value: unknown): RoutingStrategy | null {
  switch (value) {
    case "round-robin":
    case "weighted":
    case "fill-first":
    case "least-recently-used":
      return value;
    case "lru":
      return "least-recently-used";
    default:
      return null;
  }
}

/** What a strategy sees of a candidate credential. */
export interface StrategyCandidate {
  c: CredentialRecord;
  /** Stable position: candidates are always given in ascending `ord`. */
  ord: number;
  /** When this process last selected it (ms; the stored `state.lastUsedAt` before that). */
  lastUsedAt: number;
  /** Selection counter of this process, to order selections made in the same millisecond. */
  useSeq: number;
}

/**
 * Round-robin: the first candidate after the one chosen last (`lastOrd`), wrapping around.
 * Working from positions rather than a counter keeps the order exact when credentials leave
 * the rotation (cooldown, exclusion on retry) and come back.
 */
export function chooseRoundRobin(cands: readonly StrategyCandidate[], lastOrd: number): number {
  for (let i = 0; i < cands.length; i++) if (cands[i]!.ord > lastOrd) return i;
  return 0;
}

/** Least recently used: the oldest `lastUsedAt`, then the oldest selection, then stable order. */
export function chooseLeastRecentlyUsed(cands: readonly StrategyCandidate[]): number {
  let best = 0;
  for (let i = 1; i < cands.length; i++) {
    const a = cands[i]!;
    const b = cands[best]!;
    if (a.lastUsedAt < b.lastUsedAt || (a.lastUsedAt === b.lastUsedAt && a.useSeq < b.useSeq))
      best = i;
  }
  return best;
}

/**
 * Smooth weighted round-robin (nginx): every candidate's current weight grows by its weight,
 * the largest wins (first in stable order on a tie) and loses the sum of the weights.
 * `current` holds the current weights by credential id, across picks. Candidates with a weight
 * that is not a positive number take no part; returns -1 when none has one.
 */
export function chooseWeighted(
  cands: readonly StrategyCandidate[],
  current: Map<string, number>,
): number {
  let total = 0;
  let best = -1;
  let bestWeight = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < cands.length; i++) {
    const c = cands[i]!.c;
    const w = c.weight;
    if (!(w > 0) || !Number.isFinite(w)) continue;
    const cur = (current.get(c.id) ?? 0) + w;
    current.set(c.id, cur);
    total += w;
    if (cur > bestWeight) {
      best = i;
      bestWeight = cur;
    }
  }
  if (best >= 0) current.set(cands[best]!.c.id, bestWeight - total);
  return best;
}
