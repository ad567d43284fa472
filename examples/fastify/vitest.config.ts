import { packageProject } from "../../vitest.shared.js";

export default packageProject("example-fastify", { testTimeout: 60_000 });
