/**
 * What store adapters build on (`@tokenpool/core/store-kernel`): the in-memory table kernel, the
 * settlement arithmetic and the record helpers every store shares (roll-ups, credential defaults,
 * reservation rows). Not part of the gateway's public API.
 * @packageDocumentation
 */

export {
  type CollectionFactories,
  type StoreCollections,
  type StoreLedger,
  storeCollections,
} from "./store/adapter-parts.js";
export {
  type KernelCall,
  type KernelSteps,
  type KernelStore,
  type KernelTables,
  type KvEntry,
  liftKernel,
  type Sync,
  type TableGroup,
  type TableKernel,
  type TableKernelOptions,
  tableKernel,
} from "./store/kernel.js";
export {
  assertLeaseAsk,
  assertWindowAdjust,
  assertWindowHit,
  bucketLeavesAt,
  judgeWindow,
  judgeWindows,
  type WindowJudgement,
  type WindowSpan,
  windowId,
  windowSpan,
} from "./store/limits.js";
export { type SettlementAmounts, settleAmounts } from "./store/settlement.js";
export {
  type CredentialRow,
  credentialFromRow,
  credentialParams,
  type KeyRow,
  keyFromRow,
  keyParams,
  LOG_FIELD,
  NO_CREDENTIAL,
  NO_KEY,
  NO_USER,
  type ReservationDbRow,
  type RollupRow,
  reservationFromRow,
  reservationParams,
  rollupFromRow,
  rollupParams,
  type TokenColumns,
  type UsageRow,
  type UserRow,
  usageFromRow,
  usageParams,
  userFromRow,
  userParams,
} from "./store/sql-rows.js";
export {
  addRollupSums,
  addToRollup,
  addToStat,
  assertRefill,
  assertUnits,
  changeable,
  credentialDefaults,
  emptyCredentialState,
  emptyRollup,
  hourBucket,
  inPeriod,
  materializeCredential,
  newCredentialId,
  type ReservationRow,
  ROLLUP_SUMS,
  recoveredRecord,
  reservationRow,
  rollupKey,
  usageMatches,
} from "./store/util.js";
