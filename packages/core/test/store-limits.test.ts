import { describe, expect, it } from "vitest";
import { judgeWindow, tableKernel, windowSpan } from "../src/store-kernel.js";

const T0 = 1_700_000_040_000;
const MINUTE = 60_000;

describe("admission steps of the table kernel", () => {
  it("memory stays bounded: counters and pools nobody asks about again are swept", () => {
    const kernel = tableKernel();
    for (let i = 0; i < 500; i++) {
      kernel.hitWindows([{ key: `k${i}`, limit: 5, windowMs: MINUTE, cost: 1 }], T0);
      kernel.acquireLeases([{ pool: `p${i}`, limit: 5 }], "l", T0 + 1_000, T0);
    }
    expect(kernel.tables.windows.size).toBe(500);
    expect(kernel.tables.leases.size).toBe(500);
    // Two minutes later every bucket and lease has expired: the next sweep drops them all.
    for (let i = 0; i < 1_000; i++)
      kernel.hitWindows([{ key: "live", limit: 5_000, windowMs: MINUTE, cost: 1 }], T0 + 120_000);
    expect([...kernel.tables.windows.keys()]).toEqual([`${MINUTE}:live`]);
    expect(kernel.tables.leases.size).toBe(0);
  });

  it("a counter keeps at most 61 buckets", () => {
    const kernel = tableKernel();
    for (let s = 0; s < 300; s++)
      kernel.hitWindows([{ key: "k", limit: 1_000, windowMs: MINUTE, cost: 1 }], T0 + s * 1_000);
    expect(kernel.tables.windows.get(`${MINUTE}:k`)!.buckets.size).toBeLessThanOrEqual(61);
  });

  it("never admits more than the limit in any rolling window (hits at random times)", () => {
    const kernel = tableKernel();
    const admitted: number[] = [];
    let t = T0;
    for (let i = 0; i < 5_000; i++) {
      t += Math.floor(Math.random() * 400);
      const r = kernel.hitWindows([{ key: "k", limit: 30, windowMs: MINUTE, cost: 1 }], t);
      if (r.ok) admitted.push(t);
    }
    // Any 30 + 1 admitted hits span at least a whole window.
    for (let i = 30; i < admitted.length; i++)
      expect(admitted[i]! - admitted[i - 30]!).toBeGreaterThanOrEqual(MINUTE);
    // ... and the bucket rounding costs at most one bucket (1 s): the window is well used.
    expect(admitted.length).toBeGreaterThan(((t - T0) / MINUTE) * 30 * 0.9);
  });

  it("judgeWindow: retryAfterMs is when enough of the oldest buckets have left", () => {
    const hit = { key: "k", limit: 3, windowMs: MINUTE, cost: 2 };
    const { current } = windowSpan(MINUTE, T0);
    const v = judgeWindow(
      [
        [current - 10, 1],
        [current - 5, 1],
        [current, 1],
      ],
      hit,
      T0,
    );
    // 3 counted, 2 more needed with a limit of 3: the two oldest buckets must leave.
    expect(v).toMatchObject({ count: 3, fits: false, remaining: 0, retryAfterMs: 56_000 });
  });
});
