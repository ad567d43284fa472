/**
 * Limits of upstream credentials as the pool stores them: their fields, validation and the
 * cheap check the forward stage makes for every picked credential. The admission layer
 * (`admission/credential-limits.ts`) enforces them.
 *
 * @module
 */
import type { CredentialLimits } from "../store/types.js";

/** The names of {@link CredentialLimits}, as the library API accepts them. */
export const CREDENTIAL_LIMIT_FIELDS: readonly (keyof CredentialLimits)[] = [
  "rpm",
  "tpm",
  "maxConcurrency",
  "spendPerDay",
  "spendPerMonth",
];

/** A limit value as the gate uses it: a positive safe integer, else 0 (= none). */
export function limitOf(v: number | undefined): number {
  return v !== undefined && Number.isSafeInteger(v) && v > 0 ? v : 0;
}

/**
 * Whether `limits` sets any limit (a field above 0). The forward stage asks it for every picked
 * credential, so it neither allocates nor awaits.
 */
export function hasCredentialLimits(limits: CredentialLimits | undefined): boolean {
  return (
    limits !== undefined &&
    (limitOf(limits.rpm) > 0 ||
      limitOf(limits.tpm) > 0 ||
      limitOf(limits.maxConcurrency) > 0 ||
      limitOf(limits.spendPerDay) > 0 ||
      limitOf(limits.spendPerMonth) > 0)
  );
}

/**
 * Validates credential limits from the library API or a dialect: a plain object whose fields are
 * {@link CREDENTIAL_LIMIT_FIELDS} with non-negative safe integers (0 = none). Returns the limits
 * with the fields above 0 only, or an error message naming the bad field.
 */
export function parseCredentialLimits(
  v: unknown,
): { ok: true; limits: CredentialLimits } | { ok: false; message: string } {
  if (typeof v !== "object" || v === null || Array.isArray(v))
    return { ok: false, message: "limits must be an object" };
  const limits: CredentialLimits = {};
  for (const [field, n] of Object.entries(v)) {
    if (!(CREDENTIAL_LIMIT_FIELDS as readonly string[]).includes(field))
      return {
        ok: false,
        message: `unknown limit \`${field}\` (known: ${CREDENTIAL_LIMIT_FIELDS.join(", ")})`,
      };
    if (n === undefined) continue;
    if (!Number.isSafeInteger(n) || (n as number) < 0)
      return {
        ok: false,
        message: `limit \`${field}\` must be a non-negative integer (0 = none), got ${JSON.stringify(n)}`,
      };
    if ((n as number) > 0) limits[field as keyof CredentialLimits] = n as number;
  }
  return { ok: true, limits };
}
