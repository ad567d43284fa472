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
  readonly #ups: string[] = [];

  constructor(host: SelectorHost) {
    this.#host = host;
  }

  /**
   * Chooses a credential for `model`, or null when none is available. Runs on every request:
   * one pass over the pool, no store access, no allocation but the result.
   */
  pick(
    entries: readonly Entry[],
    model: string,
    opts: PickOptions,
    now: number,
  ): CredentialPick | null {
    const { exclude, group, providers } = opts;
    const cands = this.#cands;
    const ups = this.#ups;
    cands.length = 0;
    ups.length = 0;
    let tier = Number.NEGATIVE_INFINITY;
    for (const e of entries) {
      const c = e.c;
      if (!c.enabled || c.priority < tier) continue;
      if (exclude?.has(c.id)) continue;
      if (providers && !providers.includes(c.provider)) continue;
      if (group !== undefined && !inGroup(c, group)) continue;
      const upstreamModel = serves(c, model);
      if (upstreamModel === null) continue;
      const cd = c.state.cooldowns;
      if ((cd[model] ?? 0) > now || (cd["*"] ?? 0) > now) continue;
      if (c.priority > tier) {
        tier = c.priority;
        cands.length = 0;
        ups.length = 0;
      }
      cands.push(e);
      ups.push(upstreamModel);
    }
    if (cands.length === 0) return null;

    const strategy = this.#host.strategy();
    const sessionKey = opts.sessionKey;
    let i = -1;
    if (sessionKey) {
      const s = this.#sessions.get(sessionKey);
      if (s && s.until > now) {
        for (let j = 0; j < cands.length; j++)
          if (cands[j]!.c.id === s.id) {
            i = j;
            break;
          }
      }
    }
    const sticky = i >= 0;
    if (!sticky) i = this.#choose(strategy, model, cands);
    const e = cands[i]!;
    const upstreamModel = ups[i]!;
    cands.length = 0;
    ups.length = 0;

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

  #choose(strategy: RoutingStrategy, model: string, cands: readonly Entry[]): number {
    if (strategy === "fill-first") return 0;
    if (strategy === "least-recently-used") return chooseLeastRecentlyUsed(cands);
    if (strategy === "weighted") {
      let current = this.#weights.get(model);
      if (!current) {
        if (this.#weights.size >= MAX_MODEL_STATES) this.#weights.clear();
        current = new Map();
        this.#weights.set(model, current);
      }
      const i = chooseWeighted(cands, current);
      if (i >= 0) return i;
    }
    return chooseRoundRobin(cands, this.#cursor.get(model) ?? -1);
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
