/** What settling one reservation does to the balances it debited. */
export interface SettlementAmounts {
  /** Units billed in the end (`units` plus what could be taken beyond them, or `actualUnits`). */
  charged: number;
  /** Units to add back to each debited balance: > 0 gives back, < 0 takes more, 0 leaves it. */
  delta: number;
}

/**
 * The settlement arithmetic every store applies (the Redis store repeats it in Lua, in
 * `store-redis/src/lua/scripts.ts`; this function is the reference): when fewer units were used
 * than reserved, the difference goes back; when more were used, the extra is taken, but never
 * beyond what the key (when the reservation debited it) and its owner still have, so that no
 * balance goes below zero.
 *
 * @param units - The units the reservation holds.
 * @param actualUnits - The units the request actually cost.
 * @param keyRemain - The key's remaining quota when the reservation debited the key; `undefined`
 *   when it did not (unlimited key) or the key is gone: no cap from the key.
 * @param userQuota - The owner's remaining quota when the reservation has an owner that still
 *   exists; `undefined` otherwise: no cap from the owner.
 * @example
 * ```ts
 * settleAmounts(100, 130, 20, undefined); // { charged: 120, delta: -20 }
 * ```
 */
export function settleAmounts(
  units: number,
  actualUnits: number,
  keyRemain: number | undefined,
  userQuota: number | undefined,
): SettlementAmounts {
  let charged = actualUnits;
  if (actualUnits > units) {
    let room = actualUnits - units;
    if (keyRemain !== undefined) room = Math.min(room, keyRemain);
    if (userQuota !== undefined) room = Math.min(room, userQuota);
    charged = units + Math.max(0, room);
  }
  return { charged, delta: units - charged };
}
