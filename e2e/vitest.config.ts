import { packageProject } from "../vitest.shared.js";

// The packed-install test (one long beforeAll: build, pack, npm installs that compile
// better-sqlite3 from source; then short tests) and the doc-block runner.
export default packageProject("install", { testTimeout: 120_000 });
