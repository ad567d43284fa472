export * from "./conformance.js";
export * from "./mock-upstream.js";
