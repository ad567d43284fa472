import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Store } from "@tokenpool/core";
import { runStoreConformance } from "@tokenpool/testing";
import { fileStore } from "../src/index.js";

/** The temp directory of each store, removed by cleanup. */
const dirs = new WeakMap<Store, string>();

// No `reopen`: the file store serves one process and refuses a second store on its directory,
// so the suite's cross-instance tests do not apply (capabilities.multiProcess is false).
runStoreConformance({
  name: "file",
  create: () => {
    const dir = mkdtempSync(join(tmpdir(), "tokenpool-file-"));
    const store = fileStore({ dir, onError: () => {} });
    dirs.set(store, dir);
    return store;
  },
  cleanup: (store) => rmSync(dirs.get(store)!, { recursive: true, force: true }),
});
