import { GatewayError } from "../errors.js";
import type { CredentialChangeSource, GatewayEmitter } from "../events.js";
import type { Logger } from "../logger.js";
import type { CredentialLimits, CredentialPatch, CredentialRecord, Store } from "../store/types.js";
import { emptyCredentialState } from "../store/util.js";
import { FreshReads } from "../util/fresh-reads.js";
import { mergeLimitFields } from "../util/limit-fields.js";
import {
  AUTO_DISABLED_PREFIX,
  backoffMs,
  DEFAULT_POOL_SETTINGS,
  failureKind,
  isAutoDisabled,
  operatorReason,
  POOL_SETTINGS,
  safeErrorText,
} from "./health.js";
import { CREDENTIAL_LIMIT_FIELDS, parseCredentialLimits } from "./limits.js";
import type {
  AddCredentialInput,
  CredentialPick,
  CredentialPoolOptions,
  PickOptions,
  ReportFailureOptions,
} from "./pool-options.js";
import type { CredentialProbe, RecoveryProbeHandle, RecoveryProbeOptions } from "./probe.js";
import { CredentialSelector, type Entry, inGroup, MAX_MODEL_STATES, serves } from "./selection.js";
import {
  DEFAULT_ROUTING_STRATEGY,
  parseRoutingStrategy,
  type RoutingStrategy,
} from "./strategies.js";

// What the pool's importers take from here; the rest of its types is in pool-options.ts.
export { type AddCredentialInput, maskCredential, type PickOptions } from "./pool-options.js";

/**
 * The upstream credential pool, held in memory for picking and kept in step with the store
 * through change notifications.
 *
 * Selection ({@link CredentialPool.pick}): only enabled credentials that serve the model (aliases resolved,
 * excluded models skipped), of the requested group and providers, and not cooling down for the
 * model; among them the highest priority tier only; inside it the `routing-strategy`
 * ({@link RoutingStrategy}), unless the request's session is already bound to one of them.
 *
 * Health: {@link CredentialPool.reportFailure} cools a credential down for a model on 429/quota errors and
 * auto-disables it after repeated failures; {@link CredentialPool.reportSuccess} clears the failure count. State
 * is written through the store only when it changes (never on a plain success), one write at a
 * time per credential. A recovery probe ({@link CredentialPool.startRecoveryProbe}) re-enables auto-disabled
 * credentials that work again.
 */
export class CredentialPool {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  readonly #logger: Logger;
  #opts: CredentialPoolOptions;
  #clock: () => number;
  /** In stable order (ascending `ord`). */
  #entries: Entry[] = [];
  /**
   * Bumped whenever an entry's record is replaced or the entries change: the selector's
   * candidate index is rebuilt on the next pick.
   */
  #version = 0;
  #byId = new Map<string, Entry>();
  #nextOrd = 0;
  /** Credentials read one by one (added, refreshed, removed) while a full load was under way. */
  readonly #fresh = new FreshReads();
  /** Rotation state and session bindings of {@link CredentialPool.pick}. */
  readonly #selector: CredentialSelector;
  #probe: RecoveryProbeHandle | null = null;

  /**
   * @param options optional; a gateway passes `{ settings }` so that the runtime settings apply.
   * @example
   * ```ts
   * const pool = new CredentialPool(store, events, logger, { settings, strategy: "fill-first" });
   * await pool.load();
   * const pick = pool.pick("gpt-4o-mini", { group: "vip" });
   * ```
   */
  constructor(
    store: Store,
    events: GatewayEmitter,
    logger: Logger,
    options: CredentialPoolOptions = {},
  ) {
    this.#store = store;
    this.#events = events;
    this.#logger = logger;
    this.#opts = { ...options };
    this.#clock = options.clock ?? Date.now;
    this.#selector = new CredentialSelector({
      events,
      strategy: () => this.strategy,
      options: () => this.#opts,
    });
  }

  /** Changes options while the pool runs (e.g. attaches the runtime settings). */
  configure(options: Partial<CredentialPoolOptions>): void {
    this.#opts = { ...this.#opts, ...options };
    if (options.clock) this.#clock = options.clock;
  }

  /** The strategy in force: the `routing-strategy` setting, else the option, else round-robin. */
  get strategy(): RoutingStrategy {
    return (
      parseRoutingStrategy(this.#opts.settings?.get(POOL_SETTINGS.strategy)) ??
      this.#opts.strategy ??
      DEFAULT_ROUTING_STRATEGY
    );
  }

  #numberSetting(name: string, option: number | undefined, fallback: number): number {
    const v = this.#opts.settings?.get(name);
    if (typeof v === "number" && Number.isFinite(v) && v >= 0) return v;
    return option !== undefined && Number.isFinite(option) && option >= 0 ? option : fallback;
  }

  /** Loads every credential from the store (keeping what this process knows about known ones). */
  async load(): Promise<void> {
    const seqs = new Map<string, number>();
    for (const e of this.#entries) seqs.set(e.c.id, e.localSeq);
    // The store answers as of when it was asked: what this pool read one by one after that
    // (a credential added, changed or removed meanwhile, e.g. by `add()` right after the
    // gateway was created) is newer than the list and is kept as it is.
    const { value: recs, fresher } = await this.#fresh.full(() => this.#store.credentials.list());
    const entries: Entry[] = [];
    const byId = new Map<string, Entry>();
    for (const rec of recs) {
      if (fresher.has(rec.id)) continue;
      const e = this.#byId.get(rec.id);
      if (e) this.#apply(e, rec, seqs.get(rec.id));
      const entry = e ?? this.#newEntry(rec);
      entries.push(entry);
      byId.set(rec.id, entry);
    }
    // What was added or refreshed meanwhile stays as this pool has it; what was removed, gone.
    for (const id of fresher) {
      const e = this.#byId.get(id);
      if (e) {
        entries.push(e);
        byId.set(id, e);
      }
    }
    entries.sort((a, b) => a.ord - b.ord);
    this.#entries = entries;
    this.#version++;
    this.#byId = byId;
  }

  /** Re-reads one credential after a change notification (or all when `id` is absent). */
  async refresh(id?: string): Promise<void> {
    if (id === undefined) return this.load();
    return this.#refreshOne(id, false);
  }

  /** `storeWins`: take the stored `state` and `enabled` even while a local write is under way. */
  async #refreshOne(id: string, storeWins: boolean): Promise<void> {
    const seq = this.#byId.get(id)?.localSeq;
    const rec = await this.#store.credentials.get(id);
    const e = this.#byId.get(id);
    this.#fresh.note(id);
    if (!rec) {
      if (e) {
        this.#byId.delete(id);
        this.#entries = this.#entries.filter((x) => x !== e);
        this.#version++;
      }
    } else if (e) this.#apply(e, rec, storeWins ? e.localSeq : seq, storeWins);
    else {
      const entry = this.#newEntry(rec);
      this.#byId.set(id, entry);
      this.#entries = [...this.#entries, entry];
      this.#version++;
    }
  }

  #newEntry(c: CredentialRecord): Entry {
    return {
      c,
      ord: this.#nextOrd++,
      lastUsedAt: c.state.lastUsedAt,
      useSeq: 0,
      failures: [],
      backoff: null,
      projects: null,
      localSeq: 0,
      writing: null,
      dirty: false,
      dirtyEnabled: false,
      changeBy: null,
    };
  }

  /**
   * Takes a record read from the store. While a local state change is not yet written (or
   * changed during the read), the local `state` and `enabled` win: the write under way carries
   * them to the store, and its own change notification brings the record back in step.
   */
  #apply(e: Entry, rec: CredentialRecord, seqBefore: number | undefined, storeWins = false): void {
    const old = e.c;
    if (!storeWins && (e.writing || e.dirty || e.localSeq !== seqBefore)) {
      rec.enabled = old.enabled;
      rec.state = old.state;
    } else {
      if (rec.state.lastUsedAt < e.lastUsedAt) rec.state.lastUsedAt = e.lastUsedAt;
      else e.lastUsedAt = rec.state.lastUsedAt;
      if (old.enabled !== rec.enabled) {
        const by = e.changeBy ?? "store";
        if (rec.enabled) {
          e.failures.length = 0;
          this.#events.emit("credential.enabled", {
            credentialId: rec.id,
            provider: rec.provider,
            by,
          });
        } else
          this.#events.emit("credential.disabled", {
            credentialId: rec.id,
            provider: rec.provider,
            reason: rec.state.disabledReason ?? "disabled",
            by,
          });
      }
    }
    e.changeBy = null;
    e.c = rec;
    this.#version++;
  }

  /**
   * Adds a credential to the store (and the pool). `limits` ({@link CredentialLimits}) are
   * validated: non-negative safe integers, known fields only (a 400 `INVALID_REQUEST` otherwise);
   * fields at 0 are left out.
   */
  async add(input: AddCredentialInput): Promise<CredentialRecord> {
    const limits = input.limits === undefined ? undefined : validLimits(input.limits);
    if (!input.provider || typeof input.baseUrl !== "string") {
      throw new GatewayError("INVALID_REQUEST", "a credential needs a provider and a baseUrl");
    }
    try {
      new URL(input.baseUrl);
    } catch {
      throw new GatewayError("INVALID_REQUEST", `invalid credential baseUrl: ${input.baseUrl}`);
    }
    const rec = await this.#store.credentials.create({
      provider: input.provider,
      kind: input.kind ?? "api-key",
      label: input.label ?? "",
      baseUrl: input.baseUrl,
      secret: input.secret,
      proxyUrl: input.proxyUrl ?? "",
      projectIds: input.projectIds ?? [],
      models: input.models ?? [],
      excludedModels: input.excludedModels ?? [],
      priority: input.priority ?? 0,
      weight: input.weight ?? 1,
      enabled: input.enabled ?? true,
      groups: input.groups ?? [],
      headers: input.headers ?? {},
      state: input.state ?? emptyCredentialState(),
      ...(limits === undefined ? {} : { limits }),
      ...(input.id === undefined ? {} : { id: input.id }),
    });
    await this.refresh(rec.id);
    return rec;
  }

  /** Every credential, enabled or not (with secrets: for internal use; list responses use {@link maskCredential}). */
  list(): CredentialRecord[] {
    return this.#entries.map((e) => structuredClone(e.c));
  }

  /** A copy of one credential, or null. */
  get(id: string): CredentialRecord | null {
    const e = this.#byId.get(id);
    return e ? structuredClone(e.c) : null;
  }

  /**
   * Applies an operator's patch through the store. It wins over this process's own state
   * changes under way (a `state` patch resets cooldowns and counts); a change of `enabled`
   * emits its event.
   *
   * `limits` are validated as in {@link CredentialPool.add} and MERGED field by field into the
   * stored ones: a field the patch does not name keeps its value, a field set to 0 is removed.
   */
  async update(id: string, patch: CredentialPatch): Promise<CredentialRecord | null> {
    if (patch.limits !== undefined) {
      validLimits(patch.limits);
      const stored = (await this.#store.credentials.get(id))?.limits;
      patch = {
        ...patch,
        limits: mergeLimitFields(stored, patch.limits, CREDENTIAL_LIMIT_FIELDS),
      };
    }
    const e = this.#byId.get(id);
    const local = patch.state !== undefined || patch.enabled !== undefined;
    if (e && local) {
      // Let a state write under way land first, so that it cannot overwrite the patch.
      if (e.writing) await e.writing.catch(() => {});
      if (patch.enabled !== undefined) {
        e.changeBy = "operator";
        e.failures.length = 0;
        // An operator's choice: no automatic reason stays behind (the probe must not undo a
        // disable, and an enabled credential starts with a clean count).
        if (patch.state === undefined)
          patch = {
            ...patch,
            state: {
              ...structuredClone(e.c.state),
              disabledReason: null,
              errorCount: patch.enabled ? 0 : e.c.state.errorCount,
            },
          };
      }
      if (patch.state !== undefined) {
        e.failures.length = 0;
        e.backoff = null;
      }
    }
    const rec = await this.#store.credentials.update(id, patch);
    await this.#refreshOne(id, local);
    return rec;
  }

  /** Deletes a credential from the store (and the pool). */
  async remove(id: string): Promise<boolean> {
    const ok = await this.#store.credentials.delete(id);
    await this.refresh(id);
    return ok;
  }

  /** The upstream model name when `c` serves `model`, else null. */
  static serves(c: CredentialRecord, model: string): string | null {
    return serves(c, model);
  }

  /** Whether `c` belongs to `group` (a credential with no groups belongs to `default`). */
  static inGroup(c: CredentialRecord, group: string): boolean {
    return inGroup(c, group);
  }

  /**
   * Every model name clients can ask for, with the providers serving it; with `group`, only
   * what the credentials of that group serve (what a key of the group can reach).
   */
  models(group?: string): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const { c } of this.#entries) {
      if (!c.enabled) continue;
      if (group !== undefined && !inGroup(c, group)) continue;
      for (const m of c.models) {
        const name = m.alias || m.name;
        if (c.excludedModels.includes(name)) continue;
        const set = out.get(name) ?? new Set<string>();
        set.add(c.provider);
        out.set(name, set);
      }
    }
    return out;
  }

  /**
   * Chooses a credential for `model`, or null when none is available. Runs on every request:
   * one pass over the pool, no store access, no allocation but the result.
   */
  pick(model: string, opts: PickOptions = {}): CredentialPick | null {
    return this.#selector.pick(
      this.#entries,
      model,
      opts,
      opts.now ?? this.#clock(),
      this.#version,
    );
  }

  /**
   * When {@link CredentialPool.pick} finds nothing: how long until the first credential that
   * could serve the request comes out of its cooldown (ms), or undefined when none is cooling
   * down (every candidate is disabled, or there is none), so that waiting cannot help. Same
   * filters as `pick` (exclusions, group, providers); the priority tiers do not matter here.
   */
  cooldownWait(model: string, opts: PickOptions = {}): number | undefined {
    return this.#selector.cooldownWait(this.#entries, model, opts, opts.now ?? this.#clock());
  }

  /**
   * Whether any credential of the pool serves `model` (after its aliases and exclusions) within
   * `opts`' group and providers, whatever its state: disabled and cooling-down credentials count.
   * False means the model is not served at all (a 404), true with no pick means not now (a 503).
   */
  isServed(model: string, opts: Pick<PickOptions, "group" | "providers"> = {}): boolean {
    // The pick's candidate index: the credentials that could serve, whatever their state.
    return this.#selector.hasCandidates(this.#entries, model, opts, this.#version);
  }

  /** The credential a session is bound to (while the binding lasts), or undefined. */
  sessionCredential(sessionKey: string, now = this.#clock()): string | undefined {
    return this.#selector.sessionCredential(sessionKey, now);
  }

  /**
   * Records a success: clears the failure count and the backoff (for `model`, or every model).
   * Cheap, and writes to the store only when the stored state changes (after failures).
   */
  reportSuccess(id: string, model?: string): void {
    const e = this.#byId.get(id);
    if (!e) return;
    if (e.failures.length > 0) e.failures.length = 0;
    if (e.backoff) {
      if (model === undefined) e.backoff = null;
      else e.backoff.delete(model);
    }
    if (e.c.state.errorCount === 0) return;
    e.c.state.errorCount = 0;
    this.#persist(e, false).catch(() => {});
  }

  /**
   * Records a failed upstream call.
   *
   * - `rate_limit` / `quota` (or any failure with `retryAfterMs`): the credential cools down for
   *   the model, for `retryAfterMs` when given (at most `maxRetryAfterMs`), else by exponential
   *   backoff over consecutive cooldowns (`cooldownBaseMs` × 2ⁿ⁻¹, at most `maxBackoffMs`).
   *   Rate limits never count toward auto-disabling.
   * - `auth` with `refreshFailed`: disabled at once.
   * - Any other failure counts: `credential-max-failures` of them inside
   *   `credential-failure-window-ms`, with no success in between, disable the credential
   *   (never on the first error).
   *
   * A number as `opts` is read as `retryAfterMs` (the earlier signature).
   */
  reportFailure(
    id: string,
    model: string,
    status: number,
    message: string,
    opts?: ReportFailureOptions | number,
  ): void {
    const e = this.#byId.get(id);
    if (!e) return;
    const o: ReportFailureOptions =
      typeof opts === "number" ? { retryAfterMs: opts } : (opts ?? {});
    const c = e.c;
    const now = o.now ?? this.#clock();
    const kind = o.kind ?? failureKind(status);
    const text = safeErrorText(c, message);
    c.state.errorCount += 1;
    c.state.lastError = { at: now, status, message: text };
    this.#events.emit("credential.error", {
      credentialId: id,
      provider: c.provider,
      model,
      status,
      kind,
      message: text,
    });

    const limited = kind === "rate_limit" || kind === "quota";
    if (limited || o.retryAfterMs !== undefined) {
      const n = (e.backoff?.get(model) ?? 0) + 1;
      if (!e.backoff) e.backoff = new Map();
      e.backoff.set(model, n);
      const delay =
        o.retryAfterMs !== undefined && Number.isFinite(o.retryAfterMs)
          ? Math.min(Math.max(o.retryAfterMs, 0), this.#opts.maxRetryAfterMs ?? 86_400_000)
          : backoffMs(n, this.#opts.cooldownBaseMs ?? 1_000, this.#opts.maxBackoffMs ?? 300_000);
      const until = now + delay;
      if (until > (c.state.cooldowns[model] ?? 0)) c.state.cooldowns[model] = until;
      // The projects start over once the cooldown ends.
      e.projects?.delete(model);
      this.#events.emit("credential.cooldown", {
        credentialId: id,
        provider: c.provider,
        model,
        until,
        status,
        reason: kind,
      });
    }

    let disable: string | null = null;
    if (kind === "auth" && o.refreshFailed) {
      disable = `${AUTO_DISABLED_PREFIX} authentication failed (HTTP ${status}) and the token refresh failed`;
    } else if (!limited && c.enabled) {
      const max = Math.floor(
        this.#numberSetting(
          POOL_SETTINGS.maxFailures,
          this.#opts.maxFailures,
          DEFAULT_POOL_SETTINGS[POOL_SETTINGS.maxFailures],
        ),
      );
      const windowMs = this.#numberSetting(
        POOL_SETTINGS.failureWindowMs,
        this.#opts.failureWindowMs,
        DEFAULT_POOL_SETTINGS[POOL_SETTINGS.failureWindowMs],
      );
      if (max > 0) {
        const f = e.failures;
        f.push(now);
        let drop = 0;
        while (drop < f.length && f[drop]! <= now - windowMs) drop++;
        if (drop > 0) f.splice(0, drop);
        const threshold = Math.max(2, max);
        if (f.length > threshold) f.splice(0, f.length - threshold);
        if (f.length >= threshold)
          disable = `${AUTO_DISABLED_PREFIX} ${f.length} failures within ${Math.round(windowMs / 1000)}s (last: ${status === 0 ? "connection error" : `HTTP ${status}`})`;
      }
    }
    if (disable !== null && c.enabled) {
      c.enabled = false;
      c.state.disabledReason = disable;
      e.failures.length = 0;
      this.#logger.warn("credential auto-disabled", { credentialId: id, reason: disable });
      this.#events.emit("credential.disabled", {
        credentialId: id,
        provider: c.provider,
        reason: disable,
        by: "pool",
      });
      this.#persist(e, true).catch(() => {});
    } else this.#persist(e, false).catch(() => {});
  }

  /**
   * Enables or disables a credential, persisted through the store. A disabled credential stays
   * stored and listed but never rotates. A credential disabled here is not probed for recovery
   * (only those the pool disabled by itself are).
   */
  async setEnabled(id: string, enabled: boolean, reason?: string): Promise<void> {
    if (!this.#byId.has(id)) await this.refresh(id);
    const e = this.#byId.get(id);
    if (!e) throw new GatewayError("NOT_FOUND", `no credential with id ${id}`);
    await this.#setEnabled(e, enabled, enabled ? null : operatorReason(reason), "operator");
  }

  async #setEnabled(
    e: Entry,
    enabled: boolean,
    reason: string | null,
    by: CredentialChangeSource,
  ): Promise<void> {
    const c = e.c;
    const changed = c.enabled !== enabled;
    c.enabled = enabled;
    c.state.disabledReason = reason;
    if (enabled) {
      c.state.errorCount = 0;
      e.failures.length = 0;
    }
    if (changed) {
      if (enabled)
        this.#events.emit("credential.enabled", { credentialId: c.id, provider: c.provider, by });
      else
        this.#events.emit("credential.disabled", {
          credentialId: c.id,
          provider: c.provider,
          reason: reason ?? "disabled by an operator",
          by,
        });
    }
    await this.#persist(e, true);
  }

  /**
   * The project id to use for `model` (`quota-exceeded/switch-project`): the first of the
   * credential's `projectIds` until {@link CredentialPool.rotateProject} moves on. Undefined without projects.
   */
  projectFor(id: string, model: string): string | undefined {
    const e = this.#byId.get(id);
    const ids = e?.c.projectIds;
    if (!e || !ids || ids.length === 0) return undefined;
    return ids[(e.projects?.get(model) ?? 0) % ids.length];
  }

  /**
   * Moves `model` on to the credential's next project id after a quota error. Returns false when
   * none is left (the caller then reports the failure, which cools the credential down and lets
   * its projects start over after the cooldown).
   */
  rotateProject(id: string, model: string): boolean {
    const e = this.#byId.get(id);
    if (!e) return false;
    const n = e.c.projectIds.length;
    const i = e.projects?.get(model) ?? 0;
    if (i + 1 >= n) return false;
    if (!e.projects) e.projects = new Map();
    else if (e.projects.size >= MAX_MODEL_STATES) e.projects.clear();
    e.projects.set(model, i + 1);
    return true;
  }

  /**
   * Starts probing auto-disabled credentials every `intervalMs` (not those an operator
   * disabled): one at a time, and a credential whose probe resolves true is enabled again
   * (`credential.enabled`, by `probe`). The timer does not keep the process alive. Starting a
   * probe stops the previous one.
   */
  startRecoveryProbe(probe: CredentialProbe, opts: RecoveryProbeOptions): RecoveryProbeHandle {
    if (!(opts.intervalMs > 0))
      throw new GatewayError("INVALID_OPTIONS", "startRecoveryProbe needs intervalMs > 0");
    this.#probe?.stop();
    let round: Promise<string[]> | null = null;
    const runOnce = (): Promise<string[]> => {
      round ??= this.#probeRound(probe).finally(() => {
        round = null;
      });
      return round;
    };
    const timer = setInterval(() => {
      runOnce().catch((error: unknown) =>
        this.#logger.warn("credential recovery probe failed", { error: String(error) }),
      );
    }, opts.intervalMs);
    timer.unref();
    const handle: RecoveryProbeHandle = {
      stop: () => {
        clearInterval(timer);
        if (this.#probe === handle) this.#probe = null;
      },
      runOnce,
    };
    this.#probe = handle;
    return handle;
  }

  async #probeRound(probe: CredentialProbe): Promise<string[]> {
    const enabled: string[] = [];
    for (const e of this.#entries) {
      if (!isAutoDisabled(e.c)) continue;
      let ok = false;
      try {
        ok = (await probe(structuredClone(e.c))) === true;
      } catch {
        ok = false;
      }
      // Re-checked: an operator may have changed it while the probe ran.
      const now = this.#byId.get(e.c.id);
      if (ok && now && isAutoDisabled(now.c)) {
        await this.#setEnabled(now, true, null, "probe");
        enabled.push(now.c.id);
      }
    }
    return enabled;
  }

  /** Stops the recovery probe and resolves once the state writes under way are done. */
  async stop(): Promise<void> {
    this.#probe?.stop();
    this.#probe = null;
    await this.flush();
  }

  /** Resolves once the state writes under way are done. */
  async flush(): Promise<void> {
    for (;;) {
      const pending = this.#entries.map((e) => e.writing).filter((w) => w !== null);
      if (pending.length === 0) return;
      await Promise.allSettled(pending);
    }
  }

  /**
   * Writes the credential's state (and `enabled` when `withEnabled`) through the store. Writes
   * of one credential never overlap: a change made during a write is written right after it,
   * with the latest state. Expired cooldowns are dropped first.
   */
  #persist(e: Entry, withEnabled: boolean): Promise<void> {
    e.localSeq++;
    e.dirty = true;
    if (withEnabled) e.dirtyEnabled = true;
    e.writing ??= this.#writeLoop(e);
    return e.writing;
  }

  async #writeLoop(e: Entry): Promise<void> {
    try {
      while (e.dirty) {
        e.dirty = false;
        const withEnabled = e.dirtyEnabled;
        e.dirtyEnabled = false;
        const c = e.c;
        const now = this.#clock();
        for (const [m, until] of Object.entries(c.state.cooldowns))
          if (until <= now) delete c.state.cooldowns[m];
        const patch: CredentialPatch = { state: structuredClone(c.state) };
        if (withEnabled) patch.enabled = c.enabled;
        try {
          await this.#store.credentials.update(c.id, patch);
        } catch (error) {
          this.#logger.warn("could not persist credential state", {
            credentialId: c.id,
            error: String(error),
          });
          this.#events.emit("error", { where: "credential state", error: error as Error });
          throw error;
        }
      }
    } finally {
      e.writing = null;
    }
  }
}

/** Validated limits (fields above 0), or a 400 naming the bad field. */
function validLimits(v: unknown): CredentialLimits {
  const r = parseCredentialLimits(v);
  if (!r.ok) throw new GatewayError("INVALID_REQUEST", `Invalid credential limits: ${r.message}.`);
  return r.limits;
}
