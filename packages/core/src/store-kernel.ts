/**
 * The in-memory table kernel and the settlement arithmetic, for store adapters
 * (`@tokenpool/core/store-kernel`). Not part of the gateway's public API.
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
export { type SettlementAmounts, settleAmounts } from "./store/settlement.js";
export { changeable } from "./store/util.js";
