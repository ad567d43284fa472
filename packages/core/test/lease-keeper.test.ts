/**
 * The gateway's LeaseKeeper against a real (memory) store: leases it holds are renewed on its
 * timer, so a request longer than the lease time keeps its slot, while a lease nobody renews
 * (its process died) frees its slot at expiry; release frees at once and wakes the first waiter.
 */
import { describe, expect, it } from "vitest";
import { LEASE_TTL_MS, LeaseKeeper } from "../src/admission/leases.js";
import { GatewayEmitter, memoryStore } from "../src/index.js";

const POOL = [{ pool: "conc:key:1", limit: 1 }];
const never = new AbortController().signal;

describe("LeaseKeeper", () => {
  it("renews its leases: a slot held past the lease time stays taken", async () => {
    const store = memoryStore();
    const keeper = new LeaseKeeper(store, new GatewayEmitter());
    const t0 = Date.now();
    expect((await keeper.acquire(POOL, "a", t0)).ok).toBe(true);
    // Renewed two thirds into its life, as the timer does...
    await keeper.renewAll(t0 + (LEASE_TTL_MS * 2) / 3);
    // ... it is still held after its first expiry.
    const later = t0 + LEASE_TTL_MS + 1_000;
    expect(await store.acquireLeases(POOL, "b", later + LEASE_TTL_MS, later)).toMatchObject({
      ok: false,
      pool: "conc:key:1",
    });
    await keeper.close();
    expect(keeper.size).toBe(0);
    expect((await store.acquireLeases(POOL, "b", later + 1000, later)).ok).toBe(true);
    await store.close();
  });

  it("a lease nobody renews frees its slot at expiry", async () => {
    const store = memoryStore();
    const dead = new LeaseKeeper(store, new GatewayEmitter());
    const t0 = Date.now();
    expect((await dead.acquire(POOL, "a", t0)).ok).toBe(true);
    const before = t0 + LEASE_TTL_MS - 1;
    expect((await store.acquireLeases(POOL, "b", before + 1000, before)).ok).toBe(false);
    const after = t0 + LEASE_TTL_MS;
    expect((await store.acquireLeases(POOL, "b", after + 1000, after)).ok).toBe(true);
    await store.close();
  });

  it("a release wakes the first waiter at once, and waiters are served in order", async () => {
    const store = memoryStore();
    const keeper = new LeaseKeeper(store, new GatewayEmitter());
    expect((await keeper.acquire(POOL, "holder")).ok).toBe(true);
    const served: string[] = [];
    const wait = (id: string) =>
      keeper.acquireWaiting(POOL, id, 5_000, never).then((r) => {
        served.push(id);
        return r;
      });
    const first = wait("w1");
    await new Promise((r) => setTimeout(r, 5));
    const second = wait("w2");
    await new Promise((r) => setTimeout(r, 20));
    expect(served).toEqual([]);
    const released = Date.now();
    await keeper.release("holder");
    expect((await first).ok).toBe(true);
    expect(Date.now() - released).toBeLessThan(40);
    await keeper.release("w1");
    expect((await second).ok).toBe(true);
    expect(served).toEqual(["w1", "w2"]);
    await keeper.close();
    await store.close();
  });

  it("a waiter whose client leaves stops waiting and takes nothing", async () => {
    const store = memoryStore();
    const keeper = new LeaseKeeper(store, new GatewayEmitter());
    await keeper.acquire(POOL, "holder");
    const client = new AbortController();
    const waiting = keeper.acquireWaiting(POOL, "gone", 5_000, client.signal);
    await new Promise((r) => setTimeout(r, 10));
    client.abort();
    expect((await waiting).ok).toBe(false);
    await keeper.release("holder");
    expect(keeper.size).toBe(0);
    expect((await store.acquireLeases(POOL, "x", Date.now() + 1000, Date.now())).ok).toBe(true);
    await keeper.close();
    await store.close();
  });
});
