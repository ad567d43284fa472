/**
 * Bench child: the mock OpenAI upstream. It is the upstream of the "floor" and "tokenpool"
 * targets and, called directly, the "direct" target itself.
 *
 * @module
 */
// The subpath, not the package entry: the entry also loads the vitest-based conformance suite.
import { createMockUpstream } from "@tokenpool/testing/mock-upstream";
import { runChild, UPSTREAM_KEY } from "./child.js";

runChild(async () => {
  const mock = await createMockUpstream({
    apiKeys: [UPSTREAM_KEY],
    chunkDelayMs: Number(process.env.BENCH_CHUNK_DELAY_MS ?? 0),
    // Recording would make the upstream slower and grow its memory under load.
    maxRecordedRequests: 0,
  });
  return {
    origin: mock.origin,
    authorization: `Bearer ${UPSTREAM_KEY}`,
    close: () => mock.close(),
  };
});
