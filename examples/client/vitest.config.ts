import { packageProject } from "../../vitest.shared.js";

export default packageProject("example-client", { testTimeout: 60_000 });
