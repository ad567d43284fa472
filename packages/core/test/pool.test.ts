import { afterEach, describe, expect, it, vi } from "vitest";
import { AUTO_DISABLED_PREFIX, isAutoDisabled } from "../src/credentials/health.js";
import {
  type AddCredentialInput,
  CredentialPool,
  type PickOptions,
} from "../src/credentials/pool.js";
import type { CredentialPoolOptions } from "../src/credentials/pool-options.js";
import { GatewayEmitter, type GatewayEvents } from "../src/events.js";
import { silentLogger } from "../src/logger.js";
import { memoryStore } from "../src/store/memory.js";
import type { Store } from "../src/store/types.js";

const MODEL = "gpt-4o-mini";
const T0 = 1_700_000_000_000;

/** A settings reader backed by a plain object, changed by the tests. */
function settingsOf(values: Record<string, unknown> = {}) {
  return { values, get: (name: string) => values[name] };
}

interface Setup {
  store: Store;
  events: GatewayEmitter;
  pool: CredentialPool;
  /** The clock the pool's health logic reads. */
  clock: { now: number };
  /** Every event emitted, in order. */
  seen: { name: keyof GatewayEvents; payload: unknown }[];
}

const pools: CredentialPool[] = [];
afterEach(async () => {
  for (const p of pools.splice(0)) await p.stop();
  vi.useRealTimers();
});

async function setup(
  creds: (Partial<AddCredentialInput> & { id: string })[],
  options: CredentialPoolOptions = {},
): Promise<Setup> {
  const store = memoryStore();
  const events = new GatewayEmitter();
  const clock = { now: T0 };
  const pool = new CredentialPool(store, events, silentLogger, {
    clock: () => clock.now,
    ...options,
  });
  pools.push(pool);
  const seen: Setup["seen"] = [];
  for (const name of [
    "credential.selected",
    "credential.cooldown",
    "credential.error",
    "credential.disabled",
    "credential.enabled",
  ] as const)
    events.on(name, (payload: unknown) => seen.push({ name, payload }));
  for (const c of creds)
    await pool.add({
      provider: "openai",
      baseUrl: `https://${c.id}.example.test/v1`,
      secret: { apiKey: `sk-secret-of-${c.id}-0123456789abcdef` },
      ...c,
    });
  return { store, events, pool, clock, seen };
}

/** Ids of `n` picks made at `now` (default: the clock's time). */
function picks(s: Setup, n: number, opts: PickOptions = {}): (string | null)[] {
  const out: (string | null)[] = [];
  for (let i = 0; i < n; i++)
    out.push(s.pool.pick(MODEL, { now: s.clock.now, ...opts })?.credential.id ?? null);
  return out;
}

describe("selection strategies", () => {
  it("round-robin takes each credential in turn, in creation order", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }, { id: "c" }]);
    expect(s.pool.strategy).toBe("round-robin");
    expect(picks(s, 7)).toEqual(["a", "b", "c", "a", "b", "c", "a"]);
  });

  it("round-robin keeps its order when a credential leaves the rotation and comes back", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }, { id: "c" }]);
    expect(picks(s, 1)).toEqual(["a"]);
    // A retry that already tried b goes on with c; the rotation continues after c.
    expect(picks(s, 1, { exclude: new Set(["b"]) })).toEqual(["c"]);
    expect(picks(s, 3)).toEqual(["a", "b", "c"]);
    s.pool.reportFailure("b", MODEL, 429, "slow down", { retryAfterMs: 1_000 });
    expect(picks(s, 4)).toEqual(["a", "c", "a", "c"]);
    s.clock.now += 1_000;
    expect(picks(s, 3)).toEqual(["a", "b", "c"]);
  });

  it("weighted spreads picks in proportion to weight (smooth weighted round-robin)", async () => {
    const s = await setup(
      [
        { id: "a", weight: 5 },
        { id: "b", weight: 1 },
        { id: "c", weight: 1 },
      ],
      { strategy: "weighted" },
    );
    // nginx's sequence for 5:1:1, exact on every cycle of 7.
    const cycle = ["a", "a", "b", "a", "c", "a", "a"];
    expect(picks(s, 14)).toEqual([...cycle, ...cycle]);
  });

  it("weighted gives exact counts for small totals and skips credentials with no weight", async () => {
    const s = await setup(
      [
        { id: "a", weight: 3 },
        { id: "b", weight: 1 },
        { id: "z", weight: 0 },
      ],
      { strategy: "weighted" },
    );
    expect(picks(s, 8)).toEqual(["a", "a", "b", "a", "a", "a", "b", "a"]);
  });

  it("fill-first uses the first available credential until it cools down, then comes back to it", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }, { id: "c" }], { strategy: "fill-first" });
    expect(picks(s, 3)).toEqual(["a", "a", "a"]);
    s.pool.reportFailure("a", MODEL, 429, "rate limited", { retryAfterMs: 500 });
    expect(picks(s, 3)).toEqual(["b", "b", "b"]);
    s.clock.now += 500;
    expect(picks(s, 2)).toEqual(["a", "a"]);
  });

  it("least-recently-used picks the credential whose last use is oldest, stored times included", async () => {
    const s = await setup(
      [
        { id: "a", state: state({ lastUsedAt: T0 - 1_000 }) },
        { id: "b", state: state({ lastUsedAt: T0 - 3_000 }) },
        { id: "c", state: state({ lastUsedAt: T0 - 2_000 }) },
      ],
      { strategy: "least-recently-used" },
    );
    // All picks in the same millisecond still rotate (the selection order breaks the ties).
    expect(picks(s, 6)).toEqual(["b", "c", "a", "b", "c", "a"]);
    // A credential that was busy elsewhere (here: the only one left for a retry) goes to the back.
    expect(picks(s, 1, { exclude: new Set(["b", "c"]) })).toEqual(["a"]);
    expect(picks(s, 3)).toEqual(["b", "c", "a"]);
  });

  it("follows the routing-strategy setting at runtime and ignores an invalid value", async () => {
    const settings = settingsOf({ "routing-strategy": "fill-first" });
    const s = await setup([{ id: "a" }, { id: "b" }], { settings, strategy: "round-robin" });
    expect(picks(s, 3)).toEqual(["a", "a", "a"]);
    settings.values["routing-strategy"] = "round-robin";
    expect(picks(s, 2)).toEqual(["b", "a"]);
    settings.values["routing-strategy"] = "lru";
    expect(s.pool.strategy).toBe("least-recently-used");
    settings.values["routing-strategy"] = "nonsense";
    // Falls back to the pool option.
    expect(s.pool.strategy).toBe("round-robin");
  });
});

function state(patch: Partial<ReturnType<typeof emptyState>>) {
  return { ...emptyState(), ...patch };
}
function emptyState() {
  return {
    cooldowns: {} as Record<string, number>,
    errorCount: 0,
    lastUsedAt: 0,
    lastError: null as { at: number; status: number; message: string } | null,
    disabledReason: null as string | null,
  };
}

describe("priority tiers, models, groups, providers", () => {
  it("uses a lower tier only while every credential of the higher one is cooling down or disabled", async () => {
    const s = await setup([
      { id: "low", priority: 0 },
      { id: "a", priority: 10 },
      { id: "b", priority: 10 },
    ]);
    expect(picks(s, 4)).toEqual(["a", "b", "a", "b"]);
    s.pool.reportFailure("a", MODEL, 429, "limit", { retryAfterMs: 1_000 });
    expect(picks(s, 2)).toEqual(["b", "b"]);
    await s.pool.setEnabled("b", false, "maintenance");
    expect(picks(s, 2)).toEqual(["low", "low"]);
    s.clock.now += 1_000;
    expect(picks(s, 2)).toEqual(["a", "a"]);
    await s.pool.setEnabled("b", true);
    expect(picks(s, 2)).toEqual(["b", "a"]);
  });

  it("only picks credentials serving the model, resolving aliases and honouring excluded models", async () => {
    const s = await setup([
      { id: "aliased", models: [{ name: "gpt-4o", alias: "smart" }] },
      { id: "any" },
      { id: "excluding", excludedModels: ["smart"] },
    ]);
    const smart = [1, 2, 3, 4].map(() => s.pool.pick("smart", { now: T0 }));
    expect(smart.map((p) => p?.credential.id)).toEqual(["aliased", "any", "aliased", "any"]);
    expect(smart.map((p) => p?.upstreamModel)).toEqual(["gpt-4o", "smart", "gpt-4o", "smart"]);
    // The aliased credential does not serve its upstream name under that name, nor other models.
    expect(s.pool.pick("gpt-4o", { now: T0 })?.credential.id).toBe("any");
    expect(new Set(picks(s, 4))).toEqual(new Set(["any", "excluding"]));
  });

  it("a cooldown is per model, and `*` cools the whole credential", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }], { strategy: "fill-first" });
    s.pool.reportFailure("a", MODEL, 429, "limit", { retryAfterMs: 1_000 });
    expect(s.pool.pick(MODEL, { now: T0 })?.credential.id).toBe("b");
    expect(s.pool.pick("gpt-4o", { now: T0 })?.credential.id).toBe("a");
    await s.pool.update("a", { state: state({ cooldowns: { "*": T0 + 1_000 } }) });
    expect(s.pool.pick("gpt-4o", { now: T0 })?.credential.id).toBe("b");
  });

  it("binds groups: a credential without groups is `default`, a group only reaches its own credentials", async () => {
    const s = await setup([
      { id: "plain" },
      { id: "vip1", groups: ["vip"] },
      { id: "both", groups: ["vip", "default"] },
      { id: "vip2", groups: ["vip"] },
    ]);
    const vip = picks(s, 12, { group: "vip" });
    expect(new Set(vip)).toEqual(new Set(["vip1", "both", "vip2"]));
    expect(picks(s, 4, { group: "default" })).toEqual(["plain", "both", "plain", "both"]);
    expect(picks(s, 2, { group: "nobody" })).toEqual([null, null]);
    // Without a group every credential is a candidate.
    expect(new Set(picks(s, 8))).toEqual(new Set(["plain", "vip1", "both", "vip2"]));
    // Every vip credential unavailable: nothing, never a credential of another group.
    for (const id of ["vip1", "both", "vip2"]) await s.pool.setEnabled(id, false);
    expect(picks(s, 2, { group: "vip" })).toEqual([null, null]);
  });

  it("keeps its candidate index in step with edits, additions and removals, here and from another pool", async () => {
    const ids = Array.from({ length: 300 }, (_, i) => ({ id: `c${String(i).padStart(3, "0")}` }));
    const s = await setup(ids);
    // The whole rotation over a large pool, in creation order, then around again.
    const first = picks(s, 301);
    expect(first.slice(0, 300)).toEqual(ids.map((c) => c.id));
    expect(first[300]).toBe("c000");
    // Cooling most of the pool down leaves the rest in turn.
    for (const { id } of ids.slice(0, 298))
      s.pool.reportFailure(id, MODEL, 429, "limit", { retryAfterMs: 1_000 });
    expect(picks(s, 3)).toEqual(["c298", "c299", "c298"]);
    s.clock.now += 1_000;
    // An edit that moves one credential to a better tier, one that stops serving the model, one
    // that leaves the default group: the next pick sees each.
    await s.pool.update("c010", { priority: 5 });
    expect(picks(s, 2)).toEqual(["c010", "c010"]);
    await s.pool.update("c010", { models: [{ name: "other-model" }] });
    await s.pool.update("c011", { groups: ["vip"] });
    const next = picks(s, 300);
    expect(next).not.toContain("c010");
    expect(new Set(next).size).toBe(299);
    expect(picks(s, 1, { group: "vip" })).toEqual(["c011"]);
    // c010 now serves only other-model, which every credential without a model list serves too.
    expect(s.pool.pick("other-model", { now: s.clock.now, group: "vip" })?.credential.id).toBe(
      "c011",
    );
    expect(s.pool.pick("other-model", { now: s.clock.now, providers: ["openai"] })).not.toBeNull();
    await s.pool.update("c010", { priority: 7 });
    expect(s.pool.pick("other-model", { now: s.clock.now })?.credential.id).toBe("c010");
    // A credential added and one removed by another pool on the same store.
    const other = new CredentialPool(s.store, new GatewayEmitter(), silentLogger, {
      clock: () => s.clock.now,
    });
    pools.push(other);
    await other.load();
    const added = await other.add({
      id: "late",
      provider: "openai",
      baseUrl: "https://late.example.test/v1",
      secret: { apiKey: "sk-secret-of-late-0123456789abcdef" },
      priority: 9,
    });
    await s.pool.refresh(added.id);
    expect(picks(s, 2)).toEqual(["late", "late"]);
    await other.remove("late");
    await s.pool.refresh("late");
    expect(picks(s, 300)).not.toContain("late");
  });

  it("filters by provider", async () => {
    const s = await setup([{ id: "o" }, { id: "x", provider: "anthropic" }]);
    expect(picks(s, 3, { providers: ["anthropic"] })).toEqual(["x", "x", "x"]);
    expect(picks(s, 2, { providers: ["openai"] })).toEqual(["o", "o"]);
  });
});

describe("session stickiness", () => {
  it("keeps a session on its credential while it is healthy, then moves it", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }, { id: "c" }]);
    expect(picks(s, 1)).toEqual(["a"]);
    expect(picks(s, 4, { sessionKey: "s1" })).toEqual(["b", "b", "b", "b"]);
    expect(picks(s, 3, { sessionKey: "s2" })).toEqual(["c", "c", "c"]);
    // Other traffic keeps rotating.
    expect(picks(s, 2)).toEqual(["a", "b"]);
    expect(s.pool.sessionCredential("s1", T0)).toBe("b");

    s.pool.reportFailure("b", MODEL, 429, "limit", { retryAfterMs: 1_000 });
    const moved = picks(s, 1, { sessionKey: "s1" })[0];
    expect(moved).not.toBe("b");
    expect(picks(s, 3, { sessionKey: "s1" })).toEqual([moved, moved, moved]);
  });

  it("forgets a session after its TTL and the least recently used beyond maxSessions", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }], { sessionTtlMs: 1_000, maxSessions: 2 });
    picks(s, 1, { sessionKey: "one" });
    expect(s.pool.sessionCredential("one", T0 + 999)).toBe("a");
    expect(s.pool.sessionCredential("one", T0 + 1_000)).toBeUndefined();
    picks(s, 1, { sessionKey: "two" });
    picks(s, 1, { sessionKey: "three" });
    expect(s.pool.sessionCredential("one", T0)).toBeUndefined();
    expect(s.pool.sessionCredential("two", T0)).toBeDefined();
    expect(s.pool.sessionCredential("three", T0)).toBeDefined();
  });

  it("does not keep a session on a lower tier once the higher tier is back", async () => {
    const s = await setup([
      { id: "main", priority: 1 },
      { id: "backup", priority: 0 },
    ]);
    s.pool.reportFailure("main", MODEL, 429, "limit", { retryAfterMs: 100 });
    expect(picks(s, 2, { sessionKey: "s" })).toEqual(["backup", "backup"]);
    s.clock.now += 100;
    expect(picks(s, 2, { sessionKey: "s" })).toEqual(["main", "main"]);
  });
});

describe("health", () => {
  it("cools a credential down for retryAfterMs, else with exponential backoff reset by a success", async () => {
    const s = await setup([{ id: "a" }], { cooldownBaseMs: 1_000, maxBackoffMs: 4_000 });
    s.pool.reportFailure("a", MODEL, 429, "limit", { retryAfterMs: 2_500 });
    expect(s.pool.get("a")!.state.cooldowns[MODEL]).toBe(T0 + 2_500);
    const untils: number[] = [];
    for (let i = 0; i < 4; i++) {
      s.clock.now = T0 + 10_000 * (i + 1);
      s.pool.reportFailure("a", MODEL, 429, "limit");
      untils.push(s.pool.get("a")!.state.cooldowns[MODEL]! - s.clock.now);
    }
    // The first cooldown (with retryAfterMs) counted as the first step.
    expect(untils).toEqual([2_000, 4_000, 4_000, 4_000]);
    s.pool.reportSuccess("a", MODEL);
    s.clock.now = T0 + 100_000;
    s.pool.reportFailure("a", MODEL, 429, "limit");
    expect(s.pool.get("a")!.state.cooldowns[MODEL]).toBe(s.clock.now + 1_000);
    // A quota error cools down too; the older positional retryAfterMs still works.
    s.pool.reportFailure("a", "other", 400, "quota", { kind: "quota", retryAfterMs: 10 });
    s.pool.reportFailure("a", "third", 503, "overloaded", 7_000);
    expect(s.pool.get("a")!.state.cooldowns.other).toBe(s.clock.now + 10);
    expect(s.pool.get("a")!.state.cooldowns.third).toBe(s.clock.now + 7_000);
    const cooldowns = s.seen.filter((e) => e.name === "credential.cooldown");
    expect(cooldowns.at(-1)!.payload).toEqual({
      credentialId: "a",
      provider: "openai",
      model: "third",
      until: s.clock.now + 7_000,
      status: 503,
      reason: "server",
    });
  });

  it("auto-disables after maxFailures inside the window, never on the first error", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }], { maxFailures: 3, failureWindowMs: 1_000 });
    s.pool.reportFailure("a", MODEL, 500, "boom");
    expect(s.pool.get("a")!.enabled).toBe(true);
    s.clock.now += 400;
    s.pool.reportFailure("a", MODEL, 0, "connection reset");
    expect(s.pool.get("a")!.enabled).toBe(true);
    s.clock.now += 400;
    s.pool.reportFailure("a", MODEL, 502, "bad gateway");
    const a = s.pool.get("a")!;
    expect(a.enabled).toBe(false);
    expect(a.state.disabledReason).toBe(
      `${AUTO_DISABLED_PREFIX} 3 failures within 1s (last: HTTP 502)`,
    );
    expect(isAutoDisabled(a)).toBe(true);
    expect(picks(s, 3)).toEqual(["b", "b", "b"]);
    // Persisted: the credential stays stored (and listed), disabled.
    await s.pool.flush();
    const stored = await s.store.credentials.get("a");
    expect(stored!.enabled).toBe(false);
    expect(stored!.state.disabledReason).toBe(a.state.disabledReason);
    expect(s.pool.list().map((c) => c.id)).toEqual(["a", "b"]);
    expect(s.seen.filter((e) => e.name === "credential.disabled").map((e) => e.payload)).toEqual([
      { credentialId: "a", provider: "openai", reason: a.state.disabledReason, by: "pool" },
    ]);
  });

  it("does not auto-disable failures spread beyond the window, or separated by a success", async () => {
    const s = await setup([{ id: "a" }], { maxFailures: 2, failureWindowMs: 1_000 });
    s.pool.reportFailure("a", MODEL, 500, "boom");
    s.clock.now += 1_000;
    s.pool.reportFailure("a", MODEL, 500, "boom");
    expect(s.pool.get("a")!.enabled).toBe(true);
    s.pool.reportSuccess("a", MODEL);
    s.clock.now += 10;
    s.pool.reportFailure("a", MODEL, 500, "boom");
    expect(s.pool.get("a")!.enabled).toBe(true);
    s.clock.now += 10;
    s.pool.reportFailure("a", MODEL, 500, "boom");
    expect(s.pool.get("a")!.enabled).toBe(false);
  });

  it("reads the threshold and window from the settings; 0 never disables and 1 still needs two failures", async () => {
    const settings = settingsOf({ "credential-max-failures": 0 });
    const s = await setup([{ id: "a" }], { settings, maxFailures: 2 });
    for (let i = 0; i < 10; i++) s.pool.reportFailure("a", MODEL, 500, "boom");
    expect(s.pool.get("a")!.enabled).toBe(true);
    settings.values["credential-max-failures"] = 1;
    settings.values["credential-failure-window-ms"] = 50;
    s.pool.reportFailure("a", MODEL, 500, "boom");
    expect(s.pool.get("a")!.enabled).toBe(true);
    s.clock.now += 60;
    s.pool.reportFailure("a", MODEL, 500, "boom");
    expect(s.pool.get("a")!.enabled).toBe(true);
    s.pool.reportFailure("a", MODEL, 500, "boom");
    expect(s.pool.get("a")!.enabled).toBe(false);
  });

  it("rate limits never count toward auto-disabling", async () => {
    const s = await setup([{ id: "a" }], { maxFailures: 2 });
    for (let i = 0; i < 10; i++) s.pool.reportFailure("a", MODEL, 429, "limit");
    s.pool.reportFailure("a", MODEL, 400, "quota", { kind: "quota" });
    expect(s.pool.get("a")!.enabled).toBe(true);
  });

  it("401/403 count like other failures, and disable at once only when the refresh failed", async () => {
    const s = await setup([{ id: "a" }, { id: "oauth", kind: "oauth" }], { maxFailures: 3 });
    s.pool.reportFailure("a", MODEL, 401, "unauthorized");
    s.pool.reportFailure("a", MODEL, 403, "forbidden");
    expect(s.pool.get("a")!.enabled).toBe(true);
    s.pool.reportFailure("a", MODEL, 401, "unauthorized");
    expect(s.pool.get("a")!.enabled).toBe(false);

    s.pool.reportFailure("oauth", MODEL, 401, "token expired", {
      kind: "auth",
      refreshFailed: true,
    });
    const o = s.pool.get("oauth")!;
    expect(o.enabled).toBe(false);
    expect(o.state.disabledReason).toContain("refresh failed");
    expect(isAutoDisabled(o)).toBe(true);
  });

  it("writes state only when it changes, never for a plain success, and never reads the store in pick", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }]);
    const update = vi.spyOn(s.store.credentials, "update");
    const get = vi.spyOn(s.store.credentials, "get");
    const list = vi.spyOn(s.store.credentials, "list");
    for (let i = 0; i < 100; i++) {
      const p = s.pool.pick(MODEL)!;
      s.pool.reportSuccess(p.credential.id, MODEL);
    }
    await s.pool.flush();
    expect(update).not.toHaveBeenCalled();
    expect(get).not.toHaveBeenCalled();
    expect(list).not.toHaveBeenCalled();

    s.pool.reportFailure("a", MODEL, 500, "boom");
    await s.pool.flush();
    expect(update).toHaveBeenCalledTimes(1);
    s.pool.reportSuccess("a", MODEL);
    s.pool.reportSuccess("a", MODEL);
    await s.pool.flush();
    expect(update).toHaveBeenCalledTimes(2);
    const stored = await s.store.credentials.get("a");
    expect(stored!.state.errorCount).toBe(0);
    expect(stored!.state.lastError).toMatchObject({ status: 500, message: "boom" });
    // The write carried the last use, without a write of its own.
    expect(stored!.state.lastUsedAt).toBeGreaterThan(0);
  });

  it("coalesces a burst of failures into few writes that end with the latest state", async () => {
    const s = await setup([{ id: "a" }], { maxFailures: 0 });
    const update = vi.spyOn(s.store.credentials, "update");
    for (let i = 0; i < 50; i++) s.pool.reportFailure("a", MODEL, 500, `boom ${i}`);
    await s.pool.flush();
    expect(update.mock.calls.length).toBeLessThanOrEqual(2);
    const stored = await s.store.credentials.get("a");
    expect(stored!.state.errorCount).toBe(50);
    expect(stored!.state.lastError!.message).toBe("boom 49");
  });

  it("setEnabled persists; a disabled credential stays listed and is never picked", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }, { id: "c" }]);
    await s.pool.setEnabled("b", false, "rotating the key");
    const stored = await s.store.credentials.get("b");
    expect(stored!.enabled).toBe(false);
    expect(stored!.state.disabledReason).toBe("rotating the key");
    expect(isAutoDisabled(stored!)).toBe(false);
    expect(picks(s, 30)).not.toContain("b");
    expect(picks(s, 30, { exclude: new Set(["a", "c"]) })).toEqual(Array(30).fill(null));
    expect(s.pool.list().find((c) => c.id === "b")!.enabled).toBe(false);
    // An operator's reason can never pass for an automatic one.
    await s.pool.setEnabled("c", false, `${AUTO_DISABLED_PREFIX} fake`);
    expect(isAutoDisabled(s.pool.get("c")!)).toBe(false);
    await s.pool.setEnabled("b", true);
    expect((await s.store.credentials.get("b"))!.enabled).toBe(true);
    expect(picks(s, 2)).toEqual(["a", "b"]);
    await expect(s.pool.setEnabled("missing", false)).rejects.toMatchObject({ code: "NOT_FOUND" });
    const changes = s.seen
      .filter((e) => e.name === "credential.disabled" || e.name === "credential.enabled")
      .map((e) => [e.name, (e.payload as { credentialId: string; by: string }).by]);
    expect(changes).toEqual([
      ["credential.disabled", "operator"],
      ["credential.disabled", "operator"],
      ["credential.enabled", "operator"],
    ]);
  });
});

describe("recovery probe", () => {
  it("re-enables credentials the pool disabled once the probe succeeds, never operator-disabled ones", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }, { id: "c" }], { maxFailures: 2 });
    for (let i = 0; i < 2; i++) {
      s.pool.reportFailure("a", MODEL, 500, "boom");
      s.pool.reportFailure("b", MODEL, 500, "boom");
    }
    await s.pool.setEnabled("c", false, "by hand");
    const healthy = new Set<string>();
    const probed: string[] = [];
    const probe = vi.fn(async (c: { id: string; secret: { apiKey?: string } }) => {
      probed.push(c.id);
      // The probe receives the secrets it needs to authenticate.
      expect(c.secret.apiKey).toContain("sk-secret-of-");
      if (c.id === "b") throw new Error("network down");
      return healthy.has(c.id);
    });
    const handle = s.pool.startRecoveryProbe(probe, { intervalMs: 60_000 });
    expect(await handle.runOnce()).toEqual([]);
    expect(probed).toEqual(["a", "b"]);
    healthy.add("a");
    healthy.add("c");
    expect(await handle.runOnce()).toEqual(["a"]);
    const a = s.pool.get("a")!;
    expect(a.enabled).toBe(true);
    expect(a.state.disabledReason).toBeNull();
    expect(a.state.errorCount).toBe(0);
    expect((await s.store.credentials.get("a"))!.enabled).toBe(true);
    expect(s.pool.get("c")!.enabled).toBe(false);
    expect(probed).not.toContain("c");
    expect(s.seen.filter((e) => e.name === "credential.enabled").map((e) => e.payload)).toEqual([
      { credentialId: "a", provider: "openai", by: "probe" },
    ]);
    handle.stop();
  });

  it("probes on its interval with an unref'd timer and stops", async () => {
    vi.useFakeTimers({ toFake: ["setInterval", "clearInterval"] });
    const s = await setup([{ id: "a" }], { maxFailures: 2 });
    s.pool.reportFailure("a", MODEL, 500, "boom");
    s.pool.reportFailure("a", MODEL, 500, "boom");
    let calls = 0;
    s.pool.startRecoveryProbe(
      async () => {
        calls++;
        return calls >= 2;
      },
      { intervalMs: 100 },
    );
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(1);
    expect(s.pool.get("a")!.enabled).toBe(false);
    await vi.advanceTimersByTimeAsync(100);
    expect(calls).toBe(2);
    expect(s.pool.get("a")!.enabled).toBe(true);
    await s.pool.stop();
    s.pool.reportFailure("a", MODEL, 500, "boom");
    s.pool.reportFailure("a", MODEL, 500, "boom");
    await vi.advanceTimersByTimeAsync(1_000);
    expect(calls).toBe(2);
    expect(() => s.pool.startRecoveryProbe(async () => true, { intervalMs: 0 })).toThrow(
      /intervalMs/,
    );
  });

  it("treats enabled changes made with update() as an operator's: never probed, counts reset", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }], { maxFailures: 2 });
    for (const id of ["a", "b"]) {
      s.pool.reportFailure(id, MODEL, 500, "boom");
      s.pool.reportFailure(id, MODEL, 500, "boom");
    }
    expect(isAutoDisabled(s.pool.get("a")!)).toBe(true);
    // Kept off by an operator: no longer the pool's to re-enable.
    await s.pool.update("a", { enabled: false });
    expect(isAutoDisabled(s.pool.get("a")!)).toBe(false);
    await s.pool.update("b", { enabled: true });
    expect(s.pool.get("b")).toMatchObject({
      enabled: true,
      state: { disabledReason: null, errorCount: 0 },
    });
    const probe = vi.fn(async () => true);
    expect(await s.pool.startRecoveryProbe(probe, { intervalMs: 60_000 }).runOnce()).toEqual([]);
    expect(probe).not.toHaveBeenCalled();
    expect(
      s.seen
        .filter((e) => e.name === "credential.enabled")
        .map((e) => (e.payload as { by: string }).by),
    ).toEqual(["operator"]);
  });
});

describe("projects (quota-exceeded/switch-project)", () => {
  it("moves a model on to the next project id until none is left, and starts over after a cooldown", async () => {
    const s = await setup([{ id: "g", projectIds: ["p1", "p2", "p3"] }, { id: "none" }]);
    expect(s.pool.projectFor("g", MODEL)).toBe("p1");
    expect(s.pool.rotateProject("g", MODEL)).toBe(true);
    expect(s.pool.projectFor("g", MODEL)).toBe("p2");
    // Per model.
    expect(s.pool.projectFor("g", "gemini-2.5-pro")).toBe("p1");
    expect(s.pool.rotateProject("g", MODEL)).toBe(true);
    expect(s.pool.projectFor("g", MODEL)).toBe("p3");
    expect(s.pool.rotateProject("g", MODEL)).toBe(false);
    s.pool.reportFailure("g", MODEL, 429, "quota", { kind: "quota", retryAfterMs: 100 });
    expect(s.pool.projectFor("g", MODEL)).toBe("p1");
    expect(s.pool.projectFor("none", MODEL)).toBeUndefined();
    expect(s.pool.rotateProject("none", MODEL)).toBe(false);
    expect(s.pool.rotateProject("missing", MODEL)).toBe(false);
  });
});

describe("events", () => {
  it("announce selections, errors, cooldowns and state changes without any secret", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }], { maxFailures: 2 });
    const secretA = "sk-secret-of-a-0123456789abcdef";
    s.pool.pick(MODEL, { now: T0, sessionKey: "sess" });
    s.pool.reportFailure("a", MODEL, 401, `Incorrect API key provided: ${secretA}`);
    s.pool.reportFailure("a", MODEL, 429, `Bearer ${secretA} is rate limited`, {
      retryAfterMs: 10,
    });
    s.pool.reportFailure("a", MODEL, 500, `upstream echoed ${secretA}`);
    await s.pool.setEnabled("a", true);
    await s.pool.setEnabled("b", false, "manual");
    const names = new Set(s.seen.map((e) => e.name));
    expect(names).toEqual(
      new Set([
        "credential.selected",
        "credential.error",
        "credential.cooldown",
        "credential.disabled",
        "credential.enabled",
      ]),
    );
    expect(s.seen[0]!.payload).toEqual({
      credentialId: "a",
      provider: "openai",
      model: MODEL,
      upstreamModel: MODEL,
      strategy: "round-robin",
      sticky: false,
    });
    const all = JSON.stringify(s.seen);
    expect(all).not.toContain(secretA);
    expect(all).not.toContain("0123456789abcdef");
    // Nor in the stored state.
    await s.pool.flush();
    const stored = await s.store.credentials.list();
    expect(JSON.stringify(stored.map((c) => c.state))).not.toContain("0123456789abcdef");
  });
});

describe("store sync", () => {
  it("follows changes made by another pool on the same store and keeps its own use times", async () => {
    const s = await setup([{ id: "a" }, { id: "b" }], { strategy: "least-recently-used" });
    s.store.watch((change) => {
      if (change.collection === "credentials") void s.pool.refresh(change.id);
    });
    const other = new CredentialPool(s.store, new GatewayEmitter(), silentLogger);
    pools.push(other);
    await other.load();
    expect(picks(s, 2)).toEqual(["a", "b"]);
    await other.setEnabled("a", false, "elsewhere");
    await new Promise((r) => setTimeout(r, 5));
    expect(picks(s, 2)).toEqual(["b", "b"]);
    expect(s.seen.filter((e) => e.name === "credential.disabled").at(-1)!.payload).toEqual({
      credentialId: "a",
      provider: "openai",
      reason: "elsewhere",
      by: "store",
    });
    await other.setEnabled("a", true);
    await new Promise((r) => setTimeout(r, 5));
    // b was used last, so a goes next: use times survived the reloads.
    expect(picks(s, 2)).toEqual(["a", "b"]);
    // A cooldown set by the other instance is honoured here.
    other.reportFailure("a", MODEL, 429, "limit", { retryAfterMs: 60_000, now: Date.now() });
    await other.flush();
    await new Promise((r) => setTimeout(r, 5));
    expect(s.pool.pick(MODEL)?.credential.id).toBe("b");
    expect(s.pool.pick(MODEL)?.credential.id).toBe("b");
  });
});
