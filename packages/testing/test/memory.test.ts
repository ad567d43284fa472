import { memoryStore } from "@tokenpool/core";
import { runStoreConformance } from "../src/index.js";

runStoreConformance({ name: "memory", create: () => memoryStore() });

// An adapter can leave out groups by name: only the kv group runs here, the others are skipped.
runStoreConformance({
  name: "memory (kv only)",
  create: () => memoryStore(),
  skip: [
    "keys",
    "users",
    "credentials",
    "settings",
    "locks",
    "usage",
    "quota",
    "commit-usage",
    "recovery",
    "limits",
    "watch",
    "multi-process",
  ],
});
