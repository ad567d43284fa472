/**
 * The server-side functions of the ledger (PL/pgSQL), created by the migrations in the store's
 * schema. Internal to this package.
 */

/** The `CREATE FUNCTION` statements of the ledger for the quoted schema `s`. */
export const ledgerFunctions = (_s: string): string => "";
