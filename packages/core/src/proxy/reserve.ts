import { promptTokenBound } from "../billing/tokens.js";
import { GatewayError } from "../errors.js";
import type { Reservation, ReservationMeta, ReserveResult } from "../store/types.js";
import {
  BLOCK_BALANCE_SHARE,
  BLOCK_REQUESTS,
  type BlockShare,
  type QuotaBlocks,
} from "../usage/quota-blocks.js";
import { type QuotaLine, userLine } from "./quota-line.js";
import type { ProxyDeps, RequestContext } from "./types.js";

/**
 * Before forwarding, a request's prompt is tokenized only when its upper-bound price is more
 * than 1/TOKENIZE_WITHIN of what the key (or its owner) has left.
 */
export const TOKENIZE_WITHIN = 64;

/**
 * The longest pause (ms) of the first request in a key's waiting line between two asks of the
 * store (see {@link QuotaLine}): the pauses double from 10 ms up to this.
 */
export const LINE_PAUSE_MAX_MS = 50;

/**
 * The quota units held by this gateway's unsettled reservations, per key: the reserve stage
 * subtracts them from a key's cached balance, so that concurrent requests of one key see each
 * other's reservations before the store does. One object per gateway (built by `createGateway`).
 */
export class QuotaHolds {
  readonly #held = new Map<number, number>();

  /** The units held for a key. */
  of(keyId: number): number {
    return this.#held.get(keyId) ?? 0;
  }

  /** Holds `units` more for a key. */
  add(keyId: number, units: number): void {
    this.#held.set(keyId, (this.#held.get(keyId) ?? 0) + units);
  }

  /** Gives back `units` of a key's hold (its reservation was refused or settled). */
  release(keyId: number, units: number): void {
    const left = (this.#held.get(keyId) ?? 0) - units;
    if (left > 0) this.#held.set(keyId, left);
    else this.#held.delete(keyId);
  }
}

/**
 * The reserve stage: reserves the request's quota or throws the dialect's 4xx
 * (`INVALID_API_KEY` when the key is gone, `USER_QUOTA_EXHAUSTED` / `QUOTA_EXHAUSTED`, after a
 * `key.exhausted` event). See {@link reserveUnits} for how much and how.
 */
export async function reserve(
  deps: ProxyDeps,
  ctx: RequestContext,
  refilled = false,
): Promise<Reservation | BlockShare> {
  const { req, requestId, started } = ctx;
  // The upper-bound estimate (the prompt bounded by its bytes), for a block's share or alone.
  const bound = deps.billing.estimate(req.model, ctx.group, ctx.promptBound, ctx.maxTokens);
  const blocks = deps.usage.blocks;
  if (blocks) {
    if (refilled) blocks.retireKey(req.auth.key.id);
    else {
      const taking = blockShare(deps, ctx, blocks, bound);
      const share = taking instanceof Promise ? await taking : taking;
      if (share) {
        ctx.estimate = {
          tokens: ctx.promptBound + deps.billing.completionAllowance(ctx.maxTokens),
          units: share.units,
        };
        return share;
      }
    }
  }
  const {
    result: reserved,
    units: estimate,
    promptTokens,
  } = await reserveUnits(
    deps,
    ctx,
    () =>
      deps.usage.reservationMeta({
        requestId,
        route: req.route,
        model: req.model,
        timestamp: started,
      }),
    bound,
  );
  if (!reserved.ok) {
    if (reserved.reason === "key_not_found")
      throw new GatewayError("INVALID_API_KEY", "This API key no longer exists.");
    deps.events.emit("key.exhausted", { keyId: req.auth.key.id, reason: reserved.reason });
    throw reserved.reason === "user_quota"
      ? new GatewayError(
          "USER_QUOTA_EXHAUSTED",
          "The owner of this API key has used up their quota.",
        )
      : new GatewayError(
          "QUOTA_EXHAUSTED",
          `This API key's remaining quota does not cover this request (${estimate} quota units estimated).`,
        );
  }
  ctx.estimate = {
    tokens: promptTokens + deps.billing.completionAllowance(ctx.maxTokens),
    units: reserved.reservation.units,
  };
  return reserved.reservation;
}

/**
 * The request's quota from a block this instance holds for the key (see `QuotaBlocks`): a
 * share of the open block (no store call), or a new block when the key is far from the end of
 * its quota (the same test that lets a request skip the tokenizer, {@link TOKENIZE_WITHIN}, and
 * a block of at most 1/{@link BLOCK_BALANCE_SHARE} of the balance hint). Null: the request
 * reserves alone ({@link reserveUnits}), as every request near the end of its quota does.
 */
function blockShare(
  deps: ProxyDeps,
  ctx: RequestContext,
  blocks: QuotaBlocks,
  units: number,
): BlockShare | Promise<BlockShare | null> | null {
  const { req, requestId, started } = ctx;
  const { key, user } = req.auth;
  // A free request has nothing to share.
  if (!(units > 0)) return null;
  const request = { requestId, route: req.route, model: req.model, timestamp: started };
  const share = blocks.take(key.id, units, request);
  if (share) return share;
  // A key's first request since the last flush reserves alone (see QuotaBlocks.busy).
  if (!blocks.busy(key.id)) return null;
  let hint = key.unlimitedQuota ? Number.POSITIVE_INFINITY : key.remainQuota;
  if (user && user.quota < hint) hint = user.quota;
  hint -= deps.holds.of(key.id);
  if (units * TOKENIZE_WITHIN > hint) return null;
  const blockUnits = Math.min(units * BLOCK_REQUESTS, Math.floor(hint / BLOCK_BALANCE_SHARE));
  if (blockUnits < units * 4) return null;
  const meta = deps.usage.reservationMeta(request);
  return blocks.open(deps.store, key.id, units, blockUnits, meta, request);
}

/**
 * Reserves quota for a request before it is forwarded; the atomic `store.reserveQuota` decides.
 *
 * How much: the prompt tokens plus `max_completion_tokens` / `max_tokens` (else the configured
 * default), priced by {@link Billing.estimate}. Counting the prompt with the tokenizer costs
 * 100-300 µs of CPU for a 2 KB prompt and milliseconds for a long one, as much as the whole
 * rest of the proxy path, and the count only matters when the quota is nearly used up: an
 * over-reservation is given back at settlement. So:
 *
 * 1. The common case tokenizes nothing. The prompt is bounded by the body's size in bytes
 *    ({@link promptTokenBound}: a BPE token is at least one byte), and that upper bound is
 *    reserved when it is under 1/{@link TOKENIZE_WITHIN} of the balance hint: the cached key
 *    record's `remainQuota` (ignored for unlimited keys), or its owner's `quota` if lower, minus
 *    what this gateway's unsettled reservations of the key hold ({@link QuotaHolds}). Over-reserving then holds back
 *    a sliver of the balance while the request runs, and never decides between serving and
 *    refusing.
 * 2. Otherwise (a key near the end of its quota, or a prompt large for it) the prompt is counted
 *    with the tokenizer and that estimate is reserved, so a request is refused only when its
 *    real estimate does not fit.
 * 3. A refused upper bound is retried once with the tokenizer's estimate (the hint is a cached
 *    record and may be stale), then, as before, once more after queued settlements are written.
 * 4. A request still refused while reservations of the key (or its owner) are in flight, here or
 *    in another instance, is not refused yet: those settlements give back what their requests
 *    did not use, so "quota exhausted" would be premature. It waits for them in the key's
 *    line ({@link QuotaLine}: only the first in line asks the store while it waits, the next
 *    asks as soon as that one is served or gives up), its own queue flushed, backing off, at
 *    most `usage.reserveWaitMs` from its first refusal, not after the client left; it asks
 *    again until granted, nothing is in flight any more, or the time is up.
 *
 * The reservation is a durable row of the store (written with the debit, same round-trip),
 * carrying `meta()`, and is held by the usage writer, which renews it until its commit is written.
 */
async function reserveUnits(
  deps: ProxyDeps,
  ctx: RequestContext,
  meta: () => ReservationMeta,
  bound: number,
): Promise<{ result: ReserveResult; units: number; promptTokens: number }> {
  const { store, billing, holds } = deps;
  const { req, group, local } = ctx;
  const { key, user } = req.auth;
  const { maxTokens } = ctx;
  let promptTokens = ctx.promptBound;
  const exact = async () => {
    promptTokens = await local.promptTokens();
    return billing.estimate(req.model, group, promptTokens, maxTokens);
  };

  // Held from before the store is asked, so that concurrent requests of the key see it at once.
  const attempt = async (units: number) => {
    holds.add(key.id, units);
    // Meta per attempt: a row granted after a wait still gets a full lifetime.
    const r = await store.reserveQuota(key.id, units, meta());
    if (r.ok) deps.usage.hold(r.reservation);
    else holds.release(key.id, units);
    return r;
  };

  let units = bound;
  let counted = false;
  let hint = key.unlimitedQuota ? Number.POSITIVE_INFINITY : key.remainQuota;
  if (user && user.quota < hint) hint = user.quota;
  hint -= holds.of(key.id);
  if (units * TOKENIZE_WITHIN > hint) {
    units = await exact();
    counted = true;
  }
  let result = await attempt(units);
  if (!result.ok && result.reason !== "key_not_found" && !counted) {
    const e = await exact();
    if (e < units) {
      units = e;
      result = await attempt(units);
    }
  }
  if (!result.ok && result.reason !== "key_not_found" && deps.usage.pending > 0) {
    // Settlements still queued may give quota back: write them, then ask once more.
    await deps.usage.flush();
    result = await attempt(units);
  }
  if (
    result.ok ||
    result.reason === "key_not_found" ||
    !((result.inFlight ?? 0) > 0) ||
    deps.usage.reserveWaitMs <= 0
  )
    return { result, units, promptTokens };
  // Reservations still in flight may give back enough: wait for them, in the line of what ran
  // out (the key, or its owner, whose keys then share one line).
  const line = result.reason === "user_quota" && user ? userLine(user.id) : key.id;
  const deadline = Date.now() + deps.usage.reserveWaitMs;
  const end = await deps.waiting.turn(line, deadline, req.exchange.signal);
  if (!end) return { result, units, promptTokens };
  try {
    // This request's turn: the one before it was served or gave up, so ask at once.
    result = await attempt(units);
    let pause = 10;
    while (
      !result.ok &&
      result.reason !== "key_not_found" &&
      (result.inFlight ?? 0) > 0 &&
      Date.now() < deadline
    ) {
      if (deps.usage.pending > 0) await deps.usage.flush();
      else {
        // Jittered so that the lines of several instances do not ask the store in lockstep.
        const ms = Math.min(pause * (0.5 + Math.random()), deadline - Date.now());
        if (!(await deps.waiting.pause(line, Math.max(1, ms), req.exchange.signal))) break;
        pause = Math.min(pause * 2, LINE_PAUSE_MAX_MS);
      }
      result = await attempt(units);
    }
  } finally {
    end();
  }
  return { result, units, promptTokens };
}
