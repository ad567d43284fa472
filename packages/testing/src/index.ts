export {
  type ConformanceGroupName,
  runStoreConformance,
  type StoreConformanceOptions,
} from "./conformance.js";
export { fixtures } from "./fixtures.js";
export { freePort } from "./listen.js";
export * from "./mock-oauth.js";
export * from "./mock-upstream.js";
export * from "./raw-http.js";
