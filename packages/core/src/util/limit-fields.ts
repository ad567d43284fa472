/**
 * The stored limits after an update, for any record with limits (keys, users, credentials):
 * each field `patch` names replaces the stored one (0 clears it), fields it does not name keep
 * their value. Only values above 0 are kept: 0 and absent both mean no limit.
 *
 * @param names - The record's limit fields (anything else in `patch` was refused before).
 * @example
 * ```ts
 * mergeLimitFields({ rpm: 5, tpm: 100 }, { rpm: 0, rpd: 9 }, ["rpm", "tpm", "rpd"]); // { tpm: 100, rpd: 9 }
 * ```
 */
export function mergeLimitFields<T extends { [K in keyof T]?: number }>(
  stored: T | undefined,
  patch: T,
  names: readonly (keyof T)[],
): T {
  const out = {} as T;
  for (const name of names) {
    const v = patch[name] !== undefined ? patch[name] : stored?.[name];
    if (v !== undefined && (v as number) > 0) out[name] = v;
  }
  return out;
}
