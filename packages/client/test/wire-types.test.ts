/**
 * The client without the engine: no dependency on `@tokenpool/core` (its types are inlined at
 * build), list types that are real, and a token that can be written back as it was read.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, expectTypeOf, it } from "vitest";
import {
  type Client,
  type ConfigLists,
  createClient,
  type ManagementConfigView,
  type OpenAICompatibilityItem,
  type ProviderKeyItem,
  type TokenUpdateBody,
  type TokenView,
  type UserUpdateBody,
  type UserView,
} from "../src/index.js";
import { startGateway, type TestGateway } from "./setup.js";

const pkgDir = join(import.meta.dirname, "..");

describe("@tokenpool/client's package", () => {
  it("has no dependency on @tokenpool/core that npm would install", () => {
    const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8"));
    for (const field of ["dependencies", "peerDependencies", "optionalDependencies"]) {
      expect(Object.keys(pkg[field] ?? {}), field).not.toContain("@tokenpool/core");
    }
  });

  it("imports @tokenpool/core for types only", () => {
    const src = join(pkgDir, "src");
    for (const file of readdirSync(src)) {
      const text = readFileSync(join(src, file), "utf8");
      // Every import or export statement naming core is `import type` / `export type`.
      for (const m of text.matchAll(/^(import|export)\b([^;]*?)from "@tokenpool\/core[^"]*";/gms)) {
        expect(m[0], file).toMatch(/^(import|export) type\b/);
      }
    }
  });
});

describe("wire types", () => {
  let g: TestGateway;
  let client: Client;

  beforeAll(async () => {
    g = await startGateway();
    client = createClient({ baseUrl: g.base, managementKey: g.managementKey });
  });

  afterAll(() => g.close());

  it("types the config lists of GET /config as their items", async () => {
    expectTypeOf<ManagementConfigView["claude-api-key"]>().toEqualTypeOf<ProviderKeyItem[]>();
    expectTypeOf<ManagementConfigView["codex-api-key"]>().toEqualTypeOf<ProviderKeyItem[]>();
    expectTypeOf<ManagementConfigView["openai-compatibility"]>().toEqualTypeOf<
      OpenAICompatibilityItem[]
    >();
    expectTypeOf<ManagementConfigView["openai-compatibility"]>().toEqualTypeOf<
      ConfigLists["openai-compatibility"]
    >();

    const item: OpenAICompatibilityItem = {
      name: "typed",
      "base-url": "https://example.invalid/v1",
      "api-keys": ["sk-typed-compat-0123456789"],
      models: [{ name: "m1", alias: "" }],
    };
    await client.management.openaiCompatibility.put([item]);
    const config = await client.management.config();
    expect(
      config["openai-compatibility"].map((i) => [i.name, i["base-url"], i["api-keys"]]),
    ).toEqual([["typed", "https://example.invalid/v1", ["sk-typed-compat-0123456789"]]]);
  });

  it("types users as /api/user/ answers them (snake_case) and the limit fields both ways", () => {
    expectTypeOf<UserView>().toHaveProperty("display_name");
    expectTypeOf<UserView>().not.toHaveProperty("displayName");
    expectTypeOf<UserView["rpm_limit"]>().toEqualTypeOf<number>();
    expectTypeOf<TokenView["next_refill_time"]>().toEqualTypeOf<number>();
    expectTypeOf<TokenView["quota_refill_interval"]>().toEqualTypeOf<
      Exclude<TokenUpdateBody["quota_refill_interval"], undefined>
    >();
    expectTypeOf<UserUpdateBody["max_concurrency"]>().toEqualTypeOf<number | undefined>();
  });

  it("gives model_limits one type in and out: a token read is written back unchanged", async () => {
    expectTypeOf<TokenView["model_limits"]>().toEqualTypeOf<
      Exclude<TokenUpdateBody["model_limits"], undefined>
    >();

    const made = await client.tokens.create({
      name: "limits",
      model_limits_enabled: true,
      model_limits: "gpt-4o-mini,gpt-4o",
    });
    const read = await client.tokens.get(made.id);
    expect(read.model_limits).toBe("gpt-4o-mini,gpt-4o");
    const { id, name, model_limits, model_limits_enabled } = read;
    const written = await client.tokens.update({ id, name, model_limits, model_limits_enabled });
    expect(written.model_limits).toBe("gpt-4o-mini,gpt-4o");
    expect((await client.tokens.get(made.id)).model_limits).toBe("gpt-4o-mini,gpt-4o");
  });
});
