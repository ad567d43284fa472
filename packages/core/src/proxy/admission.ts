import type { ProxyDeps, RequestContext } from "./types.js";

/**
 * The admission stage: the slot where rate limits (rpm / tpm / rpd of a key, its owner and
 * group) and concurrency leases will be checked, between authorize and reserve. It admits every
 * request for now and costs nothing (no `await`, no allocation).
 *
 * When it grows, it MUST decide in one atomic step per limit (the store's window counters and
 * leases with an expiry, so that limits hold across instances and a dead instance's slots come
 * back by themselves), refuse with the dialect's 429 (`RATE_LIMITED`), and return what the
 * settle stage releases (a lease) — which makes this signature change with it.
 */
export function admit(_deps: ProxyDeps, _ctx: RequestContext): void {}
