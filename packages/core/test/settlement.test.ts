/**
 * The settlement arithmetic every store follows (issue 13, item 5): give back the difference or
 * take the extra, never below zero, capped by what the key and its owner still have.
 */
import { describe, expect, it } from "vitest";
import { settleAmounts } from "../src/store/settlement.js";

describe("settleAmounts", () => {
  it("gives back what was reserved and not used", () => {
    expect(settleAmounts(100, 40, 0, 0)).toEqual({ charged: 40, delta: 60 });
  });

  it("takes the extra when the key and the owner have room", () => {
    expect(settleAmounts(100, 130, 50, 50)).toEqual({ charged: 130, delta: -30 });
  });

  it("never takes more than the key or the owner still has", () => {
    expect(settleAmounts(100, 130, 20, undefined)).toEqual({ charged: 120, delta: -20 });
    expect(settleAmounts(100, 130, undefined, 5)).toEqual({ charged: 105, delta: -5 });
    expect(settleAmounts(100, 130, 0, 0)).toEqual({ charged: 100, delta: 0 });
  });

  it("takes the whole extra when nothing caps it (unlimited key, no owner)", () => {
    expect(settleAmounts(100, 1000, undefined, undefined)).toEqual({ charged: 1000, delta: -900 });
  });
});
