import type { Span } from "@opentelemetry/api";
import type { CredentialGate } from "../admission/credential-limits.js";
import type { LeaseKeeper } from "../admission/leases.js";
import type { Admission } from "../admission/rate-limits.js";
import type { WindowClaims } from "../admission/window-claims.js";
import type { Billing } from "../billing/price.js";
import type { OAuthRefresher } from "../credentials/oauth.js";
import type { CredentialPool } from "../credentials/pool.js";
import type { SecretMask } from "../credentials/secret-mask.js";
import type { GatewayEmitter } from "../events.js";
import type { Exchange } from "../exchange.js";
import type { WireFormatSpec } from "../formats/types.js";
import type { AuthorizedKey } from "../keys/service.js";
import type { Logger } from "../logger.js";
import type { GatewayMetrics } from "../metrics/metrics.js";
import type { UpstreamClient } from "../net/upstream.js";
import type { SettingsService } from "../settings/service.js";
import type { Store } from "../store/types.js";
import type { WireFormat } from "../translate/types.js";
import type { UsageWriter } from "../usage/writer.js";
import type { LocalCount } from "./count.js";
import type { QuotaLine } from "./quota-line.js";
import type { QuotaHolds } from "./reserve.js";

/** What the proxy engine needs from the gateway. */
export interface ProxyDeps {
  store: Store;
  pool: CredentialPool;
  /** Refreshes OAuth credentials (single flight, cross-instance lock). */
  oauth: OAuthRefresher;
  upstream: UpstreamClient;
  billing: Billing;
  usage: UsageWriter;
  settings: SettingsService;
  events: GatewayEmitter;
  logger: Logger;
  /** The quota this gateway's unsettled reservations hold, per key (one object per gateway). */
  holds: QuotaHolds;
  /** The requests waiting for quota held by reservations in flight, per key (one object per gateway). */
  waiting: QuotaLine;
  /** The concurrency leases this gateway holds: acquired, renewed while requests run, released (one object per gateway). */
  leases: LeaseKeeper;
  /** The window counters' claims ahead and queued corrections (one object per gateway). */
  claims: WindowClaims;
  /** The gateway's Prometheus metrics; null or absent when they are off. */
  metrics?: GatewayMetrics | null;
}

/** A parsed, authorised request for the proxy engine (any wire format, any generation route). */
export interface ProxyRequest {
  exchange: Exchange;
  /** `METHOD /path`, for usage records. */
  route: string;
  auth: AuthorizedKey;
  body: Record<string, unknown>;
  rawBody: Buffer;
  model: string;
  stream: boolean;
  /** The client's wire format (the body's and the answer's). */
  format: WireFormat;
  /**
   * OpenAI routes other than chat completions: the upstream path. These are passed through to
   * upstreams that speak the OpenAI API itself, never translated.
   */
  openaiPath?: "completions" | "embeddings";
  /** Gemini clients: `false` = a stream as one JSON array (no `alt=sse`). */
  sse?: boolean;
}

/** What the stages share about one request while it runs. */
export interface RequestContext {
  req: ProxyRequest;
  /** The client's format object. */
  client: WireFormatSpec;
  requestId: string;
  /** `Date.now()` when the engine took the request. */
  started: number;
  /** OpenAI clients: the client asked for usage in its stream (`stream_options.include_usage`). */
  includeUsage: boolean;
  /** The owner's group, else the key's (may be empty). */
  group: string;
  /** The request's usage counted locally, for when the upstream reports none. */
  local: LocalCount;
  /** An upper bound of the prompt's tokens (`promptTokenBound`: its bytes, images priced). */
  promptBound: number;
  /** The client's completion limit (`max_tokens` ...), if it set one. */
  maxTokens: number | undefined;
  /** The secrets of every credential this request tried: masked in whatever an upstream answers. */
  mask: SecretMask;
  /**
   * What the request is expected to cost, set by the reserve stage: `units` reserved (quota
   * units) and `tokens` (prompt estimate + the completion allowance), the amounts that window
   * counters (tpm, spend caps) are hit with before the actual usage is known.
   */
  estimate: { tokens: number; units: number };
  /** What the admission stage admitted (leases, tpm hits, headers); null when nothing limits the request. */
  admission: Admission | null;
  /** Upstream attempts made so far: credentials a call was sent to (retries = attempts - 1). */
  attempts: number;
  /**
   * `Date.now()` when the answer's first byte arrived (a stream's first chunk, a JSON answer's
   * headers); 0 until then.
   */
  firstByteAt: number;
  /** The request's trace span; null when no OpenTelemetry SDK records it (`tracing.ts`). */
  span: Span | null;
  /**
   * The limits of the upstream credentials this request picked: created by the forward stage
   * when a picked credential has limits (absent otherwise), settled by the settle stage.
   */
  credentialGate?: CredentialGate;
}
