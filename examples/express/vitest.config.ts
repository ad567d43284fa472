import { packageProject } from "../../vitest.shared.js";

export default packageProject("example-express", { testTimeout: 60_000 });
