import type { Store, StoreCapabilities } from "@tokenpool/core";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { commitUsageGroup } from "./conformance/commit-usage.js";
import {
  type ConformanceContext,
  type ConformanceGroup,
  type ConformanceGroupName,
  storeHandle,
} from "./conformance/context.js";
import { credentialsGroup } from "./conformance/credentials.js";
import { keysGroup } from "./conformance/keys.js";
import { kvGroup } from "./conformance/kv.js";
import { limitsGroup } from "./conformance/limits.js";
import { locksGroup } from "./conformance/locks.js";
import { multiProcessGroup } from "./conformance/multi-process.js";
import { quotaGroup } from "./conformance/quota.js";
import { quotaSharesGroup } from "./conformance/quota-shares.js";
import { recoveryGroup } from "./conformance/recovery.js";
import { refillGroup } from "./conformance/refill.js";
import { settingsGroup } from "./conformance/settings.js";
import { usageGroup } from "./conformance/usage.js";
import { usersGroup } from "./conformance/users.js";
import { watchGroup } from "./conformance/watch.js";

export type { ConformanceGroupName } from "./conformance/context.js";

/** Options of {@link runStoreConformance}. */
export interface StoreConformanceOptions {
  /** Shown in the suite name, e.g. `sqlite (file)`. */
  name: string;
  /** Makes a fresh, empty store. Called once per test (and once more to read the capabilities). */
  create: () => Store | Promise<Store>;
  /** Removes what `create` made (temp files, Redis keys). Called after the suite closed the store. */
  cleanup?: (store: Store) => void | Promise<void>;
  /**
   * Opens a second store object over the same backing data as `store` (a new connection, as
   * another process would). Enables the cross-instance tests of multi-process adapters.
   */
  reopen?: (store: Store) => Store | Promise<Store>;
  /**
   * Groups to skip (reported as skipped), for an adapter that does not offer an area of the
   * contract yet. Groups of capabilities the adapter lacks (`multi-process`, the shares of
   * `commit-usage` without `quotaShares`) skip by themselves.
   * @default []
   */
  skip?: ConformanceGroupName[];
}

/** Every group of the suite, in the order they run. */
const groups: ConformanceGroup[] = [
  keysGroup,
  usersGroup,
  credentialsGroup,
  settingsGroup,
  kvGroup,
  locksGroup,
  usageGroup,
  quotaGroup,
  commitUsageGroup,
  quotaSharesGroup,
  recoveryGroup,
  refillGroup,
  limitsGroup,
  watchGroup,
  multiProcessGroup,
];

/**
 * Registers the Store conformance suite with Vitest: every requirement of the Store contract
 * (`@tokenpool/core` store types), including the race tests of the atomic steps, in named groups
 * (one file each under `conformance/`). Each test gets a fresh store from `create`; the suite
 * closes it and then calls `cleanup`. Tests of capabilities an adapter lacks are skipped, and so
 * are the groups named in `skip`.
 *
 * @example
 * ```ts
 * import { memoryStore } from "@tokenpool/core";
 * import { runStoreConformance } from "@tokenpool/testing";
 *
 * runStoreConformance({ name: "memory", create: () => memoryStore() });
 * ```
 */
export function runStoreConformance(options: StoreConformanceOptions): void {
  const { name, create, cleanup, reopen, skip = [] } = options;

  describe(`Store conformance: ${name}`, async () => {
    // it.skipIf needs the capabilities while tests are collected, before any beforeEach runs.
    const probe = await create();
    const capabilities: StoreCapabilities = { ...probe.capabilities };
    await probe.close();
    await cleanup?.(probe);

    let store: Store;
    const others: Store[] = [];

    beforeEach(async () => {
      store = await create();
    });
    afterEach(async () => {
      for (const other of others.splice(0)) await other.close();
      await store.close();
      await cleanup?.(store);
    });

    const ctx: ConformanceContext = {
      store: storeHandle(() => store),
      capabilities,
      reopen,
      /** A second store object over the same data (see `reopen`). */
      async openPeer() {
        if (!reopen) throw new Error("reopen is required");
        const peer = await reopen(store);
        others.push(peer);
        return peer;
      },
    };

    it("reports its name and capabilities", () => {
      expect(typeof store.name).toBe("string");
      expect(store.name.length).toBeGreaterThan(0);
      expect(typeof store.capabilities.multiProcess).toBe("boolean");
    });

    it("close is idempotent", async () => {
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
    });

    for (const group of groups) {
      const register = skip.includes(group.name) ? describe.skip : describe;
      register(group.title, () => group.register(ctx));
    }
  });
}
