import type { SettingsService } from "../settings/service.js";
import type { Store } from "../store/types.js";

/** The setting naming how many days usage details are kept (roll-ups are kept forever). */
export const USAGE_RETENTION_SETTING = "usage-retention-days";
/** Default of {@link USAGE_RETENTION_SETTING}. */
export const DEFAULT_USAGE_RETENTION_DAYS = 30;
/** The setting naming how many usage details are kept at most (0 = no bound). */
export const USAGE_RETENTION_COUNT_SETTING = "usage-retention-count";
/** How often a gateway prunes usage details (ms). */
export const USAGE_PRUNE_INTERVAL_MS = 60 * 60_000;

/**
 * Deletes usage details older than the `usage-retention-days` setting (0 or less keeps them
 * forever) and beyond the newest `usage-retention-count` (0 = no bound); roll-ups are never
 * pruned. Returns how many details were deleted.
 */
export async function pruneUsage(
  store: Store,
  settings: Pick<SettingsService, "get">,
  now: number = Date.now(),
): Promise<number> {
  const days = settings.get(USAGE_RETENTION_SETTING);
  const count = settings.get(USAGE_RETENTION_COUNT_SETTING);
  const byAge = Number.isFinite(days) && days > 0;
  const byCount = Number.isSafeInteger(count) && count > 0;
  if (!byAge && !byCount) return 0;
  return store.usage.prune(byAge ? now - days * 86_400_000 : 0, byCount ? count : undefined);
}
