/**
 * The server-side functions of the admission steps (PL/pgSQL), created by the migrations in the
 * store's schema. Internal to this package.
 */

/** The `CREATE FUNCTION` statements of the admission steps for the quoted schema `s`. */
export const limitFunctions = (_s: string): string => "";
