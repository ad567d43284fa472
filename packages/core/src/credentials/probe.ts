import type { UpstreamClient } from "../net/upstream.js";
import { openaiProvider } from "../providers/openai.js";
import type { CredentialRecord } from "../store/types.js";

/**
 * Checks whether a credential works again: resolves true when it does. Rejections count as
 * false. It receives a copy of the credential, secrets included (it must authenticate).
 */
export type CredentialProbe = (credential: CredentialRecord) => Promise<boolean>;

/** Options of `CredentialPool.startRecoveryProbe`. */
export interface RecoveryProbeOptions {
  /** Time between two probe rounds (ms). */
  intervalMs: number;
}

/** A running recovery probe. */
export interface RecoveryProbeHandle {
  /** Stops the timer (a round in progress finishes). */
  stop(): void;
  /** Runs one round now (or joins the round in progress); resolves with the re-enabled ids. */
  runOnce(): Promise<string[]>;
}

/** Options of {@link modelsProbe}. */
export interface ModelsProbeOptions {
  /**
   * How long to wait for the upstream's answer (ms).
   * @default 10000
   */
  timeoutMs?: number;
  /**
   * Headers that authenticate the credential upstream.
   * @default the OpenAI format: `Authorization: Bearer <apiKey or accessToken>`
   */
  authHeaders?: (credential: CredentialRecord) => Record<string, string>;
}

/**
 * A recovery probe that asks the upstream for its model list: `GET {baseUrl}/models` with the
 * credential's headers and authentication. A 2xx answer means the credential works again.
 *
 * @example
 * ```ts
 * const probe = gateway.credentials.pool.startRecoveryProbe(modelsProbe(upstream), { intervalMs: 60_000 });
 * // later: probe.stop(), or gateway.credentials.pool.stop()
 * ```
 */
export function modelsProbe(
  upstream: UpstreamClient,
  options: ModelsProbeOptions = {},
): CredentialProbe {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const auth = options.authHeaders ?? ((c: CredentialRecord) => openaiProvider.authHeaders(c));
  return async (c) => {
    try {
      const res = await upstream.get(
        openaiProvider.url(c.baseUrl, "models"),
        { accept: "application/json", ...c.headers, ...auth(c) },
        { timeoutMs },
      );
      return res.status >= 200 && res.status < 300;
    } catch {
      return false;
    }
  };
}
