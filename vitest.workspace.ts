/**
 * The list of Vitest projects. Vitest 4 has no workspace file of its own: vitest.config.ts
 * passes this list to `test.projects`. Each package's tests run against its sources
 * (the `source` export condition), so no build is needed first.
 */
export const projects = [
  "packages/core",
  "packages/testing",
  "packages/store-sqlite",
  "packages/store-redis",
  "packages/store-postgres",
  "packages/store-file",
  "packages/server",
  "packages/client",
  "examples/client",
  "packages/express",
  "packages/fastify",
  "examples/express",
  "examples/fastify",
  "packages/next",
  "packages/dashboard",
  "examples/nextjs",
  // Last: builds, packs and installs every public package with npm outside the workspace.
  "e2e",
];
