/**
 * Per-credential request counts for CLIProxyAPI's dashboards (`GET /api-key-usage`, the
 * `success` / `failed` / `recent_requests` fields of `GET /auth-files`): all-time successes and
 * failures from the hourly roll-ups, and the last 20 ten-minute buckets from the request log.
 * Bucket labels are UTC `HH:MM-HH:MM`, like every time of the usage views.
 *
 * @module
 */
import type { Store } from "../../store/types.js";

/** One ten-minute bucket of {@link CredentialActivity.recent_requests}. */
export interface RecentRequestsBucket {
  /** `HH:MM-HH:MM` (UTC). */
  time: string;
  success: number;
  failed: number;
}

/** What CLIProxyAPI shows per credential. */
export interface CredentialActivity {
  success: number;
  failed: number;
  /** 20 buckets of 10 minutes, oldest first; the last one holds now. */
  recent_requests: RecentRequestsBucket[];
}

/** Buckets and their width. */
export const RECENT_BUCKETS = 20;
const BUCKET_MS = 10 * 60_000;
/** Records read at most for the recent buckets (bounds one call's cost). */
const MAX_RECENT_RECORDS = 20_000;

const hhmm = (ms: number) => new Date(ms).toISOString().slice(11, 16);

/** An activity with no requests, its buckets ending at `now`. */
export function emptyActivity(now: number): CredentialActivity {
  const first = Math.floor(now / BUCKET_MS) * BUCKET_MS - (RECENT_BUCKETS - 1) * BUCKET_MS;
  return {
    success: 0,
    failed: 0,
    recent_requests: Array.from({ length: RECENT_BUCKETS }, (_, i) => {
      const start = first + i * BUCKET_MS;
      return { time: `${hhmm(start)}-${hhmm(start + BUCKET_MS)}`, success: 0, failed: 0 };
    }),
  };
}

/**
 * The activity of every credential that has served a request, by credential id. Credentials
 * without requests are absent (use {@link emptyActivity}).
 */
export async function credentialActivity(
  store: Store,
  now = Date.now(),
): Promise<Map<string, CredentialActivity>> {
  const out = new Map<string, CredentialActivity>();
  const of = (id: string) => {
    let a = out.get(id);
    if (!a) {
      a = emptyActivity(now);
      out.set(id, a);
    }
    return a;
  };
  for (const r of await store.usage.rollups()) {
    if (r.credentialId === null) continue;
    const a = of(r.credentialId);
    a.success += r.successes;
    a.failed += r.failures;
  }
  const first = Math.floor(now / BUCKET_MS) * BUCKET_MS - (RECENT_BUCKETS - 1) * BUCKET_MS;
  const page = 500;
  for (let offset = 0; offset < MAX_RECENT_RECORDS; offset += page) {
    const { items } = await store.usage.list({ from: first, offset, limit: page });
    for (const r of items) {
      if (r.credentialId === null) continue;
      const i = Math.floor((r.timestamp - first) / BUCKET_MS);
      const bucket = of(r.credentialId).recent_requests[i];
      if (!bucket) continue;
      if (r.success) bucket.success++;
      else bucket.failed++;
    }
    if (items.length < page) break;
  }
  return out;
}
