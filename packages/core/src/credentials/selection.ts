/** Credential selection: candidates, priority tiers, strategies and session stickiness. */
import type { CredentialChangeSource, GatewayEmitter } from "../events.js";
import type { CredentialRecord } from "../store/types.js";
import type { CredentialPick, CredentialPoolOptions, PickOptions } from "./pool-options.js";
import {
  chooseLeastRecentlyUsed,
  chooseRoundRobin,
  chooseWeighted,
  type RoutingStrategy,
  type StrategyCandidate,
} from "./strategies.js";

/** A credential and what this process knows about it beyond the stored record. */
export interface Entry extends StrategyCandidate {
  /** Timestamps of failures counted toward auto-disabling (inside the window, since the last success). */
  failures: number[];
  /** Consecutive cooldowns per model, for the backoff. */
  backoff: Map<string, number> | null;
  /** Index into `projectIds` per model (`quota-exceeded/switch-project`). */
  projects: Map<string, number> | null;
  /** Bumped on every local change of `state` or `enabled`. */
  localSeq: number;
  /** The state write in flight, if any. */
  writing: Promise<void> | null;
  /** A local change waits for the next write. */
  dirty: boolean;
  /** That change includes `enabled`. */
  dirtyEnabled: boolean;
  /** Who made the `enabled` change that the next store refresh will show. */
  changeBy: CredentialChangeSource | null;
}

/** Bound of the per-model maps (cursors, weights): cleared past it, as model names come from clients. */
export const MAX_MODEL_STATES = 10_000;

/** The upstream model name when `c` serves `model`, else null. */
export function serves(c: CredentialRecord, model: string): string | null {
  if (c.excludedModels.includes(model)) return null;
  if (c.models.length === 0) return model;
  for (const m of c.models) if ((m.alias || m.name) === model) return m.name;
  return null;
}

/** Whether `c` belongs to `group` (a credential with no groups belongs to `default`). */
export function inGroup(c: CredentialRecord, group: string): boolean {
  return c.groups.length === 0 ? group === "default" : c.groups.includes(group);
}

/** The credentials of one priority that could serve a pick (whatever their state), in stable order. */
interface Tier {
  priority: number;
  entries: Entry[];
  /** The upstream model name of each entry. */
  ups: string[];
  /** Credential id → position in `entries`. */
  at: Map<string, number>;
}

/** The candidates of a model, group and providers: tiers, best priority first. */
interface CandidateSet {
  tiers: Tier[];
}

/** Whether `e` can take a request for `model` now: enabled, not excluded, not cooling down. */
function available(e: Entry, model: string, opts: PickOptions, now: number): boolean {
  const c = e.c;
  if (!c.enabled || opts.exclude?.has(c.id)) return false;
  const cd = c.state.cooldowns;
  return !((cd[model] ?? 0) > now || (cd["*"] ?? 0) > now);
}

/** What the selector reads of its pool. */
export interface SelectorHost {
  events: GatewayEmitter;
  /** The strategy in force, read when a pick has candidates. */
  strategy(): RoutingStrategy;
  /** The pool's options (session lifetime and bound). */
  options(): CredentialPoolOptions;
}

/**
 * The selection half of the credential pool: the per-model rotation state (round-robin cursors,
 * smooth weights) and the session bindings, and the pick over the pool's entries.
 */
export class CredentialSelector {
  readonly #host: SelectorHost;
  #useSeq = 0;
  /** Round-robin: `ord` of the last credential chosen, per model. */
  readonly #cursor = new Map<string, number>();
  /** Smooth weighted round-robin: current weights per model. */
  readonly #weights = new Map<string, Map<string, number>>();
  /** Session key → bound credential, least recently used first. */
  readonly #sessions = new Map<string, { id: string; until: number }>();
  /** Scratch arrays of {@link CredentialSelector.pick}, reused so that a pick allocates nearly nothing. */
  readonly #cands: Entry[] = [];
  readonly #at: number[] = [];
  /** The candidate index: per model, group and providers ({@link CredentialSelector.#candidates}). */
  readonly #index = new Map<string, CandidateSet>();
  /** The pool version the index was built for. */
  #indexVersion = -1;

  constructor(host: SelectorHost) {
    this.#host = host;
  }

  /**
   * Chooses a credential for `model`, or null when none is available. Runs on every request,
   * with no store access. What depends only on the records (provider, group, the models a
   * credential serves, its priority) is indexed per model, group and providers
   * ({@link CredentialSelector.#candidates}, rebuilt when the pool's `version` moves); what
   * changes from request to request (enabled, cooldowns, the exclusions of a retry) is checked
   * as the pick walks the index, best priority tier first. Round-robin and fill-first stop at
   * the first available candidate of their order, so a pick over 10,000 credentials costs about
   * what one over ten does; weighted and least-recently-used look at the whole best tier.
   */
  pick(
    entries: readonly Entry[],
    model: string,
    opts: PickOptions,
    now: number,
    version = -1,
  ): CredentialPick | null {
    const set = this.#candidates(entries, version, model, opts);
    const strategy = this.#host.strategy();
    const sessionKey = opts.sessionKey;
    const bound = sessionKey ? this.#sessions.get(sessionKey) : undefined;
    const boundId = bound && bound.until > now ? bound.id : undefined;
    for (const tier of set.tiers) {
      let i = -1;
      let sticky = false;
      if (boundId !== undefined) {
        const j = tier.at.get(boundId);
        if (j !== undefined && available(tier.entries[j]!, model, opts, now)) {
          i = j;
          sticky = true;
        }
      }
      if (!sticky) i = this.#choose(strategy, model, tier, opts, now);
      if (i < 0) continue;
      const e = tier.entries[i]!;
      const upstreamModel = tier.ups[i]!;
      // The rotation goes on from the last credential chosen by a strategy, whichever it was.
      if (!sticky) {
        if (this.#cursor.size >= MAX_MODEL_STATES && !this.#cursor.has(model)) this.#cursor.clear();
        this.#cursor.set(model, e.ord);
      }
      e.lastUsedAt = now;
      e.useSeq = ++this.#useSeq;
      e.c.state.lastUsedAt = now;
      if (sessionKey) this.#bindSession(sessionKey, e.c.id, now);
      if (this.#host.events.listenerCount("credential.selected") > 0)
        this.#host.events.emit("credential.selected", {
          credentialId: e.c.id,
          provider: e.c.provider,
          model,
          upstreamModel,
          strategy,
          sticky,
        });
      return { credential: e.c, upstreamModel };
    }
    return null;
  }

  /**
   * Whether any credential could serve `model` within `opts`' group and providers, whatever its
   * state (enabled or not, cooling down or not): a lookup in the candidate index.
   */
  hasCandidates(
    entries: readonly Entry[],
    model: string,
    opts: Pick<PickOptions, "group" | "providers">,
    version = -1,
  ): boolean {
    return this.#candidates(entries, version, model, opts).tiers.length > 0;
  }

  /**
   * The credentials that could serve `model` for the pick's group and providers, whatever their
   * state, in priority tiers (best first), each in stable order. Cached per model, group and
   * providers while the pool's `version` stays (-1: never cached).
   */
  #candidates(
    entries: readonly Entry[],
    version: number,
    model: string,
    opts: Pick<PickOptions, "group" | "providers">,
  ): CandidateSet {
    const { group, providers } = opts;
    const id = `${model}\u0000${group ?? "\u0001"}\u0000${providers ? providers.join(",") : "\u0001"}`;
    if (version !== this.#indexVersion) {
      this.#index.clear();
      this.#indexVersion = version;
    }
    const cached = version < 0 ? undefined : this.#index.get(id);
    if (cached) return cached;
    const byPriority = new Map<number, Tier>();
    for (const e of entries) {
      const c = e.c;
      if (providers && !providers.includes(c.provider)) continue;
      if (group !== undefined && !inGroup(c, group)) continue;
      const upstreamModel = serves(c, model);
      if (upstreamModel === null) continue;
      let tier = byPriority.get(c.priority);
      if (!tier) {
        tier = { priority: c.priority, entries: [], ups: [], at: new Map() };
        byPriority.set(c.priority, tier);
      }
      tier.at.set(c.id, tier.entries.length);
      tier.entries.push(e);
      tier.ups.push(upstreamModel);
    }
    const set: CandidateSet = {
      tiers: [...byPriority.values()].sort((a, b) => b.priority - a.priority),
    };
    if (version >= 0) {
      if (this.#index.size >= MAX_MODEL_STATES) this.#index.clear();
      this.#index.set(id, set);
    }
    return set;
  }

  /**
   * When {@link CredentialPool.pick} finds nothing: how long until the first credential that
   * could serve the request comes out of its cooldown (ms), or undefined when none is cooling
   * down (every candidate is disabled, or there is none), so that waiting cannot help. Same
   * filters as `pick` (exclusions, group, providers); the priority tiers do not matter here.
   */
  cooldownWait(
    entries: readonly Entry[],
    model: string,
    opts: PickOptions,
    now: number,
  ): number | undefined {
    const { exclude, group, providers } = opts;
    let soonest: number | undefined;
    for (const e of entries) {
      const c = e.c;
      if (!c.enabled || exclude?.has(c.id)) continue;
      if (providers && !providers.includes(c.provider)) continue;
      if (group !== undefined && !inGroup(c, group)) continue;
      if (serves(c, model) === null) continue;
      const cd = c.state.cooldowns;
      const until = Math.max(cd[model] ?? 0, cd["*"] ?? 0);
      if (until <= now) return 0;
      if (soonest === undefined || until < soonest) soonest = until;
    }
    return soonest === undefined ? undefined : soonest - now;
  }

  /**
   * The strategy's choice among the available credentials of `tier`: its index in the tier, or
   * -1 when none is available.
   */
  #choose(
    strategy: RoutingStrategy,
    model: string,
    tier: Tier,
    opts: PickOptions,
    now: number,
  ): number {
    const { entries } = tier;
    if (strategy === "fill-first") {
      for (let i = 0; i < entries.length; i++)
        if (available(entries[i]!, model, opts, now)) return i;
      return -1;
    }
    if (strategy === "round-robin") return this.#roundRobin(model, tier, opts, now);
    // Weighted and least-recently-used weigh every available candidate of the tier.
    const cands = this.#cands;
    const at = this.#at;
    cands.length = 0;
    at.length = 0;
    for (let i = 0; i < entries.length; i++) {
      if (!available(entries[i]!, model, opts, now)) continue;
      cands.push(entries[i]!);
      at.push(i);
    }
    let j = -1;
    if (cands.length > 0) {
      if (strategy === "least-recently-used") j = chooseLeastRecentlyUsed(cands);
      else {
        let current = this.#weights.get(model);
        if (!current) {
          if (this.#weights.size >= MAX_MODEL_STATES) this.#weights.clear();
          current = new Map();
          this.#weights.set(model, current);
        }
        j = chooseWeighted(cands, current);
        if (j < 0) j = chooseRoundRobin(cands, this.#cursor.get(model) ?? -1);
      }
    }
    const i = j < 0 ? -1 : at[j]!;
    cands.length = 0;
    at.length = 0;
    return i;
  }

  /**
   * Round-robin over the tier (see {@link chooseRoundRobin}): the first available credential
   * after the one chosen last, wrapping around; found from the last one's position, so that only
   * unavailable credentials on the way are looked at.
   */
  #roundRobin(model: string, tier: Tier, opts: PickOptions, now: number): number {
    const { entries } = tier;
    const n = entries.length;
    const last = this.#cursor.get(model) ?? -1;
    // The first position whose ord is after the last choice (entries are in ascending ord).
    let lo = 0;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (entries[mid]!.ord > last) hi = mid;
      else lo = mid + 1;
    }
    for (let k = 0; k < n; k++) {
      const i = (lo + k) % n;
      if (available(entries[i]!, model, opts, now)) return i;
    }
    return -1;
  }

  #bindSession(key: string, id: string, now: number): void {
    const sessions = this.#sessions;
    // Delete first so that the entry moves to the end: the map stays in least-recent-first order.
    sessions.delete(key);
    sessions.set(key, { id, until: now + (this.#host.options().sessionTtlMs ?? 30 * 60_000) });
    const max = Math.max(1, this.#host.options().maxSessions ?? 10_000);
    while (sessions.size > max) {
      const oldest = sessions.keys().next().value;
      if (oldest === undefined) break;
      sessions.delete(oldest);
    }
  }

  /** The credential a session is bound to (while the binding lasts), or undefined. */
  sessionCredential(sessionKey: string, now: number): string | undefined {
    const s = this.#sessions.get(sessionKey);
    return s && s.until > now ? s.id : undefined;
  }
}
