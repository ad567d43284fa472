import { GatewayError } from "../errors.js";
import type { GatewayEmitter } from "../events.js";
import type { Logger } from "../logger.js";
import type { CredentialPatch, CredentialRecord, NewCredential, Store } from "../store/types.js";
import { emptyCredentialState } from "../store/util.js";
import { maskSecret } from "../util/secrets.js";

/** What {@link CredentialPool.add} accepts: provider, base URL and secret; everything else has a default. */
export type AddCredentialInput = Partial<NewCredential> &
  Pick<NewCredential, "provider" | "baseUrl" | "secret">;

/** A credential chosen for a request, with the model name to send upstream (aliases resolved). */
export interface CredentialPick {
  credential: CredentialRecord;
  upstreamModel: string;
}

/** Constraints of one pick. */
export interface PickOptions {
  /** Credentials already tried for this request. */
  exclude?: ReadonlySet<string>;
  /** Restrict to credentials of this group (empty credential groups count as `default`). */
  group?: string;
  /** Only credentials of these providers (wire formats). */
  providers?: readonly string[];
  /** ms. @default Date.now() */
  now?: number;
}

const MIN_COOLDOWN_MS = 1_000;
const MAX_COOLDOWN_MS = 5 * 60_000;

/** A credential as listed: secrets masked. */
export type MaskedCredential = Omit<CredentialRecord, "secret"> & {
  secret: Record<string, string | number>;
};

/** Masks every secret field of a credential for list responses and events. */
export function maskCredential(c: CredentialRecord): MaskedCredential {
  const secret: Record<string, string | number> = {};
  for (const [k, v] of Object.entries(c.secret)) {
    if (typeof v === "string") secret[k] = maskSecret(v);
    else if (typeof v === "number") secret[k] = v;
  }
  return { ...c, secret };
}

/**
 * The upstream credential pool, held in memory for picking and kept in step with the store
 * through change notifications. Selection: highest priority tier first, round-robin inside a
 * tier, skipping disabled credentials, credentials cooling down for the model, and those that
 * do not serve it.
 */
export class CredentialPool {
  readonly #store: Store;
  readonly #events: GatewayEmitter;
  readonly #logger: Logger;
  #all: CredentialRecord[] = [];
  /** Round-robin cursor per (tier, model). */
  readonly #cursor = new Map<string, number>();

  constructor(store: Store, events: GatewayEmitter, logger: Logger) {
    this.#store = store;
    this.#events = events;
    this.#logger = logger;
  }

  /** Loads every credential from the store. */
  async load(): Promise<void> {
    this.#all = await this.#store.credentials.list();
  }

  /** Re-reads one credential after a change notification (or all when `id` is absent). */
  async refresh(id?: string): Promise<void> {
    if (id === undefined) return this.load();
    const rec = await this.#store.credentials.get(id);
    const i = this.#all.findIndex((c) => c.id === id);
    if (!rec) {
      if (i >= 0) this.#all.splice(i, 1);
    } else if (i >= 0) this.#all[i] = rec;
    else this.#all.push(rec);
  }

  /** Adds a credential to the store (and the pool). */
  async add(input: AddCredentialInput): Promise<CredentialRecord> {
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
      ...(input.id === undefined ? {} : { id: input.id }),
    });
    await this.refresh(rec.id);
    return rec;
  }

  /** Every credential (with secrets: for internal use; list responses use {@link maskCredential}). */
  list(): CredentialRecord[] {
    return this.#all.map((c) => structuredClone(c));
  }

  get(id: string): CredentialRecord | null {
    const c = this.#all.find((x) => x.id === id);
    return c ? structuredClone(c) : null;
  }

  async update(id: string, patch: CredentialPatch): Promise<CredentialRecord | null> {
    const rec = await this.#store.credentials.update(id, patch);
    await this.refresh(id);
    return rec;
  }

  async remove(id: string): Promise<boolean> {
    const ok = await this.#store.credentials.delete(id);
    await this.refresh(id);
    return ok;
  }

  /** The upstream model name when `c` serves `model`, else null. */
  static serves(c: CredentialRecord, model: string): string | null {
    if (c.excludedModels.includes(model)) return null;
    if (c.models.length === 0) return model;
    for (const m of c.models) if ((m.alias || m.name) === model) return m.name;
    return null;
  }

  /** Every model name clients can ask for, with the providers serving it. */
  models(): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    for (const c of this.#all) {
      if (!c.enabled) continue;
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

  /** Chooses a credential for `model`, or null when none is available. */
  pick(model: string, opts: PickOptions = {}): CredentialPick | null {
    const now = opts.now ?? Date.now();
    let tier: number | null = null;
    let candidates: CredentialPick[] = [];
    for (const c of this.#all) {
      if (!c.enabled || opts.exclude?.has(c.id)) continue;
      if (opts.providers && !opts.providers.includes(c.provider)) continue;
      if (opts.group !== undefined) {
        const groups = c.groups.length > 0 ? c.groups : ["default"];
        if (!groups.includes(opts.group) && opts.group !== "default") continue;
      }
      const upstreamModel = CredentialPool.serves(c, model);
      if (upstreamModel === null) continue;
      const cd = c.state.cooldowns;
      if ((cd[model] ?? 0) > now || (cd["*"] ?? 0) > now) continue;
      if (tier === null || c.priority > tier) {
        tier = c.priority;
        candidates = [{ credential: c, upstreamModel }];
      } else if (c.priority === tier) candidates.push({ credential: c, upstreamModel });
    }
    if (candidates.length === 0) return null;
    const cursorKey = `${tier}|${model}`;
    const n = this.#cursor.get(cursorKey) ?? 0;
    this.#cursor.set(cursorKey, (n + 1) % 1_000_000_007);
    const chosen = candidates[n % candidates.length]!;
    chosen.credential.state.lastUsedAt = now;
    this.#events.emit("credential.selected", {
      credentialId: chosen.credential.id,
      provider: chosen.credential.provider,
      model,
    });
    return chosen;
  }

  /** Records a success: clears the error count (persisted only when it was non-zero). */
  reportSuccess(id: string): void {
    const c = this.#all.find((x) => x.id === id);
    if (!c || c.state.errorCount === 0) return;
    c.state.errorCount = 0;
    this.#persistState(c);
  }

  /**
   * Records a failed upstream call. A 429 (or any status with `retryAfterMs`) cools the credential
   * down for the model: for `retryAfterMs` when the upstream said, else exponentially by the
   * number of consecutive errors.
   */
  reportFailure(
    id: string,
    model: string,
    status: number,
    message: string,
    retryAfterMs?: number,
  ): void {
    const c = this.#all.find((x) => x.id === id);
    if (!c) return;
    const now = Date.now();
    c.state.errorCount += 1;
    c.state.lastError = { at: now, status, message: message.slice(0, 300) };
    this.#events.emit("credential.error", {
      credentialId: id,
      model,
      status,
      message: c.state.lastError.message,
    });
    if (status === 429 || retryAfterMs !== undefined) {
      const backoff = Math.min(
        MAX_COOLDOWN_MS,
        MIN_COOLDOWN_MS * 2 ** Math.min(c.state.errorCount - 1, 10),
      );
      const until = now + Math.min(MAX_COOLDOWN_MS, retryAfterMs ?? backoff);
      c.state.cooldowns[model] = until;
      this.#events.emit("credential.cooldown", { credentialId: id, model, until, status });
    }
    this.#persistState(c);
  }

  #persistState(c: CredentialRecord): void {
    const state = structuredClone(c.state);
    this.#store.credentials.update(c.id, { state }).catch((error: unknown) => {
      this.#logger.warn("could not persist credential state", {
        credentialId: c.id,
        error: String(error),
      });
    });
  }
}
