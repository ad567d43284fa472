import { memoryStore } from "@tokenpool/core";
import { runStoreConformance } from "../src/index.js";

runStoreConformance({ name: "memory", create: () => memoryStore() });
